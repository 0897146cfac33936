//go:build !linux

package notify

// monotonicUsec is 0 where there is no systemd: the field is left out.
func monotonicUsec() int64 { return 0 }
