package peer

import (
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// rtcpSpy records the RTCP packet types (and, for feedback, the format)
// of the datagrams a socket sends: an SRTCP packet's first header is in
// the clear.
type rtcpSpy struct {
	net.PacketConn
	mu   sync.Mutex
	seen map[[2]byte]int // {PT, FMT} -> datagrams
}

func (s *rtcpSpy) WriteTo(b []byte, addr net.Addr) (int, error) {
	if len(b) >= 8 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223 {
		s.mu.Lock()
		s.seen[[2]byte{b[1], b[0] & 0x1f}]++
		s.mu.Unlock()
	}
	return s.PacketConn.WriteTo(b, addr)
}

func (s *rtcpSpy) count(pt, fmt byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[[2]byte{pt, fmt}]
}

// recvLoops counts the goroutines of the receive-side interceptors.
func recvLoops() map[string]int {
	buf := make([]byte, 8<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	n := map[string]int{}
	for _, f := range []string{"nack.(*GeneratorInterceptor).loop", "report.(*ReceiverInterceptor).loop", "twcc.(*SenderInterceptor).loop"} {
		n[f] = strings.Count(stacks, f+"(")
	}
	return n
}

// The NACK generator, receiver reports and TWCC feedback start with a
// PeerConnection's first received stream: of a connected pair, the
// PeerConnection that only sends runs none of their goroutines, the one
// that receives runs them and sends receiver reports and NACKs for a gap.
func TestRecvOnlyInterceptors(t *testing.T) {
	before := recvLoops()
	spy := &rtcpSpy{seen: map[[2]byte]int{}}
	a := loopbackAPI(t)
	b, err := New(Options{ListenIP: "127.0.0.1", RemoteIPFilter: func(ip net.IP) bool { return ip.IsLoopback() },
		WrapConn: func(c net.PacketConn) net.PacketConn { spy.PacketConn = c; return spy }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	track, got := connectPair(t, a, b)
	// The receiver binds its stream at negotiation (the offer signals the
	// SSRC) or at the first packet: at most its three run; the sender's
	// do not (both PeerConnections' did, from their creation, before).
	for f, n := range recvLoops() {
		if n > before[f]+1 {
			t.Errorf("%s: %d goroutines once connected, want at most %d (the receiver's only)", f, n, before[f]+1)
		}
	}
	payload := make([]byte, 200)
	deadline := time.Now().Add(20 * time.Second)
	for seq := uint16(0); ; seq++ {
		if seq%50 >= 10 && seq%50 < 15 {
			continue // a gap the receiver NACKs
		}
		if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000},
			Payload: payload}); err != nil {
			t.Fatal(err)
		}
		for len(got) > 0 {
			<-got
		}
		loops := recvLoops()
		started := true
		for f, n := range loops {
			started = started && n == before[f]+1
		}
		if started && spy.count(201, 1) > 0 && spy.count(205, 1) > 0 {
			t.Logf("receiver sent %d receiver reports, %d NACKs; loops %v", spy.count(201, 1), spy.count(205, 1), loops)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: loops %v (before %v), want one more each; receiver reports %d, NACKs %d",
				loops, before, spy.count(201, 1), spy.count(205, 1))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
