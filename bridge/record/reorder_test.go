package record

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// rel is one release of a reorder buffer.
type rel struct {
	seq     uint16
	lost    int
	restart bool
	payload byte
}

type relLog struct{ got []rel }

func (l *relLog) release(seq uint16, _ uint32, _ bool, payload []byte, _ int64, lost int, restart bool) {
	l.got = append(l.got, rel{seq, lost, restart, payload[0]})
}

const ms = int64(time.Millisecond)

func newReorder() *reorder { return &reorder{window: 300 * ms} }

func pushSeq(r *reorder, l *relLog, ssrc uint32, seq uint16, now int64) {
	p := &rtp.Packet{Header: rtp.Header{SSRC: ssrc, SequenceNumber: seq}, Payload: []byte{byte(seq)}}
	r.push(p, now, l)
}

func seqs(rs []rel) []uint16 {
	var s []uint16
	for _, r := range rs {
		s = append(s, r.seq)
	}
	return s
}

func TestReorderWrapAround(t *testing.T) {
	r, l := newReorder(), &relLog{}
	// In order across the wrap, then shuffled within 20 packets across it.
	var want []uint16
	seq := uint16(65530)
	for i := 0; i < 12; i++ {
		pushSeq(r, l, 1, seq, int64(i)*ms)
		want = append(want, seq)
		seq++
	}
	// A fresh buffer near the wrap, the next 60 packets shuffled.
	r2, l2 := newReorder(), &relLog{}
	pushSeq(r2, l2, 1, 65500, 0)
	perm := rand.New(rand.NewPCG(3, 4)).Perm(60)
	for i, o := range perm {
		pushSeq(r2, l2, 1, 65501+uint16(o), int64(i)*ms)
	}
	var want2 []uint16
	for i := 0; i < 61; i++ {
		want2 = append(want2, 65500+uint16(i))
	}
	if !slices.Equal(seqs(l.got), want) {
		t.Errorf("in order across the wrap: %v", seqs(l.got))
	}
	if !slices.Equal(seqs(l2.got), want2) {
		t.Errorf("shuffled across the wrap: %v", seqs(l2.got))
	}
	if r2.lost != 0 || r2.repaired == 0 || r2.held != 0 {
		t.Errorf("lost %d repaired %d held %d", r2.lost, r2.repaired, r2.held)
	}
}

func TestReorderGapWaitsForWindow(t *testing.T) {
	r, l := newReorder(), &relLog{}
	pushSeq(r, l, 1, 10, 0)
	pushSeq(r, l, 1, 12, 10*ms) // 11 missing: 12 held
	pushSeq(r, l, 1, 13, 20*ms)
	if len(l.got) != 1 {
		t.Fatalf("released %v before the gap was filled", seqs(l.got))
	}
	pushSeq(r, l, 1, 11, 250*ms) // a retransmission within the window
	if !slices.Equal(seqs(l.got), []uint16{10, 11, 12, 13}) || r.repaired != 1 || r.lost != 0 {
		t.Fatalf("after the retransmission: %v repaired %d lost %d", l.got, r.repaired, r.lost)
	}

	// Now 14 never comes: 15 waits 300 ms from its own arrival, then goes
	// with lost=1; a late 14 is counted, not released.
	pushSeq(r, l, 1, 15, 300*ms)
	pushSeq(r, l, 1, 16, 500*ms)
	if len(l.got) != 4 {
		t.Fatalf("released early: %v", l.got)
	}
	pushSeq(r, l, 1, 17, 601*ms)
	if !slices.Equal(l.got[4:], []rel{{15, 1, false, 15}, {16, 0, false, 16}, {17, 0, false, 17}}) {
		t.Fatalf("after the window: %v", l.got[4:])
	}
	pushSeq(r, l, 1, 14, 610*ms)
	pushSeq(r, l, 1, 17, 620*ms) // a duplicate of a released packet
	if r.lost != 1 || r.late != 1 || r.duplicates != 1 || len(l.got) != 7 {
		t.Errorf("lost %d late %d duplicates %d releases %d", r.lost, r.late, r.duplicates, len(l.got))
	}
	// A held duplicate.
	pushSeq(r, l, 1, 19, 700*ms)
	pushSeq(r, l, 1, 19, 710*ms)
	if r.duplicates != 2 {
		t.Errorf("held duplicate not counted")
	}
	// The ticker gives up on 18 with no new packet.
	r.tick(1011*ms, l)
	if last := l.got[len(l.got)-1]; last != (rel{19, 1, false, 19}) {
		t.Errorf("tick: %v", l.got)
	}
}

