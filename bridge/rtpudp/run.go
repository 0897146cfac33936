package rtpudp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

// errRunning is returned by a Run called while another runs.
var errRunning = errors.New("already running")

// aLongTimeAgo is a read deadline that unblocks pending reads at once.
var aLongTimeAgo = time.Unix(1, 0)

// Run reads every socket, one goroutine each, and calls fn for every valid
// packet of a track, until ctx is done (it then returns nil) or a socket
// fails (e.g. the Source was closed). It may be called again after it
// returned; the sockets stay open until Close. fn is called from one
// goroutine per port, so from one goroutine per track at most. If ctx
// carries a bridge.Batch, each port's goroutine announces the datagrams
// of one recvmmsg call as a batch, and lingers as it allows (see
// lingerer).
func (s *Source) Run(ctx context.Context, fn bridge.PacketFunc) error {
	if fn == nil {
		return fmt.Errorf("%s: run: nil PacketFunc", s.name)
	}
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: run: %w", s.name, errRunning)
	}
	defer s.running.Store(false)
	if s.closed.Load() {
		return fmt.Errorf("%s: run: %w", s.name, net.ErrClosed)
	}

	batch := bridge.BatchFrom(ctx)
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, p := range s.ports {
		wg.Go(func() {
			if err := s.read(runCtx, p, fn, batch); err != nil {
				cancel(err)
			}
		})
	}
	<-runCtx.Done()
	// Unblock the readers without closing the sockets, wait for them, and
	// leave the sockets ready for the next Run.
	for _, p := range s.ports {
		_ = p.conn.SetReadDeadline(aLongTimeAgo)
	}
	wg.Wait()
	for _, p := range s.ports {
		_ = p.conn.SetReadDeadline(time.Time{})
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%s: %w", s.name, context.Cause(runCtx))
}

// read is the loop of the goroutine owning p's reader state.
func (s *Source) read(ctx context.Context, p *port, fn bridge.PacketFunc, b bridge.Batch) error {
	lg := lingerer{max: b.Linger}
	for {
		n, err := s.readOnce(p, fn, &b)
		if err != nil {
			if stop, err := readError(ctx, p, err); stop {
				return err
			}
			continue
		}
		// Only batched reads gain from a wait; a full batch says more
		// is queued already.
		if lg.max > 0 && p.batch != nil && n < len(p.bufs) {
			lg.after(n)
		}
	}
}

// readOnce waits for datagrams, reads a batch of them (or one with single
// reads) and handles them; it returns how many it read. It does not
// allocate for RTP.
func (s *Source) readOnce(p *port, fn bridge.PacketFunc, b *bridge.Batch) (int, error) {
	if p.batch != nil {
		n, err := p.batch.read()
		if err != nil {
			if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) {
				p.batch = nil // no recvmmsg here: single reads from now on
				return 0, nil
			}
			return 0, err
		}
		announce := n > 1
		if announce && b.Begin != nil {
			b.Begin()
		}
		for i := range n {
			size, flags, from := p.batch.msg(i)
			s.handle(p, p.bufs[i][:size], flags, from, fn)
		}
		if announce && b.End != nil {
			b.End()
		}
		return n, nil
	}
	n, _, flags, from, err := p.conn.ReadMsgUDPAddrPort(p.bufs[0], nil)
	if err != nil {
		return 0, err
	}
	s.handle(p, p.bufs[0][:n], flags, from, fn)
	if p.growTo > 0 {
		p.growReader()
	}
	return 1, nil
}

// lingerer decides whether a port's reader waits before its next read,
// so that one recvmmsg gathers several datagrams (bridge.Batch.Linger).
// At 20,000 packets/s one read returned 1.5 datagrams on average: each
// packet paid a wakeup, a read and, downstream, a write of its own.
//
// It measures the port's packet rate over windows of lingerWindow and,
// while the last window's rate brings at least lingerMinGain datagrams in
// max, makes the reads max apart: after handling a read it sleeps what is
// left of max since the previous wait ended. At 1,000 packets/s (and any
// rate below 2/max) it never waits, nor after a read that filled every
// buffer. A packet is read at most max (plus the sleep's slack,
// lingerSleep) after it arrived. State of the port's reader goroutine
// only.
type lingerer struct {
	max   time.Duration
	start time.Time // the window's start
	pkts  int       // datagrams read in the window
	on    bool      // the last window's rate was high enough
	woke  time.Time // when the last wait ended
}

