package pull

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// attempt is one subscriber session: a PeerConnection, its session on the
// SFU (made when there is first something to pull) and the bindings of
// the tracks pulled on it.
type attempt struct {
	p  *Pull
	pc *webrtc.PeerConnection

	// Run's goroutine only.
	sid        string
	negotiated bool // an SFU offer was answered
	connected  bool
	bindings   map[*track]*binding
	lastCheck  time.Time // last GET of our own session

	mu      sync.Mutex
	closing bool
	byMid   map[string]*binding
	changed chan struct{} // closed and replaced when byMid grows or a binding starts
	// firstTrack is when the attempt's first track started (gather).
	firstTrack time.Time
	refused    []*binding    // bindings the sink refused, for Run's goroutine
	notify     chan struct{} // a refusal is waiting (capacity 1)
	closed     chan struct{}
	states     chan webrtc.PeerConnectionState
	wg         sync.WaitGroup // readers and RTCP readers
}

func (p *Pull) newAttempt() (*attempt, error) {
	pc, err := p.opts.API.NewPeerConnection()
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	a := &attempt{
		p: p, pc: pc, bindings: map[*track]*binding{}, byMid: map[string]*binding{},
		changed: make(chan struct{}), notify: make(chan struct{}, 1), closed: make(chan struct{}),
		states: make(chan webrtc.PeerConnectionState, 16),
	}
	pc.OnTrack(a.onTrack)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		select {
		case a.states <- st:
		default:
		}
	})
	return a, nil
}

// attempt runs one subscriber session until it fails, everything pulled
// ended, or ctx is done.
func (p *Pull) attempt(ctx context.Context) (wasLive bool, err error) {
	a, err := p.newAttempt()
	if err != nil {
		return false, err
	}
	defer a.close()
	tick := time.NewTicker(min(p.opts.PollInterval, maxTick))
	defer tick.Stop()
	var connectBy, grace <-chan time.Time
	armed := false
	for {
		now := time.Now()
		pl, perr := p.plan(ctx, now)
		if err := a.reconcile(ctx, pl); err != nil {
			return wasLive, err
		}
		if perr != nil {
			return wasLive, perr
		}
		if a.negotiated && !armed {
			armed = true
			connectBy = time.After(p.opts.ConnectTimeout)
		}
		if err := a.checkSession(ctx, now); err != nil {
			return wasLive, err
		}
		a.sampleStats(false)
		p.setState(a.state(pl), "")

		select {
		case <-ctx.Done():
			return wasLive, ctx.Err()
		case <-tick.C:
		case <-a.notify:
			a.handleRefused()
		case <-connectBy:
			if !a.connected {
				return wasLive, fmt.Errorf("subscriber session %s: not connected to the SFU within %s", a.sid, p.opts.ConnectTimeout)
			}
		case <-grace:
			return wasLive, fmt.Errorf("subscriber session %s: connection to the SFU lost for %s", a.sid, p.opts.DisconnectGrace)
		case st := <-a.states:
			switch st {
			case webrtc.PeerConnectionStateConnected:
				a.connected, grace = true, nil
				if !wasLive {
					wasLive = true
					p.log.Info("connected", "session", a.sid)
				}
			case webrtc.PeerConnectionStateDisconnected:
				a.connected = false
				grace = time.After(p.opts.DisconnectGrace)
			case webrtc.PeerConnectionStateFailed:
				return wasLive, fmt.Errorf("subscriber session %s: ICE/DTLS failed", a.sid)
			case webrtc.PeerConnectionStateClosed:
				return wasLive, fmt.Errorf("subscriber session %s: the peer connection closed", a.sid)
			}
		}
	}
}

// state is the pull's state during an attempt.
func (a *attempt) state(pl plan) string {
	switch {
	case len(a.bindings) > 0 && a.connected:
		return StateLive
	case pl.idle:
		return StateWaiting
	}
	for _, w := range pl.wants {
		if w.t.nfSince.IsZero() && !w.t.refused {
			return StateStarting
		}
	}
	return StateWaiting
}