// TestReorderOldestAfterPartialDrain: a retransmission that fills the
// first of two gaps must not make the second gap expire early (the oldest
// held packet is then a later one).
func TestReorderOldestAfterPartialDrain(t *testing.T) {
	r, l := newReorder(), &relLog{}
	pushSeq(r, l, 1, 1, 0)
	pushSeq(r, l, 1, 3, 0)      // 2 missing
	pushSeq(r, l, 1, 5, 250*ms) // 4 missing
	pushSeq(r, l, 1, 2, 290*ms) // fills 2: 3 goes, 5 waits from 250 ms
	pushSeq(r, l, 1, 6, 400*ms) // 400-250 < 300: 4 is still waited for
	pushSeq(r, l, 1, 4, 500*ms)
	if !slices.Equal(seqs(l.got), []uint16{1, 2, 3, 4, 5, 6}) || r.lost != 0 {
		t.Errorf("%v lost %d", l.got, r.lost)
	}
}

func TestReorderRestart(t *testing.T) {
	r, l := newReorder(), &relLog{}
	pushSeq(r, l, 1, 100, 0)
	pushSeq(r, l, 1, 102, 1*ms) // held
	pushSeq(r, l, 1, 40000, 2*ms)
	want := []rel{{100, 0, true, 100}, {102, 1, false, 102}, {40000, 0, true, byte(40000 & 0xff)}}
	if !slices.Equal(l.got, want) {
		t.Fatalf("big jump: %v", l.got)
	}
	pushSeq(r, l, 1, 40001, 3*ms)
	pushSeq(r, l, 2, 7, 4*ms) // a new SSRC
	pushSeq(r, l, 2, 5, 5*ms) // before it: late
	pushSeq(r, l, 2, 8, 6*ms)
	back := uint16(65536 + 8 - 2000)
	pushSeq(r, l, 2, back, 7*ms) // far back: a restart too
	if got := l.got[3:]; !slices.Equal(got, []rel{{40001, 0, false, 0x41}, {7, 0, true, 7}, {8, 0, false, 8},
		{back, 0, true, byte(back)}}) {
		t.Errorf("after the jump: %v", got)
	}
	if r.restarts != 3 || r.late != 1 {
		t.Errorf("restarts %d late %d", r.restarts, r.late)
	}
}

func TestReorderFlush(t *testing.T) {
	r, l := newReorder(), &relLog{}
	pushSeq(r, l, 1, 1, 0)
	pushSeq(r, l, 1, 4, 0)
	pushSeq(r, l, 1, 3, 0)
	r.flush(l)
	if !slices.Equal(l.got, []rel{{1, 0, true, 1}, {3, 1, false, 3}, {4, 0, false, 4}}) || r.held != 0 {
		t.Errorf("flush: %v", l.got)
	}
}

// TestReorderNoAllocs: in order, and reordered once the ring exists, a
// packet costs no allocation.
func TestReorderNoAllocs(t *testing.T) {
	r, l := newReorder(), &discard{}
	p := &rtp.Packet{Header: rtp.Header{SSRC: 1}, Payload: make([]byte, 1000)}
	seq, now := uint16(0), int64(0)
	if n := testing.AllocsPerRun(1000, func() {
		p.SequenceNumber = seq
		r.push(p, now, l)
		seq++
		now += ms
	}); n != 0 || len(r.slots) != 0 {
		t.Errorf("in order: %v allocs/packet, ring of %d", n, len(r.slots))
	}
	// Swap every pair: each second packet is held, then released.
	step := func() {
		p.SequenceNumber = seq + 1
		r.push(p, now, l)
		p.SequenceNumber = seq
		r.push(p, now, l)
		seq += 2
		now += ms
	}
	step() // makes the ring and a payload buffer
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("reordered: %v allocs/pair", n)
	}
	if r.repaired == 0 {
		t.Error("nothing was reordered")
	}
}

type discard struct{}

func (discard) release(uint16, uint32, bool, []byte, int64, int, bool) {}