const (
	lingerWindow  = 50 * time.Millisecond
	lingerMinGain = 2
)

// after accounts for a read of n datagrams and waits if it should.
func (l *lingerer) after(n int) {
	now := time.Now()
	if !l.wait(now, n) {
		return
	}
	if d := l.max - now.Sub(l.woke); d > 0 {
		lingerSleep(min(d, l.max))
		now = time.Now()
	}
	l.woke = now
}

// wait accounts for a read of n datagrams at now and tells whether to
// wait before the next.
func (l *lingerer) wait(now time.Time, n int) bool {
	if l.start.IsZero() {
		l.start = now
	}
	l.pkts += n
	if el := now.Sub(l.start); el >= lingerWindow {
		// pkts/el * max >= lingerMinGain, in integers; a window that
		// spans a pause (el of a second or more) is not fast.
		l.on = el < time.Second && int64(l.pkts)*int64(l.max) >= lingerMinGain*int64(el)
		l.start, l.pkts = now, 0
	}
	return l.on
}

// readError decides whether a read error ends the reader, and with which
// error (nil when ctx is done).
func readError(ctx context.Context, p *port, err error) (stop bool, _ error) {
	if ctx.Err() != nil {
		return true, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		// An ICMP port unreachable for something we sent (a PLI to a
		// sender without an RTCP listener): not a receive problem.
		return false, nil
	}
	return true, fmt.Errorf("read %s: %w", p.local, err)
}

// isRTCP tells RTCP from RTP on a port carrying both (RFC 5761 section 4:
// RTCP packet types 192..223 sit where RTP has marker and payload type).
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// handle processes one datagram. It does not allocate for RTP.
func (s *Source) handle(p *port, b []byte, flags int, from netip.AddrPort, fn bridge.PacketFunc) {
	if flags&msgTrunc != 0 {
		s.bad(p, ReasonTruncated)
		return
	}
	if p.rtpTracks == 0 || (len(p.rtcpTracks) > 0 && isRTCP(b)) {
		s.handleRTCP(p, b, from)
		return
	}
	pkt := &p.pkt
	if r := Validate(b, pkt); r != Valid {
		s.bad(p, r)
		return
	}
	idx := int(p.byPT[pkt.PayloadType]) - 1
	if idx < 0 {
		p.ctr.unknownPT.Add(1)
		return
	}
	t := &s.tracks[idx]
	if !t.seen || pkt.SSRC != t.lastSSRC || from != t.lastFrom {
		t.senderChanged(pkt.SSRC, from)
	}
	t.ctr.packets.Add(1)
	t.ctr.bytes.Add(uint64(len(b)))
	fn(idx, pkt)
}

func (s *Source) bad(p *port, r Reason) {
	p.ctr.bad[r].Add(1)
	s.lastBad.Store(uint32(r))
}

// senderChanged records a new RTP sender (first packet, new SSRC, or new
// source address). Called by the reader of the track's RTP port.
func (t *track) senderChanged(ssrc uint32, from netip.AddrPort) {
	if t.seen {
		if ssrc != t.lastSSRC {
			t.ctr.ssrcChanges.Add(1)
		}
		if from != t.lastFrom {
			t.ctr.senderAddrChanges.Add(1)
		}
	}
	t.seen, t.lastSSRC, t.lastFrom = true, ssrc, from
	t.ctr.ssrc.Store(1<<32 | uint64(ssrc))

	t.mu.Lock()
	defer t.mu.Unlock()
	sd := &t.sender
	switch {
	case sd.haveSSRC && sd.ssrc == ssrc && !sd.rtpFrom.IsValid():
		// First RTP of a sender already known from its RTCP: keep that.
	case sd.haveSSRC && sd.ssrc == ssrc && sd.rtpFrom == from:
	default:
		// Another sender, or the same SSRC from elsewhere (an encoder
		// restarted with a fixed SSRC): its RTCP address and last sender
		// report are no longer the current sender's.
		sd.rtcpFrom = netip.AddrPort{}
		sd.sr = srInfo{}
	}
	sd.ssrc, sd.haveSSRC, sd.rtpFrom = ssrc, true, from
	if !sd.sr.ok {
		// Its sender report may have been read before its first packet.
		if sr, ok := t.rtcpPort.takePending(ssrc); ok {
			sd.sr, sd.rtcpFrom = sr, sr.from
			t.ctr.senderReports.Add(1)
		}
	}
}
