package sfu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// session is one PeerConnection of the Realtime API.
type session struct {
	id      string
	sfu     *SFU
	pc      *webrtc.PeerConnection
	limiter *rate.Limiter
	created time.Time

	// mu serializes the API mutations of this session (Cloudflare does too).
	mu sync.Mutex
	// Guarded by mu:
	negotiated  bool // a remote description was applied at least once
	awaitAnswer bool // the SFU made an offer; only renegotiate may follow
	records     []*trackRecord
	subsByMid   map[string]*subscription

	// pubs is read from pion callbacks too.
	pubsMu sync.Mutex
	pubs   map[string]*pubTrack // by mid

	connected     chan struct{}
	connectedOnce sync.Once
	everConnected atomic.Bool
	lostAt        atomic.Int64 // unix nanos when connectivity was lost, 0 if not
	ended         chan struct{}
	endOnce       sync.Once
}

// trackRecord is what GET /sessions/{id} lists.
type trackRecord struct {
	location  string
	mid       string
	sessionID string // remote: the publisher's session
	trackName string
	active    bool
	pub       *pubTrack // local
}

// subscription is one receiving transceiver of a session: what it pulls can
// change (tracks/update); the sequence numbers it sends stay continuous.
type subscription struct {
	mid    string
	sender *webrtc.RTPSender
	rec    *trackRecord
	cur    atomic.Pointer[fwdTrack]
	bound  atomic.Pointer[binding] // the binding written to now, if any

	mu   sync.Mutex
	last *binding // the binding that sent last, for rebasing on a switch

	// Scratch of SentPacket, whose calls do not overlap.
	nackHdr  rtp.Header
	nackExts [4]rtp.Extension
}

// SentPacket implements peer.SentHistory: the subscriber's NACK responder
// asks for packet seq as the subscriber got it, and gets it from the
// history of the published track that sent it (the current one, or the
// one before a switch).
func (s *subscription) SentPacket(seq uint16, hdr, payload []byte) (hl, pl int, pad uint8, ok bool) {
	if b := s.bound.Load(); b != nil {
		if hl, pl, pad, ok = b.sentPacket(seq, &s.nackHdr, s.nackExts[:0], hdr, payload); ok {
			return hl, pl, pad, ok
		}
	}
	s.mu.Lock()
	last := s.last
	s.mu.Unlock()
	if last == nil {
		return 0, 0, 0, false
	}
	return last.sentPacket(seq, &s.nackHdr, s.nackExts[:0], hdr, payload)
}

// rebase makes a new binding continue the sequence numbers and timestamps
// of the previous one, so a subscriber sees one stream across a switch.
func (s *subscription) rebase(b *binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil && s.last.sent.Load() {
		b.rebasing = true
		b.prevSeq = uint16(s.last.lastSeq.Load())
		step := uint32(90000 / 50)
		if cr := s.cur.Load(); cr != nil && cr.pub.codec.ClockRate != 0 {
			step = cr.pub.codec.ClockRate / 50
		}
		b.prevTS = s.last.lastTS.Load() + step
	}
}

func (s *subscription) remember(b *binding) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.sent.Load() {
		s.last = b
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (f *SFU) newSession() (*session, error) {
	pc, err := f.api.NewPeerConnection()
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	s := &session{
		id: newID(), sfu: f, pc: pc, created: time.Now(),
		limiter:   rate.NewLimiter(rate.Limit(f.opts.RateLimit), int(max(f.opts.RateLimit, 1))),
		subsByMid: map[string]*subscription{},
		pubs:      map[string]*pubTrack{},
		connected: make(chan struct{}),
		ended:     make(chan struct{}),
	}
	pc.OnTrack(s.onTrack)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.everConnected.Store(true)
			s.lostAt.Store(0)
			s.connectedOnce.Do(func() { close(s.connected) })
			// What this session pulls can be shown from now on: a keyframe
			// asked for before (at Bind) went out before the transport could
			// carry it.
			go s.requestKeyframes()
		case webrtc.PeerConnectionStateDisconnected:
			s.lostAt.CompareAndSwap(0, time.Now().UnixNano())
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			// Never close the PeerConnection from inside its callback.
			go f.expire(s, "peer connection "+st.String())
		}
	})
	return s, nil
}

