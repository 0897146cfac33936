package peer

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v4"
	"golang.org/x/net/ipv4"
)

// batchConn is an API's UDP socket as pion's UDP mux sees it. Uncorked, a
// write goes straight out (one sendto(2), as with the bare *net.UDPConn).
// While the socket is corked (API.Cork), a write copies the datagram into
// a preallocated ring and returns; API.Flush, or a full ring, sends the
// ring with one sendmmsg(2) (golang.org/x/net's WriteBatch, which
// allocates nothing per call since it pools its message headers:
// TestBatchConnNoAllocs). The goroutine that does a burst of media work
// (one recvmmsg batch to publish, one packet to N subscribers) corks
// before and flushes after. Where the kernel has it (Linux 4.18), a run of
// queued datagrams to one address leaves as one datagram that the kernel
// cuts up (UDP GSO, see sendRing.build).
//
// Why both: at 20,000 packets/s, 40% of a publisher's CPU was sendto, and
// on loopback nearly all of that is the kernel's path per datagram (route,
// netfilter, device, and the receiver's side up to its socket queue), not
// the system call. BenchmarkBatchConnSend, bursts of 8 to one address,
// sending thread's CPU per datagram, median of 5 on a quiet run: sendto
// 3.69 µs, sendmmsg 3.69 µs (0 to 10% less across runs), GSO 1.36 µs.
// The publisher's datagrams all go to the SFU, so they form runs; a
// fan-out's go to as many addresses and gain from sendmmsg only (the
// fan-out bench: 3 to 15% less CPU per delivered packet).
//
// Why not pion/transport's udp.BatchConn, which wraps the same WriteBatch:
// it flushes from a goroutine of its own, on a ticker or when its batch is
// full, so every datagram waits for that goroutine (up to the interval,
// plus a wakeup per flush); it cannot know where the caller's burst ends.
// Here the goroutine that wrote the burst flushes it at once.
//
// Writers from other goroutines (pion's RTCP, STUN and DTLS, another
// publisher's batch) stay correct: while any batch is open their
// datagrams join the ring and leave with the next flush, in the order they
// were written. A corked write takes mu in place of the socket's own write
// lock (internal/poll.FD.writeLock), which every direct write takes: one
// lock per datagram either way, and no allocation.
type batchConn struct {
	conn *net.UDPConn
	bw   *ipv4.PacketConn // WriteBatch; the same sendmmsg for IPv6 sockets

	// corks counts open batches. It is incremented without mu (Cork);
	// it is decremented under mu, after the ring was sent, so that when
	// it reaches 0 nothing is left queued.
	corks atomic.Int32

	mu sync.Mutex // guards cur and closed
	// cur is the ring writers fill. The rings are made by the first
	// corked write (queue), so a socket that is never corked (an idle
	// track's) costs no ring; at most two exist.
	cur    *sendRing
	closed bool

	// sendMu serializes sends, so that rings leave in the order they were
	// filled; it guards spare. It is taken while mu is held, never the
	// other way round.
	sendMu sync.Mutex
	spare  *sendRing // the other ring: filled while cur's ring is sent

	// gso: runs of datagrams to one address leave as one segmented
	// datagram (sendRing.build); off where the kernel refused it.
	gso atomic.Bool

	batches, datagrams, segmented, errs atomic.Uint64
}

const (
	// batchLen is the datagrams a ring holds, so the most one sendmmsg(2)
	// sends: a full ring is sent at once. A queued datagram waits for the
	// rest of its ring to be written (in a fan-out, about 15 µs each);
	// with 16, at most 0.25 ms, and sendmmsg's saving per datagram is
	// already 15/16 of what a longer ring would give (the kernel's work
	// per datagram, which no ring length saves, is most of a send).
	batchLen = 16
	// batchSlot is the room of one queued datagram: an Ethernet MTU.
	// pion writes at most ~1228 bytes (1200-byte MTU of DTLS and SCTP,
	// RTP plus the SRTP tag); a larger datagram goes out on its own, after
	// what is queued.
	batchSlot = 1500
)

