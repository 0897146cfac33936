package realtime_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

const (
	appID  = "app-1"
	secret = "s3cr3t-t0ken-9f2c51"
	sid    = "2a45361d5fd7cc14eface0587c276c94"
	prefix = "/v1/apps/" + appID + "/sessions/"
)

// newClient returns a client of srv with millisecond backoff.
func newClient(t *testing.T, baseURL string, mod ...func(*realtime.Options)) *realtime.Client {
	t.Helper()
	o := realtime.Options{
		BaseURL:        baseURL + "/v1",
		AppID:          appID,
		AppSecret:      secret,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  2 * time.Millisecond,
	}
	for _, m := range mod {
		m(&o)
	}
	c, err := realtime.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// request is what a test server saw.
type request struct {
	method, path, auth, contentType, accept string
	body                                    []byte
}

// step is one canned response.
type step struct {
	status     int
	retryAfter string
	body       string
}

// scripted serves steps in order, one per request, repeating the last one,
// and records the requests.
type scripted struct {
	mu    sync.Mutex
	steps []step
	reqs  []request
	times []time.Time
}

func serve(t *testing.T, steps ...step) (*httptest.Server, *scripted) {
	s := &scripted{steps: steps}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, s
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	st := s.steps[min(len(s.reqs), len(s.steps)-1)]
	s.reqs = append(s.reqs, request{
		method: r.Method, path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization"),
		contentType: r.Header.Get("Content-Type"), accept: r.Header.Get("Accept"), body: body,
	})
	s.times = append(s.times, time.Now())
	s.mu.Unlock()
	if st.retryAfter != "" {
		w.Header().Set("Retry-After", st.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "Origin")
	w.WriteHeader(st.status)
	io.WriteString(w, st.body)
}

func (s *scripted) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// jsonEqual fails t unless got and want are the same JSON value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("request body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("request body\n got %s\nwant %s", got, want)
	}
}

const (
	offerSDP  = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 111\na=rtpmap:111 OPUS/48000/2\n"
	answerSDP = "v=0\no=- 1 0 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 111\na=rtpmap:111 OPUS/48000/2\n"
	offerJSON = `{"sdp":"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 111\na=rtpmap:111 OPUS/48000/2\n","type":"offer"}`
	answerJS  = `{"sdp":"v=0\no=- 1 0 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 111\na=rtpmap:111 OPUS/48000/2\n","type":"answer"}`
)

var (
	offer  = rtapi.SessionDescription{Type: "offer", SDP: offerSDP}
	answer = rtapi.SessionDescription{Type: "answer", SDP: answerSDP}
)

