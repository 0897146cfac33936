package rtpudp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
)

func haveIPv6(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = c.Close()
}

// The sender address recorded for a track is the source address exactly
// as the socket reports it, whatever the read path: an IPv4 address on an
// IPv4 socket, an IPv6 one on an IPv6 socket, and on a dual-stack [::]
// socket the IPv4-mapped IPv6 address of an IPv4 sender (not unmapped).
func TestSenderAddressFamilies(t *testing.T) {
	cases := []struct {
		name, listen, sendFrom string
		sendTo                 netip.Addr
		want                   func(from netip.AddrPort) netip.AddrPort
		v6                     bool
	}{
		{"v4", "127.0.0.1", "127.0.0.1", netip.MustParseAddr("127.0.0.1"),
			func(f netip.AddrPort) netip.AddrPort { return f }, false},
		{"v6", "[::1]", "::1", netip.IPv6Loopback(),
			func(f netip.AddrPort) netip.AddrPort { return f }, true},
		{"dual-v6", "[::]", "::1", netip.IPv6Loopback(),
			func(f netip.AddrPort) netip.AddrPort { return f }, true},
		{"dual-v4", "[::]", "127.0.0.1", netip.MustParseAddr("127.0.0.1"),
			func(f netip.AddrPort) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom16(f.Addr().As16()), f.Port())
			}, true},
	}
	for _, c := range cases {
		for _, batch := range []int{1, 4, DefaultBatch} {
			t.Run(fmt.Sprintf("%s/batch=%d", c.name, batch), func(t *testing.T) {
				if c.v6 {
					haveIPv6(t)
				}
				src, col := run(t, fmt.Sprintf("rtp://%s:0?codec=vp8&rtcp_mux=1&batch=%d", c.listen, batch))
				rtpAddr, _ := src.LocalAddr(0)
				dst := netip.AddrPortFrom(c.sendTo, rtpAddr.Port())
				s := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(c.sendFrom), 0).String())
				sendRTP(t, s, dst, 96, 77, 1, 10)
				waitFor(t, "10 packets", 5*time.Second, func() bool { return col.count(0) == 10 })
				want := c.want(localAddr(s))
				if got, _ := src.SenderAddrs(0); got != want {
					t.Fatalf("sender address %s (is4 %v, zone %q), want %s", got, got.Addr().Is4(), got.Addr().Zone(), want)
				}
				// A second sender on another port is a sender address change.
				s2 := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(c.sendFrom), 0).String())
				sendRTP(t, s2, dst, 96, 77, 11, 10)
				waitFor(t, "20 packets", 5*time.Second, func() bool { return col.count(0) == 20 })
				if got, _ := src.SenderAddrs(0); got != c.want(localAddr(s2)) {
					t.Fatalf("second sender address %s, want %s", got, c.want(localAddr(s2)))
				}
				if st := src.Stats().Tracks[0]; st.SenderAddrChanges != 1 || st.SSRCChanges != 0 || st.Packets != 20 {
					t.Fatalf("stats %+v", st)
				}
			})
		}
	}
}

// Datagrams larger than the read buffer are counted as truncated, not
// delivered, with single and batched reads, and the packets around them
// still arrive.
func TestTruncatedBatchAndSingle(t *testing.T) {
	for _, batch := range []int{1, 4, DefaultBatch} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			src, col := run(t, fmt.Sprintf("rtp://127.0.0.1:0?codec=vp8&rtcp_mux=1&batch=%d", batch))
			rtpAddr, _ := src.LocalAddr(0)
			s := listenUDP(t, "127.0.0.1:0")
			for i := range 10 {
				send(t, s, rtpAddr, rtpBytes(t, 96, uint16(2*i), 0, 1, false, 10))
				send(t, s, rtpAddr, rtpBytes(t, 96, uint16(2*i+1), 0, 1, false, maxDatagram))
			}
			waitFor(t, "10 packets, 10 truncated", 5*time.Second, func() bool {
				return col.count(0) == 10 && src.Stats().BadPackets["truncated"] == 10
			})
			for i, p := range col.snapshot() {
				if p.seq != uint16(2*i) || p.payload != 10 {
					t.Fatalf("packet %d: %+v", i, p)
				}
			}
		})
	}
}

