package rtpudp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	rtpcodecs "github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/rtgate/rtgate/bridge"
)

// demoVP8 is the committed demo video: VP8 640x360, 30 fps, a keyframe each
// second.
const demoVP8 = "../../deploy/demo/demo.ivf"

// readIVFFrames returns the frames of an IVF file, their timestamps as
// pion's reader gives them and the file's timebase.
func readIVFFrames(t *testing.T, path string) (frames [][]byte, pts []uint64, num, den uint32) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		b, fh, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		frames = append(frames, b)
		pts = append(pts, fh.Timestamp)
	}
	return frames, pts, h.TimebaseNumerator, h.TimebaseDenominator
}

// vp8Input sends frames as one RTP input: its own SSRC, sequence numbers
// and timestamps, paced at fps, packetized by pion's VP8 payloader.
func vp8Input(t *testing.T, s *Sender, idx int, frames [][]byte, ssrc uint32, seq uint16, ts uint32, fps int) {
	t.Helper()
	var pay rtpcodecs.VP8Payloader
	tick := time.NewTicker(time.Second / time.Duration(fps))
	defer tick.Stop()
	for _, fr := range frames {
		parts := pay.Payload(1200, fr)
		for i, p := range parts {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 120, SequenceNumber: seq, Timestamp: ts,
				SSRC: ssrc, Marker: i == len(parts)-1}, Payload: p}
			if err := s.WriteRTP(idx, pkt); err != nil {
				t.Fatalf("forward: %v", err)
			}
			seq++
		}
		ts += 90000 / 30
		<-tick.C
	}
}

// waitBound waits until a receiver the test started has bound a UDP port
// (binding it ourselves fails then).
func waitBound(t *testing.T, port uint16, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
		if err == nil {
			_ = c.Close()
		} else if errors.Is(err, syscall.EADDRINUSE) {
			return
		}
		select {
		case <-exited:
			t.Fatal("the receiver exited before binding its port")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no receiver bound port %d within 15 s", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// receiver runs a tool until it exits, bounded by 30 s.
type receiver struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
	err    error
}

func startReceiver(t *testing.T, name string, args ...string) *receiver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r := &receiver{cmd: exec.CommandContext(ctx, name, args...), exited: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		cancel()
		close(r.exited)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
	})
	return r
}

func (r *receiver) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not finish", what)
	}
	if r.err != nil {
		t.Fatalf("%s: %v\n%s", what, r.err, r.out.String())
	}
}

// forwardAcrossRestart opens a video-only Sender to a free port, starts a
// receiver on its SDP and sends the demo's frames 0..59 as one input and
// 60..119 as another (new SSRC, unrelated sequence numbers and
// timestamps), with a pause between: a publisher restart.
func forwardAcrossRestart(t *testing.T, start func(sdp string, port uint16) *receiver) (*Sender, [][]byte, *receiver) {
	t.Helper()
	frames, _, _, _ := readIVFFrames(t, demoVP8)
	if len(frames) < 120 || frames[0][0]&1 != 0 || frames[60][0]&1 != 0 {
		t.Fatalf("the demo file should have 120 frames with keyframes at 0 and 60")
	}
	port := freePorts(t, 1)[0]
	sdp := filepath.Join(t.TempDir(), "out.sdp")
	s, err := NewSender(fmt.Sprintf("rtp://127.0.0.1:%d?media=video", port), SenderOptions{SDPFile: sdp, Name: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	idx, err := s.AddTrack(bridge.SinkTrack{Track: bridge.Track{Kind: bridge.KindVideo,
		Codec: bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000, PayloadType: 120}}, Name: "demo-video"})
	if err != nil {
		t.Fatal(err)
	}
	rc := start(sdp, port)
	waitBound(t, port, rc.exited)
	vp8Input(t, s, idx, frames[:60], 0x1111, 40000, 1_000_000, 60)
	time.Sleep(300 * time.Millisecond) // the publisher is away for a while
	vp8Input(t, s, idx, frames[60:120], 0x2222, 7, 4_000_000_000, 60)
	return s, frames, rc
}

// TestOutFFmpegAcrossRestart: ffmpeg, given only the SDP file the Sender
// wrote, receives 120 frames that are the demo's frames byte for byte, in
// order, across an input restart, with timestamps that keep increasing by
// about the pause at the restart (no reset).
func TestOutFFmpegAcrossRestart(t *testing.T) {
	ff := needFFmpeg(t)
	out := filepath.Join(t.TempDir(), "out.ivf")
	s, frames, rc := forwardAcrossRestart(t, func(sdp string, _ uint16) *receiver {
		return startReceiver(t, ff, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
			"-protocol_whitelist", "file,udp,rtp", "-i", sdp, "-frames:v", "120", "-c", "copy", out)
	})
	rc.wait(t, "ffmpeg")
	got, pts, num, den := readIVFFrames(t, out)
	if len(got) != 120 {
		t.Fatalf("ffmpeg wrote %d frames, want 120", len(got))
	}
	for i := range got {
		if !bytes.Equal(got[i], frames[i]) {
			t.Fatalf("frame %d differs from the demo's frame %d", i, i)
		}
	}
	for i := 1; i < len(pts); i++ {
		// pion's reader scales the file's pts by den/num; undo it, then
		// apply the timebase num/den.
		step := time.Duration(float64(pts[i]-pts[i-1]) * float64(num) * float64(num) / float64(den) / float64(den) * float64(time.Second))
		if pts[i] <= pts[i-1] || step > time.Second {
			t.Fatalf("frame %d: timestamp step %v (from %d to %d)", i, step, pts[i-1], pts[i])
		}
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames",
		"-of", "csv=p=0", out).CombinedOutput()
	if err != nil || strings.TrimSpace(string(probe)) != "vp8,640,360,120" {
		t.Fatalf("ffprobe: %v: %s", err, probe)
	}
	if out, err := exec.Command(ff, "-v", "error", "-xerror", "-i", out, "-f", "null", "-").CombinedOutput(); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	st := s.Stats().Tracks[0]
	if st.Resyncs != 1 || st.WriteErrors != 0 {
		t.Fatalf("sender stats %+v", st)
	}
	t.Logf("ffmpeg: 120 frames identical to the demo's across the restart; %d packets, %d sender reports", st.Packets, st.SenderReports)
}

// TestOutGStreamerAcrossRestart: GStreamer's sdpdemux opens the SDP file
// and decodes 110 frames across the input restart.
func TestOutGStreamerAcrossRestart(t *testing.T) {
	gst, err := exec.LookPath("gst-launch-1.0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("GStreamer is required when CI=true: %v", err)
		}
		t.Skipf("GStreamer not installed: %v", err)
	}
	const want = 110
	s, _, rc := forwardAcrossRestart(t, func(sdp string, _ uint16) *receiver {
		return startReceiver(t, gst, "-q", "filesrc", "location="+sdp, "!", "sdpdemux", "latency=100", "!",
			"rtpvp8depay", "!", "vp8dec", "!", "identity", "eos-after="+strconv.Itoa(want), "!", "fakesink")
	})
	rc.wait(t, "gst-launch (sdpdemux ! rtpvp8depay ! vp8dec)")
	t.Logf("GStreamer decoded %d frames from the SDP across the restart; sender stats %+v", want, s.Stats().Tracks[0])
}
