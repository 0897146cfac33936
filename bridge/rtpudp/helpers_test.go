package rtpudp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// got is what a test keeps of a delivered packet.
type got struct {
	track   int
	pt      uint8
	seq     uint16
	ts      uint32
	ssrc    uint32
	marker  bool
	payload int
}

type collector struct {
	mu   sync.Mutex
	pkts []got
}

func (c *collector) fn(track int, p *rtp.Packet) {
	c.mu.Lock()
	c.pkts = append(c.pkts, got{track, p.PayloadType, p.SequenceNumber, p.Timestamp, p.SSRC, p.Marker, len(p.Payload)})
	c.mu.Unlock()
}

func (c *collector) snapshot() []got {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]got(nil), c.pkts...)
}

func (c *collector) count(track int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.pkts {
		if p.track == track {
			n++
		}
	}
	return n
}

// run opens raw and runs it until the test ends.
func run(t *testing.T, raw string) (*Source, *collector) {
	t.Helper()
	src, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	return src, runSource(t, src)
}

func runSource(t *testing.T, src *Source) *collector {
	t.Helper()
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, c.fn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func listenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func localAddr(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// portPair binds two sockets on consecutive ports of host (an RTP sender
// and its RTCP listener).
func portPair(t testing.TB, host string) (rtpConn, rtcpConn *net.UDPConn) {
	t.Helper()
	for range 50 {
		a := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(host), 0).String())
		p := localAddr(a).Port()
		if p == 65535 {
			continue
		}
		b, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(host), p+1)))
		if err != nil {
			_ = a.Close()
			continue
		}
		t.Cleanup(func() { _ = b.Close() })
		return a, b
	}
	t.Fatal("no free port pair")
	return nil, nil
}

// freePorts returns n even ports on 127.0.0.1 whose port+1 is free too,
// released again (for tools that must be told a port before we bind it).
func freePorts(t testing.TB, n int) []uint16 {
	t.Helper()
	var ports []uint16
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 500; tries++ {
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p := localAddr(a).Port()
		if p%2 != 0 || p == 65534 {
			_ = a.Close()
			continue
		}
		b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(p) + 1})
		if err != nil {
			_ = a.Close()
			continue
		}
		held = append(held, a, b)
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatal("no free ports")
	}
	return ports
}

func rtpBytes(t testing.TB, pt uint8, seq uint16, ts, ssrc uint32, marker bool, size int) []byte {
	t.Helper()
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: marker},
		Payload: make([]byte, size),
	}
	p.Payload[0] = 0x10
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func send(t testing.TB, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func sendRTP(t testing.TB, c *net.UDPConn, to netip.AddrPort, pt uint8, ssrc uint32, first uint16, n int) {
	t.Helper()
	for i := range n {
		seq := first + uint16(i)
		send(t, c, to, rtpBytes(t, pt, seq, uint32(seq)*3000, ssrc, i%3 == 2, 100))
	}
}

func senderReport(t testing.TB, ssrc uint32, ntp uint64, rtpTS uint32) []byte {
	t.Helper()
	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.SenderReport{SSRC: ssrc, NTPTime: ntp, RTPTime: rtpTS, PacketCount: 10, OctetCount: 1000},
		rtcp.NewCNAMESourceDescription(ssrc, "test"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readKeyframeRequest reads RTCP from c and returns the PLI and FIR of the
// first compound packet holding both, and where it came from.
func readKeyframeRequest(t testing.TB, c *net.UDPConn) (*rtcp.PictureLossIndication, *rtcp.FullIntraRequest, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("waiting for a keyframe request on %s: %v", localAddr(c), err)
		}
		if !isRTCP(buf[:n]) {
			continue // our own RTP, on an rtcp-mux socket
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			t.Fatalf("keyframe request does not parse: %v", err)
		}
		if _, ok := pkts[0].(*rtcp.ReceiverReport); !ok {
			t.Fatalf("compound packet starts with %T, want a receiver report", pkts[0])
		}
		var pli *rtcp.PictureLossIndication
		var fir *rtcp.FullIntraRequest
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication:
				pli = p
			case *rtcp.FullIntraRequest:
				fir = p
			}
		}
		if pli != nil && fir != nil {
			return pli, fir, from
		}
	}
}

func isAddrInUseErr(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
