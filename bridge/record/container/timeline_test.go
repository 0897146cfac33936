package container

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// TestSkewedTracks: the recorder's tracks do not arrive in exact PTS
// order. With audio written 300 ms behind the video (an audio frame may
// belong before the cluster or fragment the video just started), every
// packet keeps its PTS and the file decodes cleanly.
func TestSkewedTracks(t *testing.T) {
	for _, c := range []struct {
		format   Format
		fixtures []string
	}{{WebM, []string{"vp8.ivf", "opus.ogg"}}, {MKV, []string{"h264.h264", "opus.ogg"}}, {MP4, []string{"h264.h264", "opus.ogg"}}} {
		t.Run(string(c.format), func(t *testing.T) {
			srcs := loadAll(t, c.fixtures)
			frames := merge(srcs...)
			const skew = 300 * time.Millisecond
			at := func(f Frame) time.Duration {
				if f.Track == 1 {
					return f.PTS + skew
				}
				return f.PTS
			}
			sort.SliceStable(frames, func(a, b int) bool { return at(frames[a]) < at(frames[b]) })
			p := filepath.Join(t.TempDir(), "skew"+c.format.Ext())
			writeFile(t, c.format, p, tracksOf(srcs...), frames)
			ffmpegClean(t, p)
			checkPTS(t, p, srcs)
		})
	}
}

// checkPTS compares ffprobe's packet times per stream with the sources'.
func checkPTS(t *testing.T, p string, srcs []src) {
	t.Helper()
	got := map[int][]float64{}
	for _, pk := range packets(t, p) {
		got[pk.stream] = append(got[pk.stream], pk.pts)
	}
	for i, s := range srcs {
		if len(got[i]) != len(s.frames) {
			t.Fatalf("stream %d: %d packets, want %d", i, len(got[i]), len(s.frames))
		}
		sort.Float64s(got[i])
		for k, f := range s.frames {
			if math.Abs(got[i][k]-f.PTS.Seconds()) > 0.0006 {
				t.Fatalf("stream %d packet %d: pts %.4f, want %v", i, k, got[i][k], f.PTS)
			}
		}
	}
}

// TestVideoStartsLate: the video track's first keyframe comes 1 s after
// the audio began (the recorder waits for a keyframe). The header waits
// for it (dimensions, avcC), the audio written meanwhile is held and lands
// in the file with its own PTS; delta frames before the keyframe are
// refused with ErrNeedKeyframe.
func TestVideoStartsLate(t *testing.T) {
	for _, c := range []struct {
		format   Format
		fixtures []string
	}{{WebM, []string{"vp8.ivf", "opus.ogg"}}, {MKV, []string{"h264.h264", "opus.ogg"}}, {MP4, []string{"h264.h264", "opus.ogg"}}} {
		t.Run(string(c.format), func(t *testing.T) {
			srcs := loadAll(t, c.fixtures)
			frames := merge(srcs...)
			p := filepath.Join(t.TempDir(), "late"+c.format.Ext())
			fh, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(c.format, fh, tracksOf(srcs...))
			if err != nil {
				t.Fatal(err)
			}
			var kept []Frame
			for _, f := range frames {
				if f.Track == 0 && f.PTS < time.Second {
					if f.Key {
						continue // lost
					}
					if err := w.WriteFrame(f); !errors.Is(err, ErrNeedKeyframe) {
						t.Fatalf("delta frame at %v before the first keyframe: %v", f.PTS, err)
					}
					continue
				}
				if err := w.WriteFrame(f); err != nil {
					t.Fatalf("frame at %v: %v", f.PTS, err)
				}
				if f.PTS < time.Second && w.Written() != 0 {
					t.Fatalf("header written before the video's first keyframe")
				}
				kept = append(kept, f)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			ffmpegClean(t, p)
			video, audio := srcs[0], srcs[1]
			video.frames = nil
			for _, f := range kept {
				if f.Track == 0 {
					video.frames = append(video.frames, f)
				}
			}
			checkPTS(t, p, []src{video, audio})
		})
	}
}

// TestRepairInterruptedClose: a crash during Close leaves a file with part
// of the finalization (cut inside the Cues, the last Ogg page, the IVF's
// last frame, the mfra). Repair finishes it again.
func TestRepairInterruptedClose(t *testing.T) {
	for _, c := range crashCombos {
		t.Run(c.name, func(t *testing.T) {
			srcs := loadAll(t, c.fixtures)
			p := filepath.Join(t.TempDir(), "final"+c.format.Ext())
			writeFile(t, c.format, p, tracksOf(srcs...), merge(srcs...))
			b := readFile(t, p)
			if err := os.WriteFile(p, b[:len(b)-10], 0o644); err != nil {
				t.Fatal(err)
			}
			res, err := Repair(p, c.format)
			if err != nil || res.AlreadyFinal {
				t.Fatalf("Repair: %+v, %v", res, err)
			}
			ffmpegClean(t, p)
			d := ffprobe(t, p, false).duration
			if end := playEnd(packets(t, p)); math.IsNaN(d) || math.Abs(d-end) > 0.1 || end < 2.5 {
				t.Errorf("repaired: duration %v, plays to %v (%+v)", d, end, res)
			}
		})
	}
}