// reconcile makes the session pull what the plan says: it releases the
// bindings no longer wanted (or wanted from another publisher session),
// removes the tracks that are gone from the sink, and pulls the wanted
// tracks that are not pulled and whose retry time came.
func (a *attempt) reconcile(ctx context.Context, pl plan) error {
	p := a.p
	for t, b := range a.bindings {
		if s, ok := pl.sessionOf(t); !ok || s != b.session {
			a.unbind(b)
		}
	}
	for _, g := range pl.gone {
		if b := a.bindings[g.t]; b != nil {
			a.unbind(b)
		}
		p.endTrack(g.t, g.why)
	}
	now := time.Now()
	var items []rtapi.TrackObject
	var which []want
	for _, w := range pl.wants {
		t := w.t
		if a.bindings[t] != nil || t.refused || (t.nfSession == w.session && now.Before(t.retryAt)) {
			continue
		}
		items = append(items, rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: w.session, TrackName: t.name})
		which = append(which, w)
	}
	if len(items) == 0 {
		return nil
	}
	if a.sid == "" {
		ns, err := p.opts.Client.NewSession(ctx, nil)
		if err != nil {
			return fmt.Errorf("sessions/new: %w", err)
		}
		a.sid = ns.SessionID
		a.lastCheck = now
		p.mu.Lock()
		p.subSession = a.sid
		p.mu.Unlock()
	}
	res, err := p.opts.Client.PullTracks(ctx, a.sid, items, a.answer)
	now = time.Now()
	for i, it := range res {
		if i >= len(which) {
			break
		}
		w := which[i]
		t := w.t
		switch {
		case it.ErrorCode == "" && it.Mid != "":
			a.bind(w, it.Mid)
			t.nfSince, t.nfSession, t.retryAt = time.Time{}, "", time.Time{}
		case it.ErrorCode == rtapi.CodeNotFoundTrack || it.ErrorCode == rtapi.CodeEmptyTrack:
			ierr := realtime.ItemErrors([]rtapi.TrackObject{it})
			if t.nfSession != w.session || t.nfSince.IsZero() {
				t.nfSince, t.nfSession, t.retryWait = now, w.session, notFoundRetry
			}
			if now.Sub(t.nfSince) >= p.opts.NotFoundTimeout {
				return &fatalError{fmt.Errorf("track %s of session %s not found for %s: %w",
					t.name, w.session, p.opts.NotFoundTimeout, ierr)}
			}
			t.retryAt = now.Add(t.retryWait)
			t.retryWait = min(t.retryWait*2, notFoundRetryMax)
			p.mu.Lock()
			t.state, t.session, t.lastErr = TrackWaiting, w.session, ierr.Error()
			p.mu.Unlock()
		default:
			return &fatalError{fmt.Errorf("pull track %s of session %s: %w", t.name, w.session,
				realtime.ItemErrors([]rtapi.TrackObject{it}))}
		}
	}
	if err != nil {
		return fmt.Errorf("tracks/new: %w", err)
	}
	return nil
}

// answer answers an SFU offer (PullTracks calls it) with every ICE
// candidate in the answer: the SFU does no trickle.
func (a *attempt) answer(ctx context.Context, offer rtapi.SessionDescription) (rtapi.SessionDescription, error) {
	if offer.Type != "offer" {
		return rtapi.SessionDescription{}, fmt.Errorf("the SFU sent a %q, want an offer", offer.Type)
	}
	if err := a.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		return rtapi.SessionDescription{}, fmt.Errorf("apply the SFU's offer: %w", err)
	}
	ans, err := a.pc.CreateAnswer(nil)
	if err != nil {
		return rtapi.SessionDescription{}, fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(a.pc)
	if err := a.pc.SetLocalDescription(ans); err != nil {
		return rtapi.SessionDescription{}, fmt.Errorf("set local answer: %w", err)
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-gathered:
	case <-ctx.Done():
		return rtapi.SessionDescription{}, ctx.Err()
	case <-t.C:
		return rtapi.SessionDescription{}, errors.New("ICE gathering did not complete within 5 s")
	}
	a.negotiated = true
	return rtapi.SessionDescription{Type: "answer", SDP: a.pc.LocalDescription().SDP}, nil
}

