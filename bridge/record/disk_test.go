package record

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

// syncBuffer is a log sink safe for the writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// smallDisk mounts a 256 KiB tmpfs (root only) and unmounts it at the end.
func smallDisk(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root and CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestDiskFull: a recorder on a disk that fills up (a real ENOSPC) reports
// a clear error wrapping the cause, logs it once, keeps the file it was
// writing a playable prefix, drops and counts frames while it retries
// with a growing backoff, and resumes in a new segment once there is room.
// A second recorder on another disk records everything meanwhile.
func TestDiskFull(t *testing.T) {
	requireTool(t, "ffmpeg", "ffprobe")
	disk := smallDisk(t)
	filler := filepath.Join(disk, "filler.bin")
	if err := os.WriteFile(filler, make([]byte, 120<<10), 0o640); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	clk := newFakeClock()
	full, _ := newTestRecorder(t, Options{Dir: disk, Now: clk.Now, Template: "full",
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	okDir := t.TempDir()
	other, _ := newTestRecorder(t, Options{Dir: okDir, Now: clk.Now, Template: "ok"})

	v, a := packetize(t, "vp8-long.ivf"), packetize(t, "opus-long.ogg")
	tracks := []*media{v, a}
	var idxFull, idxOther [2]int
	for i, m := range tracks {
		st := bridge.SinkTrack{Track: m.track, Name: m.track.Kind, RequestKeyframe: func() {}}
		var err error
		if idxFull[i], err = full.AddTrack(st); err != nil {
			t.Fatal(err)
		}
		if idxOther[i], err = other.AddTrack(st); err != nil {
			t.Fatal(err)
		}
	}
	start := clk.ns.Load()
	// caughtUp waits until the writer has taken every frame sent so far.
	caughtUp := func() {
		for len(full.queue) > 0 {
			runtime.Gosched()
		}
	}
	var failedAt, freeAt, stopAt time.Duration = -1, -1, -1
	for _, d := range schedule(tracks, nil) {
		clk.Set(start + int64(d.arrive))
		if failedAt < 0 {
			caughtUp()
			if full.Stats().Failing {
				// The first retry comes 1 s after the failure and fails;
				// the next 2 s later, after the room is made.
				failedAt = d.arrive
				freeAt, stopAt = failedAt+2500*time.Millisecond, failedAt+4500*time.Millisecond
			}
		}
		if freeAt > 0 && d.arrive >= freeAt {
			freeAt = -1
			caughtUp()
			st := full.Stats()
			if !st.Failing || !errors.Is(st.LastError, syscall.ENOSPC) {
				t.Fatalf("before freeing: Failing %v, LastError %v", st.Failing, st.LastError)
			}
			if !strings.Contains(st.LastError.Error(), "full") {
				t.Errorf("the error does not name the file: %v", st.LastError)
			}
			if st.WriteErrors != 2 || st.Segments != 1 {
				t.Errorf("%d disk errors and %d segments 2.5 s after the failure, want 2 and 1 (retry after 1 s, "+
					"then 2 s later)", st.WriteErrors, st.Segments)
			}
			if st.Tracks[0].WriteErrors == 0 || st.Tracks[1].WriteErrors == 0 {
				t.Errorf("frames dropped while failing are not counted: %+v", st.Tracks)
			}
			t.Logf("failed at %v; before freeing: %d disk errors, frames dropped %d video %d audio; %v", failedAt,
				st.WriteErrors, st.Tracks[0].WriteErrors, st.Tracks[1].WriteErrors, st.LastError)
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		}
		if stopAt > 0 && d.arrive > stopAt {
			break // 1.5 s after recovering: less than the room made
		}
		full.WriteRTP(idxFull[d.track], d.p)
		other.WriteRTP(idxOther[d.track], d.p)
	}
	if failedAt < 0 || freeAt >= 0 {
		t.Fatalf("the disk never filled (failed at %v)", failedAt)
	}
	if err := full.Close(); err != nil {
		t.Errorf("Close after recovering: %v", err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}

	st := full.Stats()
	if st.Failing {
		t.Errorf("still failing after room was made: %v", st.LastError)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines logged, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "resumed") {
		t.Errorf("no recovery logged:\n%s", logs)
	}
	files := recordings(t, disk)
	if len(files) != 2 || files[0] != "full-1.webm" || files[1] != "full.webm" {
		t.Fatalf("files on the small disk: %v, want the cut one and the one after recovery", files)
	}
	// The cut file is a playable prefix; the second plays to its end.
	cut := filepath.Join(disk, "full.webm")
	if n := len(streamPackets(t, cut, "v:0")); n < 30 {
		t.Errorf("the file cut by ENOSPC holds %d video frames", n)
	}
	// Finalizing it failed on the full disk; once there was room again
	// (the new segment started), it was repaired.
	if err := xerror(cut); err != nil {
		t.Errorf("the file cut by ENOSPC: %v", err)
	}
	if m := markers(t, disk); len(m) != 0 {
		t.Errorf("markers left: %v", m)
	}
	if !strings.Contains(logs.String(), "repaired a segment cut by a disk error") {
		t.Errorf("the cut segment was not repaired:\n%s", logs)
	}
	after := filepath.Join(disk, "full-1.webm")
	if n := len(streamPackets(t, after, "v:0")); n < 30 {
		t.Errorf("the file after recovery holds %d video frames", n)
	}
	if err := xerror(after); err != nil {
		t.Error(err)
	}
	// The other recorder got all of it.
	want := int(stopAt/time.Second*30) - 1
	if n := len(streamPackets(t, filepath.Join(okDir, "ok.webm"), "v:0")); n < want {
		t.Errorf("the recorder on the other disk has %d video frames, want >= %d", n, want)
	}
}
