package container

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// crashCombos: one per format.
var crashCombos = []struct {
	name     string
	format   Format
	fixtures []string
}{
	{"webm-vp8-opus", WebM, []string{"vp8.ivf", "opus.ogg"}},
	{"mkv-h264-opus", MKV, []string{"h264.h264", "opus.ogg"}},
	{"ogg-opus", Ogg, []string{"opus.ogg"}},
	{"ivf-vp8", IVF, []string{"vp8.ivf"}},
	{"mp4-h264-opus", MP4, []string{"h264.h264", "opus.ogg"}},
}

// TestCrash plays the part of a kill -9: frames whose PTS follow a
// simulated clock are written for a few seconds without Close, and the
// file's bytes are copied as the OS has them at that moment (and cut at
// arbitrary points: inside a block, page, frame or fragment). Each copy
// must play with ffmpeg up to within 1 s of the last PTS written before
// the kill (or before the cut), and after Repair decode cleanly with
// -xerror, declare a duration that matches what plays, and be left alone
// by a second Repair.
func TestCrash(t *testing.T) {
	const killAt = 4370 * time.Millisecond
	for _, c := range crashCombos {
		t.Run(c.name, func(t *testing.T) {
			srcs := loadAll(t, c.fixtures)
			var period time.Duration
			for _, s := range srcs {
				period = max(period, s.dur)
			}
			frames := loop(merge(srcs...), period, killAt)
			dir := t.TempDir()
			path := filepath.Join(dir, "live"+c.format.Ext())
			fh, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close() // the writer is abandoned, as by a kill
			w, err := NewWriter(c.format, fh, tracksOf(srcs...))
			if err != nil {
				t.Fatal(err)
			}
			type mark struct {
				written int64
				pts     time.Duration
			}
			var marks []mark
			for i, f := range frames {
				if err := w.WriteFrame(f); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				marks = append(marks, mark{w.Written(), f.PTS})
			}
			last := frames[len(frames)-1].PTS
			snap := readFile(t, path)
			if int64(len(snap)) != w.Written() {
				t.Fatalf("file has %d bytes, Written says %d", len(snap), w.Written())
			}
			// ptsAt: the last frame wholly written before offset off.
			ptsAt := func(off int64) time.Duration {
				var p time.Duration
				for _, m := range marks {
					if m.written <= off {
						p = m.pts
					}
				}
				return p
			}
			cuts := []int64{int64(len(snap)), int64(len(snap)) - 5, int64(float64(len(snap))*0.43) + 3}
			for _, cut := range cuts {
				name := fmt.Sprintf("cut%d%s", cut, c.format.Ext())
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, snap[:cut], 0o644); err != nil {
					t.Fatal(err)
				}
				want := ptsAt(cut)
				if cut == int64(len(snap)) {
					want = last
				}
				// As left by the kill: plays up to within 1 s.
				ffmpegDecodes(t, p)
				live := packets(t, p)
				end := playEnd(live)
				if end < want.Seconds()-1 || end > last.Seconds()+0.1 {
					t.Errorf("%s: plays to %.3f s; the last frame written before the cut is at %v", name, end, want)
				}
				if d := ffprobe(t, p, false).duration; !math.IsNaN(d) && math.Abs(d-want.Seconds()) > 1 {
					t.Errorf("%s: ffprobe duration %.3f s; the last frame written before the cut is at %v", name, d, want)
				}

				res, err := Repair(p, c.format)
				if err != nil {
					t.Fatalf("%s: Repair: %v", name, err)
				}
				if res.AlreadyFinal || res.Size != int64(len(readFile(t, p))) {
					t.Errorf("%s: Repair result %+v", name, res)
				}
				ffmpegClean(t, p)
				fixed := packets(t, p)
				fend := playEnd(fixed)
				d := ffprobe(t, p, false).duration
				if math.IsNaN(d) || math.Abs(d-fend) > 0.1 || fend < want.Seconds()-1 {
					t.Errorf("%s: repaired: duration %.3f s, plays to %.3f s, want about %v", name, d, fend, want)
				}
				// Repair drops a partial MP4 fragment whole (at most 500 ms),
				// where ffmpeg salvages its complete samples.
				if len(fixed) < len(live)-1 && c.format != MP4 {
					t.Errorf("%s: repaired file has %d packets, the cut one %d", name, len(fixed), len(live))
				}
				if math.Abs(res.Duration.Seconds()-d) > 0.1 {
					t.Errorf("%s: Repair says %v, ffprobe %.3f s", name, res.Duration, d)
				}
				t.Logf("%s: live plays to %.3f s (want >= %.3f), repaired %+v: %.3f s", name, end, want.Seconds()-1, res, d)
				after := readFile(t, p)
				res2, err := Repair(p, c.format)
				if err != nil || !res2.AlreadyFinal || string(readFile(t, p)) != string(after) {
					t.Errorf("%s: second Repair: %+v, %v", name, res2, err)
				}
			}
		})
	}
}
