package container

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWriteErrors: a disk that fills up (ENOSPC in the middle of a write)
// or refuses writes (EACCES) makes WriteFrame and Close return the error
// wrapped (errors.Is works), every later call returns it too, and the bytes
// on disk stay a playable prefix that Repair finishes.
func TestWriteErrors(t *testing.T) {
	for _, c := range crashCombos {
		t.Run(c.name, func(t *testing.T) {
			srcs := loadAll(t, c.fixtures)
			frames := merge(srcs...)
			dir := t.TempDir()
			full := filepath.Join(dir, "full"+c.format.Ext())
			writeFile(t, c.format, full, tracksOf(srcs...), frames)
			size, err := os.Stat(full)
			if err != nil {
				t.Fatal(err)
			}
			limit := size.Size() * 6 / 10

			p := filepath.Join(dir, "enospc"+c.format.Ext())
			fh, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			ff := &failFile{File: fh, limit: limit, err: syscall.ENOSPC}
			w, err := NewWriter(c.format, ff, tracksOf(srcs...))
			if err != nil {
				t.Fatal(err)
			}
			var first error
			n := 0
			for _, f := range frames {
				err := w.WriteFrame(f)
				if err != nil && first == nil {
					first = err
				}
				if first != nil {
					if err == nil {
						t.Fatal("WriteFrame succeeded after a write error")
					}
					n++
				}
			}
			if !errors.Is(first, syscall.ENOSPC) {
				t.Fatalf("first error %v, want ENOSPC", first)
			}
			t.Logf("first error: %v (then %d more refused)", first, n-1)
			if err := w.Flush(); !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("Flush after the error: %v", err)
			}
			if err := w.Close(); !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("Close after the error: %v", err)
			}
			if ff.n != limit {
				t.Errorf("%d bytes reached the file, the disk had room for %d", ff.n, limit)
			}
			ffmpegDecodes(t, p)
			res, err := Repair(p, c.format)
			if err != nil {
				t.Fatalf("Repair: %v", err)
			}
			ffmpegClean(t, p)
			d := ffprobe(t, p, false).duration
			if end := playEnd(packets(t, p)); math.IsNaN(d) || math.Abs(d-end) > 0.1 || end < 0.5 {
				t.Errorf("repaired: duration %v, plays to %v (%+v)", d, end, res)
			}

			// A file that refuses every write: the header write (at
			// NewWriter without video, else at the first keyframe) fails.
			p = filepath.Join(dir, "eacces"+c.format.Ext())
			fh2, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			ff2 := &failFile{File: fh2, limit: 0, err: syscall.EACCES}
			w, err = NewWriter(c.format, ff2, tracksOf(srcs...))
			if err == nil {
				err = w.WriteFrame(frames[0])
				w.Close()
			} else {
				fh2.Close()
			}
			if !errors.Is(err, syscall.EACCES) {
				t.Errorf("EACCES: got %v", err)
			}
		})
	}
}
