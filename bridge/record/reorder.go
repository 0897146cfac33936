package record

import "github.com/pion/rtp"

// Reorder buffer limits.
const (
	// minSlots is the ring size allocated when a track first needs one (the
	// first packet that arrives out of order); it doubles up to maxSlots.
	minSlots = 64
	// maxSlots bounds the ring (and so a track's memory: slots plus their
	// payload copies, ~1.6 MB at most) and is also the sequence jump that
	// counts as a restart of the sender rather than a loss: 1024 packets
	// is 300 ms at ~30 Mbit/s.
	maxSlots = 1024
	// slotBytes is the least capacity of a slot's payload buffer.
	slotBytes = 1500
)

// releaser receives the packets of a reorder buffer in sequence order.
// lost is the number of packets given up on just before this one (0 when
// the sequence is contiguous); restart says the packet begins a new
// stream (the first packet, a new SSRC or a jump in sequence numbers), so
// whatever came before it is unrelated. arrival is when the packet came
// (Options.Now, in Unix nanoseconds). The payload is valid only during
// the call.
type releaser interface {
	release(seq uint16, ts uint32, marker bool, payload []byte, arrival int64, lost int, restart bool)
}

// slot states.
const (
	slotEmpty    = iota
	slotHeld     // waiting for the packets before it
	slotReleased // already passed on (kept to tell duplicates from late packets)
)

type slot struct {
	seq     uint16
	state   uint8
	marker  bool
	ts      uint32
	arrival int64
	payload []byte // owned copy, its capacity reused
}

// reorder puts one track's packets back in sequence order. It is bounded
// in time, not in packets: a missing packet is waited for until the oldest
// packet held behind it has waited window, so a NACK retransmission that
// comes within the window still lands in its place. Written by hand rather
// than with pion's samplebuilder, which keeps two 65,536-entry pointer
// arrays per track (~1 MiB, see BenchmarkIdleTrackMemory), does not copy
// the packets it holds (the Sink contract reuses them) and is bounded in
// packets rather than time; and jitterbuffer, which blocks on a lost
// packet until told otherwise.
//
// A packet in sequence with nothing held is passed on at once, without a
// copy. The ring is allocated only when a packet first arrives out of
// order, and its payload buffers are reused, so the steady state
// allocates nothing.
type reorder struct {
	window  int64 // ns
	slots   []slot
	started bool
	ssrc    uint32
	next    uint16 // the next sequence number to release
	held    int    // packets in state slotHeld
	ahead   int    // 1 + the distance from next of the farthest held packet
	oldest  int64  // arrival of the oldest held packet, valid when held > 0
	pending int    // packets given up on, reported with the next release

	// counters, read by the owner
	repaired   uint64 // arrived after a later packet, in time to be placed
	late       uint64 // arrived after their place was released or given up
	duplicates uint64 // a copy of a packet already held or released
	lost       uint64 // given up on
	restarts   uint64 // resynchronizations after a new SSRC or a jump
}

// push takes one packet that arrived at now (ns).
func (r *reorder) push(p *rtp.Packet, now int64, out releaser) {
	seq := p.SequenceNumber
	if !r.started || p.SSRC != r.ssrc {
		r.restart(p, now, out)
		return
	}
	diff := int(int16(seq - r.next))
	switch {
	case diff >= maxSlots || diff <= -maxSlots:
		r.restart(p, now, out)
		return
	case diff < 0:
		if s := r.slotOf(seq); s != nil && s.seq == seq && s.state == slotReleased {
			r.duplicates++
		} else {
			r.late++
		}
		return
	case diff == 0 && r.held == 0:
		// In order with nothing waiting: the fast path, no copy.
		if s := r.slotOf(seq); s != nil {
			s.seq, s.state = seq, slotReleased
		}
		r.next++
		lost := r.pending
		r.pending = 0
		out.release(seq, p.Timestamp, p.Marker, p.Payload, now, lost, false)
		return
	}
	if diff >= len(r.slots) {
		r.grow(diff + 1)
	}
	s := &r.slots[int(seq)&(len(r.slots)-1)]
	if s.state == slotHeld && s.seq == seq {
		r.duplicates++
		return
	}
	if s.state == slotHeld {
		// Cannot happen: held packets lie within one ring length of next.
		// Start over rather than lose the held one silently.
		r.restart(p, now, out)
		return
	}
	if diff < r.ahead {
		r.repaired++ // it filled a hole behind a later packet
	} else {
		r.ahead = diff + 1
	}
	s.seq, s.state, s.marker, s.ts, s.arrival = seq, slotHeld, p.Marker, p.Timestamp, now
	if cap(s.payload) < len(p.Payload) {
		// Room for any packet of a usual MTU at once, so that a slot's
		// buffer does not grow packet by packet.
		s.payload = make([]byte, 0, max(len(p.Payload), slotBytes))
	}
	s.payload = append(s.payload[:0], p.Payload...)
	if r.held == 0 {
		r.oldest = now
	}
	r.held++
	if r.drain(out) {
		r.findOldest() // the oldest may just have gone
	}
	r.expire(now, out)
}