// bind records a track pulled on mid; its reader starts with OnTrack.
func (a *attempt) bind(w want, mid string) {
	b := &binding{t: w.t, a: a, mid: mid, session: w.session, done: make(chan struct{})}
	a.bindings[w.t] = b
	a.mu.Lock()
	a.byMid[mid] = b
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	if w.t.binds.Add(1) > 1 {
		a.p.log.Info("track pulled again", "track", w.t.name, "session", w.session, "mid", mid)
	}
	a.p.mu.Lock()
	w.t.session = w.session
	a.p.mu.Unlock()
}

// onTrack runs a pulled track's reader: pion calls it on the track's first
// packet, in a goroutine of its own, which the attempt owns from here.
func (a *attempt) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return
	}
	a.wg.Add(1)
	a.mu.Unlock()
	defer a.wg.Done()

	var mid string
	if tr := recv.RTPTransceiver(); tr != nil {
		mid = tr.Mid()
	}
	b := a.waitBinding(mid)
	if b == nil {
		return
	}
	a.mu.Lock()
	if b.stop.Load() || b.started {
		a.mu.Unlock()
		return
	}
	b.started, b.remote = true, remote
	if a.firstTrack.IsZero() {
		a.firstTrack = time.Now()
	}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	defer close(b.done)

	b.ssrc.Store(uint32(remote.SSRC()))
	a.gather(b)
	idx, err := a.p.addToSink(b, remote.Codec())
	if err != nil {
		a.p.mu.Lock()
		b.t.state, b.t.lastErr = TrackRefused, err.Error()
		a.p.mu.Unlock()
		a.mu.Lock()
		a.refused = append(a.refused, b)
		a.mu.Unlock()
		select {
		case a.notify <- struct{}{}:
		default:
		}
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		b.readRTCP(recv)
	}()
	b.t.cur.Store(b)
	defer b.t.cur.CompareAndSwap(b, nil)
	b.read(remote, idx)
}

// gatherWait bounds how long the first track of an attempt waits for the
// others before it enters the sink.
const gatherWait = time.Second

// gather lets a sink learn every track of a pull before the first packet:
// pion starts each track at its own first packet, but a recorder opens one
// file for all of them (audio first would make an audio-only file, then a
// second one when the video comes) and a forward writes one SDP file. So
// a track new to the sink waits, at most gatherWait from the attempt's
// first track, for the attempt's other bound tracks to start (its packets
// wait in pion's buffers meanwhile), and then every started track enters
// the sink together, in mid order. Tracks that were in the sink before (a
// re-pull) do not wait.
func (a *attempt) gather(b *binding) {
	a.p.mu.Lock()
	known := b.t.index >= 0
	a.p.mu.Unlock()
	if known {
		return
	}
	a.mu.Lock()
	deadline := a.firstTrack.Add(gatherWait)
	a.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		a.mu.Lock()
		all, ch := true, a.changed
		var started []*binding
		for _, x := range a.byMid {
			if x.started {
				started = append(started, x)
			} else if !x.stop.Load() {
				all = false
			}
		}
		a.mu.Unlock()
		if all || time.Now().After(deadline) {
			slices.SortFunc(started, func(x, y *binding) int { return strings.Compare(x.mid, y.mid) })
			for _, x := range started {
				if x != b {
					// Its own reader repeats this and gets the same answer.
					_, _ = a.p.addToSink(x, x.remote.Codec())
				}
			}
			return
		}
		select {
		case <-ch:
		case <-timer.C:
		case <-a.closed:
			return
		}
	}
}

// waitBinding returns the binding of a mid, waiting for PullTracks to
// return it (media can arrive first); nil once the attempt closes.
func (a *attempt) waitBinding(mid string) *binding {
	for {
		a.mu.Lock()
		b, ch := a.byMid[mid], a.changed
		a.mu.Unlock()
		if b != nil {
			return b
		}
		select {
		case <-ch:
		case <-a.closed:
			return nil
		}
	}
}

// handleRefused closes the tracks the sink refused; they are not pulled
// again during this Run.
func (a *attempt) handleRefused() {
	a.mu.Lock()
	refused := a.refused
	a.refused = nil
	a.mu.Unlock()
	for _, b := range refused {
		b.t.refused = true
		a.p.log.Warn("track refused by the sink", "track", b.t.name, "err", b.t.lastErrText())
		if a.bindings[b.t] == b {
			a.unbind(b)
		}
	}
}

