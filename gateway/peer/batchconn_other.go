//go:build !linux

package peer

import "net"

// gsoCapable: UDP segmentation offload (UDP_SEGMENT) is Linux's.
func gsoCapable(*net.UDPConn) bool { return false }

var gsoCmsgSpace = 0

func putSegmentSize([]byte, int) []byte { return nil }
