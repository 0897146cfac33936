package wish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// signalTimeout bounds the SFU calls and the ICE gathering of one POST.
const signalTimeout = 15 * time.Second

// postWHIP serves POST /whip/{stream}: an SDP offer in, 201 with the answer.
func (h *Handler) postWHIP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("stream")
	st, found := h.o.Registry.Lookup(name)
	if !h.authorize(w, r, "whip", st) {
		return
	}
	switch {
	case !found && !streamName.MatchString(name):
		httpError(w, http.StatusNotFound, "no stream %q: a stream name is 1 to 64 letters, digits, '.', '_' or '-'", name)
		return
	case !found && !h.settings().AllowAnyStream:
		httpError(w, http.StatusNotFound, "no stream %q (whip.allow_any_stream is false: only configured streams take publishers)", name)
		return
	case found && !st.Ingest():
		httpError(w, http.StatusConflict, "stream %q is published from its configured source; WHIP cannot publish to it", name)
		return
	}
	if ct := mediaType(r); ct != typeSDP {
		w.Header().Set("Accept-Post", typeSDP)
		httpError(w, http.StatusUnsupportedMediaType, "a WHIP offer is %s, not %q", typeSDP, r.Header.Get("Content-Type"))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	offer := string(body)
	medias, err := parseSDP(offer)
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad SDP offer: %v", err)
		return
	}
	kinds := map[string]int{}
	for _, m := range medias {
		if m.sends() {
			kinds[m.kind]++
		}
	}
	switch {
	case len(kinds) == 0:
		httpError(w, http.StatusBadRequest, "bad SDP offer: it sends no audio or video (a WHIP offer is sendonly)")
		return
	case kinds[bridge.KindAudio] > 1 || kinds[bridge.KindVideo] > 1:
		httpError(w, http.StatusBadRequest, "bad SDP offer: a stream has at most one audio and one video track")
		return
	}
	if !found {
		if st, err = h.o.Registry.Create(name); err != nil {
			httpError(w, http.StatusConflict, "cannot create stream %q: %v", name, err)
			return
		}
	}

	st.op.Lock()
	defer st.op.Unlock()
	st.mu.Lock()
	old, removed := st.pub, st.removed
	st.mu.Unlock()
	switch {
	case removed:
		httpError(w, http.StatusServiceUnavailable, "stream %q went away; publish again", name)
		return
	case old != nil && h.settings().OnConflict != ConflictReplace:
		httpError(w, http.StatusConflict, "stream %q already has a publisher (whip.on_conflict is reject)", name)
		return
	}
	var pub publisher
	if st.o.WHIPMode == ModeProxy {
		pub = h.publishProxy(w, r, st, offer, medias)
	} else {
		pub = h.publishRelay(w, r, st, offer, medias, old != nil)
	}
	if pub == nil {
		h.dropIfIdle(st)
		return
	}
	if old != nil {
		h.log.Info("publisher replaced", "stream", name, "old", old.base().remote, "new", r.RemoteAddr)
		old.finish("replaced by a new publisher")
	}
}

// dropIfIdle removes a dynamic stream that has no publisher; st.op is held.
func (h *Handler) dropIfIdle(st *Stream) {
	if !st.o.Dynamic || !st.idle() {
		return
	}
	st.mu.Lock()
	already := st.removed
	st.removed = true
	st.mu.Unlock()
	if !already {
		h.o.Registry.Remove(st)
		st.mu.Lock()
		relay := st.relay
		st.relay = nil
		st.mu.Unlock()
		if relay != nil {
			h.dropRelay(relay)
		}
		st.endViewers("the stream went away")
	}
}

// publisherLeft is what happens when st's publisher ended without a
// replacement; st.op is held.
func (h *Handler) publisherLeft(st *Stream) {
	st.mu.Lock()
	relay := st.relay
	st.mu.Unlock()
	if relay != nil {
		relay.stop() // closes the tracks on the SFU
	}
	// Proxy viewers pull the tracks of the publisher's own session; they
	// cannot follow a new one. Relay viewers wait for the next publisher.
	st.mu.Lock()
	var proxyViewers []resource
	for v := range st.viewers {
		if _, ok := v.(*whepProxy); ok {
			proxyViewers = append(proxyViewers, v)
		}
	}
	st.mu.Unlock()
	for _, v := range proxyViewers {
		h.goFunc(func() { v.end("the publisher left") })
	}
	h.dropIfIdle(st)
}

// ---- relay ----