// sendRing is one batch of queued datagrams, in slots of its own
// storage, and the messages one send makes of them.
type sendRing struct {
	n     int
	bufs  [][]byte         // slot i's datagram, in data
	dst   []netip.AddrPort // slot i's destination
	addrs []net.UDPAddr    // ... as x/net takes it
	ips   [][16]byte       // addrs[i].IP is ips[i][12:] or ips[i][:]
	data  []byte           // batchLen slots of batchSlot bytes

	// The messages of one send: one per datagram, or one per run of
	// datagrams to one address that the kernel segments (GSO).
	out   []ipv4.Message
	first []int    // slot of out[k]'s first datagram
	segs  []int    // datagrams in out[k]
	oob   [][]byte // out[k]'s UDP_SEGMENT control message, when it has one
}

const (
	// gsoMaxSegs and gsoMaxBytes bound one segmented datagram: the
	// kernel's UDP_MAX_SEGMENTS, and an IPv4 datagram's payload with room
	// to spare.
	gsoMaxSegs  = 64
	gsoMaxBytes = 65000
)

func newSendRing() *sendRing {
	r := &sendRing{
		bufs:  make([][]byte, batchLen),
		dst:   make([]netip.AddrPort, batchLen),
		addrs: make([]net.UDPAddr, batchLen),
		ips:   make([][16]byte, batchLen),
		data:  make([]byte, batchLen*batchSlot),
		out:   make([]ipv4.Message, batchLen),
		first: make([]int, batchLen),
		segs:  make([]int, batchLen),
		oob:   make([][]byte, batchLen),
	}
	for k := range r.oob {
		r.oob[k] = make([]byte, gsoCmsgSpace)
	}
	return r
}

// queued returns the datagrams r holds; a nil ring holds none.
func (r *sendRing) queued() int {
	if r == nil {
		return 0
	}
	return r.n
}

// put queues datagram b for addr in the next slot.
func (r *sendRing) put(b []byte, addr netip.AddrPort) {
	i := r.n
	r.bufs[i] = r.data[i*batchSlot : i*batchSlot+copy(r.data[i*batchSlot:(i+1)*batchSlot], b)]
	r.dst[i] = addr
	a := &r.addrs[i]
	ip := addr.Addr()
	r.ips[i] = ip.As16() // an IPv4 address as ::ffff:a.b.c.d
	if ip.Unmap().Is4() {
		a.IP = r.ips[i][12:16]
	} else {
		a.IP = r.ips[i][:]
	}
	a.Port, a.Zone = int(addr.Port()), ip.Zone()
	r.n++
}

// build makes the messages that send slots from..n-1 and returns how
// many. With gso, consecutive datagrams to one address make one message
// that the kernel cuts into them (UDP_SEGMENT): they must all have the
// size of the first, but the last may be shorter. The kernel then runs
// its send path (route, netfilter, device, and on loopback the receive
// path up to UDP) once for the run instead of once per datagram; the
// receiver still gets each datagram on its own.
func (r *sendRing) build(from int, gso bool) int {
	k := 0
	for i := from; i < r.n; k++ {
		j, size, total := i+1, len(r.bufs[i]), len(r.bufs[i])
		for gso && j < r.n && j-i < gsoMaxSegs && r.dst[j] == r.dst[i] && len(r.bufs[j]) <= size &&
			len(r.bufs[j]) > 0 && total+len(r.bufs[j]) <= gsoMaxBytes {
			total += len(r.bufs[j])
			j++
			if len(r.bufs[j-1]) < size {
				break // a shorter datagram ends a run
			}
		}
		m := &r.out[k]
		m.Buffers, m.Addr, m.OOB = r.bufs[i:j:j], &r.addrs[i], nil
		if j-i > 1 {
			m.OOB = putSegmentSize(r.oob[k], size)
		}
		r.first[k], r.segs[k] = i, j-i
		i = j
	}
	return k
}

