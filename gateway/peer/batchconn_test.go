package peer

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// batchPair is a batchConn on loopback and a receiver of what it sends.
type batchPair struct {
	c  *batchConn
	rx *net.UDPConn
	to netip.AddrPort
}

func newBatchPair(t *testing.T) *batchPair {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("writes are batched on Linux only (sendmmsg)")
	}
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadBuffer(4 << 20)
		return c
	}
	tx, rx := listen(), listen()
	c := newBatchConn(tx)
	if c == nil {
		t.Fatal("newBatchConn returned nil on Linux")
	}
	p := &batchPair{c: c, rx: rx, to: rx.LocalAddr().(*net.UDPAddr).AddrPort()}
	t.Cleanup(func() {
		_ = c.Close()
		_ = rx.Close()
	})
	return p
}

// datagram is writer w's datagram number i, padded to size bytes.
func datagram(buf []byte, w, i uint32, size int) []byte {
	b := buf[:size]
	binary.BigEndian.PutUint32(b, w)
	binary.BigEndian.PutUint32(b[4:], i)
	for j := 8; j < size; j++ {
		b[j] = byte(i) + byte(j)
	}
	return b
}

// expect reads n datagrams and checks that they are w's first..first+n-1,
// in order and intact.
func (p *batchPair) expect(t *testing.T, w, first uint32, n, size int) {
	t.Helper()
	buf := make([]byte, 2048)
	want := make([]byte, 2048)
	_ = p.rx.SetReadDeadline(time.Now().Add(10 * time.Second))
	for k := range n {
		m, err := p.rx.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", k, n, err)
		}
		if exp := datagram(want, w, first+uint32(k), size); string(buf[:m]) != string(exp) {
			t.Fatalf("datagram %d: got writer %d #%d (%d bytes), want writer %d #%d (%d bytes)", k,
				binary.BigEndian.Uint32(buf), binary.BigEndian.Uint32(buf[4:]), m, w, first+uint32(k), size)
		}
	}
}

// nothingArrives checks that no datagram arrives within d. Loopback
// delivers within the sending system call, so d only covers scheduling.
func (p *batchPair) nothingArrives(t *testing.T, d time.Duration) {
	t.Helper()
	_ = p.rx.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	if n, err := p.rx.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a datagram arrived while corked (%d bytes, err %v)", n, err)
	}
}

// Corked datagrams stay in the ring until Flush, then all arrive intact
// and in order, in ceil(n/16) sendmmsg calls.
func TestBatchConnCorkFlush(t *testing.T) {
	p := newBatchPair(t)
	buf := make([]byte, 2048)
	p.c.cork()
	for i := range 10 {
		if n, err := p.c.WriteToAddrPort(datagram(buf, 1, uint32(i), 1200), p.to); n != 1200 || err != nil {
			t.Fatalf("corked write %d: %d, %v", i, n, err)
		}
	}
	p.nothingArrives(t, 50*time.Millisecond)
	for i := 10; i < 200; i++ { // through 12 full rings
		_, _ = p.c.WriteToAddrPort(datagram(buf, 1, uint32(i), 1200), p.to)
	}
	p.c.flush()
	p.expect(t, 1, 0, 200, 1200)
	want := BatchStats{Batches: 13, Datagrams: 200}
	if gsoCapable(p.c.conn) {
		want.Segmented = 200 // one run per ring
	}
	if s := p.c.stats(); s != want {
		t.Errorf("stats %+v, want %+v: 13 batches (12 x 16 + 8)", s, want)
	}
	if p.c.corks.Load() != 0 {
		t.Errorf("corks %d after the flush", p.c.corks.Load())
	}
	// The same without segmentation: one message per datagram.
	p.c.gso.Store(false)
	p.c.cork()
	for i := range 70 {
		_, _ = p.c.WriteToAddrPort(datagram(buf, 1, uint32(i), 1000+i), p.to)
	}
	p.c.flush()
	for i := range 70 {
		p.expect(t, 1, uint32(i), 1, 1000+i)
	}
	if s := p.c.stats(); s.Batches != 18 || s.Datagrams != 270 || s.Segmented != want.Segmented {
		t.Errorf("stats %+v after 70 more in 5 batches (4 x 16 + 6) without segmentation", s)
	}
}