// slotOf returns the slot seq maps to, or nil before the ring exists.
func (r *reorder) slotOf(seq uint16) *slot {
	if len(r.slots) == 0 {
		return nil
	}
	return &r.slots[int(seq)&(len(r.slots)-1)]
}

// grow makes the ring hold at least n slots (a power of two, <= maxSlots).
func (r *reorder) grow(n int) {
	size := max(len(r.slots), minSlots)
	for size < n {
		size *= 2
	}
	if size == len(r.slots) {
		return
	}
	ns := make([]slot, size)
	for i := range r.slots {
		s := r.slots[i]
		if s.state == slotEmpty {
			continue
		}
		d := &ns[int(s.seq)&(size-1)]
		if d.state == slotHeld {
			continue // a released entry never displaces a held one
		}
		*d = s
	}
	r.slots = ns
}

// drain releases the held packets that are next in sequence and reports
// whether there were any.
func (r *reorder) drain(out releaser) (released bool) {
	for r.held > 0 {
		s := &r.slots[int(r.next)&(len(r.slots)-1)]
		if s.state != slotHeld || s.seq != r.next {
			return released
		}
		released = true
		s.state = slotReleased
		r.held--
		r.next++
		r.ahead--
		lost := r.pending
		r.pending = 0
		out.release(s.seq, s.ts, s.marker, s.payload, s.arrival, lost, false)
	}
	r.ahead = 0
	return released
}

// expire gives up on the missing packets in front of the held ones while
// the oldest held packet has waited longer than the window.
func (r *reorder) expire(now int64, out releaser) {
	for r.held > 0 && now-r.oldest > r.window {
		r.skipGap()
		r.drain(out)
		r.findOldest()
	}
}

// skipGap declares lost the missing packets up to the next held one.
func (r *reorder) skipGap() {
	for {
		s := &r.slots[int(r.next)&(len(r.slots)-1)]
		if s.state == slotHeld && s.seq == r.next {
			return
		}
		r.pending++
		r.lost++
		r.next++
		r.ahead--
	}
}

// findOldest recomputes the arrival of the oldest held packet.
func (r *reorder) findOldest() {
	if r.held == 0 {
		return
	}
	first := true
	for i := 0; i < r.ahead; i++ {
		seq := r.next + uint16(i)
		s := &r.slots[int(seq)&(len(r.slots)-1)]
		if s.state == slotHeld && s.seq == seq && (first || s.arrival < r.oldest) {
			r.oldest, first = s.arrival, false
		}
	}
}

// flush releases everything held, declaring the gaps lost (the track
// ends, or its sender restarted).
func (r *reorder) flush(out releaser) {
	for r.held > 0 {
		r.skipGap()
		r.drain(out)
	}
	r.ahead = 0
}

// tick gives up on gaps whose window has passed although no packet came
// (the sender paused or stopped).
func (r *reorder) tick(now int64, out releaser) { r.expire(now, out) }

// restart flushes and begins a new stream at p.
func (r *reorder) restart(p *rtp.Packet, now int64, out releaser) {
	if r.started {
		r.flush(out)
		r.restarts++
	}
	for i := range r.slots {
		r.slots[i].state = slotEmpty
	}
	r.started, r.ssrc, r.next, r.pending, r.ahead = true, p.SSRC, p.SequenceNumber+1, 0, 0
	out.release(p.SequenceNumber, p.Timestamp, p.Marker, p.Payload, now, 0, true)
	if s := r.slotOf(p.SequenceNumber); s != nil {
		s.seq, s.state = p.SequenceNumber, slotReleased
	}
}
