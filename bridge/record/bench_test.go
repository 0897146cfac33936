package record

import (
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record/container"
)

// nullWriter stands for the container in the "recorder only" benchmarks,
// to tell this package's cost from the container's.
type nullWriter struct{ n int64 }

func (w *nullWriter) WriteFrame(f container.Frame) error { w.n += int64(len(f.Data)); return nil }
func (w *nullWriter) Written() int64                     { return w.n }
func (w *nullWriter) Flush() error                       { return nil }
func (w *nullWriter) Close() error                       { return nil }

// benchRecord feeds the packets of a fixture, looped with continuing
// sequence numbers and timestamps, one packet per iteration, through
// WriteRTP with the clock following the media; the writer writes a real
// file (or, with null, discards the frames).
func benchRecord(b *testing.B, name string, null bool) {
	m := packetize(b, name)
	r, clk := newTestRecorder(b, Options{Dir: b.TempDir()})
	if null {
		r.newWriter = func(container.Format, container.File, []bridge.Track) (container.Writer, error) {
			return &nullWriter{}, nil
		}
	}
	idx, err := r.AddTrack(bridge.SinkTrack{Track: m.track, Name: "bench", RequestKeyframe: func() {}})
	if err != nil {
		b.Fatal(err)
	}
	n := len(m.pkts)
	last := m.pkts[n-1]
	rate := int64(m.track.Codec.ClockRate)
	loopDur := last.send + 20*time.Millisecond // the loop starts one frame after the last
	loopTS := uint32(int64(loopDur) * rate / 1e9)
	start := clk.ns.Load()
	var q rtp.Packet
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		loop := i / n
		p := &m.pkts[i%n]
		q = p.Packet
		q.SequenceNumber = p.SequenceNumber + uint16(i/n*n)
		q.Timestamp = p.Timestamp + uint32(loop)*loopTS
		clk.Set(start + int64(loop)*int64(loopDur) + int64(p.send))
		if err := r.WriteRTP(idx, &q); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := r.Stats().Tracks[0]; b.N > n && (st.Lost != 0 || st.Frames == 0) {
		b.Fatalf("stats %+v", st)
	}
}

func BenchmarkRecordVP8(b *testing.B) {
	b.Run("webm", func(b *testing.B) { benchRecord(b, "vp8-long.ivf", false) })
	b.Run("recorder-only", func(b *testing.B) { benchRecord(b, "vp8-long.ivf", true) })
}

func BenchmarkRecordOpus(b *testing.B) {
	b.Run("webm", func(b *testing.B) { benchRecord(b, "opus-long.ogg", false) })
	b.Run("recorder-only", func(b *testing.B) { benchRecord(b, "opus-long.ogg", true) })
}

// heapPerTrack measures the heap in use per track made by add (n times).
func heapPerTrack(n int, add func(i int)) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		add(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / float64(n)
}

var keep []any

// idleTrackMemory returns the heap per idle track of a Recorder and of
// pion's samplebuilder (the usual alternative) for 1000 tracks.
func idleTrackMemory(t testing.TB) (ours, sb float64) {
	r, err := New(Options{Dir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	vp8 := bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: "video/VP8", ClockRate: 90000}}
	ours = heapPerTrack(1000, func(int) {
		if _, err := r.AddTrack(bridge.SinkTrack{Track: vp8, Name: "v", RequestKeyframe: func() {}}); err != nil {
			t.Fatal(err)
		}
	})
	keep = nil
	sb = heapPerTrack(1000, func(int) {
		keep = append(keep, samplebuilder.New(512, &codecs.VP8Packet{}, 90000))
	})
	keep = nil
	return ours, sb
}

// TestIdleTrackMemory: a track that was added costs far less than the
// 256 KiB budget (pion's samplebuilder: about 1 MiB).
func TestIdleTrackMemory(t *testing.T) {
	ours, sb := idleTrackMemory(t)
	t.Logf("heap per idle track: recorder %.0f B, pion samplebuilder %.0f B", ours, sb)
	if ours > 256<<10 {
		t.Errorf("%.0f B per idle track, budget 256 KiB", ours)
	}
}

func BenchmarkIdleTrackMemory(b *testing.B) {
	var ours, sb float64
	for i := 0; i < b.N; i++ {
		ours, sb = idleTrackMemory(b)
	}
	b.ReportMetric(ours, "B/track")
	b.ReportMetric(sb, "samplebuilder-B/track")
}

// TestWriteRTPNoAllocs: the steady state of WriteRTP allocates nothing,
// in order and with reordering, for VP8 and Opus (the container excluded:
// see BenchmarkRecord*). Counted over all goroutines, so the writer's side
// (interleaving, buffer recycling) is included.
func TestWriteRTPNoAllocs(t *testing.T) {
	for _, name := range []string{"vp8-long.ivf", "opus-long.ogg"} {
		m := packetize(t, name)
		r, clk := newTestRecorder(t, Options{})
		r.newWriter = func(container.Format, container.File, []bridge.Track) (container.Writer, error) {
			return &nullWriter{}, nil
		}
		idx, _ := r.AddTrack(bridge.SinkTrack{Track: m.track, Name: "v", RequestKeyframe: func() {}})
		start := clk.ns.Load()
		var q rtp.Packet
		// At the pace of real media the writer keeps up: wait for it after
		// each packet, as time would (without that, the flood puts up to
		// cap(free) buffers in flight, each to be grown once).
		send := func(j int) {
			p := &m.pkts[j]
			q = p.Packet
			clk.Set(start + int64(p.send))
			r.WriteRTP(idx, &q)
			for len(r.queue) > 0 {
				runtime.Gosched()
			}
		}
		mallocs := func() uint64 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return ms.Mallocs
		}
		// Warm up on the first half (in order, then pairs swapped); measure
		// on the second.
		n := len(m.pkts)
		i := 0
		for ; i < n/4; i++ {
			send(i)
		}
		for ; i+1 < n/2; i += 2 {
			send(i + 1)
			send(i)
		}
		before := mallocs()
		inOrder := 0
		for ; i < 3*n/4; i++ {
			send(i)
			inOrder++
		}
		mid := mallocs()
		swapped := 0
		for ; i+1 < n; i += 2 {
			send(i + 1)
			send(i)
			swapped += 2
		}
		after := mallocs()
		t.Logf("%s: %d allocations in %d packets in order, %d in %d packets swapped in pairs", name,
			mid-before, inOrder, after-mid, swapped)
		// The count is process-wide: ReadMemStats, the runtime and the
		// recorder's 100 ms ticker allocate a little, more on a loaded
		// machine where the window lasts longer. One allocation per packet
		// or per frame would be 20 to 100 times this bound.
		limit := uint64(max(2, inOrder/20))
		if mid-before > limit || after-mid > limit {
			t.Errorf("%s: the steady state allocates", name)
		}
		if st := r.Stats().Tracks[0]; st.Repaired == 0 || st.Lost != 0 {
			t.Errorf("%+v", st)
		}
	}
}