// Runs of datagrams to one address go out segmented (GSO); a shorter
// datagram ends a run, another address or a longer datagram starts a new
// one. Every receiver gets its datagrams whole and in order.
func TestBatchConnSegmentRuns(t *testing.T) {
	p := newBatchPair(t)
	if !gsoCapable(p.c.conn) {
		t.Skip("no UDP_SEGMENT in this kernel")
	}
	q := newBatchPair(t) // a second receiver
	buf := make([]byte, 2048)
	type dg struct {
		to   *batchPair
		size int
	}
	// Runs: 3x1200+500 to p | 2x1200 to q | 1200 to p | 1300+1300 to p | 700 to q
	seq := []dg{{p, 1200}, {p, 1200}, {p, 1200}, {p, 500}, {q, 1200}, {q, 1200}, {p, 1200}, {p, 1300}, {p, 1300}, {q, 700}}
	p.c.cork()
	next := map[*batchPair]uint32{}
	for _, d := range seq {
		_, _ = p.c.WriteToAddrPort(datagram(buf, 6, next[d.to], d.size), d.to.to)
		next[d.to]++
	}
	p.c.flush()
	next = map[*batchPair]uint32{}
	for _, d := range seq {
		d.to.expect(t, 6, next[d.to], 1, d.size)
		next[d.to]++
	}
	// Segmented: the runs of 4, 2 and 2; the single 1200 and 700 are not.
	if s := p.c.stats(); s.Datagrams != 10 || s.Segmented != 8 || s.Batches != 1 || s.Errors != 0 {
		t.Errorf("stats %+v, want 10 datagrams in one sendmmsg, 8 of them segmented", s)
	}
}

// A segmented datagram the kernel refuses turns segmentation off, and its
// datagrams go again one by one: none is lost.
func TestBatchConnSegmentRefused(t *testing.T) {
	p := newBatchPair(t)
	if !gsoCapable(p.c.conn) {
		t.Skip("no UDP_SEGMENT in this kernel")
	}
	buf := make([]byte, 2048)
	r := newSendRing()
	for i := range 5 {
		r.put(datagram(buf, 7, uint32(i), 1000), p.to)
	}
	k := r.build(0, true)
	if k != 1 || r.segs[0] != 5 {
		t.Fatalf("built %d messages (%v), want one of 5 segments", k, r.segs[:k])
	}
	// Segments of 10 bytes: more than the kernel's 64 segments, EINVAL.
	putSegmentSize(r.oob[0], 10)
	p.c.sendBuilt(r, k)
	r.n = 0
	p.expect(t, 7, 0, 5, 1000)
	if s := p.c.stats(); p.c.gso.Load() || s.Datagrams != 5 || s.Segmented != 0 || s.Errors != 0 {
		t.Errorf("gso %v, stats %+v: want segmentation off and 5 datagrams sent singly", p.c.gso.Load(), s)
	}
}

// Uncorked, a write goes straight out: no ring, no sendmmsg. The other
// write methods pion or transport.UDPConn may use arrive too, in order
// after what was queued.
func TestBatchConnPassThrough(t *testing.T) {
	p := newBatchPair(t)
	buf := make([]byte, 2048)
	if _, err := p.c.WriteToAddrPort(datagram(buf, 2, 0, 100), p.to); err != nil {
		t.Fatal(err)
	}
	p.expect(t, 2, 0, 1, 100)
	if s := p.c.stats(); s.Batches != 0 || s.Datagrams != 0 {
		t.Errorf("an uncorked write went through the ring: %+v", s)
	}
	if p.c.cur != nil || p.c.spare != nil {
		t.Error("a socket never corked holds a send ring: an idle track pays for it")
	}
	ua := net.UDPAddrFromAddrPort(p.to)
	p.c.cork()
	_, _ = p.c.WriteTo(datagram(buf, 2, 1, 100), ua)
	_, _ = p.c.WriteToUDP(datagram(buf, 2, 2, 100), ua)
	_, _, _ = p.c.WriteMsgUDP(datagram(buf, 2, 3, 100), nil, ua)
	_, _ = p.c.WriteToAddrPort(datagram(buf, 2, 4, 1600), p.to) // too large for a slot: after 1..3
	_, _ = p.c.WriteToAddrPort(datagram(buf, 2, 5, 100), p.to)
	p.c.flush()
	if p.c.cur == nil && p.c.spare == nil {
		t.Error("corked writes made no send ring")
	}
	p.expect(t, 2, 1, 3, 100)
	p.expect(t, 2, 4, 1, 1600)
	p.expect(t, 2, 5, 1, 100)
	// An IPv4-mapped destination on an IPv4 socket is sent as IPv4.
	p.c.cork()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(p.to.Addr().As16()), p.to.Port())
	_, _ = p.c.WriteToAddrPort(datagram(buf, 2, 6, 100), mapped)
	p.c.flush()
	p.expect(t, 2, 6, 1, 100)
	if s := p.c.stats(); s.Errors != 0 {
		t.Errorf("errors %+v", s)
	}
}

