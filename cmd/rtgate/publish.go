package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway"
	"github.com/rtgate/rtgate/gateway/publish"
)

const publishLong = `Publish files or RTP streams into the SFU once, as one stream, until
Ctrl-C (or until a file without loop=true ends).

Each SRC is a source URL, as in a config file's streams:
  rtp://0.0.0.0:5004?codec=vp8&pt=96   RTP over UDP from an encoder
  sdp:///path/stream.sdp               an SDP file (ffmpeg -sdp_file, GStreamer)
  file:///path/video.ivf?loop=true     IVF (VP8, VP9, AV1), Ogg/Opus, H.264 Annex-B
  v4l2:///dev/video0?codec=h264&width=1280&height=720&fps=30&gop=60
                                       a V4L2 camera's H.264 (see "rtgate devices")
A plain path (video.ivf, video.ivf?loop=true) is taken as a file URL. A stream has at most one
video and one audio track; a video file and an audio file play in sync.

It reads realtime.* from the same config file, RTGATE_* environment and
flags as "rtgate run". With realtime.url "embedded" it also serves the
embedded SFU on http.listen (as "run" does), so others can pull the tracks.

It prints the sessionId and the track names once the stream is live, and on
a terminal a progress line (file position, or packets and bitrate). Ctrl-C
closes the tracks on the SFU (tracks/close) and exits 0.`

func newPublishCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "publish SRC [SRC...] [--name NAME] [--realtime-url URL] [-c FILE]",
		Short: "Publish files or RTP streams into the SFU, once",
		Long:  publishLong,
		Example: `  rtgate publish deploy/demo/demo.ivf deploy/demo/demo.ogg --name demo
  rtgate publish 'rtp://0.0.0.0:5004?codec=h264' --name cam1 \
    --realtime-url https://rtc.live.cloudflare.com/v1 --app-id ... --app-secret-file secret`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{fmt.Errorf("%s needs at least one source", cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, _ := cmd.Flags().GetString("name")
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			sc := config.Stream{Name: name}
			for _, s := range args {
				sc.Sources = append(sc.Sources, sourceURL(s))
			}
			cfg.Streams = []config.Stream{sc}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("invalid source:\n%w", err)
			}
			d, err := gateway.New(cfg, newLogger(cmd, cfg, a.stderr))
			if err != nil {
				return err
			}
			if a.listening != nil {
				a.listening(d.Addr())
			}
			ctx, cancel := context.WithCancelCause(cmd.Context())
			defer cancel(nil)
			watched := make(chan error, 1)
			go func() { watched <- watchPublish(ctx, d, a.stdout, a.stderr, cancel) }()
			err = d.Run(ctx)
			cancel(nil)
			if werr := <-watched; werr != nil {
				return werr
			}
			return err
		},
	}
	addRealtimeFlags(cmd)
	addListenFlag(cmd)
	cmd.Flags().String("name", "publish", "stream name; the tracks are NAME-video and NAME-audio")
	return cmd
}

// sourceURL takes a plain file path (with options after '?', as in
// video.ivf?loop=true) as a file:// URL.
func sourceURL(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	path, query, _ := strings.Cut(s, "?")
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return (&url.URL{Scheme: "file", Path: path, RawQuery: query}).String()
}

// watchPublish prints the session and tracks once live, a progress line
// on a terminal, and ends the command when the stream ends or fails.
func watchPublish(ctx context.Context, d *gateway.Daemon, stdout, stderr io.Writer, stop context.CancelCauseFunc) error {
	tty := isTerminal(stderr)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	announced := ""
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(stderr)
			}
			return nil
		case <-tick.C:
		}
		st := d.Streams()[0]
		if st.State == publish.StateLive && st.SessionID != announced {
			announced = st.SessionID
			names := make([]string, len(st.Tracks))
			for i, t := range st.Tracks {
				names[i] = t.Name
			}
			if tty {
				fmt.Fprint(stderr, "\r\033[K")
			}
			fmt.Fprintf(stdout, "live: stream %s, session %s, tracks %s\n", st.Name, st.SessionID, strings.Join(names, ", "))
		}
		switch st.State {
		case publish.StateEnded:
			stop(nil)
			return nil
		case publish.StateFailed:
			stop(nil)
			return fmt.Errorf("stream %s failed: %s", st.Name, st.LastError)
		}
		if tty {
			fmt.Fprint(stderr, "\r\033[K"+progressLine(st))
		}
	}
}

func progressLine(st publish.Status) string {
	parts := []string{st.State}
	for _, t := range st.Tracks {
		p := fmt.Sprintf("%s %d pkts %s", t.Kind, t.Packets, kbps(t.Bitrate))
		if t.Duration > 0 {
			p = fmt.Sprintf("%s %.1f/%.1fs", t.Kind, t.Position, t.Duration)
			if t.Loops > 0 {
				p += fmt.Sprintf(" loop %d", t.Loops)
			}
			p += " " + kbps(t.Bitrate)
		}
		parts = append(parts, p)
	}
	if st.State == publish.StateRetrying && st.LastError != "" {
		parts = append(parts, "last error: "+st.LastError)
	}
	return strings.Join(parts, " | ")
}

func kbps(bits uint64) string { return fmt.Sprintf("%d kbit/s", bits/1000) }

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