// newBatchConn wraps conn, or returns nil where sendmmsg does not exist
// (x/net's WriteBatch then sends one message per call: no gain).
func newBatchConn(conn *net.UDPConn) *batchConn {
	if runtime.GOOS != "linux" {
		return nil
	}
	c := &batchConn{conn: conn, bw: ipv4.NewPacketConn(conn)}
	c.gso.Store(gsoCapable(conn))
	return c
}

var (
	_ net.PacketConn           = (*batchConn)(nil)
	_ ice.AddrPortReaderWriter = (*batchConn)(nil)
	_ transport.UDPConn        = (*batchConn)(nil)
)

// errBatchClosed is what a corked write on a closed socket returns.
var errBatchClosed = &net.OpError{Op: "write", Net: "udp", Err: net.ErrClosed}

// cork opens a batch.
func (c *batchConn) cork() { c.corks.Add(1) }

// flush sends what is queued and closes a batch that cork opened. When it
// returns, every datagram written before it by this goroutine is with the
// kernel (flushLocked waits for a ring another goroutine is sending, even
// when nothing new is queued). Each flush closes one cork: callers pair
// them (API.Cork/Flush, bridge.Batch's Begin/End); an unpaired flush would
// close another goroutine's batch early, which only sends its datagrams
// sooner.
func (c *batchConn) flush() {
	c.mu.Lock()
	c.flushLocked()
	if c.corks.Load() > 0 {
		// The last batch to close sends what other goroutines queued
		// while the ring was sent; a batch still open would send it
		// later itself. mu is held from the last check to the decrement,
		// and only flush decrements (under mu): the check holds.
		for c.corks.Load() == 1 && c.cur.queued() > 0 {
			c.flushLocked()
		}
		c.corks.Add(-1)
	}
	c.mu.Unlock()
}

// flushLocked sends the current ring and gives writers the other one. It
// is called with mu held and returns with it held, but releases it while
// the system call runs, so that other goroutines keep filling the next
// ring meanwhile (their datagrams leave after these).
func (c *batchConn) flushLocked() {
	r := c.cur
	// Wait for a ring being sent: it may hold the caller's earlier
	// datagrams, which must be with the kernel before what the caller
	// sends next (or before Flush returns). Then the previous ring is
	// back in spare.
	c.sendMu.Lock()
	if r.queued() == 0 {
		c.sendMu.Unlock()
		return
	}
	c.cur, c.spare = c.spare, nil // nil until a second ring was needed
	c.mu.Unlock()
	c.sendRing(r)
	c.spare = r
	c.sendMu.Unlock()
	c.mu.Lock()
}

// sendRing sends r's datagrams with as few sendmmsg calls as the kernel
// allows. A datagram the kernel refuses is counted and skipped; the rest
// still go. A segmented message the kernel refuses (EIO without checksum
// offload, EINVAL where the path's MTU is below the segment size) turns
// segmentation off for the socket and its datagrams go again, each on its
// own. If the socket is closed (or a write deadline passed) the rest are
// counted as errors.
func (c *batchConn) sendRing(r *sendRing) {
	c.sendBuilt(r, r.build(0, c.gso.Load()))
	r.n = 0
}

// sendBuilt sends the k messages that r.build made.
func (c *batchConn) sendBuilt(r *sendRing, k int) {
	for off := 0; off < k; {
		n, err := c.bw.WriteBatch(r.out[off:k], 0)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded):
				for _, s := range r.segs[off:k] {
					c.errs.Add(uint64(s))
				}
				off = k
			case r.segs[off] > 1:
				c.gso.Store(false)
				k, off = r.build(r.first[off], false), 0
			default:
				// sendmmsg reports an error only when the first message
				// failed (a later failure ends the call early, with the
				// count before it): skip that one.
				c.errs.Add(1)
				off++
			}
			continue
		}
		c.batches.Add(1)
		for _, s := range r.segs[off : off+n] {
			c.datagrams.Add(uint64(s))
			if s > 1 {
				c.segmented.Add(uint64(s))
			}
		}
		off += max(n, 1)
	}
}