// A datagram the kernel refuses (port 0: EINVAL) is counted, and the rest
// of its batch, before and after it, still arrives.
func TestBatchConnErrorSkipsOne(t *testing.T) {
	p := newBatchPair(t)
	buf := make([]byte, 2048)
	bad := netip.AddrPortFrom(p.to.Addr(), 0)
	p.c.cork()
	for i := range 6 {
		_, _ = p.c.WriteToAddrPort(datagram(buf, 3, uint32(i), 200), p.to)
		if i == 2 || i == 3 {
			_, _ = p.c.WriteToAddrPort(datagram(buf, 9, 0, 200), bad)
		}
	}
	p.c.flush()
	p.expect(t, 3, 0, 6, 200)
	s := p.c.stats()
	if s.Errors != 2 || s.Datagrams != 6 {
		t.Errorf("stats %+v, want 6 datagrams sent and 2 errors", s)
	}
}

// Close sends what is queued before it closes the socket; a corked write
// after Close fails.
func TestBatchConnFlushOnClose(t *testing.T) {
	p := newBatchPair(t)
	buf := make([]byte, 2048)
	p.c.cork()
	for i := range 5 {
		_, _ = p.c.WriteToAddrPort(datagram(buf, 4, uint32(i), 300), p.to)
	}
	if err := p.c.Close(); err != nil {
		t.Fatal(err)
	}
	p.expect(t, 4, 0, 5, 300)
	if _, err := p.c.WriteToAddrPort(datagram(buf, 4, 5, 300), p.to); !errors.Is(err, net.ErrClosed) {
		t.Errorf("corked write after Close: %v, want net.ErrClosed", err)
	}
	p.c.flush()
}

// Goroutines that cork, write and flush at once, and one that never
// corks (pion's RTCP), lose nothing, and each one's datagrams keep their
// order. Run with -race.
func TestBatchConnConcurrentWriters(t *testing.T) {
	p := newBatchPair(t)
	const writers, perWriter = 4, 600
	got := make([]uint32, writers+1) // next expected per writer
	var sent, received atomic.Int64
	// window keeps what is in flight below the receive buffer (the kernel
	// default of 208 KiB where SetReadBuffer is capped): flow control, so
	// that a loss can only be the batch conn's.
	window := func() {
		for sent.Load()-received.Load() > 100 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	errc := make(chan error, 1)
	total := (writers + 1) * perWriter
	go func() {
		buf := make([]byte, 2048)
		_ = p.rx.SetReadDeadline(time.Now().Add(30 * time.Second))
		for range total {
			n, err := p.rx.Read(buf)
			if err != nil {
				errc <- err
				return
			}
			w, i := binary.BigEndian.Uint32(buf), binary.BigEndian.Uint32(buf[4:])
			if n != 120 || w > writers || i != got[w] {
				errc <- errors.New("out of order, foreign or truncated datagram")
				return
			}
			got[w]++
			received.Add(1)
		}
		errc <- nil
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			buf := make([]byte, 2048)
			for i := 0; i < perWriter; {
				window()
				p.c.cork()
				for k := 0; k < 1+(i%37) && i < perWriter; k++ { // bursts of 1..37
					_, _ = p.c.WriteToAddrPort(datagram(buf, uint32(w), uint32(i), 120), p.to)
					sent.Add(1)
					i++
				}
				p.c.flush()
			}
		})
	}
	wg.Go(func() {
		buf := make([]byte, 2048)
		for i := range perWriter {
			window()
			_, _ = p.c.WriteToAddrPort(datagram(buf, writers, uint32(i), 120), p.to)
			sent.Add(1)
		}
	})
	wg.Wait()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("receiver: %v (received per writer %v)", err, got)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("receiver stalled: received %d of %d", received.Load(), total)
	}
	if p.c.corks.Load() != 0 || p.c.cur.queued() != 0 {
		t.Errorf("after every flush: corks %d, %d datagrams queued", p.c.corks.Load(), p.c.cur.queued())
	}
	s := p.c.stats()
	if s.Errors != 0 || s.Batches >= s.Datagrams {
		t.Errorf("stats %+v: want no errors and fewer sendmmsg calls than datagrams", s)
	}
}

