package publish_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/v4l2"
	"github.com/rtgate/rtgate/bridge/v4l2/v4l2test"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
)

// withoutParameterSets returns an access unit's NAL units other than SPS,
// PPS, AUD and filler: the source puts SPS/PPS before IDRs that lack them
// and RTP drops AUD and filler (RFC 6184), the rest must be identical.
func withoutParameterSets(au []byte) [][]byte {
	var out [][]byte
	for _, n := range v4l2test.NALUnits(au) {
		switch n[0] & 0x1f {
		case 7, 8, 9, 12:
		default:
			out = append(out, n)
		}
	}
	return out
}

func hasParameterSets(au []byte) bool {
	var sps, pps bool
	for _, n := range v4l2test.NALUnits(au) {
		sps = sps || n[0]&0x1f == 7
		pps = pps || n[0]&0x1f == 8
	}
	return sps && pps
}

func sameAU(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// cameraStream makes secs of ffmpeg H.264 at w x h with keyframes every gop
// frames, serves it from a fake V4L2 camera in real time, publishes the
// camera as stream "cam" into an embedded SFU and pulls its video.
func cameraStream(t *testing.T, w, h, secs, gop int) (*v4l2test.Camera, *v4l2.Source, [][]byte, *rtctest.Peer, *rtctest.Sink) {
	t.Helper()
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "cam.h264")
	out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=30", w, h),
		"-t", fmt.Sprint(secs), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-g", fmt.Sprint(gop), "-bf", "0", "-f", "h264", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	aus := v4l2test.SplitAccessUnits(data)
	cam := v4l2test.NewCamera(aus, w, h, 30)
	cam.SetRealtime(true)
	src, err := v4l2.Open(fmt.Sprintf("v4l2:///dev/video0?codec=h264&width=%d&height=%d&fps=30", w, h), v4l2.Options{Open: cam.Open})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	st := runStream(t, publish.Options{Name: "cam", Sources: []bridge.Source{src}, Client: e.Client, API: rtctest.PeerAPI(t)})
	s := waitState(t, st, publish.StateLive, 10*time.Second)
	sub := pull(t, e.Client, s.SessionID, "cam-video")
	return cam, src, aus, sub, sub.NextTrack()
}

// TestCameraThroughSFU publishes the fake V4L2 camera (serving access units
// ffmpeg made, with driver timestamps) into the embedded SFU: a pion
// subscriber receives the access units byte for byte with RTP timestamps
// that follow the driver's, and its PLI becomes a FORCE_KEY_FRAME control
// call on the device.
func TestCameraThroughSFU(t *testing.T) {
	cam, _, aus, sub, sink := cameraStream(t, 320, 240, 2, 15)

	// Reassemble 1.5 s of access units, starting after the first marker.
	type frame struct {
		au [][]byte
		ps bool
		ts uint32
	}
	var frames []frame
	var h264 codecs.H264Packet
	var cur []byte
	started := false
	deadline := time.After(1500 * time.Millisecond)
collect:
	for {
		select {
		case p := <-sink.Pkts:
			if !started {
				started = p.Marker
				continue
			}
			nal, err := h264.Unmarshal(p.Payload)
			if err != nil {
				t.Fatalf("depacketize: %v", err)
			}
			cur = append(cur, nal...)
			if p.Marker {
				frames = append(frames, frame{withoutParameterSets(cur), hasParameterSets(cur), p.Timestamp})
				cur = nil
			}
		case <-deadline:
			break collect
		}
	}
	if len(frames) < 30 {
		t.Fatalf("%d access units in 1.5 s at 30 fps", len(frames))
	}
	want := make([][][]byte, len(aus))
	for i, au := range aus {
		want[i] = withoutParameterSets(au)
	}
	k := -1
	for i := range want {
		if sameAU(frames[0].au, want[i]) {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatal("the first access unit pulled is not one the camera served")
	}
	step := uint32(90000 / 30) // the driver's timestamps advance one frame interval per buffer
	for i := 1; i < len(frames); i++ {
		j := (k + i) % len(aus)
		if !sameAU(frames[i].au, want[j]) {
			t.Fatalf("access unit %d differs from the camera's access unit %d", i, j)
		}
		if d := frames[i].ts - frames[i-1].ts; d != step {
			t.Fatalf("timestamp step %d before access unit %d, want %d (the driver's interval)", d, i, step)
		}
		if v4l2test.IsIDR(aus[j]) && !frames[i].ps {
			t.Fatalf("IDR access unit %d arrived without SPS and PPS", i)
		}
	}

	// A subscriber's PLI becomes FORCE_KEY_FRAME on the device.
	forced := func() int {
		n := 0
		for _, c := range cam.SetCtrls() {
			if c.ID == v4l2.CIDMPEGVideoForceKeyFrame {
				n++
			}
		}
		return n
	}
	time.Sleep(600 * time.Millisecond) // past the coalescing window of the join's request
	before := forced()
	sub.SendPLI(sink.Track.SSRC())
	for deadline := time.Now().Add(5 * time.Second); forced() == before; {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber's PLI did not reach the camera as FORCE_KEY_FRAME")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d access units identical to the camera's, timestamps at the driver's interval; %d keyframes forced", len(frames), forced())
}

// TestCameraUnplugged: the camera fails with ENODEV mid-stream; the stream
// restarts the source with backoff and the subscriber's track carries on
// with consecutive sequence numbers and a timestamp gap of about the time
// the camera was away.
func TestCameraUnplugged(t *testing.T) {
	cam, src, _, _, sink := cameraStream(t, 160, 120, 1, 10)
	for deadline := time.Now().Add(5 * time.Second); cam.Served() < 20; {
		if time.Now().After(deadline) {
			t.Fatal("the camera served nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cam.FailAt(cam.Served()+5, syscall.ENODEV) // unplugged, soon

	var last, prev uint16
	var lastTS, prevTS uint32
	var gapAt time.Duration
	got := 0
	start := time.Now()
	deadline := time.After(6 * time.Second)
	for cam.Opens() < 2 || got < 60 {
		select {
		case p := <-sink.Pkts:
			if got > 0 && p.SequenceNumber != last+1 {
				t.Fatalf("sequence number jumps from %d to %d", last, p.SequenceNumber)
			}
			if got > 0 && time.Since(start) > 300*time.Millisecond && p.Timestamp-lastTS > 9000 {
				gapAt, prev, prevTS = time.Since(start), last, lastTS
			}
			last, lastTS = p.SequenceNumber, p.Timestamp
			got++
		case <-deadline:
			t.Fatalf("after the unplug: %d packets, %d opens, %+v", got, cam.Opens(), src.Stats())
		}
	}
	if gapAt == 0 {
		t.Fatal("no gap in time seen: the camera never went away")
	}
	t.Logf("camera back after the gap at %v; sequence continued from %d, timestamp +%d", gapAt.Round(time.Millisecond), prev, lastTS-prevTS)
}