// unbind stops a binding's reader, closes its mid on the SFU (forced: no
// renegotiation) and leaves its track waiting (still in the sink).
func (a *attempt) unbind(b *binding) {
	delete(a.bindings, b.t)
	a.stopReader(b)
	a.closeMids(b.mid)
	a.p.mu.Lock()
	if b.t.state == TrackPulling {
		b.t.state = TrackWaiting
	}
	a.p.mu.Unlock()
}

// stopReader ends a binding's reader and waits for it, so that nothing
// writes to the sink for it afterwards.
func (a *attempt) stopReader(b *binding) {
	b.stop.Store(true)
	a.mu.Lock()
	started, remote := b.started, b.remote
	a.mu.Unlock()
	if started {
		_ = remote.SetReadDeadline(time.Now()) // wakes a Read waiting for media
		<-b.done
	}
}

// closeMids closes tracks of our session on the SFU, best effort.
func (a *attempt) closeMids(mids ...string) {
	if a.sid == "" || len(mids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiCleanupTimeout)
	defer cancel()
	req := rtapi.CloseTracksRequest{Force: true}
	for _, m := range mids {
		req.Tracks = append(req.Tracks, rtapi.CloseTrackObject{Mid: m})
	}
	if _, err := a.p.opts.Client.CloseTracks(ctx, a.sid, req); err != nil {
		a.p.log.Debug("tracks/close", "session", a.sid, "mids", mids, "err", err)
	}
}

// checkSession reads our own session every PollInterval: a 404 or 410
// means the SFU lost it (restarted, expired it) before ICE noticed.
func (a *attempt) checkSession(ctx context.Context, now time.Time) error {
	if a.sid == "" || now.Sub(a.lastCheck) < a.p.opts.PollInterval {
		return nil
	}
	a.lastCheck = now
	_, err := a.p.opts.Client.Session(ctx, a.sid)
	if code := realtime.StatusOf(err); code == http.StatusNotFound || code == http.StatusGone {
		return fmt.Errorf("subscriber session %s: %w", a.sid, err)
	}
	return nil
}

// sampleStats copies the NACKs and jitter pion's stats interceptor counted
// for each binding (GetStats: once per tick, not per packet); final folds
// the NACKs into the track's total, as the PeerConnection is about to go.
func (a *attempt) sampleStats(final bool) {
	if len(a.bindings) == 0 {
		return
	}
	inbound := map[uint32]webrtc.InboundRTPStreamStats{}
	for _, st := range a.pc.GetStats() {
		if in, ok := st.(webrtc.InboundRTPStreamStats); ok {
			inbound[uint32(in.SSRC)] = in
		}
	}
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	for t, b := range a.bindings {
		if in, ok := inbound[b.ssrc.Load()]; ok && t.cur.Load() == b {
			if t.nacksOf != b { // a new binding counts from 0
				t.nacksDone, t.nacksCur, t.nacksOf = t.nacksDone+t.nacksCur, 0, b
			}
			t.nacksCur = max(t.nacksCur, uint64(in.NACKCount))
			t.jitter = time.Duration(in.Jitter * float64(time.Second))
		}
		if final && t.nacksOf == b {
			t.nacksDone, t.nacksCur, t.nacksOf = t.nacksDone+t.nacksCur, 0, nil
		}
	}
}

// close ends the attempt: its tracks are closed on the SFU, the
// PeerConnection is closed and every reader has returned.
func (a *attempt) close() {
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	close(a.closed)
	var mids []string
	for _, b := range a.bindings {
		b.stop.Store(true)
		mids = append(mids, b.mid)
	}
	a.closeMids(mids...)
	a.sampleStats(true)
	if err := a.pc.Close(); err != nil {
		a.p.log.Debug("close peer connection", "err", err)
	}
	a.wg.Wait()
	a.p.mu.Lock()
	for t := range a.bindings {
		if t.state == TrackPulling {
			t.state = TrackWaiting
		}
	}
	a.p.subSession = ""
	a.p.mu.Unlock()
}

func (t *track) lastErrText() string {
	t.p.mu.Lock()
	defer t.p.mu.Unlock()
	return t.lastErr
}
