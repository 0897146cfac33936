package pull

import (
	"log/slog"
	"testing"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
)

// discard is a sink that keeps nothing.
type discard struct{ packets, srs int }

func (d *discard) AddTrack(bridge.SinkTrack) (int, error) { return 0, nil }
func (d *discard) WriteRTP(int, *rtp.Packet) error        { d.packets++; return nil }
func (d *discard) WriteSenderReport(int, uint64, uint32)  { d.srs++ }
func (d *discard) RemoveTrack(int)                        {}
func (d *discard) Close() error                           { return nil }

func newTestBinding() *binding {
	p := &Pull{log: slog.New(slog.DiscardHandler)}
	return &binding{t: &track{p: p}, a: &attempt{p: p}}
}

func marshal(t testing.TB, seq uint16, size int) []byte {
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000,
		SSRC: 7, Marker: true}, Payload: make([]byte, size)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSeqWindow(t *testing.T) {
	var w seqWindow
	steps := []struct {
		seq     uint16
		dup     bool
		advance int
	}{
		{65534, false, 1},
		{65535, false, 1},
		{1, false, 2},    // across the wrap, 0 missing
		{0, false, 0},    // the missing one, late (a retransmission)
		{0, true, 0},     // again: a duplicate
		{65535, true, 0}, // an old one again
		{1, true, 0},     // the newest again
		{2000, false, 1999},
		{1, false, 0},    // older than the window: passed on
		{1500, false, 0}, // in the gap, never seen
		{1500, true, 0},  // now seen
	}
	for i, s := range steps {
		dup, adv := w.add(s.seq)
		if dup != s.dup || adv != s.advance {
			t.Fatalf("step %d (seq %d): dup %v advance %d, want %v %d", i, s.seq, dup, adv, s.dup, s.advance)
		}
	}
	// After a jump larger than the window nothing before counts as seen.
	if dup, adv := w.add(2000 + 5000); dup || adv != 5000 {
		t.Fatalf("jump: %v %d", dup, adv)
	}
	if dup, _ := w.add(2000 + 5000 - 1000); dup {
		t.Fatal("a number in a cleared window was taken for a duplicate")
	}
}

// TestReadPathAllocs: passing a packet to the sink allocates nothing.
func TestReadPathAllocs(t *testing.T) {
	b := newTestBinding()
	sink := &discard{}
	var pkt rtp.Packet
	raw := marshal(t, 0, 1100)
	b.sr.Store(&senderReport{ntp: 1, rtp: 2})
	seq := uint16(0)
	allocs := testing.AllocsPerRun(5000, func() {
		seq++
		raw[2], raw[3] = byte(seq>>8), byte(seq)
		b.handle(raw, &pkt, seq%10 == 0, sink, 0)
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per packet, want 0", allocs)
	}
	if sink.packets < 5000 || sink.srs != 1 || b.t.packets.Load() != uint64(sink.packets) || b.t.repaired.Load() == 0 {
		t.Fatalf("sink got %d packets, %d sender reports; track counted %d", sink.packets, sink.srs, b.t.packets.Load())
	}
}

// BenchmarkReadPath is the per-packet work of a pulled track after pion's
// Read: unmarshal into the reused packet, duplicate check, counters, the
// sink call (a sink that keeps nothing).
func BenchmarkReadPath(bm *testing.B) {
	b := newTestBinding()
	sink := &discard{}
	var pkt rtp.Packet
	raw := marshal(bm, 0, 1100)
	seq := uint16(0)
	bm.ReportAllocs()
	bm.SetBytes(int64(len(raw)))
	for bm.Loop() {
		seq++
		raw[2], raw[3] = byte(seq>>8), byte(seq)
		b.handle(raw, &pkt, false, sink, 0)
	}
}
