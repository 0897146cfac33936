package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway"
	"github.com/rtgate/rtgate/gateway/supervise"
)

const recordLong = `Record tracks pulled from the SFU to a file, once, until Ctrl-C or --duration.

What to record:
  --session ID                 every track of a publisher's session, including tracks
                               it publishes later
  --session ID --track NAME    only these tracks of it (repeat --track)
  --stream NAME                a stream this command itself publishes from -c FILE's
                               streams (to record a stream another rtgate publishes,
                               give its session id, from its /api/streams, to --session)

-o PATH names the file; its extension chooses the format unless --format does:
webm (VP8, VP9, AV1, Opus), mkv (also H.264, H.265), ogg (Opus only), ivf (one
VP8/VP9/AV1 track) or mp4 (fragmented: H.264, H.265, Opus). Without -o the
file goes to record.dir, named by record.template. A name already taken gets
"-1", "-2", ... before the extension. With record.segment_duration or
record.segment_size set, a new file follows each segment.

The file is playable while it is written (a kill leaves at most the last second
unplayable; the next start of rtgate finalizes it). Ctrl-C, or the end of
--duration, finalizes the file and exits 0.

It reads realtime.* from the same config file, RTGATE_* environment and flags as
"rtgate run". To record from a running rtgate with the embedded SFU, point
--realtime-url at it (http://127.0.0.1:8080/v1) with its app secret.`

func newRecordCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "record (--session ID [--track NAME...] | --stream NAME) [-o PATH] [--format F] [--duration D]",
		Short: "Record tracks pulled from the SFU to a file, once",
		Long:  recordLong,
		Example: `  rtgate record --session 2a4f... -o call.webm --realtime-url https://rtc.live.cloudflare.com/v1 \
    --app-id ... --app-secret-file secret
  rtgate record --session "$(curl -s 127.0.0.1:8080/api/streams | jq -r '.streams[0].sessionId')" \
    --realtime-url http://127.0.0.1:8080/v1 --app-secret-file secret --listen 127.0.0.1:0 -o cam1.mkv --duration 1h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, duration, err := recordFlags(cmd)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			cfg.Recordings = []config.Recording{rc}
			cfg.Forwards = []config.Forward{}
			if rc.Session != "" {
				cfg.Streams = []config.Stream{} // only the session: publish nothing
			}
			if err := cfg.Validate(); err != nil {
				return &usageError{fmt.Errorf("invalid recording:\n%w", err)}
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
			if duration > 0 {
				var stop context.CancelFunc
				ctx, stop = context.WithTimeout(ctx, duration)
				defer stop()
			}
			watched := make(chan error, 1)
			go func() { watched <- watchRecord(ctx, d, a.stderr, cancel) }()
			err = d.Run(ctx)
			cancel(nil)
			werr := <-watched
			st := d.Outputs(gateway.KindRecording)
			if len(st) == 1 && st[0].Recording != nil {
				r := st[0].Recording
				fmt.Fprintf(a.stdout, "recorded %s in %d file(s), %s, to %s\n",
					(time.Duration(r.Seconds * float64(time.Second))).Round(100*time.Millisecond),
					r.Segments, byteSize(r.Bytes), rc.Dir)
			}
			if werr != nil {
				return werr
			}
			return err
		},
	}
	addRealtimeFlags(cmd)
	addListenFlag(cmd)
	fs := cmd.Flags()
	fs.String("session", "", "the publisher's session id")
	fs.StringArray("track", nil, "a track name of the session (repeat; default every track)")
	fs.String("stream", "", "a stream this rtgate publishes")
	fs.StringP("output", "o", "", "the file to write (default: record.dir and record.template)")
	fs.String("format", "", "webm, mkv, ogg, ivf or mp4 (default: from -o's extension, else record.format)")
	fs.Duration("duration", 0, "stop after this long (default: until Ctrl-C)")
	return cmd
}

// recordFlags turns the command's flags into the one recording it runs.
func recordFlags(cmd *cobra.Command) (config.Recording, time.Duration, error) {
	fs := cmd.Flags()
	session, _ := fs.GetString("session")
	tracks, _ := fs.GetStringArray("track")
	stream, _ := fs.GetString("stream")
	out, _ := fs.GetString("output")
	format, _ := fs.GetString("format")
	duration, _ := fs.GetDuration("duration")
	rc := config.Recording{Name: "record", Session: session, Stream: stream, Tracks: tracks, Format: format}
	switch {
	case session == "" && stream == "":
		return rc, 0, &usageError{fmt.Errorf("%s needs --session ID or --stream NAME", cmd.CommandPath())}
	case session != "" && stream != "":
		return rc, 0, &usageError{fmt.Errorf("%s: --session and --stream exclude each other", cmd.CommandPath())}
	case duration < 0:
		return rc, 0, &usageError{fmt.Errorf("--duration %s: must not be negative", duration)}
	}
	if out != "" {
		ext := strings.TrimPrefix(filepath.Ext(out), ".")
		isFormat := false
		for _, f := range config.RecordFormats {
			isFormat = isFormat || (ext == f && f != "auto")
		}
		if format == "" && isFormat {
			rc.Format = ext
		}
		if isFormat {
			out = strings.TrimSuffix(out, "."+ext)
		}
		rc.Dir = filepath.Dir(out)
		// The name is literal: braces would be taken as placeholders.
		rc.Template = strings.NewReplacer("{", "_", "}", "_").Replace(filepath.Base(out))
	}
	return rc, duration, nil
}

// watchRecord prints a progress line on a terminal and ends the command
// when the recording ends or fails for good.
func watchRecord(ctx context.Context, d *gateway.Daemon, stderr io.Writer, stop context.CancelCauseFunc) error {
	tty := isTerminal(stderr)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(stderr)
			}
			return nil
		case <-tick.C:
		}
		sts := d.Outputs(gateway.KindRecording)
		if len(sts) != 1 {
			continue
		}
		st := sts[0]
		switch st.State {
		case supervise.StateEnded:
			stop(nil)
			return nil
		case supervise.StateFailed:
			stop(nil)
			return fmt.Errorf("recording failed: %s", st.LastError)
		}
		if tty {
			fmt.Fprint(stderr, "\r\033[K"+recordProgress(st))
		}
	}
}

// recordProgress is the terminal's progress line: time written, bytes,
// and per track packets lost (for good) and repaired (late, but in time).
func recordProgress(st gateway.OutputStatus) string {
	parts := []string{string(st.State)}
	if r := st.Recording; r != nil {
		parts = append(parts, fmt.Sprintf("%s written, %s", (time.Duration(r.Seconds)*time.Second).String(), byteSize(r.Bytes)))
		for _, t := range r.Tracks {
			parts = append(parts, fmt.Sprintf("%s %d pkts, %d lost, %d repaired", t.Name, t.Packets, t.Lost, t.Repaired))
		}
		if r.Failing && r.LastError != "" {
			parts = append(parts, "disk error: "+r.LastError)
		}
	}
	if st.State == supervise.StateRetrying && st.LastError != "" {
		parts = append(parts, "last error: "+st.LastError)
	}
	return strings.Join(parts, " | ")
}

// byteSize prints n bytes for people.
func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
