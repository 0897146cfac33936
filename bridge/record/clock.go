package record

import "sync/atomic"

// maxSkew is how far a frame's mapped time may lie from its arrival before
// the mapping is considered broken (a timestamp jump without a sequence
// jump) and re-anchored at the arrival.
const maxSkew = 10 * 1e9

// domain is the set of tracks whose sender reports share one NTP clock:
// the tracks of one publisher session. off maps that clock to ours
// (local = sender NTP + off). It only grows: each track's first sender
// report proposes the offset that keeps that track continuous, and the
// largest wins, so a track switching from arrival times to sender reports
// only ever jumps forward in its file, never back.
type domain struct {
	set atomic.Bool
	off atomic.Int64
}

func (d *domain) raise(v int64) {
	if d.set.CompareAndSwap(false, true) {
		d.off.Store(v)
		return
	}
	for {
		cur := d.off.Load()
		if v <= cur || d.off.CompareAndSwap(cur, v) {
			return
		}
	}
}

// clock maps one track's RTP timestamps to wall time (Unix ns, our clock).
// Until the track has a sender report, a timestamp maps through the
// arrival of the track's first frame; from its first sender report on,
// through the sender's NTP time plus the domain's offset, which puts the
// tracks of one sender in sync whatever their network or encoder delays.
type clock struct {
	rate int64
	dom  *domain

	have bool // last/ext valid
	last uint32
	ext  int64 // unwrapped last

	anchored   bool
	anchorExt  int64
	anchorWall int64

	sr    bool
	srExt int64
	srNTP int64 // sender's clock, Unix ns

	pend    bool // a sender report that came before the first frame
	pendNTP int64
	pendRTP uint32
}

// restart forgets the stream (its sender restarted).
func (c *clock) restart() {
	c.have, c.anchored, c.sr = false, false, false
}

func (c *clock) unwrap(ts uint32) int64 {
	if !c.have {
		c.have, c.last, c.ext = true, ts, int64(ts)
		return c.ext
	}
	c.ext += int64(int32(ts - c.last))
	c.last = ts
	return c.ext
}

// ticks converts a timestamp difference to ns without overflowing on long
// recordings.
func (c *clock) ticks(d int64) int64 {
	return d/c.rate*1e9 + d%c.rate*1e9/c.rate
}

// wall maps a frame's timestamp; arrival is when its first packet came.
// When the mapping goes through sender reports, dom is the domain whose
// offset is part of the result: the writer re-adds the offset current
// when it writes the frame (base + dom.off), so frames mapped while the
// offset was still settling (a track whose first report came later)
// land where the settled offset puts them.
//
// floor is the track's last wall time: a new anchor (after a restart of
// the sender) is put no earlier, so the track goes on forward in time.
func (c *clock) wall(ts uint32, arrival, floor int64) (w, base int64, dom *domain) {
	ext := c.unwrap(ts)
	if !c.anchored {
		c.anchored, c.anchorExt, c.anchorWall = true, ext, max(arrival, floor)
		if c.pend {
			c.pend = false
			c.senderReport(c.pendNTP, c.pendRTP)
		}
	}
	w = c.mapExt(ext)
	if d := w - arrival; d > maxSkew || d < -maxSkew {
		c.sr = false
		c.anchorExt, c.anchorWall = ext, max(arrival, floor)
		w = c.anchorWall
	}
	if c.sr {
		return w, c.srNTP + c.ticks(ext-c.srExt), c.dom
	}
	return w, w, nil
}

func (c *clock) mapExt(ext int64) int64 {
	if c.sr {
		return c.srNTP + c.ticks(ext-c.srExt) + c.dom.off.Load()
	}
	return c.anchorWall + c.ticks(ext-c.anchorExt)
}

// senderReport takes an RTCP sender report: ntp (Unix ns on the sender's
// clock) corresponds to rtpTime.
func (c *clock) senderReport(ntp int64, rtpTime uint32) {
	if !c.anchored {
		c.pend, c.pendNTP, c.pendRTP = true, ntp, rtpTime
		return
	}
	ext := c.ext + int64(int32(rtpTime-c.last))
	if !c.sr {
		// Continuity for this track: the offset that maps the report's
		// timestamp where the arrival mapping does now.
		c.dom.raise(c.mapExt(ext) - ntp)
		c.sr = true
		c.srExt, c.srNTP = ext, ntp
		return
	}
	// Later reports only correct drift beyond srResync: a sender's reports
	// carry jitter (an SFU extrapolates them from its last packet), and
	// following each one would make frame durations irregular.
	if d := ntp - (c.srNTP + c.ticks(ext-c.srExt)); d > srResync || d < -srResync {
		c.srExt, c.srNTP = ext, ntp
	}
}

// srResync is how far a sender report may disagree with the mapping the
// track follows before the mapping moves to it.
const srResync = 50 * 1e6

// ntpToUnix converts an RFC 3550 64-bit NTP time to Unix ns.
func ntpToUnix(ntp uint64) int64 {
	const epochDelta = 2208988800 // 1900-01-01 to 1970-01-01 in seconds
	secs := int64(ntp>>32) - epochDelta
	frac := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return secs*1e9 + frac
}
