package sfu

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/rtgate/rtgate/gateway/rtapi"
)

// maxBody is the largest request body the API accepts (Cloudflare: 1 MiB).
const maxBody = 1 << 20

func hashSecret(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// Handler serves /v1/apps/{appId}/... and /apps/{appId}/...
func (f *SFU) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"/v1/apps/{appId}", "/apps/{appId}"} {
		mux.HandleFunc("POST "+prefix+"/sessions/new", f.endpoint(f.handleNewSession, false))
		mux.HandleFunc("POST "+prefix+"/sessions/{sessionId}/tracks/new", f.endpoint(f.handleTracksNew, true))
		mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/renegotiate", f.endpoint(f.handleRenegotiate, true))
		mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/tracks/close", f.endpoint(f.handleTracksClose, true))
		mux.HandleFunc("PUT "+prefix+"/sessions/{sessionId}/tracks/update", f.endpoint(f.handleTracksUpdate, true))
		mux.HandleFunc("GET "+prefix+"/sessions/{sessionId}", f.endpoint(f.handleSessionState, true))
		for _, dc := range []string{"POST /datachannels/establish", "POST /datachannels/new",
			"PUT /datachannels/update", "PUT /datachannels/close"} {
			method, path, _ := strings.Cut(dc, " ")
			mux.HandleFunc(method+" "+prefix+"/sessions/{sessionId}"+path, f.endpoint(f.handleDataChannels, false))
		}
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errf(404, rtapi.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return cors(mux)
}

// cors lets a page on another origin call the API, as Cloudflare's echo
// demo does: preflights are answered before authentication.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Content-Type")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, OPTIONS")
			allow := r.Header.Get("Access-Control-Request-Headers")
			if allow == "" {
				allow = "Authorization, Content-Type"
			}
			h.Set("Access-Control-Allow-Headers", allow)
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type handlerFunc func(ctx context.Context, r *http.Request, s *session) (status int, body any, e *apiError)

// endpoint wraps an endpoint: authentication, app id, body limit, session
// lookup, per-session rate limit and serialization of mutations.
func (f *SFU) endpoint(h handlerFunc, needSession bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if e := f.authenticate(r); e != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="realtime"`)
			writeError(w, e)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		var s *session
		if needSession {
			id := r.PathValue("sessionId")
			var gone bool
			if s, gone = f.session(id); s == nil {
				if gone {
					writeError(w, errf(410, rtapi.CodeSessionError, "session %s has ended: make a new session", id))
				} else {
					writeError(w, errf(404, rtapi.CodeSessionError, "session %s does not exist", id))
				}
				return
			}
			if !s.limiter.Allow() {
				w.Header().Set("Retry-After", "1")
				writeError(w, errf(429, rtapi.CodeRetryableTransient,
					"more than %g API calls per second on this session", f.opts.RateLimit))
				return
			}
			if r.Method != http.MethodGet {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.isEnded() {
					writeError(w, errf(410, rtapi.CodeSessionError, "session %s has ended: make a new session", id))
					return
				}
			}
		}
		status, body, e := h(r.Context(), r, s)
		if e != nil {
			writeError(w, e)
			return
		}
		writeJSON(w, status, body)
	}
}

func (f *SFU) authenticate(r *http.Request) *apiError {
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	got := hashSecret(strings.TrimSpace(token))
	// Compare hashes in constant time: neither the secret nor its length leaks.
	if !ok || subtle.ConstantTimeCompare(got[:], f.secret[:]) != 1 {
		return errf(401, rtapi.CodeUnauthorized, "missing or wrong bearer token")
	}
	if r.PathValue("appId") != f.opts.AppID {
		return errf(404, rtapi.CodeNotFound, "app %q does not exist", r.PathValue("appId"))
	}
	return nil
}

// decode reads a JSON body; empty bodies are allowed when optional is true.
func decode(r *http.Request, v any, optional bool) *apiError {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errf(413, rtapi.CodePayloadTooLarge, "request body is larger than %d bytes", maxBody)
		}
		return errf(400, rtapi.CodeDecodingError, "cannot read the request body: %v", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return errf(400, rtapi.CodeDecodingError, "a JSON request body is required")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return errf(400, rtapi.CodeDecodingError, "the request body is not valid JSON for this endpoint: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	status := e.status
	if status < 400 {
		status = 500
	}
	writeJSON(w, status, rtapi.Error{ErrorCode: e.code, ErrorDescription: e.desc})
}

func (f *SFU) handleNewSession(_ context.Context, r *http.Request, _ *session) (int, any, *apiError) {
	var req rtapi.NewSessionRequest
	if e := decode(r, &req, true); e != nil {
		return 0, nil, e
	}
	s, err := f.newSession()
	if err != nil {
		return 0, nil, errf(503, rtapi.CodeTransportUnavailable, "%v", err)
	}
	res := rtapi.NewSessionResponse{SessionID: s.id}
	if req.SessionDescription != nil {
		ans, e := s.applyOffer(req.SessionDescription, nil)
		if e != nil {
			_ = s.pc.Close()
			return 0, nil, e
		}
		res.SessionDescription = ans
	}
	f.addSession(s)
	return http.StatusCreated, res, nil
}

func (f *SFU) handleTracksNew(ctx context.Context, r *http.Request, s *session) (int, any, *apiError) {
	var req rtapi.TracksRequest
	if e := decode(r, &req, false); e != nil {
		return 0, nil, e
	}
	if len(req.Tracks) == 0 && !req.AutoDiscover {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "tracks is empty (and autoDiscover is not set)")
	}
	if len(req.Tracks) > 64 {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "at most 64 tracks per call, got %d", len(req.Tracks))
	}
	local, remote := 0, 0
	for _, t := range req.Tracks {
		switch t.Location {
		case rtapi.LocationLocal:
			local++
		case rtapi.LocationRemote:
			remote++
		default:
			return 0, nil, errf(400, rtapi.CodeInvalidParams, "track location %q must be \"local\" or \"remote\"", t.Location)
		}
	}
	if local > 0 && remote > 0 {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "one call publishes (local) or pulls (remote) tracks, not both")
	}
	if e := s.readyForMutation(ctx); e != nil {
		return 0, nil, e
	}
	if remote > 0 {
		pubs, errs := s.resolvePulls(ctx, req.Tracks)
		var tracks []rtapi.TrackObject
		var sd *rtapi.SessionDescription
		var e *apiError
		if req.SessionDescription != nil {
			tracks, sd, e = s.pullWithOffer(req.SessionDescription, req.Tracks, pubs, errs)
		} else {
			tracks, sd, e = s.pullWithoutOffer(req.Tracks, pubs, errs)
		}
		if e != nil {
			return 0, nil, e
		}
		return http.StatusOK, rtapi.TracksResponse{
			RequiresImmediateRenegotiation: sd != nil && sd.Type == "offer", SessionDescription: sd, Tracks: tracks,
		}, nil
	}
	if req.SessionDescription == nil {
		return f.localWithoutOffer(s, req.Tracks)
	}
	var tracks []rtapi.TrackObject
	ans, e := s.applyOffer(req.SessionDescription, func() *apiError {
		tracks = s.addLocal(req.Tracks, req.AutoDiscover)
		return nil
	})
	if e != nil {
		return 0, nil, e
	}
	return http.StatusOK, rtapi.TracksResponse{SessionDescription: ans, Tracks: tracks}, nil
}

// localWithoutOffer publishes tracks the SFU offers to receive (tracks/new
// local with kind and no SDP).
func (f *SFU) localWithoutOffer(s *session, items []rtapi.TrackObject) (int, any, *apiError) {
	type pending struct {
		i int
		t interface{ Mid() string }
	}
	out := make([]rtapi.TrackObject, len(items))
	var adds []pending
	for i, it := range items {
		out[i] = rtapi.TrackObject{Location: rtapi.LocationLocal, TrackName: it.TrackName}
		kind, ok := kinds[it.Kind]
		if !ok || it.TrackName == "" {
			out[i].ErrorCode = rtapi.CodeInvalidTrack
			out[i].ErrorDescription = "without an offer, a local track needs trackName and kind (audio or video)"
			continue
		}
		t, err := s.pc.AddTransceiverFromKind(kind, recvonly)
		if err != nil {
			out[i].ErrorCode, out[i].ErrorDescription = rtapi.CodeInvalidTrack, err.Error()
			continue
		}
		adds = append(adds, pending{i, t})
	}
	if len(adds) == 0 {
		return http.StatusOK, rtapi.TracksResponse{Tracks: out}, nil
	}
	sd, e := s.offer()
	if e != nil {
		return 0, nil, e
	}
	for _, a := range adds {
		mid := a.t.Mid()
		out[a.i].Mid = mid
		if e := s.publish(mid, items[a.i].TrackName); e != nil {
			out[a.i].ErrorCode, out[a.i].ErrorDescription = e.code, e.desc
		}
	}
	return http.StatusOK, rtapi.TracksResponse{RequiresImmediateRenegotiation: true, SessionDescription: sd, Tracks: out}, nil
}

func (f *SFU) handleRenegotiate(_ context.Context, r *http.Request, s *session) (int, any, *apiError) {
	var req rtapi.RenegotiateRequest
	if e := decode(r, &req, false); e != nil {
		return 0, nil, e
	}
	sd := req.SessionDescription
	if sd == nil {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "sessionDescription is required")
	}
	switch sd.Type {
	case "answer":
		if !s.awaitAnswer {
			return 0, nil, errf(400, rtapi.CodeInvalidSessionDescription, "there is no SFU offer to answer")
		}
		if err := s.pc.SetRemoteDescription(answerDesc(sd.SDP)); err != nil {
			return 0, nil, errf(400, rtapi.CodeInvalidSessionDescription, "cannot apply the answer: %v", err)
		}
		s.awaitAnswer = false
		s.negotiated = true
		return http.StatusOK, struct{}{}, nil
	case "offer":
		// A client-initiated renegotiation (e.g. an ICE restart): answer it.
		ans, e := s.applyOffer(sd, nil)
		if e != nil {
			return 0, nil, e
		}
		return http.StatusOK, rtapi.RenegotiateResponse{SessionDescription: ans}, nil
	}
	return 0, nil, errf(400, rtapi.CodeInvalidSessionDescription, "sessionDescription.type %q must be answer or offer", sd.Type)
}

func (f *SFU) handleTracksClose(ctx context.Context, r *http.Request, s *session) (int, any, *apiError) {
	var req rtapi.CloseTracksRequest
	if e := decode(r, &req, false); e != nil {
		return 0, nil, e
	}
	if len(req.Tracks) == 0 {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "tracks must name at least one mid")
	}
	if !req.Force && req.SessionDescription == nil {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "force is false: sessionDescription must hold your offer")
	}
	if e := s.readyForMutation(ctx); e != nil {
		return 0, nil, e
	}
	res := rtapi.CloseTracksResponse{Tracks: make([]rtapi.CloseTrackObject, len(req.Tracks))}
	closeAll := func() *apiError {
		for i, t := range req.Tracks {
			res.Tracks[i].Mid = t.Mid
			if e := s.closeMid(t.Mid); e != nil {
				res.Tracks[i].ErrorCode, res.Tracks[i].ErrorDescription = e.code, e.desc
			} else if req.Force {
				s.stopTransceiver(t.Mid)
			}
		}
		return nil
	}
	if req.Force {
		_ = closeAll()
		return http.StatusOK, res, nil
	}
	ans, e := s.applyOffer(req.SessionDescription, closeAll)
	if e != nil {
		return 0, nil, e
	}
	res.SessionDescription = ans
	return http.StatusOK, res, nil
}

func (f *SFU) handleTracksUpdate(ctx context.Context, r *http.Request, s *session) (int, any, *apiError) {
	var req rtapi.UpdateTracksRequest
	if e := decode(r, &req, false); e != nil {
		return 0, nil, e
	}
	if len(req.Tracks) == 0 {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "tracks is empty")
	}
	if req.SessionDescription != nil {
		return 0, nil, errf(400, rtapi.CodeInvalidParams, "tracks/update reuses negotiated transceivers and takes no sessionDescription")
	}
	if e := s.readyForMutation(ctx); e != nil {
		return 0, nil, e
	}
	return http.StatusOK, rtapi.TracksResponse{Tracks: s.update(ctx, req.Tracks)}, nil
}

func (f *SFU) handleSessionState(_ context.Context, _ *http.Request, s *session) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.state(), nil
}

func (f *SFU) handleDataChannels(context.Context, *http.Request, *session) (int, any, *apiError) {
	return 0, nil, errf(501, rtapi.CodeNotSupported,
		"the embedded SFU does not implement DataChannels yet; use Cloudflare's Realtime SFU for them")
}
