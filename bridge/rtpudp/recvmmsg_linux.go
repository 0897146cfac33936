//go:build linux

package rtpudp

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgReader reads up to len(bufs) datagrams per recvmmsg(2) system call
// without allocating.
//
// It is written by hand because golang.org/x/net's ipv4/ipv6
// PacketConn.ReadBatch, the obvious library for this, allocates the source
// address of every message it returns (a *net.UDPAddr and its IP, in
// x/net/internal/socket's parseInetAddr) and has no option to skip it or
// to decode into caller-owned storage, which breaks the rule that the hot
// path does not allocate per packet (DESIGN.md). golang.org/x/sys/unix has
// the constants, Msghdr, Iovec and the raw sockaddr types, but no
// recvmmsg wrapper and (as of v0.41.0) no Mmsghdr type, so both are here.
//
// The socket stays in Go's netpoller: the system call runs inside
// syscall.RawConn.Read on the non-blocking descriptor, and EAGAIN hands
// control back to the poller, which parks the goroutine until the socket
// is readable, a read deadline passes, or the socket is closed. No thread
// blocks in the kernel.
//
// All state is allocated once by newBatchReader and reused by every read;
// it is used by one goroutine at a time (the port's reader).
type mmsgReader struct {
	rc    syscall.RawConn
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	bufs  [][]byte

	used int // messages the last call filled: their Namelen must be reset
	n    int // result of the last recvmmsg, set by recv
	// errno of the last recvmmsg, set by recv; 0 on success.
	errno syscall.Errno
	// recv is r.recvmmsg bound once, so that RawConn.Read does not
	// allocate a closure on every read.
	recv func(fd uintptr) bool

	// The zone (interface name) of the last IPv6 scope ID seen, so that a
	// link-local sender costs one interface lookup, not one per packet.
	zoneID uint32
	zone   string
}

// mmsghdr is struct mmsghdr of <sys/socket.h>. Go pads it to the
// alignment of unix.Msghdr like C does: 64 bytes on 64-bit platforms,
// 32 bytes on 32-bit ones (where Msghdr's lengths are 32-bit).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

const sizeofSockaddrInet6 = uint32(unsafe.Sizeof(unix.RawSockaddrInet6{}))

// newBatchReader returns a reader of conn filling bufs, or nil if conn
// offers no raw access (the caller then reads single datagrams).
func newBatchReader(conn *net.UDPConn, bufs [][]byte) *mmsgReader {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	r := &mmsgReader{
		rc:    rc,
		hdrs:  make([]mmsghdr, len(bufs)),
		iovs:  make([]unix.Iovec, len(bufs)),
		names: make([]unix.RawSockaddrInet6, len(bufs)),
		bufs:  bufs,
	}
	for i := range r.hdrs {
		r.iovs[i].Base = &bufs[i][0]
		r.iovs[i].SetLen(len(bufs[i]))
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Namelen = sizeofSockaddrInet6
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
	}
	r.recv = r.recvmmsg
	return r
}

// read waits for at least one datagram and reads as many as are queued,
// up to len(bufs), without allocating. Message i is then described by
// msg(i) and its bytes are in bufs[i]. It returns the errors of
// syscall.RawConn.Read (net.ErrClosed, os.ErrDeadlineExceeded, wrapped)
// and of recvmmsg (as an *os.SyscallError).
func (r *mmsgReader) read() (int, error) {
	// msg_namelen is in and out: the kernel shrank it to the size of each
	// address it wrote (16 for an IPv4 sender).
	for i := range r.used {
		r.hdrs[i].hdr.Namelen = sizeofSockaddrInet6
	}
	r.used = len(r.hdrs) // until we know better
	r.n, r.errno = 0, 0
	if err := r.rc.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	r.used = r.n
	return r.n, nil
}

// recvmmsg is the function RawConn.Read calls with the descriptor: true
// when done (datagrams read, or an error to report), false to wait until
// the socket is readable.
func (r *mmsgReader) recvmmsg(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
			unix.MSG_DONTWAIT, 0 /* no timeout */, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN: // == EWOULDBLOCK on Linux
			return false
		default:
			r.errno = e
			return true
		}
	}
}

// msg describes datagram i of the last read: its length, its receive
// flags (MSG_TRUNC when it was cut to the buffer size) and its source
// address, decoded as net.UDPConn.ReadMsgUDPAddrPort would: an IPv4
// address from an IPv4 socket, a 16-byte IPv6 address (IPv4-mapped for an
// IPv4 sender on a dual-stack socket, not unmapped) with its zone from an
// IPv6 socket.
func (r *mmsgReader) msg(i int) (n, flags int, from netip.AddrPort) {
	h := &r.hdrs[i]
	n = min(int(h.len), len(r.bufs[i]))
	flags = int(h.hdr.Flags)
	sa := &r.names[i]
	switch {
	case sa.Family == unix.AF_INET && h.hdr.Namelen >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		from = netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(&sa4.Port))
	case sa.Family == unix.AF_INET6 && h.hdr.Namelen >= unix.SizeofSockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(r.zoneName(sa.Scope_id))
		}
		from = netip.AddrPortFrom(a, ntohs(&sa.Port))
	}
	return n, flags, from
}

// ntohs reads a port stored in network byte order.
func ntohs(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// zoneName names the interface of an IPv6 scope ID as the net package
// does (its name, else the number), remembering the last one.
func (r *mmsgReader) zoneName(id uint32) string {
	if id != r.zoneID || r.zone == "" {
		r.zoneID = id
		if ifi, err := net.InterfaceByIndex(int(id)); err == nil && ifi.Name != "" {
			r.zone = ifi.Name
		} else {
			r.zone = strconv.FormatUint(uint64(id), 10)
		}
	}
	return r.zone
}

// lingerSleep waits d in a nanosleep(2) of the calling thread, for the
// reader's linger (lingerer). time.Sleep cannot wait much less than a
// millisecond in a process with nothing else to do: the runtime then waits
// for its next timer in epoll_wait, whose timeout is whole milliseconds
// (runtime/netpoll_epoll.go rounds up to 1 ms). On the test machine a
// 250 µs time.Sleep took 1.09 ms (median of 2000), a nanosleep 325 µs
// (the kernel's 50 µs timer slack included; TestLingerSleep logs it). The
// thread blocks meanwhile; the runtime hands its P to another thread only
// if other goroutines wait to run. An interrupted sleep is only shorter.
func lingerSleep(d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	_ = unix.Nanosleep(&ts, nil)
}