// TestEndpoints checks each method's request (method, path, headers, body)
// and its decoding of the responses shown in Cloudflare's OpenAPI file.
func TestEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		call     func(context.Context, *realtime.Client) (any, error)
		method   string
		path     string
		body     string // "" = no body
		status   int
		response string
		check    func(t *testing.T, v any)
	}{{
		name:   "NewSession without offer",
		call:   func(ctx context.Context, c *realtime.Client) (any, error) { return c.NewSession(ctx, nil) },
		method: "POST", path: prefix + "new",
		status: 201, response: `{"sessionId":"e017a2629c754fedc1f7d8587e06d126"}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.NewSessionResponse{SessionID: "e017a2629c754fedc1f7d8587e06d126"}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name:   "NewSession with offer, 200",
		call:   func(ctx context.Context, c *realtime.Client) (any, error) { return c.NewSession(ctx, &offer) },
		method: "POST", path: prefix + "new",
		body:   `{"sessionDescription":` + offerJSON + `}`,
		status: 200, response: `{"sessionId":"e017a2629c754fedc1f7d8587e06d126","sessionDescription":` + answerJS + `}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.NewSessionResponse{SessionID: "e017a2629c754fedc1f7d8587e06d126", SessionDescription: &answer}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name: "AddTracks local with offer",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.AddTracks(ctx, sid, rtapi.TracksRequest{
				SessionDescription: &offer,
				Tracks:             []rtapi.TrackObject{{Location: rtapi.LocationLocal, Mid: "4", TrackName: "1a037563-c35c-4bf6-a9ee-2b474cbb9a51"}},
			})
		},
		method: "POST", path: prefix + sid + "/tracks/new",
		body:   `{"sessionDescription":` + offerJSON + `,"tracks":[{"location":"local","mid":"4","trackName":"1a037563-c35c-4bf6-a9ee-2b474cbb9a51"}]}`,
		status: 200, response: `{"requiresImmediateRenegotiation":false,"tracks":[{"trackName":"1a037563-c35c-4bf6-a9ee-2b474cbb9a51","mid":"4"}],"sessionDescription":` + answerJS + `}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.TracksResponse{
				SessionDescription: &answer,
				Tracks:             []rtapi.TrackObject{{TrackName: "1a037563-c35c-4bf6-a9ee-2b474cbb9a51", Mid: "4"}},
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name: "AddTracks bidirectional with kind",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.AddTracks(ctx, sid, rtapi.TracksRequest{
				SessionDescription: &offer,
				Tracks: []rtapi.TrackObject{{Location: rtapi.LocationLocal, Mid: "0", TrackName: "mic-1",
					BidirectionalMediaStream: true, Kind: "audio"}},
			})
		},
		method: "POST", path: prefix + sid + "/tracks/new",
		body:   `{"sessionDescription":` + offerJSON + `,"tracks":[{"location":"local","mid":"0","trackName":"mic-1","bidirectionalMediaStream":true,"kind":"audio"}]}`,
		status: 200, response: `{"requiresImmediateRenegotiation":false,"tracks":[{"trackName":"mic-1","mid":"0"}],"sessionDescription":` + answerJS + `}`,
	}, {
		name: "AddTracks autoDiscover",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.AddTracks(ctx, sid, rtapi.TracksRequest{SessionDescription: &offer, AutoDiscover: true})
		},
		method: "POST", path: prefix + sid + "/tracks/new",
		body:   `{"autoDiscover":true,"sessionDescription":` + offerJSON + `}`,
		status: 200, response: `{"requiresImmediateRenegotiation":false,"tracks":[{"trackName":"f5bd1e2c-7b5f-4a43-8f43-ef5d0ac5f53a","mid":"0"}],"sessionDescription":` + answerJS + `}`,
		check: func(t *testing.T, v any) {
			if got := v.(*rtapi.TracksResponse).Tracks[0].TrackName; got != "f5bd1e2c-7b5f-4a43-8f43-ef5d0ac5f53a" {
				t.Errorf("trackName %q", got)
			}
		},
	}, {
		name: "AddTracks remote with simulcast",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.AddTracks(ctx, sid, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{{
				Location: rtapi.LocationRemote, SessionID: sid, TrackName: "simulcast-video-track",
				Simulcast: &rtapi.Simulcast{PreferredRid: "h", PriorityOrdering: "asciibetical", RidNotAvailable: "asciibetical"},
			}}})
		},
		method: "POST", path: prefix + sid + "/tracks/new",
		body: `{"tracks":[{"location":"remote","sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"simulcast-video-track",
			"simulcast":{"preferredRid":"h","priorityOrdering":"asciibetical","ridNotAvailable":"asciibetical"}}]}`,
		status: 200,
		response: `{"requiresImmediateRenegotiation":true,"tracks":[{"sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"simulcast-video-track","mid":"5",
			"simulcast":{"preferredRid":"h","priorityOrdering":"asciibetical","ridNotAvailable":"asciibetical"}}],"sessionDescription":` + offerJSON + `}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.TracksResponse{
				RequiresImmediateRenegotiation: true,
				SessionDescription:             &offer,
				Tracks: []rtapi.TrackObject{{SessionID: sid, TrackName: "simulcast-video-track", Mid: "5",
					Simulcast: &rtapi.Simulcast{PreferredRid: "h", PriorityOrdering: "asciibetical", RidNotAvailable: "asciibetical"}}},
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name: "Renegotiate",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return nil, c.Renegotiate(ctx, sid, answer)
		},
		method: "PUT", path: prefix + sid + "/renegotiate",
		body:   `{"sessionDescription":` + answerJS + `}`,
		status: 200, response: `{}`,
	}, {
		name: "CloseTracks negotiated",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.CloseTracks(ctx, sid, rtapi.CloseTracksRequest{
				Tracks:             []rtapi.CloseTrackObject{{Mid: "7"}},
				SessionDescription: &rtapi.SessionDescription{Type: "offer", SDP: "<ENDPOINT_OFFER_SDP>"},
			})
		},
		method: "PUT", path: prefix + sid + "/tracks/close",
		body:   `{"tracks":[{"mid":"7"}],"sessionDescription":{"type":"offer","sdp":"<ENDPOINT_OFFER_SDP>"},"force":false}`,
		status: 200, response: `{"sessionDescription":{"type":"answer","sdp":"<SFU_ANSWER_SDP>"},"requiresImmediateRenegotiation":false,"tracks":[{"mid":"7"}]}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.CloseTracksResponse{
				SessionDescription: &rtapi.SessionDescription{Type: "answer", SDP: "<SFU_ANSWER_SDP>"},
				Tracks:             []rtapi.CloseTrackObject{{Mid: "7"}},
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name: "CloseTracks forced, mixed results",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.CloseTracks(ctx, sid, rtapi.CloseTracksRequest{
				Tracks: []rtapi.CloseTrackObject{{Mid: "0"}, {Mid: "1"}, {Mid: "2"}}, Force: true,
			})
		},
		method: "PUT", path: prefix + sid + "/tracks/close",
		body:   `{"tracks":[{"mid":"0"},{"mid":"1"},{"mid":"2"}],"force":true}`,
		status: 200,
		response: `{"requiresImmediateRenegotiation":false,"tracks":[{"mid":"0"},
			{"mid":"1","errorCode":"close_track_error","errorDescription":"Track doesn't exist or was already closed"},
			{"mid":"2","errorCode":"internal_error","errorDescription":"Backend error"}]}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.CloseTracksResponse{Tracks: []rtapi.CloseTrackObject{
				{Mid: "0"},
				{Mid: "1", ErrorCode: rtapi.CodeCloseTrack, ErrorDescription: "Track doesn't exist or was already closed"},
				{Mid: "2", ErrorCode: rtapi.CodeInternal, ErrorDescription: "Backend error"},
			}}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name: "UpdateTracks",
		call: func(ctx context.Context, c *realtime.Client) (any, error) {
			return c.UpdateTracks(ctx, sid, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{{
				Location: rtapi.LocationRemote, SessionID: sid, TrackName: "simulcast-track", Mid: "8",
				Simulcast: &rtapi.Simulcast{PreferredRid: "h", PriorityOrdering: "asciibetical", RidNotAvailable: "asciibetical"},
			}}})
		},
		method: "PUT", path: prefix + sid + "/tracks/update",
		body: `{"tracks":[{"location":"remote","sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"simulcast-track","mid":"8",
			"simulcast":{"preferredRid":"h","priorityOrdering":"asciibetical","ridNotAvailable":"asciibetical"}}]}`,
		status: 200, response: `{"requiresImmediateRenegotiation":false,"tracks":[{"mid":"7","sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"new-track-name"}]}`,
		check: func(t *testing.T, v any) {
			want := &rtapi.TracksResponse{Tracks: []rtapi.TrackObject{{Mid: "7", SessionID: sid, TrackName: "new-track-name"}}}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}, {
		name:   "Session",
		call:   func(ctx context.Context, c *realtime.Client) (any, error) { return c.Session(ctx, sid) },
		method: "GET", path: prefix + sid,
		status: 200,
		response: `{"tracks":[
			{"location":"local","mid":"2","trackName":"1a037563-c35c-4bf6-a9ee-2b474cbb9a51","status":"active"},
			{"location":"remote","mid":"7","sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"2e037563-a35d-4bf6-a9ee-2d474cbb9a58","status":"active"}],
			"dataChannels":[{"location":"remote","sessionId":"2a45361d5fd7cc14eface0587c276c94","dataChannelName":"controls","id":2,"status":"active"}]}`,
		check: func(t *testing.T, v any) {
			two := 2
			want := &rtapi.SessionStateResponse{
				Tracks: []rtapi.TrackObject{
					{Location: "local", Mid: "2", TrackName: "1a037563-c35c-4bf6-a9ee-2b474cbb9a51", Status: rtapi.StatusActive},
					{Location: "remote", Mid: "7", SessionID: sid, TrackName: "2e037563-a35d-4bf6-a9ee-2d474cbb9a58", Status: rtapi.StatusActive},
				},
				DataChannels: []rtapi.DataChannelObject{{Location: "remote", SessionID: sid, DataChannelName: "controls", ID: &two, Status: rtapi.StatusActive}},
			}
			if !reflect.DeepEqual(v, want) {
				t.Errorf("got %+v, want %+v", v, want)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, s := serve(t, step{status: tt.status, body: tt.response})
			c := newClient(t, srv.URL)
			v, err := tt.call(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			reqs := s.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.method != tt.method || r.path != tt.path {
				t.Errorf("request %s %s, want %s %s", r.method, r.path, tt.method, tt.path)
			}
			if r.auth != "Bearer "+secret {
				t.Errorf("Authorization %q", r.auth)
			}
			if r.accept != "application/json" {
				t.Errorf("Accept %q", r.accept)
			}
			if tt.body == "" {
				if len(r.body) != 0 || r.contentType != "" {
					t.Errorf("want no body, got Content-Type %q body %q", r.contentType, r.body)
				}
			} else {
				if r.contentType != "application/json" {
					t.Errorf("Content-Type %q", r.contentType)
				}
				jsonEqual(t, r.body, tt.body)
			}
			if tt.check != nil {
				tt.check(t, v)
			}
		})
	}
}