// relayIngest is a relay WHIP stream's publication: a Source of the
// publishers' tracks and the publish.Stream that publishes it, kept while
// publishers keep the same codecs.
type relayIngest struct {
	src     *Source
	stream  *publish.Stream
	release func() // releases the publication's own UDP port

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs the publish.Stream unless it runs already.
func (ri *relayIngest) start(h *Handler) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	if ri.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan struct{})
	ri.cancel, ri.done = cancel, done
	h.goFunc(func() {
		defer close(done)
		if err := ri.stream.Run(ctx); err != nil {
			h.log.Warn("relay publication stopped", "stream", ri.stream.Name(), "err", err)
		}
	})
}

// stop ends the publish.Stream's run (it closes its tracks on the SFU)
// and waits for it.
func (ri *relayIngest) stop() {
	ri.mu.Lock()
	cancel, done := ri.cancel, ri.done
	ri.cancel, ri.done = nil, nil
	ri.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// close stops the publication for good and releases its UDP port.
func (ri *relayIngest) close() {
	ri.stop()
	ri.release()
}

func (ri *relayIngest) running() bool {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	return ri.cancel != nil
}

func (ri *relayIngest) published() (string, []PublishedTrack, bool) {
	st := ri.stream.Status()
	if st.State != publish.StateLive || st.SessionID == "" {
		return "", nil, false
	}
	out := make([]PublishedTrack, len(st.Tracks))
	for i, t := range st.Tracks {
		out[i] = PublishedTrack{Name: t.Name, Kind: t.Kind, Codec: t.Codec}
	}
	return st.SessionID, out, true
}

// whipRelay is a WHIP resource in relay mode: rtgate's PeerConnection with
// the publisher.
type whipRelay struct {
	resBase
	pc    *webrtc.PeerConnection
	feed  *feed
	relay *relayIngest
	ice   iceState
}

func (p *whipRelay) state() string {
	if p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		return PublisherConnected
	}
	return PublisherConnecting
}

func (p *whipRelay) published() (string, []PublishedTrack, bool) { return p.relay.published() }
func (p *whipRelay) publication() publish.Status                 { return p.relay.stream.Status() }

// publishRelay terminates the publisher's PeerConnection. The tracks are
// those of the stream's current publication when the offer allows (so that
// it continues), else the offer's first codec of each kind. On failure it
// writes the error and returns nil.
func (h *Handler) publishRelay(w http.ResponseWriter, r *http.Request, st *Stream, offer string, medias []media, replacing bool) publisher {
	pc, err := h.o.API.NewPeerConnection()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "cannot make a PeerConnection: %v", err)
		return nil
	}
	p := &whipRelay{pc: pc}
	p.init(h, "whip", st, r)
	ok := false
	defer func() {
		if !ok {
			_ = pc.Close()
		}
	}()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		httpError(w, http.StatusBadRequest, "bad SDP offer: %v", err)
		return nil
	}
	st.mu.Lock()
	cur := st.relay
	st.mu.Unlock()
	var prefer []bridge.Track
	if cur != nil {
		prefer = cur.src.Tracks()
	}
	tracks, mids, err := chooseCodecs(pc, medias, prefer)
	if err != nil {
		httpError(w, http.StatusBadRequest, "cannot accept the offer: %v", err)
		return nil
	}

	relay := cur
	if relay == nil || !sameTracks(relay.src.Tracks(), tracks) {
		if relay, err = h.newRelayIngest(st, tracks); err != nil {
			httpError(w, http.StatusInternalServerError, "cannot publish the offer's tracks: %v", err)
			return nil
		}
		defer func() {
			if !ok {
				h.dropRelay(relay)
			}
		}()
	}
	p.relay = relay
	p.feed = relay.src.newFeed(pc)
	pc.OnTrack(func(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
		for _, t := range pc.GetTransceivers() {
			if t.Receiver() == receiver {
				if i, ok := mids[t.Mid()]; ok {
					relay.src.setRemote(p.feed, i, remote)
				}
			}
		}
		// Read the receiver's RTCP (the publisher's sender reports) so the
		// interceptors see it; it ends with the PeerConnection.
		h.goFunc(func() { drainRTCP(receiver) })
	})
	signal := p.ice.watch(pc)

	ctx, cancel := context.WithTimeout(r.Context(), signalTimeout)
	defer cancel()
	answer, err := answerOffer(ctx, pc)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "cannot answer the offer: %v", err)
		return nil
	}
	if !h.add(p) {
		httpError(w, http.StatusServiceUnavailable, "rtgate is shutting down")
		return nil
	}
	ok = true

	st.mu.Lock()
	previous := st.relay
	st.relay, st.pub = relay, p
	st.mu.Unlock()
	if previous != nil && previous != relay {
		// New codecs: the old publication ends; the new one starts when
		// the publisher connects.
		h.dropRelay(previous)
	}
	relay.src.attach(p.feed)
	if replacing && relay.running() {
		h.log.Info("publisher continues the stream's publication", "stream", st.Name())
	}
	h.goFunc(func() {
		h.superviseICE(p, pc, signal, func() { relay.start(h) })
	})
	h.log.Info("WHIP publisher", "stream", st.Name(), "mode", ModeRelay, "remote", r.RemoteAddr, "tracks", len(tracks))
	p.respondCreated(w, answer)
	return p
}

