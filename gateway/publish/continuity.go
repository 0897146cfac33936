package publish

import "github.com/pion/rtp"

// continuity keeps one outgoing track a single continuous RTP stream while
// its input restarts: an encoder that restarts (new SSRC), a source that is
// reopened, a publisher session that is replaced. On a new input it rebases
// sequence numbers onto last+1 and timestamps onto last plus the wall time
// that passed, so receivers see one stream with a gap in time, not a reset
// their jitter buffer chokes on. It is arithmetic, not luck.
//
// It is used by one goroutine (the source's, for that track): no locks.
type continuity struct {
	clock   uint32 // RTP clock rate
	started bool
	resync  bool
	ssrc    uint32 // current input SSRC

	seqOffset uint16
	tsOffset  uint32

	lastSeq  uint16 // highest output sequence number sent
	lastTS   uint32 // output timestamp of that packet
	lastWall int64  // unix nanos when it was sent
}

// restart makes the next packet rebase, whatever its SSRC.
func (c *continuity) restart() { c.resync = true }

// apply rewrites pkt's sequence number and timestamp in place and strips its
// header extensions (their ids belong to the input's negotiation, not ours).
func (c *continuity) apply(pkt *rtp.Packet, now int64) {
	switch {
	case !c.started:
		c.started = true
		c.ssrc = pkt.SSRC
	case c.resync || pkt.SSRC != c.ssrc:
		c.resync = false
		c.ssrc = pkt.SSRC
		c.seqOffset = c.lastSeq + 1 - pkt.SequenceNumber
		elapsed := uint32(1)
		if d := now - c.lastWall; d > 0 {
			if ticks := uint64(d) * uint64(c.clock) / 1e9; ticks > 1 && ticks < 1<<31 {
				elapsed = uint32(ticks)
			}
		}
		c.tsOffset = c.lastTS + elapsed - pkt.Timestamp
	}
	pkt.SequenceNumber += c.seqOffset
	pkt.Timestamp += c.tsOffset
	pkt.Extension = false
	pkt.Extensions = nil
	if !c.sent() || int16(pkt.SequenceNumber-c.lastSeq) > 0 {
		c.lastSeq = pkt.SequenceNumber
		c.lastTS = pkt.Timestamp
		c.lastWall = now
	}
}

func (c *continuity) sent() bool { return c.lastWall != 0 }
