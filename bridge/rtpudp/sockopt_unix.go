//go:build unix

package rtpudp

import (
	"errors"
	"syscall"
)

// msgTrunc is the receive flag of a datagram cut to the buffer size.
const msgTrunc = syscall.MSG_TRUNC

// reuseAddr sets SO_REUSEADDR so that several receivers can bind one
// multicast group and port.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