// newRelayIngest makes the publication of a relay WHIP stream's tracks,
// with its own UDP port toward the SFU.
func (h *Handler) newRelayIngest(st *Stream, tracks []bridge.Track) (*relayIngest, error) {
	api, release, err := h.sfuAPI()
	if err != nil {
		return nil, err
	}
	src := NewSource(tracks)
	ps, err := publish.New(publish.Options{
		Name: st.Name(), Sources: []bridge.Source{src}, VideoTrack: st.o.VideoTrack, AudioTrack: st.o.AudioTrack,
		Client: h.o.Client, API: api, MinBackoff: h.o.PublishBackoff, Logger: h.log.With("component", "publish"),
		// The Source coalesces the keyframe requests to the publisher
		// (peer.KeyframeLimiter). publish.Stream's window drops a request that comes
		// within 500 ms of the previous one: a relay WHEP viewer's, right
		// after the one of rtgate's own pull of the stream, was lost.
		KeyframeInterval: time.Nanosecond,
	})
	if err != nil {
		release()
		return nil, err
	}
	ri := &relayIngest{src: src, stream: ps, release: release}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.relays[ri] = struct{}{}
	}
	h.mu.Unlock()
	if closed {
		release()
		return nil, errors.New("rtgate is shutting down")
	}
	return ri, nil
}

// dropRelay closes a publication that no stream uses any more.
func (h *Handler) dropRelay(ri *relayIngest) {
	h.mu.Lock()
	_, mine := h.relays[ri]
	delete(h.relays, ri)
	h.mu.Unlock()
	if mine {
		ri.close()
	}
}

// chooseCodecs picks one codec per offered track (and its RTX) and sets
// them as the transceiver's preferences, so the publisher can send nothing
// else: a publication's codec is fixed. It returns the tracks and, by mid,
// their index.
func chooseCodecs(pc *webrtc.PeerConnection, medias []media, prefer []bridge.Track) ([]bridge.Track, map[string]int, error) {
	draft, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, nil, err
	}
	answered, err := parseSDP(draft.SDP)
	if err != nil {
		return nil, nil, fmt.Errorf("rtgate's own answer: %w", err)
	}
	byMid := map[string]media{}
	for _, m := range answered {
		byMid[m.mid] = m
	}
	var tracks []bridge.Track
	mids := map[string]int{}
	for _, m := range medias {
		if !m.sends() {
			continue
		}
		am, ok := byMid[m.mid]
		if !ok {
			continue
		}
		c, ok := firstCodec(am)
		for _, t := range prefer {
			if t.Kind != m.kind {
				continue
			}
			for _, cand := range am.codecs {
				if sameCodec(m.kind, cand, t.Codec) {
					c, ok = cand, true
					break
				}
			}
		}
		if !ok {
			continue
		}
		prefs := []webrtc.RTPCodecParameters{codecParams(m.kind, c)}
		for _, x := range am.codecs {
			if apt, isRTX := x.apt(); x.isRTX() && isRTX && apt == c.pt {
				prefs = append(prefs, codecParams(m.kind, x))
			}
		}
		t := transceiverByMid(pc, m.mid)
		if t == nil {
			continue
		}
		if err := t.SetCodecPreferences(prefs); err != nil {
			return nil, nil, fmt.Errorf("mid %s: %w", m.mid, err)
		}
		mids[m.mid] = len(tracks)
		tracks = append(tracks, bridge.Track{Kind: m.kind, Codec: bridge.Codec{
			MimeType: c.mime(m.kind), ClockRate: c.clock, Channels: c.channels, Fmtp: c.fmtp, PayloadType: c.pt,
		}})
	}
	if len(tracks) == 0 {
		return nil, nil, errors.New("none of its codecs is one rtgate relays (VP8, VP9, H.264, AV1, Opus, PCMU, PCMA)")
	}
	return tracks, mids, nil
}

