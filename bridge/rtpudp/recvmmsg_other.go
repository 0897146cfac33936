//go:build !linux

package rtpudp

import (
	"net"
	"net/netip"
	"time"
)

// mmsgReader exists on Linux only (recvmmsg). Elsewhere every port reads
// single datagrams with net.UDPConn.ReadMsgUDPAddrPort, which does not
// allocate; golang.org/x/net's ReadBatch would not batch there either (it
// reads one message per call outside Linux) and would allocate its
// address.
type mmsgReader struct{}

// newBatchReader returns nil: single reads.
func newBatchReader(*net.UDPConn, [][]byte) *mmsgReader { return nil }

func (*mmsgReader) read() (int, error) { panic("rtpudp: no batched reads on this platform") }

func (*mmsgReader) msg(int) (n, flags int, from netip.AddrPort) {
	panic("rtpudp: no batched reads on this platform")
}

// lingerSleep waits d (the reader's linger; lingering only follows
// batched reads, which are Linux's).
func lingerSleep(d time.Duration) { time.Sleep(d) }
