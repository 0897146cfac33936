package wish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// keyframeInterval coalesces the keyframe requests of relay viewers per
// track, as the SFU does per publisher.
const keyframeInterval = 500 * time.Millisecond

// postWHEP serves POST /whep/{stream}: an SDP offer in and 201 with the
// answer, or an empty body and 201 with rtgate's offer, whose answer the
// client PATCHes (application/sdp).
func (h *Handler) postWHEP(w http.ResponseWriter, r *http.Request) {
	tl := newViewerTimeline(time.Now())
	name := r.PathValue("stream")
	st, found := h.o.Registry.Lookup(name)
	if !h.authorize(w, r, "whep", st) {
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "no stream %q", name)
		return
	}
	ct := mediaType(r)
	if ct != "" && ct != typeSDP {
		w.Header().Set("Accept-Post", typeSDP)
		httpError(w, http.StatusUnsupportedMediaType, "a WHEP offer is %s, not %q", typeSDP, r.Header.Get("Content-Type"))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	offer := string(body)
	var medias []media
	if strings.TrimSpace(offer) != "" {
		if ct != typeSDP {
			w.Header().Set("Accept-Post", typeSDP)
			httpError(w, http.StatusUnsupportedMediaType, "a WHEP offer is %s; send no Content-Type only with an empty body", typeSDP)
			return
		}
		var err error
		if medias, err = parseSDP(offer); err != nil {
			httpError(w, http.StatusBadRequest, "bad SDP offer: %v", err)
			return
		}
		if !receivesAny(medias) {
			httpError(w, http.StatusBadRequest, "bad SDP offer: it receives no audio or video (a WHEP offer is recvonly)")
			return
		}
	} else {
		offer = ""
	}

	// Wait for the stream to be published (a publisher that just arrived).
	wctx, cancel := context.WithTimeout(r.Context(), h.o.MediaWait)
	defer cancel()
	_, pts, live := st.waitPublished(wctx)
	if !live {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "stream %q is not live", name)
		return
	}
	if st.o.WHEPMode == ModeProxy {
		h.playProxy(w, r, st, offer, medias, tl)
	} else {
		h.playRelay(w, r, st, offer, medias, len(pts), tl)
	}
}

func receivesAny(ms []media) bool {
	for _, m := range ms {
		if m.receives() {
			return true
		}
	}
	return false
}

// addViewer registers a viewer with the handler and the stream; false when
// either is closing (the response is written).
func (h *Handler) addViewer(w http.ResponseWriter, st *Stream, v resource) bool {
	if !h.add(v) {
		httpError(w, http.StatusServiceUnavailable, "rtgate is shutting down")
		return false
	}
	st.mu.Lock()
	removed := st.removed
	if !removed {
		st.viewers[v] = struct{}{}
	}
	st.mu.Unlock()
	if removed {
		h.remove(v)
		httpError(w, http.StatusNotFound, "stream %q went away", st.Name())
		return false
	}
	return true
}

// ---- relay ----

// fanPull is a relay WHEP stream's one pull and its fan-out, shared by the
// stream's viewers and stopped with the last of them.
type fanPull struct {
	sink   *fanout
	refs   int // guarded by Stream.mu
	cancel context.CancelFunc
	done   chan struct{}
}

// acquireFan returns the stream's pull, starting it for the first viewer
// (started).
func (st *Stream) acquireFan(h *Handler) (*fanPull, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	started := st.fan == nil
	if started {
		ctx, cancel := context.WithCancel(h.ctx)
		fp := &fanPull{cancel: cancel, done: make(chan struct{})}
		fp.sink = newFanout(st.Name(), keyframeInterval, func() {
			h.goFunc(func() { st.endRelayViewers("the stream's codec changed: play it again") })
		})
		st.fan = fp
		h.goFunc(func() {
			defer close(fp.done)
			backoff := time.Second
			for {
				err := h.o.Pull(ctx, st.Name(), st, fp.sink)
				if ctx.Err() != nil {
					return
				}
				h.log.Warn("relay pull stopped; pulling again", "stream", st.Name(), "err", err, "in", backoff)
				if !sleepCtx(ctx, backoff) {
					return
				}
				backoff = min(2*backoff, 10*time.Second)
			}
		})
	}
	st.fan.refs++
	return st.fan, started
}

