package sfu_test

import (
	"encoding/json"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// raw sends a request without the client, so the wire format itself is
// checked: status, errorCode and headers.
func raw(t *testing.T, method, url, secret, body string, hdr ...string) (*http.Response, rtapi.Error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var e rtapi.Error
	_ = json.Unmarshal(b, &e)
	return res, e
}

func TestRequestErrors(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	ns, err := e.Client.NewSession(rtctest.Ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	sess := e.Base + "/sessions/" + ns.SessionID
	cases := []struct {
		name, method, url, secret, body string
		status                          int
		code                            string
	}{
		{"wrong secret", "POST", e.Base + "/sessions/new", "nope", "", 401, rtapi.CodeUnauthorized},
		{"no secret", "POST", e.Base + "/sessions/new", "", "", 401, rtapi.CodeUnauthorized},
		{"unknown app", "POST", e.Srv.URL + "/v1/apps/other/sessions/new", rtctest.Secret, "", 404, rtapi.CodeNotFound},
		{"bad json", "POST", sess + "/tracks/new", rtctest.Secret, "{tracks: [", 400, rtapi.CodeDecodingError},
		{"wrong json type", "POST", sess + "/tracks/new", rtctest.Secret, `{"tracks": "x"}`, 400, rtapi.CodeDecodingError},
		{"garbage sdp", "POST", e.Base + "/sessions/new", rtctest.Secret,
			`{"sessionDescription": {"type": "offer", "sdp": "this is not sdp"}}`, 400, rtapi.CodeInvalidSessionDescription},
		{"answer where an offer is due", "POST", e.Base + "/sessions/new", rtctest.Secret,
			`{"sessionDescription": {"type": "answer", "sdp": "v=0"}}`, 400, rtapi.CodeInvalidSessionDescription},
		{"too large", "POST", sess + "/tracks/new", rtctest.Secret, `{"x": "` + strings.Repeat("a", 2<<20) + `"}`, 413, rtapi.CodePayloadTooLarge},
		{"unknown session", "GET", e.Base + "/sessions/0123456789abcdef0123456789abcdef", rtctest.Secret, "", 404, rtapi.CodeSessionError},
		{"mixed batch", "POST", sess + "/tracks/new", rtctest.Secret,
			`{"tracks": [{"location": "local", "trackName": "a", "kind": "audio"}, {"location": "remote", "sessionId": "x", "trackName": "b"}]}`,
			400, rtapi.CodeInvalidParams},
		{"empty close", "PUT", sess + "/tracks/close", rtctest.Secret, `{"tracks": [], "force": true}`, 400, rtapi.CodeInvalidParams},
		{"datachannels", "POST", sess + "/datachannels/new", rtctest.Secret, `{"dataChannels": []}`, 501, rtapi.CodeNotSupported},
		{"renegotiate with nothing to answer", "PUT", sess + "/renegotiate", rtctest.Secret,
			`{"sessionDescription": {"type": "answer", "sdp": "v=0"}}`, 400, rtapi.CodeInvalidSessionDescription},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, body := raw(t, c.method, c.url, c.secret, c.body)
			if res.StatusCode != c.status || body.ErrorCode != c.code {
				t.Fatalf("%s %s: %d %q (%s), want %d %q", c.method, c.url, res.StatusCode, body.ErrorCode, body.ErrorDescription, c.status, c.code)
			}
			if body.ErrorDescription == "" {
				t.Error("errorDescription is empty")
			}
			if strings.Contains(body.ErrorDescription, rtctest.Secret) {
				t.Error("the error leaks the secret")
			}
			if c.status == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: %q", res.Header.Get("WWW-Authenticate"))
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
		})
	}
}

func TestPathsWithoutV1AndCORS(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	res, body := raw(t, "POST", e.Srv.URL+"/apps/test/sessions/new", rtctest.Secret, "", "Origin", "http://page.example")
	if res.StatusCode != 201 {
		t.Fatalf("sessions/new without /v1: %d %+v", res.StatusCode, body)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != "http://page.example" || !strings.Contains(res.Header.Get("Vary"), "Origin") {
		t.Errorf("CORS headers on a response: %v", res.Header)
	}
	// A browser's preflight carries no Authorization and must still pass.
	res, _ = raw(t, "OPTIONS", e.Base+"/sessions/new", "", "", "Origin", "http://page.example",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if res.StatusCode != 204 {
		t.Fatalf("preflight: %d", res.StatusCode)
	}
	if !strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		!strings.Contains(strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Errorf("preflight headers: %v", res.Header)
	}
}

func TestRateLimit(t *testing.T) {
	o := rtctest.FastOptions()
	o.RateLimit = 5
	e := rtctest.NewEnv(t, o)
	ns, err := e.Client.NewSession(rtctest.Ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	limited := 0
	for range 30 {
		res, body := raw(t, "GET", e.Base+"/sessions/"+ns.SessionID, rtctest.Secret, "")
		if res.StatusCode == 429 {
			limited++
			if body.ErrorCode == "" || res.Header.Get("Retry-After") == "" {
				t.Fatalf("429 without errorCode or Retry-After: %+v %v", body, res.Header)
			}
		}
	}
	if limited < 20 {
		t.Fatalf("%d of 30 fast calls were limited at 5/s, want most", limited)
	}
	// The client backs off and gets through.
	if _, err := e.Client.Session(rtctest.Ctx(t), ns.SessionID); err != nil {
		t.Fatalf("client after rate limit: %v", err)
	}
}

func TestNotFoundTrack(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "cam")
	c := rtctest.Ctx(t)
	ns, _ := e.Client.NewSession(c, nil)
	items, err := e.Client.PullTracks(c, ns.SessionID, []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "never-announced"},
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "cam"},
	}, rtctest.NewPeer(t).AnswerFunc)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].ErrorCode != rtapi.CodeNotFoundTrack || items[1].ErrorCode != "" || items[1].Mid == "" {
		t.Fatalf("one unknown and one good pull: %+v", items)
	}
}

