package sfu

import "github.com/pion/rtp"

// FanOut exposes a published track's fan-out step (what its forwarding
// goroutine does per packet) to the benchmarks, with its subscriber count.
func FanOut(f *SFU, sessionID, track string) (fanOut func(*rtp.Packet), subscribers func() int) {
	p := f.lookup(sessionID, track)
	if p == nil {
		return nil, nil
	}
	return p.fanOut, p.subscribers
}
