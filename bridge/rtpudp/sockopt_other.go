//go:build !unix

package rtpudp

import (
	"strings"
	"syscall"
)

// msgTrunc: truncation is not reported here.
const msgTrunc = 0

// reuseAddr is a no-op here: a multicast group and port have one receiver.
func reuseAddr(_, _ string, _ syscall.RawConn) error { return nil }

func isAddrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}