// An announced track whose publisher has not sent yet: the pull waits for
// the first packet (the echo demo pulls right after publishing), and fails
// with not_found_track_error only when none comes in time.
func TestPullWaitsForFirstPacket(t *testing.T) {
	o := rtctest.FastOptions()
	o.FirstPacketWait = 1500 * time.Millisecond
	e := rtctest.NewEnv(t, o)
	p := rtctest.NewPeer(t)
	silent, st := p.SendTrack(webrtc.RTPCodecTypeVideo, "silent")
	late, lt := p.SendTrack(webrtc.RTPCodecTypeVideo, "late")
	sid := publish(t, e, p, map[*webrtc.RTPTransceiver]string{st: "silent", lt: "late"})
	_ = silent
	time.AfterFunc(400*time.Millisecond, late.Start)
	t.Cleanup(func() { time.Sleep(10 * time.Millisecond); late.Halt() })
	c := rtctest.Ctx(t)
	b := rtctest.NewPeer(t)
	ns, _ := e.Client.NewSession(c, nil)
	start := time.Now()
	items, err := e.Client.PullTracks(c, ns.SessionID, []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "late"},
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "silent"},
	}, b.AnswerFunc)
	if err != nil {
		t.Fatal(err)
	}
	if items[0].ErrorCode != "" {
		t.Fatalf("a track whose first packet came 400 ms after the pull: %+v", items[0])
	}
	if items[1].ErrorCode != rtapi.CodeNotFoundTrack {
		t.Fatalf("a track that never sent: %+v, want not_found_track_error", items[1])
	}
	if d := time.Since(start); d < o.FirstPacketWait {
		t.Fatalf("the pull answered after %v, before the first-packet wait of %v", d, o.FirstPacketWait)
	}
	b.NextTrack().Expect(t, "late", 20)
}

func TestNotConnected425(t *testing.T) {
	o := rtctest.FastOptions()
	o.ConnectWait = 300 * time.Millisecond
	e := rtctest.NewEnv(t, o)
	p, q := rtctest.NewPeer(t), rtctest.NewPeer(t)
	p.SendTrack(webrtc.RTPCodecTypeVideo, "v")
	_, tr := q.SendTrack(webrtc.RTPCodecTypeVideo, "v")
	c := rtctest.Ctx(t)
	ns, err := e.Client.NewSession(c, p.Offer()) // the answer is never applied: no connection
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Client.AddTracks(c, ns.SessionID, rtapi.TracksRequest{SessionDescription: q.Offer(),
		Tracks: []rtapi.TrackObject{{Location: rtapi.LocationLocal, Mid: tr.Mid(), TrackName: "v"}}})
	if realtime.StatusOf(err) != 425 || !realtime.IsCode(err, rtapi.CodeSessionError) {
		t.Fatalf("mutation of an unconnected session: %v, want 425 session_error", err)
	}
	if d := time.Since(start); d < o.ConnectWait {
		t.Fatalf("answered after %v, before waiting %v for connected", d, o.ConnectWait)
	}
}

func TestSessionEndsWith410(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, a, _, _ := publisherOf(t, e, "cam")
	if err := a.PC.Close(); err != nil { // DTLS close_notify ends the SFU side
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.Client.Session(rtctest.Ctx(t), sid)
		if realtime.StatusOf(err) == 410 && realtime.IsCode(err, rtapi.CodeSessionError) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("closed session still answers: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := e.SFU.Sessions(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestIdleTrackCollected(t *testing.T) {
	o := rtctest.FastOptions()
	o.TrackIdleTimeout = 300 * time.Millisecond
	e := rtctest.NewEnv(t, o)
	sid, _, srcs, _ := publisherOf(t, e, "cam")
	srcs["cam"].Halt()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.Client.Session(rtctest.Ctx(t), sid)
		if err != nil {
			t.Fatal(err)
		}
		if st.Tracks[0].Status == rtapi.StatusInactive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a track without media was not collected")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.SFU.Tracks()) != 0 {
		t.Fatalf("collected track still published: %+v", e.SFU.Tracks())
	}
}

func TestOfferMustBeAnsweredFirst(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "cam")
	c := rtctest.Ctx(t)
	ns, _ := e.Client.NewSession(c, nil)
	res, err := e.Client.AddTracks(c, ns.SessionID, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "cam"}}})
	if err != nil || !res.RequiresImmediateRenegotiation || res.SessionDescription.Type != "offer" {
		t.Fatalf("pull without offer: %+v %v", res, err)
	}
	_, err = e.Client.AddTracks(c, ns.SessionID, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "cam"}}})
	if realtime.StatusOf(err) != 400 {
		t.Fatalf("a mutation before the SFU's offer was answered: %v, want 400", err)
	}
}