// requestKeyframes asks the publishers of every track the session pulls
// for a keyframe (coalesced per publisher).
func (s *session) requestKeyframes() {
	s.mu.Lock()
	var pubs []*pubTrack
	for _, sub := range s.subsByMid {
		if f := sub.cur.Load(); f != nil {
			pubs = append(pubs, f.pub)
		}
	}
	s.mu.Unlock()
	for _, p := range pubs {
		p.requestKeyframe()
	}
}

// onTrack runs on a publisher's first packet of a mid.
func (s *session) onTrack(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	var mid string
	for _, t := range s.pc.GetTransceivers() {
		if t.Receiver() == receiver {
			mid = t.Mid()
			break
		}
	}
	if mid == "" {
		return
	}
	s.pubFor(mid, remote.Kind()).attach(remote, receiver)
}

// pubFor returns the published track of a mid, making it on first sight.
func (s *session) pubFor(mid string, kind webrtc.RTPCodecType) *pubTrack {
	s.pubsMu.Lock()
	defer s.pubsMu.Unlock()
	p, ok := s.pubs[mid]
	if !ok || p.isClosed() {
		p = newPubTrack(s, mid, kind)
		s.pubs[mid] = p
	}
	return p
}

func (s *session) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

// apiError is an error with its HTTP status and Realtime error code.
type apiError struct {
	status int
	code   string
	desc   string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.desc) }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, desc: fmt.Sprintf(format, args...)}
}

// readyForMutation applies the API's ordering rules before a mutation: an
// SFU offer must be answered first, and a negotiated session must be
// connected (waiting up to ConnectWait).
func (s *session) readyForMutation(ctx context.Context) *apiError {
	if s.awaitAnswer {
		return errf(400, rtapi.CodeInvalidParams,
			"the SFU's last offer has not been answered: PUT the answer to /renegotiate first")
	}
	if !s.negotiated {
		return nil
	}
	t := time.NewTimer(s.sfu.opts.ConnectWait)
	defer t.Stop()
	select {
	case <-s.connected:
		return nil
	case <-s.ended:
		return errf(410, rtapi.CodeSessionError, "session has ended")
	case <-t.C:
		return errf(425, rtapi.CodeSessionError,
			"session is not connected yet (waited %s for ICE/DTLS): finish the session setup first", s.sfu.opts.ConnectWait)
	case <-ctx.Done():
		return errf(499, rtapi.CodeSessionError, "request cancelled")
	}
}

// applyOffer sets a remote offer and returns the SFU's answer, with every
// ICE candidate in it (Cloudflare's SFU does no trickle).
func (s *session) applyOffer(sd *rtapi.SessionDescription, prepare func() *apiError) (*rtapi.SessionDescription, *apiError) {
	if sd.Type != "offer" {
		return nil, errf(400, rtapi.CodeInvalidSessionDescription, "sessionDescription.type is %q, want \"offer\"", sd.Type)
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sd.SDP}); err != nil {
		return nil, errf(400, rtapi.CodeInvalidSessionDescription, "cannot apply the offer: %v", err)
	}
	s.negotiated = true
	if prepare != nil {
		if e := prepare(); e != nil {
			// Keep the signalling state sane: answer anyway.
			_, _ = s.answer()
			return nil, e
		}
	}
	return s.answer()
}

func (s *session) answer() (*rtapi.SessionDescription, *apiError) {
	ans, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return nil, errf(400, rtapi.CodeInvalidSessionDescription, "cannot answer the offer: %v", err)
	}
	return s.setLocal(ans)
}

func (s *session) offer() (*rtapi.SessionDescription, *apiError) {
	off, err := s.pc.CreateOffer(nil)
	if err != nil {
		return nil, errf(500, rtapi.CodeInternal, "create offer: %v", err)
	}
	sd, e := s.setLocal(off)
	if e == nil {
		s.awaitAnswer = true
	}
	return sd, e
}

