package wish

import (
	"context"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"
)

// iceState follows the connection state of a relay resource's
// PeerConnection and serves its trickle and ICE restart PATCHes.
type iceState struct {
	signal chan struct{}
}

// watch makes the PeerConnection signal every state change.
func (s *iceState) watch(pc *webrtc.PeerConnection) <-chan struct{} {
	s.signal = make(chan struct{}, 1)
	pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) {
		select {
		case s.signal <- struct{}{}:
		default: // one pending signal is enough: the state is read from pc
		}
	})
	return s.signal
}

// superviseICE frees a relay resource whose client does not connect within
// ConnectTimeout, stays disconnected for DisconnectGrace, fails or closes.
// onConnected runs on the first connection. It returns when the resource
// ends.
func (h *Handler) superviseICE(r resource, pc *webrtc.PeerConnection, signal <-chan struct{}, onConnected func()) {
	b := r.base()
	connectBy := time.NewTimer(h.o.ConnectTimeout)
	defer connectBy.Stop()
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	defer grace.Stop()
	graceOn, connected := false, false
	for {
		select {
		case <-b.ended:
			return
		case <-h.ctx.Done():
			return
		case <-connectBy.C:
			if !connected {
				r.end("the client did not connect within " + h.o.ConnectTimeout.String())
				return
			}
		case <-grace.C:
			r.end("the client was disconnected for " + h.o.DisconnectGrace.String())
			return
		case <-signal:
			switch pc.ConnectionState() {
			case webrtc.PeerConnectionStateConnected:
				if graceOn {
					grace.Stop()
					graceOn = false
				}
				if !connected {
					connected = true
					onConnected()
				}
			case webrtc.PeerConnectionStateDisconnected:
				if !graceOn {
					grace.Reset(h.o.DisconnectGrace)
					graceOn = true
				}
			case webrtc.PeerConnectionStateFailed:
				r.end("ICE/DTLS failed")
				return
			case webrtc.PeerConnectionStateClosed:
				r.end("the PeerConnection closed")
				return
			}
		}
	}
}

// patch applies a trickle ICE fragment to a relay resource's
// PeerConnection: new remote candidates (204), or new credentials, which
// is an ICE restart (200 with rtgate's new credentials and candidates, and
// a new ETag). weOffered says rtgate made the offer (WHEP without a client
// offer): its restart is then a new offer of its own.
func (s *iceState) patch(w http.ResponseWriter, r *http.Request, b *resBase, pc *webrtc.PeerConnection, body []byte, weOffered bool) {
	if !b.checkIfMatch(w, r) {
		return
	}
	f, err := parseFrag(string(body))
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad trickle ICE fragment: %v", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	remote := pc.RemoteDescription()
	if remote == nil {
		httpError(w, http.StatusConflict, "the session has no remote description yet: PATCH the SDP answer first")
		return
	}
	if ufrag, _ := iceCredentials(remote.SDP); f.ufrag != "" && f.ufrag != ufrag {
		s.restart(w, r, b, pc, remote.SDP, f, weOffered)
		return
	}
	for _, c := range f.candidates {
		mid := c.mid
		init := webrtc.ICECandidateInit{Candidate: c.value}
		if mid != "" {
			init.SDPMid = &mid
		}
		if err := pc.AddICECandidate(init); err != nil {
			httpError(w, http.StatusBadRequest, "bad candidate %q: %v", c.value, err)
			return
		}
	}
	w.Header().Set("ETag", b.etag)
	w.WriteHeader(http.StatusNoContent)
}

// restart performs an ICE restart with the fragment's credentials; b.mu
// is held.
func (s *iceState) restart(w http.ResponseWriter, r *http.Request, b *resBase, pc *webrtc.PeerConnection, remote string, f iceFrag, weOffered bool) {
	ctx, cancel := context.WithTimeout(r.Context(), signalTimeout)
	defer cancel()
	var local string
	var err error
	if weOffered {
		var offer webrtc.SessionDescription
		if offer, err = pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true}); err == nil {
			if local, err = setLocal(ctx, pc, offer); err == nil {
				err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: withICE(remote, f)})
			}
		}
	} else {
		if err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: withICE(remote, f)}); err == nil {
			local, err = answerOffer(ctx, pc)
		}
	}
	if err != nil {
		httpError(w, http.StatusUnprocessableEntity, "ICE restart failed: %v", err)
		return
	}
	b.etag = newETag()
	hd := w.Header()
	hd.Set("Content-Type", typeSDPFrag)
	hd.Set("ETag", b.etag)
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(fragOf(local)))
	b.h.log.Info("ICE restart", "kind", b.kind, "stream", b.st.Name())
}
