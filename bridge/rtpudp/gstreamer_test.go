package rtpudp

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// vp8Keyframe reports whether an RTP VP8 payload (RFC 7741) starts a
// keyframe.
func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	start, pid := b0&0x10 != 0, b0&0x07
	i := 1
	if b0&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture ID, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	return start && pid == 0 && len(p) > i && p[i]&0x01 == 0
}

// GStreamer's rtpbin turns the PLI of RequestKeyframe into a keyframe.
// Its RTCP is sent from the port its udpsrc listens on (udpsink
// bind-port), so the request, sent to the RTCP source address, reaches it.
func TestGStreamerKeyframeRequest(t *testing.T) {
	gst, err := exec.LookPath("gst-launch-1.0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("GStreamer is required when CI=true: %v", err)
		}
		t.Skipf("GStreamer not installed: %v", err)
	}
	src, err := Open("rtp://127.0.0.1:0?codec=vp8")
	if err != nil {
		t.Fatal(err)
	}
	rtpAddr, rtcpAddr := src.LocalAddr(0)
	feedback := freePorts(t, 1)[0]

	var mu sync.Mutex
	var keyframes []time.Time
	fn := func(_ int, p *rtp.Packet) {
		if vp8Keyframe(p.Payload) {
			mu.Lock()
			keyframes = append(keyframes, time.Now())
			mu.Unlock()
		}
	}
	nkey := func() int { mu.Lock(); defer mu.Unlock(); return len(keyframes) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, fn) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		_ = src.Close()
	}()

	const ssrc = 0x3333
	pipeline := fmt.Sprintf("rtpbin name=rb "+
		"videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=90,framerate=30/1 ! "+
		"vp8enc deadline=1 keyframe-max-dist=100000 ! rtpvp8pay pt=96 ssrc=%d ! rb.send_rtp_sink_0 "+
		"rb.send_rtp_src_0 ! udpsink host=127.0.0.1 port=%d "+
		"rb.send_rtcp_src_0 ! udpsink host=127.0.0.1 port=%d bind-port=%d sync=false async=false "+
		"udpsrc address=127.0.0.1 port=%d ! rb.recv_rtcp_sink_0",
		ssrc, rtpAddr.Port(), rtcpAddr.Port(), feedback, feedback)
	gctx, gcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer gcancel()
	cmd := exec.CommandContext(gctx, gst, append([]string{"-q"}, splitPipeline(pipeline)...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	// rtpbin sends its first sender report within a few seconds.
	waitFor(t, "GStreamer's first keyframe and sender report", 15*time.Second, func() bool {
		_, _, _, ok := src.LastSenderReport(0)
		return ok && nkey() >= 1
	})
	if _, from := src.SenderAddrs(0); from.Port() != feedback {
		t.Fatalf("RTCP from %s, want port %d", from, feedback)
	}
	time.Sleep(500 * time.Millisecond)
	before := nkey()
	if before != 1 {
		t.Fatalf("%d keyframes before any request (keyframe-max-dist is large)", before)
	}
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false")
	}
	waitFor(t, "a keyframe after the request", 5*time.Second, func() bool { return nkey() > before })
	st := src.Stats().Tracks[0]
	t.Logf("keyframes %d, packets %d, sender reports %d, PLIs %d", nkey(), st.Packets, st.SenderReports, st.PLIsSent)
	if st.SSRC != ssrc {
		t.Fatalf("SSRC %x", st.SSRC)
	}
}

// splitPipeline splits a gst-launch description into its arguments (it
// has no quoted parts).
func splitPipeline(s string) []string {
	var out []string
	start := -1
	for i, r := range s + " " {
		if r == ' ' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}