func (s *session) setLocal(d webrtc.SessionDescription) (*rtapi.SessionDescription, *apiError) {
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(d); err != nil {
		return nil, errf(500, rtapi.CodeInternal, "set local description: %v", err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return nil, errf(503, rtapi.CodeTransportUnavailable, "ICE gathering did not complete")
	}
	ld := s.pc.LocalDescription()
	return &rtapi.SessionDescription{Type: ld.Type.String(), SDP: ld.SDP}, nil
}

func (s *session) transceiverByMid(mid string) *webrtc.RTPTransceiver {
	for _, t := range s.pc.GetTransceivers() {
		if t.Mid() == mid {
			return t
		}
	}
	return nil
}

// addLocal publishes the named tracks of the last applied offer.
func (s *session) addLocal(items []rtapi.TrackObject, autoDiscover bool) []rtapi.TrackObject {
	out := make([]rtapi.TrackObject, 0, len(items))
	claimed := map[string]bool{}
	for _, it := range items {
		res := rtapi.TrackObject{Location: rtapi.LocationLocal, Mid: it.Mid, TrackName: it.TrackName}
		if e := s.publish(it.Mid, it.TrackName); e != nil {
			res.ErrorCode, res.ErrorDescription = e.code, e.desc
		}
		claimed[it.Mid] = true
		out = append(out, res)
	}
	if autoDiscover {
		for _, t := range s.pc.GetTransceivers() {
			mid := t.Mid()
			if mid == "" || claimed[mid] || t.Receiver() == nil {
				continue
			}
			if d := t.Direction(); d != webrtc.RTPTransceiverDirectionRecvonly && d != webrtc.RTPTransceiverDirectionSendrecv {
				continue
			}
			if s.publishedMid(mid) {
				continue
			}
			name := newID()
			res := rtapi.TrackObject{Location: rtapi.LocationLocal, Mid: mid, TrackName: name}
			if e := s.publish(mid, name); e != nil {
				res.ErrorCode, res.ErrorDescription = e.code, e.desc
			}
			out = append(out, res)
		}
	}
	return out
}

func (s *session) publishedMid(mid string) bool {
	for _, r := range s.records {
		if r.location == rtapi.LocationLocal && r.mid == mid && r.active {
			return true
		}
	}
	return false
}

func (s *session) publish(mid, name string) *apiError {
	if name == "" {
		return errf(400, rtapi.CodeInvalidTrack, "trackName is required")
	}
	if mid == "" {
		return errf(400, rtapi.CodeInvalidTrack, "mid is required for a local track with an offer")
	}
	t := s.transceiverByMid(mid)
	if t == nil || t.Receiver() == nil {
		return errf(400, rtapi.CodeInvalidTrack, "mid %q is not a receiving media section of the offer", mid)
	}
	if s.publishedMid(mid) {
		return errf(400, rtapi.CodeRepeatedLocalTrack, "mid %q is already published", mid)
	}
	p := s.pubFor(mid, t.Kind())
	p.announced = time.Now()
	p.name.Store(&name)
	if err := s.sfu.register(s.id, name, p); err != nil {
		p.name.Store(nil)
		return errf(400, rtapi.CodeRepeatedLocalTrack, "%v", err)
	}
	s.records = append(s.records, &trackRecord{location: rtapi.LocationLocal, mid: mid, trackName: name, active: true, pub: p})
	return nil
}

// resolvePulls looks every remote item up, waiting up to FirstPacketWait for
// announced tracks that have not sent their first packet yet.
func (s *session) resolvePulls(ctx context.Context, items []rtapi.TrackObject) ([]*pubTrack, []*apiError) {
	pubs := make([]*pubTrack, len(items))
	errs := make([]*apiError, len(items))
	deadline := time.Now().Add(s.sfu.opts.FirstPacketWait)
	for i, it := range items {
		if it.Location != rtapi.LocationRemote {
			errs[i] = errf(400, rtapi.CodeInvalidTrack, "one request is all local or all remote tracks")
			continue
		}
		if it.SessionID == "" || it.TrackName == "" {
			errs[i] = errf(400, rtapi.CodeInvalidTrack, "a remote track needs sessionId and trackName")
			continue
		}
		p := s.sfu.lookup(it.SessionID, it.TrackName)
		if p == nil {
			errs[i] = notFoundTrack()
			continue
		}
		pubs[i] = p
	}
	for i, p := range pubs {
		if p == nil {
			continue
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-p.ready:
		case <-p.closed:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if !p.isReady() || p.isClosed() {
			pubs[i], errs[i] = nil, notFoundTrack()
		}
	}
	return pubs, errs
}

func notFoundTrack() *apiError {
	return errf(200, rtapi.CodeNotFoundTrack,
		"Track not found on remote peer. Make sure the publisher peer is connected and sending packets for this track")
}

func (s *session) newFwd(p *pubTrack) *fwdTrack {
	return &fwdTrack{pub: p, id: p.trackName(), streamID: p.sess.id, subSess: s}
}

// subscribe records a sender that pulls p.
func (s *session) subscribe(sender *webrtc.RTPSender, fwd *fwdTrack, p *pubTrack) *subscription {
	sub := &subscription{sender: sender}
	fwd.sub = sub
	sub.cur.Store(fwd)
	sub.rec = &trackRecord{location: rtapi.LocationRemote, sessionID: p.sess.id, trackName: p.trackName(), active: true}
	s.records = append(s.records, sub.rec)
	// Drain the sender's RTCP, forwarding keyframe requests to whichever
	// publisher the subscription pulls now.
	s.sfu.goFunc(func() {
		peer.DrainKeyframeRequests(sub.sender, func() {
			if f := sub.cur.Load(); f != nil {
				f.pub.requestKeyframe()
			}
		})
	})
	return sub
}

// setMid records the mid of a subscription once the SDP assigned it.
func (s *session) setMid(sub *subscription, mid string) {
	sub.mid = mid
	sub.rec.mid = mid
	s.subsByMid[mid] = sub
}

// pullWithoutOffer adds a sendonly transceiver per found track and returns
// the SFU's offer.
func (s *session) pullWithoutOffer(items []rtapi.TrackObject, pubs []*pubTrack, errs []*apiError) ([]rtapi.TrackObject, *rtapi.SessionDescription, *apiError) {
	type added struct {
		i   int
		t   *webrtc.RTPTransceiver
		sub *subscription
	}
	var adds []added
	for i, p := range pubs {
		if p == nil {
			continue
		}
		fwd := s.newFwd(p)
		var tr *webrtc.RTPTransceiver
		var err error
		if strings.HasPrefix(items[i].Mid, "#") {
			tr, err = s.reuseTransceiver(strings.TrimPrefix(items[i].Mid, "#"), fwd)
		} else {
			dir := webrtc.RTPTransceiverDirectionSendonly
			if items[i].BidirectionalMediaStream {
				dir = webrtc.RTPTransceiverDirectionSendrecv
			}
			tr, err = s.pc.AddTransceiverFromTrack(fwd, webrtc.RTPTransceiverInit{Direction: dir})
		}
		if err != nil {
			errs[i] = errf(200, rtapi.CodeInvalidTrack, "cannot add a transceiver: %v", err)
			continue
		}
		adds = append(adds, added{i, tr, s.subscribe(tr.Sender(), fwd, p)})
	}
	var sd *rtapi.SessionDescription
	if len(adds) > 0 {
		var e *apiError
		if sd, e = s.offer(); e != nil {
			return nil, nil, e
		}
	}
	mids := map[int]string{}
	for _, a := range adds {
		mids[a.i] = a.t.Mid()
		s.setMid(a.sub, a.t.Mid())
	}
	return pullResults(items, errs, mids), sd, nil
}

// reuseTransceiver puts fwd on the transceiver of this session's own local
// track named name (mid "#name", bidirectional media streams).
func (s *session) reuseTransceiver(name string, fwd *fwdTrack) (*webrtc.RTPTransceiver, error) {
	for _, r := range s.records {
		if r.location == rtapi.LocationLocal && r.trackName == name && r.active {
			t := s.transceiverByMid(r.mid)
			if t == nil {
				break
			}
			if t.Sender() != nil {
				return nil, fmt.Errorf("transceiver of %q already sends", name)
			}
			return t, s.setSender(t, fwd)
		}
	}
	return nil, fmt.Errorf("no local track named %q in this session", name)
}

func (s *session) setSender(t *webrtc.RTPTransceiver, fwd *fwdTrack) error {
	sender, err := s.sfu.api.WebRTC().NewRTPSender(fwd, s.pc.SCTP().Transport())
	if err != nil {
		return err
	}
	return t.SetSender(sender, fwd)
}

func pullResults(items []rtapi.TrackObject, errs []*apiError, mids map[int]string) []rtapi.TrackObject {
	out := make([]rtapi.TrackObject, len(items))
	for i, it := range items {
		out[i] = rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: it.SessionID, TrackName: it.TrackName, Mid: mids[i]}
		if errs[i] != nil {
			out[i].Mid = ""
			out[i].ErrorCode, out[i].ErrorDescription = errs[i].code, errs[i].desc
		}
	}
	return out
}

// pullWithOffer binds found tracks to the offer's receiving transceivers
// named by mid, then answers.
func (s *session) pullWithOffer(sd *rtapi.SessionDescription, items []rtapi.TrackObject, pubs []*pubTrack, errs []*apiError) ([]rtapi.TrackObject, *rtapi.SessionDescription, *apiError) {
	mids := map[int]string{}
	answer, e := s.applyOffer(sd, func() *apiError {
		for i, p := range pubs {
			if p == nil {
				continue
			}
			mid := items[i].Mid
			t := s.transceiverByMid(mid)
			if t == nil || t.Kind() != p.kind {
				errs[i] = errf(200, rtapi.CodeInvalidTrack, "mid %q is not a %s media section of the offer", mid, p.kind)
				continue
			}
			if t.Sender() != nil {
				errs[i] = errf(200, rtapi.CodeInvalidTrack, "mid %q already carries a track", mid)
				continue
			}
			fwd := s.newFwd(p)
			if err := s.setSender(t, fwd); err != nil {
				errs[i] = errf(200, rtapi.CodeInvalidTrack, "mid %q: %v", mid, err)
				continue
			}
			s.setMid(s.subscribe(t.Sender(), fwd, p), mid)
			mids[i] = mid
		}
		return nil
	})
	if e != nil {
		return nil, nil, e
	}
	return pullResults(items, errs, mids), answer, nil
}

// closeMid closes one track of this session by mid: a publication or a
// subscription.
func (s *session) closeMid(mid string) *apiError {
	for _, r := range s.records {
		if r.mid != mid || !r.active {
			continue
		}
		r.active = false
		if r.location == rtapi.LocationLocal {
			s.sfu.unregister(s.id, r.trackName, r.pub)
			r.pub.close()
			s.pubsMu.Lock()
			if s.pubs[mid] == r.pub {
				delete(s.pubs, mid)
			}
			s.pubsMu.Unlock()
			return nil
		}
		if sub := s.subsByMid[mid]; sub != nil {
			delete(s.subsByMid, mid)
			_ = sub.sender.ReplaceTrack(nil)
		}
		return nil
	}
	return errf(200, rtapi.CodeCloseTrack, "Track doesn't exist or was already closed")
}

// stopTransceiver stops the transceiver of a closed mid (forced close).
func (s *session) stopTransceiver(mid string) {
	if t := s.transceiverByMid(mid); t != nil {
		_ = t.Stop()
	}
}

// update switches a receiving transceiver to another published track.
func (s *session) update(ctx context.Context, items []rtapi.TrackObject) []rtapi.TrackObject {
	out := make([]rtapi.TrackObject, len(items))
	pubs, errs := s.resolvePulls(ctx, items)
	for i, it := range items {
		out[i] = rtapi.TrackObject{Location: it.Location, Mid: it.Mid, SessionID: it.SessionID, TrackName: it.TrackName}
		fail := func(e *apiError) { out[i].ErrorCode, out[i].ErrorDescription = e.code, e.desc }
		sub := s.subsByMid[it.Mid]
		if sub == nil {
			fail(errf(200, rtapi.CodeUpdateTrack, "mid %q is not a receiving track of this session", it.Mid))
			continue
		}
		if errs[i] != nil {
			fail(errs[i])
			continue
		}
		p := pubs[i]
		if old := sub.cur.Load(); old != nil && old.pub.kind != p.kind {
			fail(errf(200, rtapi.CodeUpdateTrack, "mid %q receives %s, track %q is %s", it.Mid, old.pub.kind, it.TrackName, p.kind))
			continue
		}
		fwd := s.newFwd(p)
		fwd.sub = sub
		prev := sub.cur.Swap(fwd)
		if err := sub.sender.ReplaceTrack(fwd); err != nil {
			sub.cur.Store(prev)
			fail(errf(200, rtapi.CodeUpdateTrack, "cannot switch mid %q: %v", it.Mid, err))
			continue
		}
		sub.rec.active = false
		sub.rec = &trackRecord{location: rtapi.LocationRemote, mid: it.Mid, sessionID: p.sess.id, trackName: p.trackName(), active: true}
		s.records = append(s.records, sub.rec)
	}
	return out
}

// state lists the session's tracks for GET /sessions/{id}.
func (s *session) state() rtapi.SessionStateResponse {
	res := rtapi.SessionStateResponse{Tracks: []rtapi.TrackObject{}, DataChannels: []rtapi.DataChannelObject{}}
	for _, r := range s.records {
		status := rtapi.StatusInactive
		if r.active && (r.pub == nil || !r.pub.isClosed()) {
			status = rtapi.StatusActive
		}
		res.Tracks = append(res.Tracks, rtapi.TrackObject{
			Location: r.location, Mid: r.mid, SessionID: r.sessionID, TrackName: r.trackName, Status: status,
		})
	}
	return res
}