func TestSessionIDIsEscaped(t *testing.T) {
	srv, s := serve(t, step{status: 200, body: `{"tracks":[],"dataChannels":[]}`})
	c := newClient(t, srv.URL)
	if _, err := c.Session(t.Context(), "a/b?c"); err != nil {
		t.Fatal(err)
	}
	if got, want := s.requests()[0].path, prefix+"a%2Fb%3Fc"; got != want {
		t.Errorf("path %q, want %q", got, want)
	}
	if _, err := c.Session(t.Context(), ""); err == nil {
		t.Error("empty session id: no error")
	}
	if _, err := c.AddTracks(t.Context(), "", rtapi.TracksRequest{}); err == nil {
		t.Error("empty session id: no error")
	}
}

// observed records Options.Observe calls.
type observed struct {
	mu       sync.Mutex
	statuses []int
	eps      []string
}

func (o *observed) hook(opts *realtime.Options) {
	opts.Observe = func(ep string, status int, d time.Duration) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.eps = append(o.eps, ep)
		o.statuses = append(o.statuses, status)
	}
}

func (o *observed) get() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.statuses...)
}

func TestRetries(t *testing.T) {
	const (
		unavailable = `{"errorCode":"temporarily_unavailable_error","errorDescription":"Service temporarily unavailable"}`
		created     = `{"sessionId":"e017a2629c754fedc1f7d8587e06d126"}`
	)
	tests := []struct {
		name      string
		steps     []step
		wantCalls []int // statuses seen by Observe
		wantErr   *realtime.Error
	}{{
		name:      "429 then 503 then 201",
		steps:     []step{{429, "", "rate limited"}, {503, "", unavailable}, {201, "", created}},
		wantCalls: []int{429, 503, 201},
	}, {
		name:      "retryable errorCode in a 200",
		steps:     []step{{200, "", `{"errorCode":"retryable_transient_error","errorDescription":"try again"}`}, {201, "", created}},
		wantCalls: []int{200, 201},
	}, {
		name:      "500 until attempts run out",
		steps:     []step{{500, "", `{"errorCode":"internal_error","errorDescription":"Backend error"}`}},
		wantCalls: []int{500, 500, 500},
		wantErr:   &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 500, Code: "internal_error", Description: "Backend error"},
	}, {
		name:      "502 without JSON",
		steps:     []step{{502, "", "<html>\n<body>\n  upstream   gone\n</body></html>"}},
		wantCalls: []int{502, 502, 502},
		wantErr: &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 502,
			Description: "Bad Gateway: <html> <body> upstream gone </body></html>"},
	}, {
		name:      "400 decoding_error",
		steps:     []step{{400, "", `{"errorCode":"decoding_error","errorDescription":"The request could not be decoded."}`}},
		wantCalls: []int{400},
		wantErr: &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 400,
			Code: "decoding_error", Description: "The request could not be decoded."},
	}, {
		name:      "401 unauthorized",
		steps:     []step{{401, "", `{"errorCode":"unauthorized","errorDescription":"invalid app secret"}`}},
		wantCalls: []int{401},
		wantErr: &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 401,
			Code: "unauthorized", Description: "invalid app secret"},
	}, {
		name:      "404 not_found",
		steps:     []step{{404, "", `{"errorCode":"not_found","errorDescription":"app not found"}`}},
		wantCalls: []int{404},
		wantErr: &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 404,
			Code: "not_found", Description: "app not found"},
	}, {
		name:      "406 without a body",
		steps:     []step{{406, "", ""}},
		wantCalls: []int{406},
		wantErr:   &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 406, Description: "Not Acceptable"},
	}, {
		name:      "501 not implemented is final",
		steps:     []step{{501, "", `{"errorCode":"not_supported","errorDescription":"no DataChannels"}`}},
		wantCalls: []int{501},
		wantErr: &realtime.Error{Endpoint: "sessions/new", Method: "POST", StatusCode: 501,
			Code: "not_supported", Description: "no DataChannels"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := serve(t, tt.steps...)
			var obs observed
			c := newClient(t, srv.URL, obs.hook, func(o *realtime.Options) { o.MaxAttempts = 3 })
			resp, err := c.NewSession(t.Context(), nil)
			if got := obs.get(); !reflect.DeepEqual(got, tt.wantCalls) {
				t.Errorf("attempts saw %v, want %v", got, tt.wantCalls)
			}
			if tt.wantErr == nil {
				if err != nil || resp.SessionID != "e017a2629c754fedc1f7d8587e06d126" {
					t.Fatalf("got %+v, %v", resp, err)
				}
				return
			}
			var e *realtime.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not a *realtime.Error", err, err)
			}
			if *e != *tt.wantErr {
				t.Errorf("error %+v, want %+v", *e, *tt.wantErr)
			}
			if realtime.StatusOf(err) != tt.wantErr.StatusCode {
				t.Errorf("StatusOf %d", realtime.StatusOf(err))
			}
			if tt.wantErr.Code != "" && !realtime.IsCode(err, tt.wantErr.Code) {
				t.Errorf("IsCode(%v, %q) = false", err, tt.wantErr.Code)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	srv, _ := serve(t, step{status: 410, body: `{"errorCode":"session_error","errorDescription":"session expired"}`})
	var obs observed
	c := newClient(t, srv.URL, obs.hook)
	_, err := c.AddTracks(t.Context(), sid, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{{Location: "remote", SessionID: sid, TrackName: "a"}}})
	if got, want := err.Error(), "realtime tracks/new: 410 session_error: session expired"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !realtime.IsCode(err, rtapi.CodeSessionError) || realtime.IsCode(err, rtapi.CodeNotFoundTrack) {
		t.Error("IsCode")
	}
	if got := obs.get(); len(got) != 1 {
		t.Errorf("%d attempts, want 1 (410 is final)", len(got))
	}
	if realtime.StatusOf(errors.New("x")) != 0 || realtime.IsCode(nil, "") {
		t.Error("StatusOf/IsCode of non-API errors")
	}
}

