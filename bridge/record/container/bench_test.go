package container

import (
	"io"
	"testing"
	"time"

	"github.com/at-wat/ebml-go/webm"
)

// One codec set per format, as in TestCrash.
func benchSetup(t testing.TB, fixtures []string) ([]src, []Frame, time.Duration) {
	srcs := loadAll(t, fixtures)
	var period time.Duration
	for _, s := range srcs {
		period = max(period, s.dur)
	}
	return srcs, merge(srcs...), period
}

// frameAt returns the i-th frame of an endless loop of frames.
func frameAt(frames []Frame, period time.Duration, i int) Frame {
	f := frames[i%len(frames)]
	f.PTS += time.Duration(i/len(frames)) * period
	return f
}

// TestSteadyStateAllocs: after the header, WriteFrame allocates nothing
// per frame in any format (buffers are reused; Matroska cues and MP4
// random-access entries grow amortized, once per cluster/fragment).
func TestSteadyStateAllocs(t *testing.T) {
	for _, c := range crashCombos {
		t.Run(c.name, func(t *testing.T) {
			srcs, frames, period := benchSetup(t, c.fixtures)
			w, err := NewWriter(c.format, &discard{}, tracksOf(srcs...))
			if err != nil {
				t.Fatal(err)
			}
			i := 0
			for ; i < 2*len(frames); i++ { // warm up: buffers reach their size
				if err := w.WriteFrame(frameAt(frames, period, i)); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(len(frames), func() {
				if err := w.WriteFrame(frameAt(frames, period, i)); err != nil {
					t.Fatal(err)
				}
				i++
			})
			if allocs != 0 {
				t.Errorf("%v allocations per frame", allocs)
			}
		})
	}
}

// BenchmarkWriteFrame: ns and allocations per frame for each format, real
// frames, into a File that discards (the write(2) cost is not measured).
func BenchmarkWriteFrame(b *testing.B) {
	for _, c := range crashCombos {
		b.Run(c.name, func(b *testing.B) {
			srcs, frames, period := benchSetup(b, c.fixtures)
			out := &discard{}
			w, err := NewWriter(c.format, out, tracksOf(srcs...))
			if err != nil {
				b.Fatal(err)
			}
			for i := range frames {
				if err := w.WriteFrame(frames[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := len(frames); i < len(frames)+b.N; i++ {
				if err := w.WriteFrame(frameAt(frames, period, i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// BenchmarkEBMLGoBlockWriter measures ebml-go's own SimpleBlock writer on
// the same VP8+Opus frames, for the comparison in matroska.go.
func BenchmarkEBMLGoBlockWriter(b *testing.B) {
	srcs, frames, period := benchSetup(b, []string{"vp8.ivf", "opus.ogg"})
	_ = srcs
	ws, err := webm.NewSimpleBlockWriter(nopWriteCloser{io.Discard}, []webm.TrackEntry{
		{TrackNumber: 1, TrackUID: 1, CodecID: "V_VP8", TrackType: 1, Video: &webm.Video{PixelWidth: 320, PixelHeight: 240}},
		{TrackNumber: 2, TrackUID: 2, CodecID: "A_OPUS", TrackType: 2, Audio: &webm.Audio{SamplingFrequency: 48000, Channels: 2}},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frameAt(frames, period, i)
		if _, err := ws[f.Track].Write(f.Key, int64(f.PTS/time.Millisecond), f.Data); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	for _, w := range ws {
		w.Close()
	}
}
