package peer

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoCapable tells whether the kernel segments UDP for this socket
// (UDP_SEGMENT, Linux 4.18 and later): getsockopt fails before.
func gsoCapable(conn *net.UDPConn) bool {
	rc, err := conn.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
	}); err != nil {
		return false
	}
	return serr == nil
}

// gsoCmsgSpace is the room of one UDP_SEGMENT control message.
var gsoCmsgSpace = unix.CmsgSpace(2)

// putSegmentSize writes into b (gsoCmsgSpace bytes) the control message
// that has the kernel cut a datagram's payload into segments of size
// bytes, and returns it.
func putSegmentSize(b []byte, size int) []byte {
	b = b[:gsoCmsgSpace]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}