// releaseFan drops a reference; the last one stops the pull and waits for
// it.
func (st *Stream) releaseFan(fp *fanPull) {
	st.mu.Lock()
	fp.refs--
	stop := fp.refs == 0
	if stop && st.fan == fp {
		st.fan = nil
	}
	st.mu.Unlock()
	if stop {
		fp.cancel()
		<-fp.done
		_ = fp.sink.Close()
	}
}

func (st *Stream) endRelayViewers(why string) {
	st.mu.Lock()
	var vs []resource
	for v := range st.viewers {
		if _, ok := v.(*whepRelay); ok {
			vs = append(vs, v)
		}
	}
	st.mu.Unlock()
	for _, v := range vs {
		v.end(why)
	}
}

// whepRelay is a WHEP viewer served by rtgate's own PeerConnection from
// the stream's shared pull.
type whepRelay struct {
	resBase
	pc          *webrtc.PeerConnection
	fan         *fanPull
	tl          *viewerTimeline
	ice         iceState
	weOffered   bool
	awaitAnswer bool // guarded by resBase.mu
}

// playRelay serves a viewer from the stream's pull: once the pull
// delivers the stream's tracks, each becomes a sender on the viewer's
// PeerConnection.
func (h *Handler) playRelay(w http.ResponseWriter, r *http.Request, st *Stream, offer string, medias []media, want int, tl *viewerTimeline) {
	fp, cold := st.acquireFan(h)
	tl.cold = cold
	keep := false
	defer func() {
		if !keep {
			st.releaseFan(fp)
		}
	}()
	mctx, cancel := context.WithTimeout(r.Context(), h.o.MediaWait)
	fts := fp.sink.waitTracks(mctx, want)
	cancel()
	stamp(&tl.media)
	if len(fts) == 0 {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "stream %q is not live: no media within %s", st.Name(), h.o.MediaWait)
		return
	}
	pc, err := h.o.API.NewPeerConnection()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "cannot make a PeerConnection: %v", err)
		return
	}
	v := &whepRelay{pc: pc, fan: fp, weOffered: offer == "", tl: tl}
	v.init(h, "whep", st, r)
	tl.watch(pc)
	defer func() {
		if !keep {
			_ = pc.Close()
		}
	}()
	signal := v.ice.watch(pc)

	type sender struct {
		s  *webrtc.RTPSender
		ft *fanTrack
	}
	var senders []sender
	ctx, cancel := context.WithTimeout(r.Context(), signalTimeout)
	defer cancel()
	var sdp string
	if offer != "" {
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			httpError(w, http.StatusBadRequest, "bad SDP offer: %v", err)
			return
		}
		receives := map[string]bool{}
		for _, m := range medias {
			receives[m.mid] = m.receives()
		}
		used := map[*fanTrack]bool{}
		for _, t := range pc.GetTransceivers() {
			if !receives[t.Mid()] || t.Sender() != nil {
				continue
			}
			for _, ft := range fts {
				if used[ft] || ft.kind != t.Kind() {
					continue
				}
				s, err := h.o.API.WebRTC().NewRTPSender(ft, pc.SCTP().Transport())
				if err == nil {
					err = t.SetSender(s, ft)
				}
				if err != nil {
					httpError(w, http.StatusInternalServerError, "cannot send %s to mid %s: %v", ft.kind, t.Mid(), err)
					return
				}
				used[ft] = true
				senders = append(senders, sender{s, ft})
				break
			}
		}
		if len(senders) == 0 {
			httpError(w, http.StatusBadRequest, "the offer receives none of the stream's tracks (%s)", kindsOf(fts))
			return
		}
		if sdp, err = answerOffer(ctx, pc); err != nil {
			httpError(w, http.StatusInternalServerError, "cannot answer the offer: %v", err)
			return
		}
	} else {
		for _, ft := range fts {
			t, err := pc.AddTransceiverFromTrack(ft, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				httpError(w, http.StatusInternalServerError, "cannot add the %s track: %v", ft.kind, err)
				return
			}
			senders = append(senders, sender{t.Sender(), ft})
		}
		o, err := pc.CreateOffer(nil)
		if err == nil {
			sdp, err = setLocal(ctx, pc, o)
		}
		if err != nil {
			httpError(w, http.StatusInternalServerError, "cannot make an offer: %v", err)
			return
		}
		v.awaitAnswer = true
	}
	if !h.addViewer(w, st, v) {
		return
	}
	keep = true
	// The timeline follows the viewer's video from its binding: made now
	// when the client offered, at its answer (PATCH) when rtgate did.
	follow := func() {
		for _, s := range senders {
			if enc := s.s.GetParameters().Encodings; s.ft.kind == webrtc.RTPCodecTypeVideo && len(enc) > 0 {
				s.ft.follow(uint32(enc[0].SSRC), tl)
			}
		}
	}
	follow()
	for _, s := range senders {
		// Viewers' PLIs go upstream, coalesced per track; draining also
		// feeds the NACK responder.
		h.goFunc(func() {
			peer.DrainKeyframeRequests(s.s, func() {
				if s.ft.kind == webrtc.RTPCodecTypeVideo {
					tl.viewerPLI()
				}
				s.ft.requestKeyframe()
			})
		})
	}
	h.goFunc(func() {
		h.superviseICE(v, pc, signal, func() {
			follow()
			// Now a keyframe reaches the viewer: give it its first one.
			for _, s := range senders {
				if enc := s.s.GetParameters().Encodings; len(enc) > 0 {
					s.ft.join(uint32(enc[0].SSRC))
				}
			}
		})
	})
	h.log.Info("WHEP viewer", "stream", st.Name(), "mode", ModeRelay, "remote", r.RemoteAddr, "offer", map[bool]string{true: "client", false: "rtgate"}[offer != ""])
	stamp(&tl.answer)
	v.respondCreated(w, sdp)
}

