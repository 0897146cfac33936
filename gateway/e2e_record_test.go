package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
)

// mediaPacket is one packet of a media file as ffmpeg's framemd5 muxer
// lists it: its time and the MD5 of its bytes (with -c copy) or of the
// decoded frame.
type mediaPacket struct {
	pts float64 // seconds
	md5 string
}

// framemd5 lists the packets (copy) or decoded frames of the first stream
// of kind ("v" or "a") of file.
func framemd5(t *testing.T, ffmpeg, file, kind string, decode bool) []mediaPacket {
	t.Helper()
	args := []string{"-v", "error", "-nostdin", "-i", file, "-map", "0:" + kind + ":0"}
	if !decode {
		args = append(args, "-c", "copy")
	}
	args = append(args, "-f", "framemd5", "-")
	out, err := exec.Command(ffmpeg, args...).Output()
	if err != nil {
		t.Fatalf("ffmpeg framemd5 %s: %v", file, err)
	}
	var tb float64 = 1
	var pkts []mediaPacket
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#tb 0:") {
			var num, den float64
			if _, err := fmt.Sscanf(strings.TrimPrefix(line, "#tb 0:"), " %g/%g", &num, &den); err == nil && den != 0 {
				tb = num / den
			}
			continue
		}
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		// stream, dts, pts, duration, size, hash
		f := strings.Split(line, ",")
		if len(f) < 6 {
			continue
		}
		pts, _ := strconv.ParseFloat(strings.TrimSpace(f[2]), 64)
		pkts = append(pkts, mediaPacket{pts: pts * tb, md5: strings.TrimSpace(f[5])})
	}
	return pkts
}

// suffixOf checks that got is the source's packets from some index k to
// the end, every one present and in order, and returns k.
func suffixOf(t *testing.T, what string, got, src []mediaPacket) int {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("%s: nothing recorded", what)
	}
	k := -1
	for i, p := range src {
		if p.md5 == got[0].md5 {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatalf("%s: the first recorded frame is not in the source", what)
	}
	want := len(src) - k
	for i := range min(len(got), want) {
		if got[i].md5 != src[k+i].md5 {
			t.Fatalf("%s: frame %d of the recording is not source frame %d (frames lost or changed)", what, i, k+i)
		}
	}
	if len(got) != want {
		t.Fatalf("%s: %d frames recorded, want %d (source frames %d to %d)", what, len(got), want, k, len(src)-1)
	}
	return k
}

// checkClean runs the file through ffmpeg's decoders with -xerror.
func checkClean(t *testing.T, ffmpeg, file string) {
	t.Helper()
	out, err := exec.Command(ffmpeg, "-v", "error", "-xerror", "-nostdin", "-i", file, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg -xerror %s: %v\n%s", file, err, out)
	}
}

