package sfu

import "github.com/pion/rtp"

// FanOut exposes a published track's per-packet step (what its forwarding
// goroutine does with each packet it reads: history, then the writes to
// every subscriber, itself or through the shard workers) to tests and
// benchmarks, with its subscriber count and a wait for the shard workers
// to finish what they were handed. Call fanOut only while the track's
// publisher sends nothing: it stands in for the forwarding goroutine.
func FanOut(f *SFU, sessionID, track string) (fanOut func(*rtp.Packet), subscribers func() int, settle func()) {
	p := f.lookup(sessionID, track)
	if p == nil {
		return nil, nil, nil
	}
	fanOut = func(pkt *rtp.Packet) {
		b := p.fan.acquire()
		n, err := pkt.MarshalTo(b.data[:])
		if err != nil {
			p.fan.drop(b)
			return
		}
		p.deliver(b, n)
	}
	return fanOut, p.subscribers, p.drain
}

// SetShardMin sets the subscriber count from which an SFU's tracks spread
// a packet's writes over the shard workers (tracks published afterwards).
func SetShardMin(f *SFU, n int) { f.opts.shardMin = n }

// Shards is how many goroutines write one packet to many subscribers.
func Shards() int { return shards() }

// Sharded reports whether a track's shard workers ever ran.
func Sharded(f *SFU, sessionID, track string) bool {
	p := f.lookup(sessionID, track)
	return p != nil && p.fan.started.Load()
}
