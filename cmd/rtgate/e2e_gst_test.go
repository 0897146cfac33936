package main_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gstPython is Debian's Python, the one with the GObject bindings (the
// pyenv python3 on PATH has none).
const gstPython = "/usr/bin/python3"

// gstCheck prints the GStreamer elements whip_client.py needs that are
// missing; it fails if the bindings are.
const gstCheck = `import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstWebRTC", "1.0"); gi.require_version("GstSdp", "1.0")
from gi.repository import Gst
Gst.init(None)
print(" ".join(e for e in ("webrtcbin", "nicesrc", "dtlssrtpenc", "srtpenc", "vp8enc", "rtpvp8pay", "opusenc",
    "rtpopuspay", "videotestsrc", "audiotestsrc") if Gst.ElementFactory.find(e) is None))`

// requireGStreamer returns the Python to run whip_client.py with, or skips
// (fails with CI=true) when it, its GStreamer bindings or an element is
// missing.
func requireGStreamer(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(gstPython); err != nil {
		skipOrFail(t, "%s not found: %v", gstPython, err)
	}
	out, err := exec.Command(gstPython, "-c", gstCheck).CombinedOutput()
	if err != nil {
		skipOrFail(t, "GStreamer's Python bindings are missing (.ci/install-deps installs python3-gi, "+
			"python3-gst-1.0, gir1.2-gst-plugins-bad-1.0...): %v\n%s", err, out)
	}
	if missing := strings.TrimSpace(string(out)); missing != "" {
		skipOrFail(t, "GStreamer elements missing: %s (gstreamer1.0-plugins-good/-bad, gstreamer1.0-nice)", missing)
	}
	return gstPython
}

// gstClient is a running whip_client.py.
type gstClient struct {
	cmd  *exec.Cmd
	out  *process
	done chan error
}

var gstConnected = regexp.MustCompile(`^whip: connected$`)

// startGstClient runs whip_client.py until it says it is connected; it
// returns an error (and has stopped the script) if it exits or does not
// connect within 20 s.
func startGstClient(t *testing.T, python, url, token, responses string) (*gstClient, error) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "gst", "whip_client.py"))
	if err != nil {
		return nil, err
	}
	c := &gstClient{out: &process{name: "whip_client.py"}, done: make(chan error, 1)}
	c.cmd = exec.Command(python, script, url, "--token", token, "--responses", responses, "--connect-timeout", "15")
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", script, err)
	}
	connected := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			c.out.mu.Lock()
			c.out.out.WriteString(sc.Text() + "\n")
			c.out.mu.Unlock()
			if !once && gstConnected.MatchString(sc.Text()) {
				once = true
				close(connected)
			}
		}
	}()
	go func() {
		err := c.cmd.Wait()
		_ = pw.Close()
		<-scanned
		c.done <- err
	}()
	t.Cleanup(func() { _ = c.stop() })

	select {
	case <-connected:
		return c, nil
	case err := <-c.done:
		c.done <- err
		return nil, fmt.Errorf("whip_client.py exited before connecting: %v\n%s", err, c.out.output())
	case <-time.After(20 * time.Second):
		_ = c.stop()
		return nil, fmt.Errorf("whip_client.py not connected within 20 s:\n%s", c.out.output())
	}
}

// stop sends SIGTERM (the script then DELETEs its resource) and returns its
// exit error; SIGKILL after 15 s.
func (c *gstClient) stop() error {
	select {
	case err := <-c.done:
		c.done <- err
		return err
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		err := <-c.done
		c.done <- err
		return errors.Join(errors.New("killed 15 s after SIGTERM"), err)
	}
}

// testGStreamerWHIP publishes a VP8 test pattern and an Opus tone from
// GStreamer's webrtcbin over WHIP to a new stream "gst" (whip.allow_any_stream,
// default mode relay); Chromium's /watch page must decode 60 frames of it
// and receive its audio. The script's first attempt sometimes fails
// (shared/TESTING.md): it is retried once. Every response the script
// receives is appended to the file responses.
func testGStreamerWHIP(t *testing.T, d *whipDaemon, b *browser, responses string) {
	python := requireGStreamer(t)
	var c *gstClient
	for attempt := 1; attempt <= 2 && c == nil; attempt++ {
		var err error
		c, err = startGstClient(t, python, d.base+"/whip/gst", d.whipToken, responses)
		if err != nil {
			t.Logf("GStreamer WHIP client, attempt %d: %v", attempt, err)
		}
	}
	if c == nil {
		t.Fatalf("GStreamer's WHIP client did not connect in two attempts")
	}
	d.waitStream(t, "gst", 15*time.Second, "live", func(s apiStream, ok bool) bool { return ok && s.State == "live" })

	b.open(t, "gst-view", d.base+"/watch/gst?token="+d.whepToken)
	// Done at 60 frames with audio, or at 150 frames without: the audio
	// check below then says what is missing.
	s := b.waitPage(t, "gst-view", watchProbe, 45*time.Second, "60 decoded frames and audio", func(s pageState) bool {
		return s.Frames > 60 && s.AudioPackets > 0 || s.Frames > 150
	})
	if s.AudioPackets == 0 {
		t.Errorf("the viewer of GStreamer's stream gets video (%d frames) but no audio: tracks of the stream in /api/streams: %s",
			s.Frames, d.streams(t)["gst"].Raw)
	}
	if s.VideoCodec != "video/VP8" || s.AudioCodec != "audio/opus" || s.Width != 640 || s.Height != 360 {
		t.Errorf("the viewer of GStreamer's stream decodes %s %dx%d and %s, want video/VP8 640x360 and audio/opus",
			s.VideoCodec, s.Width, s.Height, s.AudioCodec)
	}
	t.Logf("viewer of GStreamer: %d frames %s %dx%d, audio %s %d packets", s.Frames, s.VideoCodec, s.Width, s.Height, s.AudioCodec, s.AudioPackets)
	b.close(t, "gst-view")

	if err := c.stop(); err != nil {
		t.Errorf("whip_client.py after SIGTERM: %v\n%s", err, c.out.output())
	}
	if out := c.out.output(); !regexp.MustCompile(`(?m)^whip: DELETE \S+: 20[04]$`).MatchString(out) {
		t.Errorf("whip_client.py did not DELETE its resource:\n%s", out)
	}
	d.waitStream(t, "gst", 15*time.Second, "gone or not live after its publisher's DELETE",
		func(s apiStream, ok bool) bool { return !ok || s.State != "live" })
}
