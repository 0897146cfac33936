package publish

import (
	"testing"
	"time"

	"github.com/pion/rtp"
)

func TestContinuityAcrossSSRCChangeAndRestart(t *testing.T) {
	c := &continuity{clock: 90000}
	now := time.Unix(1000, 0).UnixNano()
	out := func(ssrc uint32, seq uint16, ts uint32) (uint16, uint32) {
		p := &rtp.Packet{Header: rtp.Header{SSRC: ssrc, SequenceNumber: seq, Timestamp: ts, Extension: true,
			Extensions: []rtp.Extension{}}}
		c.apply(p, now)
		if p.Extension || p.Extensions != nil {
			t.Fatal("header extensions of the input must be stripped")
		}
		return p.SequenceNumber, p.Timestamp
	}
	// The first input passes through unchanged, wrapping included.
	first := uint16(65533)
	for i := uint16(0); i < 5; i++ {
		if s, ts := out(1, first+i, 4000000000+uint32(i)*3000); s != first+i || ts != 4000000000+uint32(i)*3000 {
			t.Fatalf("first input changed: %d %d", s, ts)
		}
		now += int64(33 * time.Millisecond)
	}
	lastSeq, lastTS := first+4, uint32(4000000000+4*3000)
	// An out-of-order late packet does not move the anchor back.
	out(1, first+2, 4000000000+2*3000)
	// The encoder restarts with a new SSRC and random numbering, 1 s later.
	now += int64(time.Second)
	s, ts := out(2, 100, 555)
	if s != lastSeq+1 {
		t.Fatalf("sequence after SSRC change: %d, want %d", s, lastSeq+1)
	}
	wantTS := lastTS + uint32((time.Second+33*time.Millisecond).Seconds()*90000)
	if d := int64(ts) - int64(wantTS); d < -100 || d > 100 {
		t.Fatalf("timestamp after SSRC change: %d, want about %d (the wall-clock gap)", ts, wantTS)
	}
	if s2, ts2 := out(2, 101, 555+3000); s2 != s+1 || ts2 != ts+3000 {
		t.Fatalf("the new input is not carried on: %d %d", s2, ts2)
	}
	// A restart of the same source (same SSRC) also rebases when asked.
	c.restart()
	now += int64(10 * time.Millisecond)
	if s3, _ := out(2, 7, 9); s3 != s+2 {
		t.Fatalf("sequence after restart: %d, want %d", s3, s+2)
	}
}

func BenchmarkContinuity(b *testing.B) {
	c := &continuity{clock: 90000}
	p := &rtp.Packet{}
	b.ReportAllocs()
	for i := range b.N {
		p.SequenceNumber = uint16(i)
		c.apply(p, int64(i))
	}
}