// waitStreamEnded waits until the file-fed stream played to its end.
func waitStreamEnded(t *testing.T, d *Daemon, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, st := range d.Streams() {
			if st.Name == name && st.State == publish.StateEnded {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s did not end: %+v", name, d.Streams())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recorded returns the one file a recording wrote under dir.
func recorded(t *testing.T, dir, name string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, name+".*"))
	var files []string
	for _, f := range m {
		if !strings.HasPrefix(filepath.Base(f), ".") {
			files = append(files, f)
		}
	}
	if len(files) != 1 {
		t.Fatalf("recording %s: files %v, want one", name, files)
	}
	return files[0]
}

// TestRecordDemo publishes the bundled demo files (VP8 in IVF, Opus in Ogg)
// through the embedded SFU and records the stream as WebM (both tracks),
// Ogg (audio) and IVF (video). Every frame the source has from the
// recording's first one to the end is in each file, byte for byte and in
// order; the files decode cleanly; the WebM's audio and video are in sync.
//
// A recording starts at the first keyframe that reaches it after its pull
// connected (a file cannot make one on request), so the frames before it
// are not expected; the test checks it started within 2 s.
func TestRecordDemo(t *testing.T) {
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	ivf, _ := filepath.Abs("../deploy/demo/demo.ivf")
	ogg, _ := filepath.Abs("../deploy/demo/demo.ogg")
	dir := t.TempDir()
	cfg := loopbackConfig()
	cfg.Streams = []config.Stream{{Name: "demo", Sources: []string{"file://" + ivf, "file://" + ogg}}}
	cfg.Record.Dir = dir
	cfg.Recordings = []config.Recording{
		{Name: "webm", Stream: "demo", Format: "webm", Template: "both"},
		{Name: "ogg", Stream: "demo", Tracks: []string{"demo-audio"}, Format: "ogg", Template: "audio"},
		{Name: "ivf", Stream: "demo", Tracks: []string{"demo-video"}, Format: "ivf", Template: "video"},
	}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, d.Run)
	waitStreamEnded(t, d, "demo", 30*time.Second)
	time.Sleep(time.Second) // the recorders' reorder windows drain
	for _, st := range d.Outputs(KindRecording) {
		t.Logf("recording %s: %s %+v", st.Name, st.State, st.Recording)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	srcV := framemd5(t, ffmpeg, ivf, "v", false)
	srcA := framemd5(t, ffmpeg, ogg, "a", false)

	video := recorded(t, dir, "video")
	checkClean(t, ffmpeg, video)
	if k := suffixOf(t, "ivf", framemd5(t, ffmpeg, video, "v", false), srcV); k > 60 {
		t.Errorf("ivf: recording started at source frame %d, more than 2 s in", k)
	}
	audio := recorded(t, dir, "audio")
	checkClean(t, ffmpeg, audio)
	if k := suffixOf(t, "ogg", framemd5(t, ffmpeg, audio, "a", false), srcA); k > 100 {
		t.Errorf("ogg: recording started at source packet %d, more than 2 s in", k)
	}

	both := recorded(t, dir, "both")
	if filepath.Ext(both) != ".webm" {
		t.Errorf("webm recording is %s", both)
	}
	checkClean(t, ffmpeg, both)
	recV := framemd5(t, ffmpeg, both, "v", false)
	recA := framemd5(t, ffmpeg, both, "a", false)
	kv := suffixOf(t, "webm video", recV, srcV)
	ka := suffixOf(t, "webm audio", recA, srcA)
	// Sync: the gap between the first audio and video packets in the file
	// is the gap between those packets in the source.
	inFile := recA[0].pts - recV[0].pts
	inSource := srcA[ka].pts - srcV[kv].pts
	t.Logf("webm: video from source frame %d, audio from packet %d; A-V start %.1f ms in the file, %.1f ms in the source",
		kv, ka, inFile*1000, inSource*1000)
	if math.Abs(inFile-inSource) > 0.040 {
		t.Errorf("webm: audio and video out of sync by %.1f ms", (inFile-inSource)*1000)
	}
	if math.Abs(inFile) > 0.040 {
		t.Errorf("webm: first audio and video timestamps differ by %.1f ms, want at most 40", inFile*1000)
	}
}

// TestRecordFFmpegH264 records H.264 + Opus that ffmpeg sends as RTP into
// rtgate, through the embedded SFU, as Matroska and as fragmented MP4.
// The reference is the same deterministic encode written to a file: every
// decoded video frame and every audio packet from the recording's start
// to the end is there.
func TestRecordFFmpegH264(t *testing.T) {
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	dir := t.TempDir()
	if d := os.Getenv("RTGATE_KEEP"); d != "" {
		dir = d
	}
	// The same deterministic encode twice: to a reference file, and in real
	// time as RTP (output options apply to the next output only).
	inputs := func(re ...string) []string {
		args := []string{"-v", "error", "-nostdin"}
		args = append(args, re...)
		args = append(args, "-f", "lavfi", "-t", "5", "-i", "testsrc2=size=320x240:rate=30")
		args = append(args, re...)
		return append(args, "-f", "lavfi", "-t", "5", "-i", "sine=frequency=440:sample_rate=48000")
	}
	h264 := []string{"-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-threads", "1"}
	opus := []string{"-map", "1:a", "-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-frame_duration", "20"}
	ref := filepath.Join(dir, "ref.mkv")
	args := append(inputs(), h264...)
	args = append(args, opus...)
	if out, err := exec.Command(ffmpeg, append(args, "-y", ref)...).CombinedOutput(); err != nil {
		t.Fatalf("reference encode: %v\n%s", err, out)
	}

	vport, aport := freePort(t), freePort(t)
	cfg := loopbackConfig()
	cfg.Streams = []config.Stream{{Name: "cam", Sources: []string{
		fmt.Sprintf("rtp://127.0.0.1:%d?codec=h264&pt=102", vport),
		fmt.Sprintf("rtp://127.0.0.1:%d?codec=opus&pt=111", aport),
	}}}
	cfg.Record.Dir = dir
	cfg.Recordings = []config.Recording{
		{Name: "mkv", Stream: "cam", Format: "mkv", Template: "cam"},
		{Name: "mp4", Stream: "cam", Format: "mp4", Template: "cam"},
	}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, d.Run)
	waitLive(t, d)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	args = append(inputs("-re"), h264...)
	args = append(args, "-payload_type", "102", "-ssrc", "4660", "-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", vport))
	args = append(args, opus...)
	args = append(args, "-payload_type", "111", "-ssrc", "4661", "-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d", aport))
	send := exec.CommandContext(ctx, ffmpeg, args...)
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg RTP: %v\n%s", err, out)
	}
	time.Sleep(1500 * time.Millisecond) // the tail through the SFU and the reorder windows
	for _, st := range d.Outputs(KindRecording) {
		t.Logf("recording %s: %s %+v", st.Name, st.State, st.Recording)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	srcV := framemd5(t, ffmpeg, ref, "v", true)
	srcA := framemd5(t, ffmpeg, ref, "a", false)
	for _, ext := range []string{".mkv", ".mp4"} {
		file := filepath.Join(dir, "cam"+ext)
		if _, err := os.Stat(file); err != nil {
			m, _ := filepath.Glob(filepath.Join(dir, "*"))
			t.Fatalf("%s: %v (files: %v)", ext, err, m)
		}
		checkClean(t, ffmpeg, file)
		kv := suffixOf(t, ext+" video", framemd5(t, ffmpeg, file, "v", true), srcV)
		ka := suffixOf(t, ext+" audio", framemd5(t, ffmpeg, file, "a", false), srcA)
		t.Logf("%s: video from source frame %d of %d, audio from packet %d of %d", ext, kv, len(srcV), ka, len(srcA))
		if kv > 60 {
			t.Errorf("%s: recording started at source frame %d, more than 2 s in", ext, kv)
		}
	}
}