// One read (a batch of datagrams, or one with single reads) and the
// handling of what it returned allocate nothing, for IPv4, IPv6 and
// dual-stack sockets. AllocsPerRun's result is whole allocations per run,
// so even one allocation per batch fails.
func TestReadOnceAllocs(t *testing.T) {
	cases := []struct {
		name, listen, from string
		to                 netip.Addr
		v6                 bool
	}{
		{"v4", "127.0.0.1", "127.0.0.1", netip.MustParseAddr("127.0.0.1"), false},
		{"v6", "[::1]", "::1", netip.IPv6Loopback(), true},
		{"dual-v4", "[::]", "127.0.0.1", netip.MustParseAddr("127.0.0.1"), true},
	}
	const runs = 20
	for _, c := range cases {
		for _, batch := range []int{1, 4, DefaultBatch} {
			t.Run(fmt.Sprintf("%s/batch=%d", c.name, batch), func(t *testing.T) {
				if c.v6 {
					haveIPv6(t)
				}
				src, err := Open(fmt.Sprintf("rtp://%s:0?codec=vp8&rtcp_mux=1&batch=%d", c.listen, batch))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = src.Close() })
				p := src.ports[0]
				// Never hang if fewer datagrams than expected are queued.
				_ = p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				rtpAddr, _ := src.LocalAddr(0)
				s := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(c.from), 0).String())
				var seq uint16
				fill(t, s, netip.AddrPortFrom(c.to, rtpAddr.Port()), &seq, 1+(runs+1)*batch)
				time.Sleep(20 * time.Millisecond) // let loopback deliver them all

				var got, begins, ends int
				fn := func(int, *rtp.Packet) {
					if begins == ends && got > 0 && batch > 1 {
						t.Error("a packet of a batch outside Begin/End")
					}
					got++
				}
				// Every read of more than one datagram is announced.
				b := &bridge.Batch{Begin: func() { begins++ }, End: func() { ends++ }}
				// Until its first datagram a port reads singly into one
				// buffer; the batch is allocated after it.
				if len(p.bufs) != 1 || p.batch != nil {
					t.Fatalf("before any datagram: %d buffers, batch reader %v", len(p.bufs), p.batch != nil)
				}
				if n, err := src.readOnce(p, fn, b); err != nil || n != 1 {
					t.Fatalf("first read: %d datagrams, %v", n, err)
				}
				if batch > 1 && (len(p.bufs) != batch || p.batch == nil) {
					t.Fatalf("after the first datagram: %d buffers, batch reader %v; want %d", len(p.bufs), p.batch != nil, batch)
				}
				var rerr error
				allocs := testing.AllocsPerRun(runs, func() {
					if n, err := src.readOnce(p, fn, b); err != nil && rerr == nil {
						rerr = err
					} else if n != batch && rerr == nil {
						rerr = fmt.Errorf("read %d datagrams, want %d", n, batch)
					}
				})
				if rerr != nil {
					t.Fatal(rerr)
				}
				if got != 1+(runs+1)*batch {
					t.Fatalf("%d packets delivered, want %d", got, 1+(runs+1)*batch)
				}
				if allocs != 0 {
					t.Fatalf("%v allocations per read of %d packets", allocs, batch)
				}
				if wantBatches := map[bool]int{true: runs + 1, false: 0}[batch > 1]; begins != wantBatches || ends != wantBatches {
					t.Fatalf("%d Begin and %d End calls for %d reads of %d, want %d", begins, ends, runs+1, batch, wantBatches)
				}
				want := localAddr(s)
				if c.name == "dual-v4" { // IPv4-mapped, as the socket reports it
					want = netip.AddrPortFrom(netip.AddrFrom16(want.Addr().As16()), want.Port())
				}
				if from, _ := src.SenderAddrs(0); from != want {
					t.Fatalf("sender %s, want %s", from, want)
				}
			})
		}
	}
}

// The reader lingers only while packets arrive fast enough for the wait
// to gather at least two: at 20,000 packets/s with a 250 µs linger, not at
// 1,000 or 5,000, and it stops in the first window after the rate drops.
func TestLingerOnlyAtHighRates(t *testing.T) {
	const d = 250 * time.Microsecond
	run := func(l *lingerer, now time.Time, pps int, dur time.Duration) (time.Time, int) {
		waits := 0
		step := time.Second / time.Duration(pps)
		for end := now.Add(dur); now.Before(end); now = now.Add(step) {
			if l.wait(now, 1) {
				waits++
			}
		}
		return now, waits
	}
	now := time.Unix(1000, 0)
	for _, pps := range []int{200, 1000, 5000} {
		l := &lingerer{max: d}
		if _, waits := run(l, now, pps, time.Second); waits != 0 {
			t.Errorf("%d packets/s: waited %d times", pps, waits)
		}
	}
	l := &lingerer{max: d}
	now, waits := run(l, now, 20000, time.Second)
	if waits < 19000 { // all but the first window
		t.Errorf("20,000 packets/s: waited after %d of 20,000 reads", waits)
	}
	// The sender slows down: the next full window turns lingering off.
	if _, waits := run(l, now.Add(5*time.Millisecond), 1000, time.Second); waits > 2*int(lingerWindow/time.Millisecond) {
		t.Errorf("after slowing to 1,000 packets/s: waited %d times", waits)
	}
}