// TestRetryConnectionRefused: nothing listens until the second attempt has
// failed; the third attempt reaches the server that then starts.
func TestRetryConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var (
		mu       sync.Mutex
		statuses []int
		srv      *httptest.Server
		listenEr error
	)
	t.Cleanup(func() {
		if srv != nil {
			srv.Close()
		}
	})
	c := newClient(t, "http://"+addr, func(o *realtime.Options) {
		o.Observe = func(_ string, status int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			statuses = append(statuses, status)
			if len(statuses) == 2 { // the SFU comes back
				l, err := net.Listen("tcp", addr)
				if err != nil {
					listenEr = err
					return
				}
				srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusCreated)
					io.WriteString(w, `{"sessionId":"back"}`)
				}))
				srv.Listener = l
				srv.Start()
			}
		}
	})
	resp, err := c.NewSession(t.Context(), nil)
	if listenEr != nil {
		t.Fatalf("relisten on %s: %v", addr, listenEr)
	}
	if err != nil || resp.SessionID != "back" {
		t.Fatalf("got %+v, %v", resp, err)
	}
	if !reflect.DeepEqual(statuses, []int{0, 0, 201}) {
		t.Errorf("attempts saw %v, want [0 0 201]", statuses)
	}
}

func TestConnectionRefusedGivesUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var obs observed
	c := newClient(t, "http://"+addr, obs.hook, func(o *realtime.Options) { o.MaxAttempts = 4 })
	_, err = c.Session(t.Context(), sid)
	if err == nil {
		t.Fatal("no error")
	}
	if got := obs.get(); !reflect.DeepEqual(got, []int{0, 0, 0, 0}) {
		t.Errorf("attempts saw %v", got)
	}
	if realtime.StatusOf(err) != 0 || !strings.HasPrefix(err.Error(), "realtime session: ") {
		t.Errorf("error %q", err)
	}
}

func TestRetryAfter(t *testing.T) {
	srv, s := serve(t,
		step{503, "1", `{"errorCode":"temporarily_unavailable_error","errorDescription":"busy"}`},
		step{201, "", `{"sessionId":"x"}`})
	c := newClient(t, srv.URL) // backoff alone would wait at most 2 ms
	if _, err := c.NewSession(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.times) != 2 {
		t.Fatalf("%d attempts", len(s.times))
	}
	if gap := s.times[1].Sub(s.times[0]); gap < 950*time.Millisecond {
		t.Errorf("retried after %v despite Retry-After: 1", gap)
	}
}

func TestBackoffStopsWithContext(t *testing.T) {
	srv, s := serve(t, step{429, "30", `{"errorCode":"retryable_transient_error","errorDescription":"slow down"}`})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := newClient(t, srv.URL, func(o *realtime.Options) {
		// Cancel while the client waits out the Retry-After.
		o.Observe = func(string, int, time.Duration) { time.AfterFunc(20*time.Millisecond, cancel) }
	})
	start := time.Now()
	_, err := c.AddTracks(ctx, sid, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{{Location: "remote", SessionID: sid, TrackName: "a"}}})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %v", d)
	}
	if !errors.Is(err, context.Canceled) || realtime.StatusOf(err) != 429 || !realtime.IsCode(err, rtapi.CodeRetryableTransient) {
		t.Errorf("error %v: want context.Canceled wrapping the 429", err)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if n := realtime.LockedSessions(c); n != 0 {
		t.Errorf("%d sessions still locked", n)
	}
}

