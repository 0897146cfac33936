package publish_test

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
)

type ivfFrame struct {
	data []byte
	ts   uint32 // 90 kHz, from ffprobe's packet times
}

// readIVF reads the file's frames with pion's reader and their times with
// ffprobe (the reference for what the file means).
func readIVF(t *testing.T, path string) []ivfFrame {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames []ivfFrame
	for {
		b, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		frames = append(frames, ivfFrame{data: b})
	}
	out, err := exec.Command(rtctest.RequireTool(t, "ffprobe"), "-v", "error", "-show_entries", "packet=pts_time",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	times := strings.Fields(string(out))
	if len(times) != len(frames) {
		t.Fatalf("ffprobe lists %d packets, the reader %d frames", len(times), len(frames))
	}
	for i, s := range times {
		sec, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		frames[i].ts = uint32(math.Round(sec * 90000))
	}
	return frames
}

// TestFileThroughSFU publishes a looping VP8 IVF file; the frames a
// subscriber pulls from the SFU are the file's frames byte for byte, in
// order, with RTP timestamps that follow the file's timestamps, and with
// sequence numbers and timestamps continuous across the loop boundary.
func TestFileThroughSFU(t *testing.T) {
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), "v.ivf")
	// 20 frames at 25 fps (0.8 s) with a keyframe every 5: short loops.
	out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
		"-frames:v", "20", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-g", "5",
		"-auto-alt-ref", "0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	want := readIVF(t, path)
	// One loop lasts up to the last frame plus one frame duration.
	loopTicks := want[len(want)-1].ts + (want[1].ts - want[0].ts)

	srcs, err := publish.OpenSources([]string{"file://" + path + "?loop=true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = publish.CloseSources(srcs) })
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	st := runStream(t, publish.Options{Name: "file", Sources: srcs, Client: e.Client, API: rtctest.PeerAPI(t)})
	s := waitState(t, st, publish.StateLive, 10*time.Second)
	sink := pull(t, e.Client, s.SessionID, "file-video").NextTrack()

	// Collect 2.2 s: at least two loop boundaries.
	var pkts []*rtp.Packet
	deadline := time.After(2200 * time.Millisecond)
collect:
	for {
		select {
		case p := <-sink.Pkts:
			pkts = append(pkts, p)
		case <-deadline:
			break collect
		}
	}
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("sequence number jumps from %d to %d", pkts[i-1].SequenceNumber, pkts[i].SequenceNumber)
		}
	}
	// Reassemble frames; start after the first marker (we may join mid-frame).
	type frame struct {
		data []byte
		ts   uint32
	}
	var frames []frame
	var cur []byte
	started := false
	for _, p := range pkts {
		if !started {
			started = p.Marker
			continue
		}
		var vp8 codecs.VP8Packet
		payload, err := vp8.Unmarshal(p.Payload)
		if err != nil {
			t.Fatalf("depacketize: %v", err)
		}
		cur = append(cur, payload...)
		if p.Marker {
			frames = append(frames, frame{cur, p.Timestamp})
			cur = nil
		}
	}
	if len(frames) < 2*len(want)+5 {
		t.Fatalf("%d frames pulled in 2.2 s, want more than two loops of %d", len(frames), len(want))
	}
	// Find where in the file the first frame is, then follow the file.
	k := -1
	for i, w := range want {
		if bytes.Equal(w.data, frames[0].data) {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatal("the first frame pulled is not a frame of the file")
	}
	loops := 0
	for i := 1; i < len(frames); i++ {
		j := (k + i) % len(want)
		if !bytes.Equal(frames[i].data, want[j].data) {
			t.Fatalf("frame %d is not the file's frame %d", i, j)
		}
		prev := (k + i - 1) % len(want)
		wantStep := want[j].ts - want[prev].ts
		if j == 0 { // across the loop: from the last frame to the next loop's first
			wantStep = loopTicks - want[prev].ts
			loops++
		}
		if got := frames[i].ts - frames[i-1].ts; got != wantStep {
			t.Fatalf("timestamp step %d before frame %d (file frame %d), want %d", got, i, j, wantStep)
		}
	}
	if loops < 2 {
		t.Fatalf("crossed %d loop boundaries, want 2", loops)
	}
	t.Logf("%d frames pulled, byte-identical to the file's, across %d loops", len(frames), loops)
}
