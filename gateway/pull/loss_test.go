package pull_test

import (
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/pull"
)

// lossyIn drops a share of the RTP packets read from it (media and RTX,
// never STUN, DTLS or RTCP): loss on the wire from the SFU to the puller.
type lossyIn struct {
	net.PacketConn
	share                    float64
	rtxPT                    uint8
	media, drops, rtx, rtxIn atomic.Int64
}

func (c *lossyIn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		// RTP: version 2 and a payload type outside RTCP's 200..204.
		if err != nil || n <= 12 || b[0]>>6 != 2 || (b[1] >= 192 && b[1] <= 223) {
			return n, addr, err
		}
		c.media.Add(1)
		isRTX := b[1]&0x7f == c.rtxPT
		if isRTX {
			c.rtxIn.Add(1)
		}
		if rand.Float64() < c.share {
			if isRTX {
				c.rtx.Add(1)
			} else {
				c.drops.Add(1)
			}
			continue // lost on the wire
		}
		return n, addr, err
	}
}

// TestPullLossRepaired puts 5% random loss on the leg from the SFU to the
// puller (retransmissions are lost too): NACK and RTX repair it, and the
// sink still gets at least 99% of the packets.
func TestPullLossRepaired(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"cam", webrtc.RTPCodecTypeVideo})
	lossy := &lossyIn{share: 0.05, rtxPT: 97} // VP8's RTX payload type in gateway/peer
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: rtctest.LoopbackOnly,
		WrapConn: func(c net.PacketConn) net.PacketConn { lossy.PacketConn = c; return lossy }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	sink := newRecSink()
	p, _ := runPull(t, pull.Options{Client: e.Client, API: api, Sink: sink, Refs: []pull.Ref{{pub.sid, "cam"}}})
	waitFor(t, "the track", 10*time.Second, func() bool { return sink.index("cam") >= 0 })
	idx := sink.index("cam")
	waitFor(t, "packets", 10*time.Second, func() bool { return sink.snapshot(idx).packets > 0 })

	// About 4 s at 100 packets/s (longer on a busy machine); judge the
	// window that ended 30 packets before the end (those may still be
	// under repair).
	droppedBefore := lossy.drops.Load()
	start := sink.snapshot(idx)
	waitFor(t, "400 more packets", 20*time.Second, func() bool { return sink.snapshot(idx).packets >= start.packets+400 })
	end := sink.snapshot(idx)
	var lo, hi uint32
	first := true
	for i := range end.seen {
		if start.seen[i] {
			continue
		}
		if first || i < lo {
			lo = i
		}
		if first || i > hi {
			hi = i
		}
		first = false
	}
	hi -= 30
	want, got := int(hi-lo+1), 0
	for i := lo; i <= hi; i++ {
		if end.seen[i] {
			got++
		}
	}
	dropped := lossy.drops.Load() - droppedBefore
	missing := want - got
	st := p.Status().Tracks[0]
	t.Logf("window of %d packets: %d received (%.2f%%); the wire dropped %d media packets (%d RTX packets arrived, %d RTX dropped) "+
		"=> %.1f%% of the loss repaired; status: %d repaired by RTX, %d duplicates dropped, %d lost",
		want, got, 100*float64(got)/float64(want), dropped, lossy.rtxIn.Load(), lossy.rtx.Load(),
		100*float64(int(dropped)-missing)/float64(max(dropped, 1)), st.Repaired, st.Duplicates, st.Lost)
	if want < 300 {
		t.Fatalf("only a %d-packet window", want)
	}
	if dropped < int64(want)/40 {
		t.Fatalf("the wire dropped only %d packets: no real loss", dropped)
	}
	if lossy.rtxIn.Load() == 0 || st.Repaired == 0 {
		t.Fatalf("no RTX arrived (%d) or none repaired a packet (%d): the loss was not repaired by retransmission",
			lossy.rtxIn.Load(), st.Repaired)
	}
	seen := map[uint16]bool{}
	for _, q := range end.seqs {
		if seen[q] {
			t.Fatalf("the sink got sequence number %d twice", q)
		}
		seen[q] = true
	}
	if int(st.Lost) > missing+30 { // the last 300 ms may still be under repair
		t.Fatalf("status says %d lost, the window misses %d", st.Lost, missing)
	}
	if float64(got)/float64(want) < 0.99 {
		t.Fatalf("received %d of %d packets with 5%% loss, want at least 99%%", got, want)
	}
	// pion's stats saw the NACKs the generator sent (the interceptor
	// order in gateway/peer), sampled once a poll interval.
	waitFor(t, "NACKs in the status", 10*time.Second, func() bool { return p.Status().Tracks[0].NACKs > 0 })
	if n := p.Status().Tracks[0].NACKs; n > uint64(lossy.drops.Load())*4 {
		t.Fatalf("status counts %d NACKs for %d packets dropped", n, lossy.drops.Load())
	}
}