// A corked write, and a whole burst with its Cork and Flush, allocate
// nothing.
func TestBatchConnNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under the race detector")
	}
	p := newBatchPair(t)
	go func() { // drain
		buf := make([]byte, 2048)
		for {
			if _, err := p.rx.Read(buf); err != nil {
				return
			}
		}
	}()
	b := datagram(make([]byte, 2048), 5, 0, 1200)
	p.c.cork()
	if a := testing.AllocsPerRun(1000, func() { _, _ = p.c.WriteToAddrPort(b, p.to) }); a != 0 {
		t.Errorf("corked write: %v allocations", a)
	}
	p.c.flush()
	burst := func() {
		p.c.cork()
		for range 20 {
			_, _ = p.c.WriteToAddrPort(b, p.to)
		}
		p.c.flush()
	}
	if a := testing.AllocsPerRun(200, burst); a != 0 {
		t.Errorf("Cork, 20 writes, Flush: %v allocations", a)
	}
}

// BenchmarkBatchConnSend is what sending costs per datagram, in bursts of
// 8 datagrams of 1216 bytes (SRTP packets of a 1200-byte RTP packet) to
// one address on loopback: each datagram a sendto ("direct"), each burst
// one sendmmsg ("sendmmsg"), each burst one segmented datagram ("gso").
// cpu-ns/dgram is the sending thread's CPU time (user and system; on
// loopback its system calls also run the receiving side of the kernel up
// to the socket queue, as a publisher's do) per datagram. A receiver in
// the same process drains the socket; the sender waits for it when 1000
// datagrams are in flight, so that none is dropped (a drop costs the
// kernel less than a delivery).
//
//	go test -run '^$' -bench BatchConnSend -benchtime 100000x -count 5 ./gateway/peer/
func BenchmarkBatchConnSend(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("writes are batched on Linux only")
	}
	for _, mode := range []string{"direct", "sendmmsg", "gso"} {
		b.Run(mode, func(b *testing.B) {
			tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			_ = rx.SetReadBuffer(4 << 20)
			c := newBatchConn(tx)
			defer func() { _ = c.Close() }()
			if mode == "gso" && !c.gso.Load() {
				b.Skip("no UDP_SEGMENT in this kernel")
			}
			c.gso.Store(mode == "gso")
			var received atomic.Int64
			caughtUp := make(chan struct{}, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				pc := ipv4.NewPacketConn(rx)
				ms := make([]ipv4.Message, 64)
				for i := range ms {
					ms[i].Buffers = [][]byte{make([]byte, 2048)}
				}
				for {
					n, err := pc.ReadBatch(ms, 0)
					if err != nil {
						return
					}
					received.Add(int64(n))
					select {
					case caughtUp <- struct{}{}:
					default:
					}
				}
			}()
			to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
			pkt := make([]byte, 1216)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadCPU()
			b.ResetTimer()
			sent := 0
			for sent < b.N {
				for int64(sent)-received.Load() > 1000 {
					<-caughtUp
				}
				if mode != "direct" {
					c.cork()
				}
				for range 8 {
					_, _ = c.WriteToAddrPort(pkt, to)
				}
				if mode != "direct" {
					c.flush()
				}
				sent += 8
			}
			b.StopTimer()
			b.ReportMetric(float64(threadCPU()-cpu0)/float64(sent), "cpu-ns/dgram")
			for deadline := time.Now().Add(5 * time.Second); received.Load() < int64(sent) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(100*(1-float64(received.Load())/float64(sent)), "%lost")
			_ = rx.Close()
			<-done
		})
	}
}

// threadCPU is the calling thread's user and system CPU time, in ns.
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