// WriteToAddrPort is how pion's UDP mux writes (ice.AddrPortReaderWriter):
// straight out when no batch is open, else into the ring.
func (c *batchConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.corks.Load() == 0 {
		return c.conn.WriteToUDPAddrPort(b, addr)
	}
	return c.queue(b, addr)
}

func (c *batchConn) queue(b []byte, addr netip.AddrPort) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, errBatchClosed
	}
	if c.corks.Load() == 0 || len(b) > batchSlot || !addr.IsValid() {
		// The batch closed meanwhile, or the datagram is too large, or
		// its address needs the error a direct write returns: it goes
		// out on its own, after what is queued.
		c.flushLocked()
		return c.conn.WriteToUDPAddrPort(b, addr)
	}
	if c.cur == nil {
		c.cur = newSendRing()
	}
	c.cur.put(b, addr)
	if c.cur.n == batchLen {
		c.flushLocked()
	}
	return len(b), nil
}

// stats returns the counters.
func (c *batchConn) stats() BatchStats {
	return BatchStats{Batches: c.batches.Load(), Datagrams: c.datagrams.Load(), Segmented: c.segmented.Load(),
		Errors: c.errs.Load()}
}

// WriteTo is WriteToAddrPort for callers with a net.Addr.
func (c *batchConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.conn.WriteTo(b, addr) // fails as the socket's own WriteTo does
	}
	return c.WriteToAddrPort(b, ua.AddrPort())
}

// WriteToUDP is WriteTo for a *net.UDPAddr (transport.UDPConn).
func (c *batchConn) WriteToUDP(b []byte, addr *net.UDPAddr) (int, error) {
	return c.WriteToAddrPort(b, addr.AddrPort())
}

// WriteMsgUDP writes a datagram with ancillary data: never batched, after
// what is queued.
func (c *batchConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	if len(oob) == 0 && addr != nil {
		n, err = c.WriteToAddrPort(b, addr.AddrPort())
		return n, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	return c.conn.WriteMsgUDP(b, oob, addr)
}

// Write writes to a connected socket's peer: never batched, after what is
// queued. pion's mux does not connect its socket.
func (c *batchConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	return c.conn.Write(b)
}

// Close sends what is queued, then closes the socket.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		for c.cur.queued() > 0 {
			c.flushLocked()
		}
		c.closed = true
	}
	c.mu.Unlock()
	return c.conn.Close()
}

// ReadFromAddrPort is how pion's UDP mux reads (ice.AddrPortReaderWriter).
func (c *batchConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.conn.ReadFromUDPAddrPort(b)
}

// The rest of net.PacketConn and transport.UDPConn is the socket's own.

func (c *batchConn) ReadFrom(b []byte) (int, net.Addr, error) { return c.conn.ReadFrom(b) }
func (c *batchConn) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	return c.conn.ReadFromUDP(b)
}
func (c *batchConn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	return c.conn.ReadMsgUDP(b, oob)
}
func (c *batchConn) Read(b []byte) (int, error)         { return c.conn.Read(b) }
func (c *batchConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *batchConn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *batchConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *batchConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *batchConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
func (c *batchConn) SetReadBuffer(n int) error          { return c.conn.SetReadBuffer(n) }
func (c *batchConn) SetWriteBuffer(n int) error         { return c.conn.SetWriteBuffer(n) }

// batchNet is the network pion's multi-interface UDP mux opens its sockets
// with (ListenIP empty: one socket per interface address): every UDP
// socket it opens is a batchConn, registered with the API.
type batchNet struct {
	transport.Net
	add func(*batchConn)
}

func (n *batchNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	conn, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	if u, ok := conn.(*net.UDPConn); ok {
		if bc := newBatchConn(u); bc != nil {
			n.add(bc)
			return bc, nil
		}
	}
	return conn, nil
}
