package rtpudp

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr must have the size of C's struct mmsghdr for the kernel to
// find the second message where it is.
func TestMmsghdrSize(t *testing.T) {
	want := uintptr(64) // msghdr (56) + msg_len (4) + padding (4)
	if unsafe.Sizeof(uintptr(0)) == 4 {
		want = 32 // msghdr (28) + msg_len (4)
	}
	if got := unsafe.Sizeof(mmsghdr{}); got != want {
		t.Fatalf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
}

// msg decodes source addresses as the net package does, zones included,
// without allocating.
func TestMsgAddressDecoding(t *testing.T) {
	lo := "1"
	if ifi, err := net.InterfaceByIndex(1); err == nil {
		lo = ifi.Name
	}
	cases := []struct {
		sa   func(*unix.RawSockaddrInet6) uint32
		want netip.AddrPort
	}{
		{func(sa *unix.RawSockaddrInet6) uint32 {
			sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
			sa4.Family, sa4.Addr = unix.AF_INET, [4]byte{192, 0, 2, 7}
			sa4.Port = htons(5004)
			return unix.SizeofSockaddrInet4
		}, netip.MustParseAddrPort("192.0.2.7:5004")},
		{func(sa *unix.RawSockaddrInet6) uint32 {
			sa.Family, sa.Addr, sa.Port = unix.AF_INET6, netip.MustParseAddr("2001:db8::1").As16(), htons(65535)
			return unix.SizeofSockaddrInet6
		}, netip.MustParseAddrPort("[2001:db8::1]:65535")},
		{func(sa *unix.RawSockaddrInet6) uint32 {
			sa.Family, sa.Addr, sa.Port = unix.AF_INET6, netip.MustParseAddr("::ffff:192.0.2.7").As16(), htons(1)
			return unix.SizeofSockaddrInet6
		}, netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr("192.0.2.7").As16()), 1)},
		{func(sa *unix.RawSockaddrInet6) uint32 {
			sa.Family, sa.Addr, sa.Port = unix.AF_INET6, netip.MustParseAddr("fe80::1").As16(), htons(5006)
			sa.Scope_id = 1
			return unix.SizeofSockaddrInet6
		}, netip.AddrPortFrom(netip.MustParseAddr("fe80::1%"+lo), 5006)},
		{func(sa *unix.RawSockaddrInet6) uint32 {
			sa.Family, sa.Addr, sa.Port = unix.AF_INET6, netip.MustParseAddr("fe80::2").As16(), htons(5006)
			sa.Scope_id = 1 << 30 // no such interface: the number
			return unix.SizeofSockaddrInet6
		}, netip.AddrPortFrom(netip.MustParseAddr("fe80::2%"+strconv.Itoa(1<<30)), 5006)},
		{func(sa *unix.RawSockaddrInet6) uint32 { return 0 }, netip.AddrPort{}}, // no address
	}
	r := newBatchReader(listenUDP(t, "127.0.0.1:0"), [][]byte{make([]byte, 100)})
	for i, c := range cases {
		r.names[0] = unix.RawSockaddrInet6{}
		r.hdrs[0].hdr.Namelen = c.sa(&r.names[0])
		r.hdrs[0].len = 42
		r.hdrs[0].hdr.Flags = unix.MSG_TRUNC
		n, flags, from := r.msg(0)
		if n != 42 || flags != unix.MSG_TRUNC || from != c.want {
			t.Errorf("case %d: %d %#x %s, want 42 %#x %s", i, n, flags, from, unix.MSG_TRUNC, c.want)
		}
		if allocs := testing.AllocsPerRun(100, func() { _, _, from = r.msg(0) }); allocs != 0 {
			t.Errorf("case %d: %v allocations", i, allocs)
		}
	}
}

func htons(v uint16) uint16 {
	var p uint16
	b := (*[2]byte)(unsafe.Pointer(&p))
	b[0], b[1] = byte(v>>8), byte(v)
	return p
}

// The linger's sleep allocates nothing and waits about what it is asked
// (not the millisecond a short time.Sleep can take).
func TestLingerSleep(t *testing.T) {
	if a := testing.AllocsPerRun(20, func() { lingerSleep(10 * time.Microsecond) }); a != 0 {
		t.Errorf("%v allocations", a)
	}
	start := time.Now()
	const n = 20
	for range n {
		lingerSleep(250 * time.Microsecond)
	}
	if avg := time.Since(start) / n; avg < 250*time.Microsecond {
		t.Errorf("a 250 µs linger took %s", avg)
	} else {
		t.Logf("a 250 µs linger took %s on average", avg)
	}
}
