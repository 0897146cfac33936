package publish_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
)

// lossyConn drops a share of the RTP packets written to it (never STUN,
// DTLS or RTCP) and counts what it sees: loss on the wire from rtgate to
// the SFU.
type lossyConn struct {
	net.PacketConn
	share             float64
	rtxPT             uint8
	media, drops, rtx atomic.Int64
}

func (c *lossyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	// RTP: version 2, and a payload type that is not RTCP's 200..204.
	if len(b) > 12 && b[0]>>6 == 2 && (b[1] < 192 || b[1] > 223) {
		c.media.Add(1)
		if b[1]&0x7f == c.rtxPT {
			c.rtx.Add(1)
		}
		if rand.Float64() < c.share {
			c.drops.Add(1)
			return len(b), nil // lost on the wire
		}
	}
	return c.PacketConn.WriteTo(b, addr)
}

// TestLossRepairedByRTX puts 5% random loss on the leg from rtgate to the
// SFU: the subscriber still gets at least 99.5% of the video packets,
// repaired by NACK and RTX.
func TestLossRepairedByRTX(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	lossy := &lossyConn{share: 0.05, rtxPT: 97} // VP8's RTX payload type in gateway/peer
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: rtctest.LoopbackOnly,
		WrapConn: func(c net.PacketConn) net.PacketConn { lossy.PacketConn = c; return lossy }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })

	v := video("v")
	st := runStream(t, publish.Options{Name: "lossy", Sources: []bridge.Source{v}, Client: e.Client, API: api})
	s := waitState(t, st, publish.StateLive, 10*time.Second)
	sink := pull(t, e.Client, s.SessionID, "lossy-video").NextTrack()

	// Count what arrives over 4 s (about 400 packets), by the index the
	// source wrote into each payload.
	seen := map[uint32]bool{}
	var lo, hi uint32
	first := true
	deadline := time.After(4 * time.Second)
collect:
	for {
		select {
		case p := <-sink.Pkts:
			i := binary.BigEndian.Uint32(p.Payload)
			seen[i] = true
			if first || i < lo {
				lo = i
			}
			if first || i > hi {
				hi = i
			}
			first = false
		case <-deadline:
			break collect
		}
	}
	// The last 300 ms may still be under repair: judge the window before it.
	hi -= 30
	want, got := int(hi-lo+1), 0
	for i := lo; i <= hi; i++ {
		if seen[i] {
			got++
		}
	}
	share := float64(got) / float64(want)
	t.Logf("received %d of %d packets (%.2f%%); the wire dropped %d of %d media packets, %d RTX sent",
		got, want, share*100, lossy.drops.Load(), lossy.media.Load(), lossy.rtx.Load())
	if want < 300 {
		t.Fatalf("only a %d-packet window", want)
	}
	if lossy.drops.Load() < int64(want)/40 {
		t.Fatalf("the relay dropped only %d packets: no real loss", lossy.drops.Load())
	}
	if lossy.rtx.Load() == 0 {
		t.Fatal("no RTX packet was sent: the loss was not repaired by retransmission")
	}
	if share < 0.995 {
		t.Fatalf("received %.2f%% of the packets with 5%% loss, want at least 99.5%%", share*100)
	}
	// The feedback counters (/metrics, /api/streams) saw the repair: the
	// SFU's NACKs, the packets they asked for, and each RTX packet the
	// wire carried was counted as a retransmission (the wire's count may
	// run ahead by the ones in flight when it is read); reception reports
	// gave a round trip time.
	var ts publish.TrackStatus
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ts = st.Status().Tracks[0]; ts.RTTMs > 0 && ts.Retransmitted > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("no RTT or retransmission in the status after 10 s: %+v", ts)
		}
	}
	t.Logf("status: %d NACKs for %d packets, %d retransmitted, %d reported lost, rtt %.2f ms, jitter %.2f ms",
		ts.NACKs, ts.NACKedPackets, ts.Retransmitted, ts.Lost, ts.RTTMs, ts.JitterMs)
	if ts.NACKs == 0 || ts.NACKedPackets < ts.NACKs || ts.NACKedPackets < uint64(lossy.drops.Load())/2 {
		t.Fatalf("status counts %d NACKs for %d packets; the wire dropped %d", ts.NACKs, ts.NACKedPackets, lossy.drops.Load())
	}
	if rtx := uint64(lossy.rtx.Load()); ts.Retransmitted > rtx || ts.Retransmitted+20 < rtx {
		t.Fatalf("status counts %d retransmissions, the wire carried %d RTX packets", ts.Retransmitted, rtx)
	}
	if ts.RTTMs > 500 {
		t.Fatalf("rtt %.1f ms on loopback", ts.RTTMs)
	}
}