func kindsOf(fts []*fanTrack) string {
	var ks []string
	for _, ft := range fts {
		ks = append(ks, ft.kind.String())
	}
	return strings.Join(ks, ", ")
}

func (v *whepRelay) end(why string) {
	v.endOnce.Do(func() {
		close(v.ended)
		v.h.remove(v)
		v.st.removeViewer(v)
		_ = v.pc.Close()
		v.st.releaseFan(v.fan)
		v.h.log.Info("WHEP viewer gone", "stream", v.st.Name(), "why", why)
		v.tl.log(v.h.log, v.st.Name(), ModeRelay, v.location())
	})
}

func (v *whepRelay) patch(w http.ResponseWriter, r *http.Request, ctype string, body []byte) {
	if ctype == typeSDPFrag {
		v.ice.patch(w, r, &v.resBase, v.pc, body, v.weOffered)
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.awaitAnswer {
		httpError(w, http.StatusConflict, "there is no offer of rtgate to answer (the client made the offer, or its answer was applied)")
		return
	}
	if _, err := parseSDP(string(body)); err != nil {
		httpError(w, http.StatusBadRequest, "bad SDP answer: %v", err)
		return
	}
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		httpError(w, http.StatusBadRequest, "bad SDP answer: %v", err)
		return
	}
	v.awaitAnswer = false
	w.Header().Set("ETag", v.etag)
	w.WriteHeader(http.StatusNoContent)
}

// ---- proxy ----

// whepProxy is a WHEP viewer with its own SFU session that pulls the
// stream's tracks; rtgate only signals.
type whepProxy struct {
	resBase
	session     string
	mids        []string
	awaitAnswer bool // guarded by resBase.mu
}