func codecParams(kind string, c codecDesc) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.mime(kind), ClockRate: c.clock, Channels: c.channels, SDPFmtpLine: c.fmtp},
		PayloadType:        webrtc.PayloadType(c.pt),
	}
}

func transceiverByMid(pc *webrtc.PeerConnection, mid string) *webrtc.RTPTransceiver {
	for _, t := range pc.GetTransceivers() {
		if t.Mid() == mid {
			return t
		}
	}
	return nil
}

// answerOffer answers the applied offer with every candidate gathered:
// rtgate does not trickle its own candidates.
func answerOffer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	return setLocal(ctx, pc, ans)
}

func setLocal(ctx context.Context, pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("ICE gathering: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}

// drainRTCP reads r's RTCP until its PeerConnection closes: pion's
// interceptors see only RTCP that is read.
func drainRTCP(r peer.RTCPReader) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := r.Read(buf); err != nil {
			return
		}
	}
}

func (p *whipRelay) end(why string) {
	p.st.op.Lock()
	defer p.st.op.Unlock()
	p.finish(why)
}

// finish frees the publisher; st.op is held. The publication stops unless
// another publisher took it over.
func (p *whipRelay) finish(why string) {
	p.endOnce.Do(func() {
		close(p.ended)
		p.h.remove(p)
		p.relay.src.detach(p.feed)
		current := p.st.detachPublisher(p)
		_ = p.pc.Close()
		p.h.log.Info("WHIP publisher gone", "stream", p.st.Name(), "why", why)
		if current {
			p.h.publisherLeft(p.st)
		}
	})
}

func (p *whipRelay) patch(w http.ResponseWriter, r *http.Request, ctype string, body []byte) {
	if ctype != typeSDPFrag {
		w.Header().Set("Accept-Patch", typeSDPFrag)
		httpError(w, http.StatusUnsupportedMediaType, "a WHIP resource takes %s", typeSDPFrag)
		return
	}
	p.ice.patch(w, r, &p.resBase, p.pc, body, false)
}

// ---- proxy ----

// whipProxy is a WHIP resource in proxy mode: the publisher's own SFU
// session, whose tracks the SFU named (autoDiscover).
type whipProxy struct {
	resBase
	session string
	tracks  []PublishedTrack
	mids    []string
}

func (p *whipProxy) state() string { return PublisherConnected }

func (p *whipProxy) published() (string, []PublishedTrack, bool) {
	return p.session, p.tracks, true
}

func (p *whipProxy) publication() publish.Status {
	st := publish.Status{Name: p.st.Name(), State: publish.StateLive, Since: p.created, SessionID: p.session}
	for _, t := range p.tracks {
		st.Tracks = append(st.Tracks, publish.TrackStatus{Name: t.Name, Kind: t.Kind, Codec: t.Codec})
	}
	return st
}

// publishProxy hands the offer to the SFU: sessions/new, then tracks/new
// with the offer and autoDiscover, so every offered track is published
// under a name the SFU picks. On failure it writes the error and returns
// nil.
func (h *Handler) publishProxy(w http.ResponseWriter, r *http.Request, st *Stream, offer string, medias []media) publisher {
	ctx, cancel := context.WithTimeout(r.Context(), signalTimeout)
	defer cancel()
	ns, err := h.o.Client.NewSession(ctx, nil)
	if err != nil {
		sfuError(w, "sessions/new", err)
		return nil
	}
	res, err := h.o.Client.AddTracks(ctx, ns.SessionID, rtapi.TracksRequest{
		SessionDescription: &rtapi.SessionDescription{Type: "offer", SDP: offer}, AutoDiscover: true})
	if err != nil {
		sfuError(w, "tracks/new", err)
		return nil
	}
	p := &whipProxy{session: ns.SessionID}
	p.init(h, "whip", st, r)
	kindOf := map[string]string{}
	for _, m := range medias {
		kindOf[m.mid] = m.kind
	}
	codecOf := map[string]string{}
	if res.SessionDescription != nil {
		if answered, err := parseSDP(res.SessionDescription.SDP); err == nil {
			for _, m := range answered {
				if c, ok := firstCodec(m); ok {
					codecOf[m.mid] = c.mime(m.kind)
				}
			}
		}
	}
	var failed []error
	for _, t := range res.Tracks {
		if t.ErrorCode != "" {
			failed = append(failed, fmt.Errorf("mid %s: %s: %s", t.Mid, t.ErrorCode, t.ErrorDescription))
			continue
		}
		if kindOf[t.Mid] == "" {
			continue
		}
		p.tracks = append(p.tracks, PublishedTrack{Name: t.TrackName, Kind: kindOf[t.Mid], Codec: codecOf[t.Mid]})
		p.mids = append(p.mids, t.Mid)
	}
	if res.SessionDescription == nil || len(p.tracks) == 0 {
		p.closeOnSFU()
		httpError(w, http.StatusBadGateway, "the SFU published none of the offer's tracks: %v", errors.Join(failed...))
		return nil
	}
	if !h.add(p) {
		p.closeOnSFU()
		httpError(w, http.StatusServiceUnavailable, "rtgate is shutting down")
		return nil
	}
	st.mu.Lock()
	st.pub = p
	st.mu.Unlock()
	h.goFunc(func() { h.watchSession(&p.resBase, p, p.session) })
	h.log.Info("WHIP publisher", "stream", st.Name(), "mode", ModeProxy, "remote", r.RemoteAddr,
		"session", p.session, "tracks", len(p.tracks))
	p.respondCreated(w, res.SessionDescription.SDP)
	return p
}