func TestItemErrors(t *testing.T) {
	srv, _ := serve(t, step{200, "", `{"requiresImmediateRenegotiation":true,"sessionDescription":` + offerJSON + `,"tracks":[
		{"sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"cam","mid":"0"},
		{"sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"mic","errorCode":"not_found_track_error",
		 "errorDescription":"Track not found on remote peer. Make sure the publisher peer is connected and sending packets for this track"},
		{"sessionId":"2a45361d5fd7cc14eface0587c276c94","trackName":"screen","errorCode":"empty_track_error","errorDescription":"no media"}]}`})
	c := newClient(t, srv.URL)
	resp, err := c.AddTracks(t.Context(), "sub", rtapi.TracksRequest{Tracks: []rtapi.TrackObject{
		{Location: "remote", SessionID: sid, TrackName: "cam"},
		{Location: "remote", SessionID: sid, TrackName: "mic"},
		{Location: "remote", SessionID: sid, TrackName: "screen"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = realtime.ItemErrors(resp.Tracks)
	if !realtime.IsCode(err, rtapi.CodeNotFoundTrack) || !realtime.IsCode(err, rtapi.CodeEmptyTrack) || realtime.IsCode(err, rtapi.CodeInternal) {
		t.Errorf("IsCode on %v", err)
	}
	var ie *realtime.ItemError
	if !errors.As(err, &ie) {
		t.Fatalf("%v does not unwrap to *ItemError", err)
	}
	want := realtime.ItemError{Index: 1, SessionID: sid, TrackName: "mic", Code: rtapi.CodeNotFoundTrack,
		Description: "Track not found on remote peer. Make sure the publisher peer is connected and sending packets for this track"}
	if *ie != want {
		t.Errorf("got %+v, want %+v", *ie, want)
	}
	if got := (&realtime.ItemError{Index: 2, Mid: "3", SessionID: "s", TrackName: "t", Code: "c", Description: "d"}).Error(); got != "realtime track 2 (s/t, mid 3): c: d" {
		t.Errorf("ItemError.Error() = %q", got)
	}
	if realtime.StatusOf(err) != 0 {
		t.Error("item errors have no status")
	}

	if err := realtime.ItemErrors(resp.Tracks[:1]); err != nil {
		t.Errorf("no item error: got %v", err)
	}
	one := realtime.ItemErrors([]rtapi.CloseTrackObject{{Mid: "0"}, {Mid: "1", ErrorCode: rtapi.CodeCloseTrack, ErrorDescription: "gone"}})
	if ce, ok := one.(*realtime.ItemError); !ok || *ce != (realtime.ItemError{Index: 1, Mid: "1", Code: rtapi.CodeCloseTrack, Description: "gone"}) {
		t.Errorf("close item error %#v", one)
	}
}

// pullSFU serves tracks/new and renegotiate like the SFU does for pulls
// without an offer, and refuses a tracks/new before its last offer is
// answered.
type pullSFU struct {
	mu       sync.Mutex
	pending  string // SDP of the unanswered offer
	offers   int
	nextMid  int
	batches  []int
	failures []string
}

func (p *pullSFU) fail(w http.ResponseWriter, status int, code, desc string) {
	p.failures = append(p.failures, desc)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"errorCode": code, "errorDescription": desc})
}

func (p *pullSFU) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var body struct {
		SessionDescription *struct{ Type, SDP string } `json:"sessionDescription"`
		Tracks             []map[string]any            `json:"tracks"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		p.fail(w, 400, "decoding_error", err.Error())
		return
	}
	switch {
	case r.Method == "POST" && r.URL.Path == prefix+"sub/tracks/new":
		switch {
		case p.pending != "":
			p.fail(w, 400, "invalid_session_description", "tracks/new before the offer "+p.pending+" was answered")
			return
		case body.SessionDescription != nil:
			p.fail(w, 400, "invalid_params", "unexpected offer")
			return
		case len(body.Tracks) > 64:
			p.fail(w, 406, "invalid_params", "more than 64 tracks")
			return
		}
		p.batches = append(p.batches, len(body.Tracks))
		items := make([]map[string]any, len(body.Tracks))
		for i, tr := range body.Tracks {
			item := map[string]any{"sessionId": tr["sessionId"], "trackName": tr["trackName"]}
			if tr["location"] != "remote" {
				item["errorCode"], item["errorDescription"] = "invalid_params", "location"
			} else if strings.HasPrefix(tr["trackName"].(string), "missing") {
				item["errorCode"], item["errorDescription"] = "not_found_track_error", "Track not found on remote peer"
			} else {
				item["mid"] = strconv.Itoa(p.nextMid)
				p.nextMid++
			}
			items[i] = item
		}
		p.offers++
		p.pending = "offer-" + strconv.Itoa(p.offers)
		json.NewEncoder(w).Encode(map[string]any{
			"requiresImmediateRenegotiation": true,
			"sessionDescription":             map[string]string{"type": "offer", "sdp": p.pending},
			"tracks":                         items,
		})
	case r.Method == "PUT" && r.URL.Path == prefix+"sub/renegotiate":
		sd := body.SessionDescription
		if p.pending == "" || sd == nil || sd.Type != "answer" || sd.SDP != "answer to "+p.pending {
			p.fail(w, 400, "invalid_session_description", "unexpected renegotiate")
			return
		}
		p.pending = ""
		io.WriteString(w, `{}`)
	default:
		p.fail(w, 404, "not_found", r.Method+" "+r.URL.Path)
	}
}

func TestPullTracksBatches(t *testing.T) {
	sfu := &pullSFU{}
	srv := httptest.NewServer(sfu)
	defer srv.Close()
	c := newClient(t, srv.URL)

	tracks := make([]rtapi.TrackObject, 150)
	for i := range tracks {
		name := "t" + strconv.Itoa(i)
		if i == 100 {
			name = "missing-100"
		}
		tracks[i] = rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: sid, TrackName: name}
	}
	var offers []string
	items, err := c.PullTracks(t.Context(), "sub", tracks, func(ctx context.Context, o rtapi.SessionDescription) (rtapi.SessionDescription, error) {
		if o.Type != "offer" {
			t.Errorf("asked to answer a %q", o.Type)
		}
		offers = append(offers, o.SDP)
		return rtapi.SessionDescription{Type: "answer", SDP: "answer to " + o.SDP}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sfu.mu.Lock()
	defer sfu.mu.Unlock()
	if len(sfu.failures) > 0 {
		t.Errorf("server refused: %q", sfu.failures)
	}
	if !reflect.DeepEqual(sfu.batches, []int{64, 64, 22}) {
		t.Errorf("batches %v, want [64 64 22]", sfu.batches)
	}
	if !reflect.DeepEqual(offers, []string{"offer-1", "offer-2", "offer-3"}) || sfu.pending != "" {
		t.Errorf("answered %v, pending %q", offers, sfu.pending)
	}
	if len(items) != len(tracks) {
		t.Fatalf("%d items, want %d", len(items), len(tracks))
	}
	mid := 0
	for i, it := range items {
		if it.TrackName != tracks[i].TrackName || it.SessionID != sid {
			t.Fatalf("item %d is %+v, want track %s", i, it, tracks[i].TrackName)
		}
		if i == 100 {
			continue
		}
		if it.Mid != strconv.Itoa(mid) {
			t.Fatalf("item %d mid %q, want %d", i, it.Mid, mid)
		}
		mid++
	}
	err = realtime.ItemErrors(items)
	var ie *realtime.ItemError
	if !errors.As(err, &ie) || ie.Index != 100 || ie.TrackName != "missing-100" || !realtime.IsCode(err, rtapi.CodeNotFoundTrack) {
		t.Errorf("item errors %v", err)
	}
	if n := realtime.LockedSessions(c); n != 0 {
		t.Errorf("%d sessions still locked", n)
	}
}

func TestPullTracksAnswerFails(t *testing.T) {
	sfu := &pullSFU{}
	srv := httptest.NewServer(sfu)
	defer srv.Close()
	c := newClient(t, srv.URL)
	tracks := make([]rtapi.TrackObject, 70)
	for i := range tracks {
		tracks[i] = rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "t" + strconv.Itoa(i)}
	}
	boom := errors.New("pc closed")
	items, err := c.PullTracks(t.Context(), "sub", tracks, func(context.Context, rtapi.SessionDescription) (rtapi.SessionDescription, error) {
		return rtapi.SessionDescription{}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("error %v, want %v", err, boom)
	}
	if len(items) != 64 {
		t.Errorf("%d items, want the 64 the SFU added", len(items))
	}
	if _, err := c.PullTracks(t.Context(), "sub", tracks, nil); err == nil {
		t.Error("nil answer: no error")
	}
}

func TestTooManyTracks(t *testing.T) {
	srv, s := serve(t, step{200, "", `{}`})
	c := newClient(t, srv.URL)
	ctx := t.Context()
	tracks := make([]rtapi.TrackObject, 65)
	mids := make([]rtapi.CloseTrackObject, 65)
	for _, err := range []error{
		func() error {
			_, err := c.AddTracks(ctx, sid, rtapi.TracksRequest{SessionDescription: &offer, Tracks: tracks})
			return err
		}(),
		func() error { _, err := c.AddTracks(ctx, sid, rtapi.TracksRequest{Tracks: tracks}); return err }(),
		func() error {
			_, err := c.CloseTracks(ctx, sid, rtapi.CloseTracksRequest{SessionDescription: &offer, Tracks: mids, Force: true})
			return err
		}(),
		func() error { _, err := c.CloseTracks(ctx, sid, rtapi.CloseTracksRequest{Tracks: mids}); return err }(),
		func() error {
			_, err := c.UpdateTracks(ctx, sid, rtapi.UpdateTracksRequest{Tracks: tracks})
			return err
		}(),
	} {
		if !errors.Is(err, realtime.ErrTooManyTracks) {
			t.Errorf("error %v, want ErrTooManyTracks", err)
		}
	}
	if _, err := c.CloseTracks(ctx, sid, rtapi.CloseTracksRequest{Force: true}); err == nil {
		t.Error("closing no tracks: no error")
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestCloseTracksForceBatches(t *testing.T) {
	var (
		mu      sync.Mutex
		batches []int
		bad     []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Tracks             []struct{ Mid string } `json:"tracks"`
			Force              *bool                  `json:"force"`
			SessionDescription any                    `json:"sessionDescription"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != "PUT" || r.URL.Path != prefix+sid+"/tracks/close" || body.Force == nil || !*body.Force ||
			body.SessionDescription != nil || len(body.Tracks) > 64 {
			bad = append(bad, r.Method+" "+r.URL.Path)
		}
		batches = append(batches, len(body.Tracks))
		var items []string
		for _, tr := range body.Tracks {
			if tr.Mid == "13" || tr.Mid == "140" {
				items = append(items, `{"mid":"`+tr.Mid+`","errorCode":"close_track_error","errorDescription":"Track doesn't exist or was already closed"}`)
			} else {
				items = append(items, `{"mid":"`+tr.Mid+`"}`)
			}
		}
		io.WriteString(w, `{"requiresImmediateRenegotiation":false,"tracks":[`+strings.Join(items, ",")+`]}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)

	req := rtapi.CloseTracksRequest{Force: true}
	for i := range 150 {
		req.Tracks = append(req.Tracks, rtapi.CloseTrackObject{Mid: strconv.Itoa(i)})
	}
	resp, err := c.CloseTracks(t.Context(), sid, req)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("bad requests: %v", bad)
	}
	if !reflect.DeepEqual(batches, []int{64, 64, 22}) {
		t.Errorf("batches %v, want [64 64 22]", batches)
	}
	if len(resp.Tracks) != 150 {
		t.Fatalf("%d items", len(resp.Tracks))
	}
	for i, it := range resp.Tracks {
		if it.Mid != strconv.Itoa(i) {
			t.Fatalf("item %d has mid %q", i, it.Mid)
		}
	}
	if resp.SessionDescription != nil || resp.RequiresImmediateRenegotiation {
		t.Errorf("merged response %+v", resp)
	}
	err = realtime.ItemErrors(resp.Tracks)
	var idx []int
	walkItems(err, func(e *realtime.ItemError) { idx = append(idx, e.Index) })
	if !reflect.DeepEqual(idx, []int{13, 140}) || !realtime.IsCode(err, rtapi.CodeCloseTrack) {
		t.Errorf("item errors %v", err)
	}
}

func walkItems(err error, f func(*realtime.ItemError)) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			walkItems(e, f)
		}
	} else if ie, ok := err.(*realtime.ItemError); ok {
		f(ie)
	}
}

func TestCloseTracksPartialFailure(t *testing.T) {
	srv, s := serve(t,
		step{200, "", `{"requiresImmediateRenegotiation":false,"tracks":[` + strings.Repeat(`{"mid":"x"},`, 63) + `{"mid":"x"}]}`},
		step{410, "", `{"errorCode":"session_error","errorDescription":"session expired"}`})
	c := newClient(t, srv.URL)
	req := rtapi.CloseTracksRequest{Force: true, Tracks: make([]rtapi.CloseTrackObject, 100)}
	resp, err := c.CloseTracks(t.Context(), sid, req)
	if !realtime.IsCode(err, rtapi.CodeSessionError) || resp == nil || len(resp.Tracks) != 64 {
		t.Errorf("got %v, %v: want the first batch's 64 items and the 410", resp, err)
	}
	if n := len(s.requests()); n != 2 {
		t.Errorf("%d requests", n)
	}
}

// sessionOf returns the session id of a request path.
func sessionOf(path string) string {
	id, _, _ := strings.Cut(strings.TrimPrefix(path, prefix), "/")
	return id
}

// TestMutationsSerialized: mutations of one session never overlap at the
// server, whatever mix of methods runs concurrently.
func TestMutationsSerialized(t *testing.T) {
	var (
		mu        sync.Mutex
		inflight  = map[string]int{}
		overlaps  []string
		completed int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := sessionOf(r.URL.Path)
		mu.Lock()
		inflight[id]++
		if inflight[id] > 1 {
			overlaps = append(overlaps, r.Method+" "+r.URL.Path)
		}
		mu.Unlock()
		time.Sleep(100 * time.Microsecond) // widen the window an overlap would need
		mu.Lock()
		inflight[id]--
		completed++
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/tracks/close"):
			io.WriteString(w, `{"requiresImmediateRenegotiation":false,"tracks":[{"mid":"0"}]}`)
		case strings.HasSuffix(r.URL.Path, "/renegotiate"):
			io.WriteString(w, `{}`)
		default:
			io.WriteString(w, `{"requiresImmediateRenegotiation":false,"tracks":[{"mid":"0","trackName":"a"}]}`)
		}
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)

	sessions := []string{"s1", "s2", "s3"}
	const perSession = 24
	var wg sync.WaitGroup
	errs := make(chan error, len(sessions)*perSession)
	for _, id := range sessions {
		for i := range perSession {
			wg.Go(func() {
				ctx := t.Context()
				var err error
				switch i % 4 {
				case 0:
					_, err = c.AddTracks(ctx, id, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{{Location: "remote", SessionID: sid, TrackName: "a"}}})
				case 1:
					err = c.Renegotiate(ctx, id, answer)
				case 2:
					_, err = c.UpdateTracks(ctx, id, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{{Mid: "0"}}})
				case 3:
					_, err = c.CloseTracks(ctx, id, rtapi.CloseTracksRequest{Tracks: []rtapi.CloseTrackObject{{Mid: "0"}}, Force: true})
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("overlapping mutations: %v", overlaps)
	}
	if completed != len(sessions)*perSession {
		t.Errorf("%d requests completed", completed)
	}
	if n := realtime.LockedSessions(c); n != 0 {
		t.Errorf("lock table holds %d sessions", n)
	}
}

// blockingServer holds every mutation until release is called, after
// sending its method, path and body to arrived.
func blockingServer(t *testing.T) (srv *httptest.Server, arrived chan string, release func()) {
	arrived = make(chan string, 100)
	released := make(chan struct{})
	release = sync.OnceFunc(func() { close(released) })
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- r.Method + " " + r.URL.Path + " " + string(bytes.TrimSpace(body))
		if r.Method != "GET" {
			select { // bounded: a stuck test fails instead of hanging CI
			case <-released:
			case <-time.After(30 * time.Second):
				t.Errorf("blocking server: %s %s was never released", r.Method, r.URL.Path)
			}
		}
		io.WriteString(w, `{"requiresImmediateRenegotiation":false,"tracks":[]}`)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(release) // runs first: a failed test must not leave Close waiting
	return srv, arrived, release
}

func recv(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a request")
		return ""
	}
}

// TestSessionsAndReadsNotSerialized: a mutation of one session holds up
// neither mutations of another session nor reads of its own.
func TestSessionsAndReadsNotSerialized(t *testing.T) {
	srv, arrived, release := blockingServer(t)
	c := newClient(t, srv.URL)
	done := make(chan error, 2)
	for _, id := range []string{"A", "B"} {
		go func() { done <- c.Renegotiate(t.Context(), id, answer) }()
	}
	// Both mutations reach the server while neither has finished.
	got := []string{recv(t, arrived), recv(t, arrived)}
	if sessionOf(strings.Fields(got[0])[1]) == sessionOf(strings.Fields(got[1])[1]) {
		t.Fatalf("requests %q", got)
	}
	if _, err := c.Session(t.Context(), "A"); err != nil {
		t.Fatal(err)
	}
	if s := recv(t, arrived); !strings.HasPrefix(s, "GET "+prefix+"A") {
		t.Errorf("got %q", s)
	}
	release()
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if n := realtime.LockedSessions(c); n != 0 {
		t.Errorf("lock table holds %d sessions", n)
	}
}

// waitFor polls cond until it holds (the lock table has no notifications).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// TestMutationsInCallOrder: mutations queued behind a running one reach the
// server in the order they were called; a waiter whose context ends leaves
// the queue without sending anything.
func TestMutationsInCallOrder(t *testing.T) {
	srv, arrived, release := blockingServer(t)
	c := newClient(t, srv.URL)
	const n = 8
	done := make(chan error, n)
	update := func(ctx context.Context, i int) error {
		_, err := c.UpdateTracks(ctx, sid, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{{Mid: strconv.Itoa(i)}}})
		return err
	}
	go func() { done <- update(t.Context(), 0) }()
	recv(t, arrived) // call 0 is at the server
	ctx, cancel := context.WithCancel(t.Context())
	for i := 1; i < n; i++ {
		callCtx := t.Context()
		if i == 3 {
			callCtx = ctx
		}
		go func() { done <- update(callCtx, i) }()
		waitFor(t, "call "+strconv.Itoa(i)+" to queue", func() bool { return realtime.Waiters(c, sid) == i })
	}
	cancel()
	var cancelled error
	for cancelled == nil {
		if err := <-done; err != nil {
			cancelled = err
		}
	}
	if !errors.Is(cancelled, context.Canceled) {
		t.Fatalf("cancelled waiter returned %v", cancelled)
	}
	if w := realtime.Waiters(c, sid); w != n-2 {
		t.Errorf("%d waiters after cancel, want %d", w, n-2)
	}
	release()
	for i := 1; i < n; i++ {
		if i == 3 {
			continue
		}
		want := `{"tracks":[{"mid":"` + strconv.Itoa(i) + `"}]}`
		if got := recv(t, arrived); !strings.HasSuffix(got, want) {
			t.Errorf("request %q, want call %d", got, i)
		}
	}
	for range n - 1 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if n := realtime.LockedSessions(c); n != 0 {
		t.Errorf("lock table holds %d sessions", n)
	}
}

func TestSecretNeverInErrorsOrLogs(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		switch r.URL.Path {
		case prefix + "new":
			w.WriteHeader(401)
			io.WriteString(w, `{"errorCode":"unauthorized","errorDescription":"bad token `+auth+`"}`)
		default:
			w.WriteHeader(503)
			io.WriteString(w, "<html>no backend for "+auth+"</html>")
		}
	}))
	defer echo.Close()
	var logs bytes.Buffer
	c := newClient(t, echo.URL, func(o *realtime.Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.MaxAttempts = 2
	})
	_, err1 := c.NewSession(t.Context(), nil)
	_, err2 := c.Session(t.Context(), sid)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err3 := c.Session(ctx, sid)
	_, err4 := realtime.New(realtime.Options{BaseURL: "ftp://x", AppID: "a", AppSecret: secret})
	_, err5 := realtime.New(realtime.Options{BaseURL: "http://x/v1", AppID: "a", AppSecret: secret + "\n"})
	for i, err := range []error{err1, err2, err3, err4, err5} {
		if err == nil {
			t.Errorf("err%d is nil", i+1)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("err%d leaks the secret: %v", i+1, err)
		}
	}
	if !strings.Contains(err1.Error(), "[redacted]") || !strings.Contains(err2.Error(), "[redacted]") {
		t.Errorf("errors %q, %q", err1, err2)
	}
	if !strings.Contains(logs.String(), "retrying") {
		t.Errorf("no retry logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs leak the secret: %s", logs.String())
	}
}

func TestOptions(t *testing.T) {
	good := realtime.Options{BaseURL: "https://rtc.live.cloudflare.com/v1", AppID: "app", AppSecret: secret}
	tests := []struct {
		name string
		mod  func(*realtime.Options)
		want string // substring of the error; "" = valid
	}{
		{"valid", func(*realtime.Options) {}, ""},
		{"trailing slash", func(o *realtime.Options) { o.BaseURL += "/" }, ""},
		{"max delay below default base", func(o *realtime.Options) { o.RetryMaxDelay = 50 * time.Millisecond }, ""},
		{"no base URL", func(o *realtime.Options) { o.BaseURL = "" }, "Options.BaseURL is empty"},
		{"bad scheme", func(o *realtime.Options) { o.BaseURL = "rtc.live.cloudflare.com/v1" }, "scheme must be http or https"},
		{"no host", func(o *realtime.Options) { o.BaseURL = "http:///v1" }, "no host"},
		{"query", func(o *realtime.Options) { o.BaseURL += "?x=1" }, "query"},
		{"not a URL", func(o *realtime.Options) { o.BaseURL = "http://[::1" }, "not a URL"},
		{"no app", func(o *realtime.Options) { o.AppID = "" }, "Options.AppID is empty"},
		{"no secret", func(o *realtime.Options) { o.AppSecret = "" }, "Options.AppSecret is empty"},
		{"attempts", func(o *realtime.Options) { o.MaxAttempts = -1 }, "Options.MaxAttempts is negative"},
		{"base delay", func(o *realtime.Options) { o.RetryBaseDelay = -1 }, "Options.RetryBaseDelay is negative"},
		{"max delay", func(o *realtime.Options) { o.RetryMaxDelay = -1 }, "Options.RetryMaxDelay is negative"},
		{"base above max", func(o *realtime.Options) { o.RetryBaseDelay, o.RetryMaxDelay = time.Second, time.Millisecond },
			"Options.RetryBaseDelay (1s) exceeds Options.RetryMaxDelay (1ms)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			c, err := realtime.New(o)
			switch {
			case tt.want == "" && (err != nil || c == nil):
				t.Errorf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("New: error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestResponseTooLarge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		io.WriteString(w, `{"sessionId":"`)
		chunk := strings.Repeat("a", 64<<10)
		for range 5 << 20 / len(chunk) {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
		io.WriteString(w, `"}`)
	}))
	defer srv.Close()
	var obs observed
	c := newClient(t, srv.URL, obs.hook)
	_, err := c.NewSession(t.Context(), nil)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("error %v", err)
	}
	if n := len(obs.get()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func TestNoSessionID(t *testing.T) {
	srv, _ := serve(t, step{201, "", `{}`})
	c := newClient(t, srv.URL)
	if _, err := c.NewSession(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "no sessionId") {
		t.Errorf("error %v", err)
	}
}