// playProxy makes the viewer's SFU session and pulls the stream's tracks
// into it: with the client's offer (the SFU answers) or without (the SFU
// offers; the client's answer comes by PATCH and goes to renegotiate).
func (h *Handler) playProxy(w http.ResponseWriter, r *http.Request, st *Stream, offer string, medias []media, tl *viewerTimeline) {
	session, pts, ok := st.PublishedTracks()
	if !ok {
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "stream %q is not live", st.Name())
		return
	}
	var items []rtapi.TrackObject
	if offer != "" {
		used := map[int]bool{}
		for _, m := range medias {
			if !m.receives() {
				continue
			}
			for i, pt := range pts {
				if !used[i] && pt.Kind == m.kind {
					used[i] = true
					items = append(items, rtapi.TrackObject{Location: rtapi.LocationRemote, Mid: m.mid, SessionID: session, TrackName: pt.Name})
					break
				}
			}
		}
		if len(items) == 0 {
			httpError(w, http.StatusBadRequest, "the offer receives none of the stream's tracks")
			return
		}
	} else {
		for _, pt := range pts {
			items = append(items, rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: session, TrackName: pt.Name})
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), signalTimeout)
	defer cancel()
	ns, err := h.o.Client.NewSession(ctx, nil)
	if err != nil {
		sfuError(w, "sessions/new", err)
		return
	}
	req := rtapi.TracksRequest{Tracks: items}
	if offer != "" {
		req.SessionDescription = &rtapi.SessionDescription{Type: "offer", SDP: offer}
	}
	res, err := h.o.Client.AddTracks(ctx, ns.SessionID, req)
	if err != nil {
		sfuError(w, "tracks/new", err)
		return
	}
	v := &whepProxy{session: ns.SessionID, awaitAnswer: offer == ""}
	v.init(h, "whep", st, r)
	var failed []error
	for _, t := range res.Tracks {
		if t.ErrorCode != "" {
			failed = append(failed, fmt.Errorf("%s: %s: %s", t.TrackName, t.ErrorCode, t.ErrorDescription))
		} else if t.Mid != "" {
			v.mids = append(v.mids, t.Mid)
		}
	}
	if len(v.mids) == 0 || res.SessionDescription == nil {
		closeMids(h, v.session, v.mids)
		w.Header().Set("Retry-After", "2")
		httpError(w, http.StatusServiceUnavailable, "the SFU could not pull stream %q: %v", st.Name(), errors.Join(failed...))
		return
	}
	if !h.addViewer(w, st, v) {
		closeMids(h, v.session, v.mids)
		return
	}
	h.goFunc(func() { h.watchSession(&v.resBase, v, v.session) })
	h.log.Info("WHEP viewer", "stream", st.Name(), "mode", ModeProxy, "remote", r.RemoteAddr, "session", v.session)
	stamp(&tl.answer)
	v.respondCreated(w, res.SessionDescription.SDP)
	tl.log(h.log, st.Name(), ModeProxy, v.location())
}

func (v *whepProxy) end(why string) {
	v.endOnce.Do(func() {
		close(v.ended)
		v.h.remove(v)
		v.st.removeViewer(v)
		closeMids(v.h, v.session, v.mids)
		v.h.log.Info("WHEP viewer gone", "stream", v.st.Name(), "why", why)
	})
}

// patch takes the answer to the SFU's offer (PUT renegotiate). Trickle
// fragments are refused with 422: the SFU takes no trickled candidates
// (RFC 9725 section 4.3.1's answer for a PATCH use that is not supported).
func (v *whepProxy) patch(w http.ResponseWriter, r *http.Request, ctype string, body []byte) {
	if ctype == typeSDPFrag {
		httpError(w, http.StatusUnprocessableEntity,
			"this stream is in proxy mode: the SFU takes neither trickled candidates nor ICE restarts")
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.awaitAnswer {
		httpError(w, http.StatusConflict, "there is no offer of the SFU to answer (the client made the offer, or its answer was applied)")
		return
	}
	if _, err := parseSDP(string(body)); err != nil {
		httpError(w, http.StatusBadRequest, "bad SDP answer: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), signalTimeout)
	defer cancel()
	if err := v.h.o.Client.Renegotiate(ctx, v.session, rtapi.SessionDescription{Type: "answer", SDP: string(body)}); err != nil {
		sfuError(w, "renegotiate", err)
		return
	}
	v.awaitAnswer = false
	w.Header().Set("ETag", v.etag)
	w.WriteHeader(http.StatusNoContent)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