// sfuError reports a failed Realtime API call: the SFU's 400s are the
// client's SDP; everything else is the SFU's problem (502).
func sfuError(w http.ResponseWriter, call string, err error) {
	if realtime.StatusOf(err) == http.StatusBadRequest && realtime.IsCode(err, rtapi.CodeInvalidSessionDescription) {
		httpError(w, http.StatusBadRequest, "the SFU refused the SDP: %v", err)
		return
	}
	httpError(w, http.StatusBadGateway, "SFU %s failed: %v", call, err)
}

// closeOnSFU closes the resource's tracks on the SFU (forced: the client
// is not asked for an offer). Best effort: the session may be gone.
func (p *whipProxy) closeOnSFU() {
	closeMids(p.h, p.session, p.mids)
}

func closeMids(h *Handler, session string, mids []string) {
	if session == "" || len(mids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := rtapi.CloseTracksRequest{Force: true}
	for _, m := range mids {
		req.Tracks = append(req.Tracks, rtapi.CloseTrackObject{Mid: m})
	}
	if _, err := h.o.Client.CloseTracks(ctx, session, req); err != nil {
		h.log.Debug("tracks/close", "session", session, "err", err)
	}
}

func (p *whipProxy) end(why string) {
	p.st.op.Lock()
	defer p.st.op.Unlock()
	p.finish(why)
}

func (p *whipProxy) finish(why string) {
	p.endOnce.Do(func() {
		close(p.ended)
		p.h.remove(p)
		current := p.st.detachPublisher(p)
		p.closeOnSFU()
		p.h.log.Info("WHIP publisher gone", "stream", p.st.Name(), "why", why)
		if current {
			p.h.publisherLeft(p.st)
		}
	})
}

// patch: the SFU takes no trickled candidates and no ICE restart through
// this API (Cloudflare's is ICE-lite without trickle), so a proxy WHIP
// resource supports PATCH for nothing: 405, as RFC 9725 section 4.3.1 asks.
func (p *whipProxy) patch(w http.ResponseWriter, _ *http.Request, _ string, _ []byte) {
	w.Header().Set("Allow", "OPTIONS, DELETE")
	httpError(w, http.StatusMethodNotAllowed,
		"this stream is in proxy mode: the SFU takes neither trickled candidates nor ICE restarts; gather all candidates before the POST")
}

// watchSession frees a proxy resource when its SFU session goes away (the
// client's PeerConnection failed or closed and the SFU expired it) or when
// the SFU collected every track of it.
func (h *Handler) watchSession(b *resBase, r resource, session string) {
	t := time.NewTicker(h.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ended:
			return
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
		state, err := h.o.Client.Session(ctx, session)
		cancel()
		if err != nil {
			if s := realtime.StatusOf(err); s == http.StatusNotFound || s == http.StatusGone {
				h.goFunc(func() { r.end("the SFU ended the session") })
				return
			}
			continue
		}
		active := false
		for _, t := range state.Tracks {
			active = active || t.Status == rtapi.StatusActive
		}
		if !active {
			h.goFunc(func() { r.end("the SFU has no active track left in the session") })
			return
		}
	}
}
