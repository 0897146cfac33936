package record

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/file"
)

// The crash test re-executes the test binary as a child that records in
// real time until it is killed.
const (
	crashChildEnv = "RTGATE_RECORD_CRASH_CHILD" // recordings directory
	crashVideoEnv = "RTGATE_RECORD_CRASH_VIDEO" // source files
	crashAudioEnv = "RTGATE_RECORD_CRASH_AUDIO"
)

// crashChild records a looping VP8 + Opus source at its real pace, prints
// "STARTED" once a segment is open, and runs until killed.
func crashChild() int {
	dir := os.Getenv(crashChildEnv)
	r, err := New(Options{Dir: dir, Stream: "crash", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	epoch := time.Now().Add(100 * time.Millisecond)
	for _, env := range []string{crashVideoEnv, crashAudioEnv} {
		src, err := file.Open("file://"+os.Getenv(env)+"?loop=true", file.Options{Epoch: epoch})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		idx, err := r.AddTrack(bridge.SinkTrack{Track: src.Tracks()[0], Name: env, RequestKeyframe: func() {}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go src.Run(context.Background(), func(_ int, p *rtp.Packet) { r.WriteRTP(idx, p) })
	}
	for r.Stats().Current == "" {
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Printf("STARTED %s\n", r.Stats().Current)
	select {} // until SIGKILL
}

// TestCrashKill9: a recorder killed with SIGKILL after ~3 s leaves a file
// that ffprobe reads with a duration within 1 s of the time recorded and
// that decodes; RepairDir then finalizes it and removes the marker.
func TestCrashKill9(t *testing.T) {
	video, audio := fixture(t, "vp8-long.ivf"), fixture(t, "opus-long.ogg")
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashVideoEnv+"="+video, crashAudioEnv+"="+audio)
	cmd.Stderr = testWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "STARTED ") {
				lines <- strings.TrimPrefix(sc.Text(), "STARTED ")
				return
			}
		}
		close(lines)
	}()
	var rel string
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("child ended without starting a segment")
		}
		rel = l
	case <-time.After(30 * time.Second):
		t.Fatal("child did not start a segment within 30 s")
	}
	started := time.Now()
	time.Sleep(3 * time.Second)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	recorded := time.Since(started)
	cmd.Wait()
	killed = true

	path := filepath.Join(dir, rel)
	if m := markers(t, dir); len(m) != 1 {
		t.Fatalf("markers after the kill: %v, want the one of %s", m, rel)
	}
	p := ffprobe(t, path)
	got := p.duration()
	if p.Format.Duration == "" || got < recorded-time.Second || got > recorded+time.Second {
		// A live file declares no duration: measure the packets.
		got = lastPTS(t, path)
	}
	t.Logf("killed after %v; ffprobe duration %s, last packet %v", recorded, p.Format.Duration, lastPTS(t, path))
	if d := got - recorded; d < -time.Second || d > time.Second {
		t.Errorf("file holds %v of media, recorded for %v", got, recorded)
	}
	if err := xerror(path); err != nil {
		t.Errorf("the killed file does not decode cleanly: %v", err)
	}

	repaired, err := RepairDir(dir, testLogger(t))
	if err != nil {
		t.Fatalf("RepairDir: %v", err)
	}
	if len(repaired) != 1 || repaired[0] != path {
		t.Fatalf("RepairDir repaired %v, want [%s]", repaired, path)
	}
	if m := markers(t, dir); len(m) != 0 {
		t.Fatalf("markers after RepairDir: %v", m)
	}
	p = ffprobe(t, path)
	if d := p.duration() - recorded; p.Format.Duration == "" || d < -time.Second || d > time.Second {
		t.Errorf("after repair: duration %q, recorded for %v", p.Format.Duration, recorded)
	}
	if err := xerror(path); err != nil {
		t.Errorf("repaired file: %v", err)
	}
	// A second pass finds nothing.
	if again, err := RepairDir(dir, testLogger(t)); err != nil || len(again) != 0 {
		t.Errorf("second RepairDir: %v, %v", again, err)
	}
}

// lastPTS is the largest packet time in a file.
func lastPTS(t testing.TB, path string) time.Duration {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0",
		path).Output()
	if err != nil {
		t.Fatalf("ffprobe packets %s: %v", path, err)
	}
	var last float64
	for _, l := range strings.Fields(string(out)) {
		if v, err := strconv.ParseFloat(strings.TrimSuffix(l, ","), 64); err == nil && v > last {
			last = v
		}
	}
	return time.Duration(last * float64(time.Second))
}

// TestRepairDirLeavesLiveAndCleansStale: RepairDir skips a file a live
// Recorder writes (its marker is locked), removes a marker whose file was
// never made and an empty file killed before its header.
func TestRepairDirLeavesLiveAndCleansStale(t *testing.T) {
	r, clk := newTestRecorder(t, Options{Template: "live"})
	dir := r.o.Dir
	v := packetize(t, "vp8.ivf")
	idx, _ := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "v"})
	start := clk.ns.Load()
	for _, p := range v.pkts[:40] {
		clk.Set(start + int64(p.send))
		r.WriteRTP(idx, &p.Packet)
	}
	waitFor(t, 10*time.Second, "a segment", func() bool { return r.Stats().Current != "" })
	os.WriteFile(filepath.Join(dir, ".gone.webm.recording"), []byte("webm\n"), 0o640)
	os.WriteFile(filepath.Join(dir, "empty.mkv"), nil, 0o640)
	os.WriteFile(filepath.Join(dir, ".empty.mkv.recording"), []byte("mkv\n"), 0o640)

	repaired, err := RepairDir(dir, testLogger(t))
	if len(repaired) != 0 || err == nil || !strings.Contains(err.Error(), "empty.mkv") {
		t.Errorf("RepairDir: %v, %v (want nothing repaired, an error for empty.mkv)", repaired, err)
	}
	if m := markers(t, dir); len(m) != 1 || filepath.Base(m[0]) != ".live.webm.recording" {
		t.Errorf("markers %v, want only the live one", m)
	}
	if files := recordings(t, dir); len(files) != 1 || files[0] != "live.webm" {
		t.Errorf("files %v", files)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := xerror(filepath.Join(dir, "live.webm")); err != nil {
		t.Error(err)
	}
}
