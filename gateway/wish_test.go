package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/rtapi"
	"github.com/rtgate/rtgate/gateway/wish"
)

// testAppSecret is the embedded SFU's secret in the WHIP/WHEP tests: no
// response of the daemon may contain it.
const testAppSecret = "app-secret-that-must-never-leave-rtgate-0123456789"

// responseLog keeps every response header and body the daemon wrote.
type responseLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *responseLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lw := &loggingWriter{ResponseWriter: w, log: l}
		next.ServeHTTP(lw, r)
		lw.flushHeader()
	})
}

func (l *responseLog) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

type loggingWriter struct {
	http.ResponseWriter
	log   *responseLog
	wrote bool
}

func (w *loggingWriter) flushHeader() {
	if w.wrote {
		return
	}
	w.wrote = true
	w.log.mu.Lock()
	defer w.log.mu.Unlock()
	for k, vs := range w.Header() {
		fmt.Fprintf(&w.log.buf, "%s: %s\n", k, strings.Join(vs, ", "))
	}
}

func (w *loggingWriter) WriteHeader(code int) {
	w.flushHeader()
	w.ResponseWriter.WriteHeader(code)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	w.flushHeader()
	w.log.mu.Lock()
	w.log.buf.Write(b)
	w.log.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

// wishEnv is a running daemon with the embedded SFU, for WHIP and WHEP.
type wishEnv struct {
	t    *testing.T
	d    *Daemon
	base string
	log  *responseLog
	http *http.Client
}

func newWISHEnv(t *testing.T, modify func(*config.Config)) *wishEnv {
	t.Helper()
	return newWISHEnvWith(t, modify, nil)
}

// newWISHEnvWith is newWISHEnv with the WHIP/WHEP options adjusted too.
func newWISHEnvWith(t *testing.T, modify func(*config.Config), opts func(*wish.Options)) *wishEnv {
	t.Helper()
	cfg := loopbackConfig()
	cfg.Realtime.AppSecret = testAppSecret
	cfg.SFU.FirstPacketWait = 3 * time.Second
	cfg.SFU.SessionReuseWindow = time.Second
	if modify != nil {
		modify(cfg)
	}
	testWISHOptions = func(o *wish.Options) {
		o.ConnectTimeout = 8 * time.Second
		o.DisconnectGrace = 2 * time.Second
		o.PollInterval = 200 * time.Millisecond
		o.MediaWait = 8 * time.Second
		o.PublishBackoff = 50 * time.Millisecond
		if opts != nil {
			opts(o)
		}
	}
	t.Cleanup(func() { testWISHOptions = nil })
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := &wishEnv{t: t, d: d, base: httpURL(d.Addr()), log: &responseLog{},
		http: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	d.srv.Handler = e.log.wrap(d.srv.Handler)
	stop := runInBackground(t, d.Run)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
		if e.log.contains(testAppSecret) {
			t.Error("a response of the daemon contains the app secret")
		}
	})
	return e
}

// do sends a request and returns the response with its body read.
func (e *wishEnv) do(method, path, token, ctype string, body string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// streams returns GET /api/streams by name.
func (e *wishEnv) streams() map[string]StreamStatus {
	e.t.Helper()
	_, body := e.do("GET", "/api/streams", "", "", "")
	var v struct{ Streams []StreamStatus }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		e.t.Fatalf("GET /api/streams: %v: %s", err, body)
	}
	out := map[string]StreamStatus{}
	for _, s := range v.Streams {
		out[s.Name] = s
	}
	return out
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// whipClient is a pion publisher: numbered VP8 and Opus packets.
type whipClient struct {
	*rtctest.Peer
	video, audio *rtctest.Source
	location     string
	etag         string
}

// newWHIPClient makes a publisher with a video and an audio track tagged
// tag; gather says whether its offer waits for every candidate.
func newWHIPClient(t *testing.T, tag string) *whipClient {
	c := &whipClient{Peer: rtctest.NewPeer(t)}
	c.video, _ = c.SendTrack(webrtc.RTPCodecTypeVideo, tag+"-v")
	c.audio, _ = c.SendTrack(webrtc.RTPCodecTypeAudio, tag+"-a")
	t.Cleanup(func() {
		c.video.Halt()
		c.audio.Halt()
	})
	return c
}

// publish POSTs the client's offer (with every candidate) and applies the
// answer; it starts the sources once connected.
func (c *whipClient) publish(e *wishEnv, stream, token string) {
	e.t.Helper()
	offer := c.Offer()
	resp, body := e.do("POST", "/whip/"+stream, token, "application/sdp", offer.SDP)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("POST /whip/%s = %d %s", stream, resp.StatusCode, body)
	}
	c.location, c.etag = resp.Header.Get("Location"), resp.Header.Get("ETag")
	if resp.Header.Get("Content-Type") != "application/sdp" || c.location == "" || c.etag == "" {
		e.t.Fatalf("POST /whip/%s: Content-Type %q, Location %q, ETag %q", stream,
			resp.Header.Get("Content-Type"), c.location, c.etag)
	}
	c.Apply(&rtapi.SessionDescription{Type: "answer", SDP: body})
	c.WaitConnected()
	c.video.Start()
	c.audio.Start()
}

// viewer is a pion WHEP client receiving video and audio.
type viewer struct {
	*rtctest.Peer
	location string
}

// play makes a viewer of stream: with its own offer (clientOffer) or with
// rtgate's offer and a PATCHed answer.
func play(e *wishEnv, stream, token string, clientOffer bool) *viewer {
	e.t.Helper()
	v := &viewer{Peer: rtctest.NewPeer(e.t)}
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := v.PC.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			e.t.Fatal(err)
		}
	}
	if clientOffer {
		offer := v.Offer()
		resp, body := e.do("POST", "/whep/"+stream, token, "application/sdp", offer.SDP)
		if resp.StatusCode != http.StatusCreated {
			e.t.Fatalf("POST /whep/%s = %d %s", stream, resp.StatusCode, body)
		}
		v.location = resp.Header.Get("Location")
		v.Apply(&rtapi.SessionDescription{Type: "answer", SDP: body})
	} else {
		resp, body := e.do("POST", "/whep/"+stream, token, "", "")
		if resp.StatusCode != http.StatusCreated {
			e.t.Fatalf("POST /whep/%s (no offer) = %d %s", stream, resp.StatusCode, body)
		}
		v.location = resp.Header.Get("Location")
		v.Apply(&rtapi.SessionDescription{Type: "offer", SDP: body})
		ans := v.Answer()
		resp, body = e.do("PATCH", v.location, token, "application/sdp", ans.SDP)
		if resp.StatusCode != http.StatusNoContent {
			e.t.Fatalf("PATCH %s (answer) = %d %s", v.location, resp.StatusCode, body)
		}
	}
	return v
}

// expectMedia checks that the viewer receives the publisher's video and
// audio packets, byte for byte.
func (v *viewer) expectMedia(t *testing.T, tag string, n int) {
	t.Helper()
	for range 2 {
		s := v.NextTrack()
		kind := "-v"
		if s.Track.Kind() == webrtc.RTPCodecTypeAudio {
			kind = "-a"
		}
		s.Expect(t, tag+kind, n)
	}
}

// TestWHIPToWHEP publishes VP8 and Opus with a pion WHIP client and plays
// them with pion WHEP clients of both offer styles, in relay and in proxy
// mode: every viewer receives the publisher's packets byte for byte, and a
// viewer that joins a live stream makes a PLI reach the publisher.
func TestWHIPToWHEP(t *testing.T) {
	for _, mode := range []string{config.ModeRelay, config.ModeProxy} {
		t.Run(mode, func(t *testing.T) {
			e := newWISHEnv(t, func(c *config.Config) { c.WHIP.Mode, c.WHEP.Mode = mode, mode })
			pub := newWHIPClient(t, "pub-"+mode)
			pub.publish(e, "live", "")
			waitFor(t, "stream live", func() bool {
				s, ok := e.streams()["live"]
				return ok && s.State == "live" && len(s.Tracks) == 2
			})

			a := play(e, "live", "", true)
			a.expectMedia(t, "pub-"+mode, 50)

			// A second viewer joining the live stream gets a keyframe:
			// a PLI goes upstream to the publisher.
			time.Sleep(time.Second) // out of every coalescing window
			before := pub.PLIs.Load()
			b := play(e, "live", "", false)
			b.expectMedia(t, "pub-"+mode, 50)
			waitFor(t, "a PLI at the publisher", func() bool { return pub.PLIs.Load() > before })

			if c := e.d.sessionCounts(); c["whip"] != 1 || c["whep"] != 2 || c["sfu"] < 2 {
				t.Errorf("sessions for /metrics = %v, want 1 whip, 2 whep and at least 2 on the SFU (the publication, the relay pull or the proxy viewers)", c)
			}
			st := e.streams()["live"]
			if st.Viewers != 2 || st.WHEPMode != mode || st.WHIP == nil || st.WHIP.Mode != mode || st.Type != TypeWHIP {
				t.Errorf("/api/streams live = %+v", st)
			}
			codecs := map[string]string{}
			for _, tr := range st.Tracks {
				codecs[tr.Kind] = tr.Codec
			}
			if !strings.EqualFold(codecs["video"], "video/VP8") || !strings.EqualFold(codecs["audio"], "audio/opus") {
				t.Errorf("codecs = %v, want VP8 and Opus", codecs)
			}
			if mode == config.ModeRelay {
				waitFor(t, "a bitrate", func() bool {
					for _, tr := range e.streams()["live"].Tracks {
						if tr.Bitrate == 0 {
							return false
						}
					}
					return true
				})
			}
		})
	}
}

// TestWISHErrors checks the refusals of the endpoints and that none of
// them leaves anything behind: no stream in /api/streams, no SFU session,
// no resource, no goroutine.
func TestWISHErrors(t *testing.T) {
	e := newWISHEnv(t, func(c *config.Config) {
		c.WHIP.Token, c.WHEP.Token = "pub-token", "play-token"
		c.Streams = []config.Stream{{Name: "studio", Source: "whip"}}
	})
	settle := func() int {
		e.http.CloseIdleConnections()
		e.d.rtHTTP.CloseIdleConnections()
		runtime.GC()
		return runtime.NumGoroutine()
	}
	// Every client is made first, and the stream has had a publisher once
	// (a configured relay stream keeps its publication's UDP port for the
	// next publisher): what is left then is the baseline.
	p := rtctest.NewPeer(t)
	p.SendTrack(webrtc.RTPCodecTypeVideo, "x")
	offer := p.Offer().SDP
	warm, pub, second := newWHIPClient(t, "warm"), newWHIPClient(t, "first"), newWHIPClient(t, "second")
	warm.publish(e, "studio", "pub-token")
	if resp, body := e.do("DELETE", warm.location, "pub-token", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s = %d %q", warm.location, resp.StatusCode, body)
	}
	warm.video.Halt()
	warm.audio.Halt()
	_ = warm.PC.Close()
	waitFor(t, "the SFU sessions of the first publisher to end", func() bool { return e.d.sfu.Sessions() == 0 })
	time.Sleep(200 * time.Millisecond)
	baseline := settle()

	tests := []struct {
		name, method, path, token, ctype, body string
		hdr                                    []string
		status                                 int
		want                                   string
	}{
		{"no token", "POST", "/whip/studio", "", "application/sdp", offer, nil, 401, "bearer token is required"},
		{"wrong token", "POST", "/whip/studio", "nope", "application/sdp", offer, nil, 401, "wrong bearer token"},
		{"play token for publishing", "POST", "/whip/studio", "play-token", "application/sdp", offer, nil, 401, "wrong bearer token"},
		{"wrong type", "POST", "/whip/studio", "pub-token", "text/plain", offer, nil, 415, "application/sdp"},
		{"no type", "POST", "/whip/studio", "pub-token", "", offer, nil, 415, "application/sdp"},
		{"bad sdp", "POST", "/whip/studio", "pub-token", "application/sdp", "v=0\r\nthis is not sdp\r\n", nil, 400, "bad SDP offer"},
		{"empty offer", "POST", "/whip/studio", "pub-token", "application/sdp", "", nil, 400, "bad SDP offer"},
		{"too big", "POST", "/whip/studio", "pub-token", "application/sdp", offer + strings.Repeat("a=x-pad:"+strings.Repeat("z", 100)+"\r\n", 2000), nil, 413, "larger than"},
		{"bad stream name", "POST", "/whip/no%20spaces", "pub-token", "application/sdp", offer, nil, 404, "stream name"},
		{"whep unknown stream", "POST", "/whep/nothing", "play-token", "application/sdp", offer, nil, 404, "no stream"},
		{"whep no token", "POST", "/whep/studio", "", "", "", nil, 401, "bearer token"},
		{"whep not live", "POST", "/whep/studio", "play-token", "", "", nil, 503, "not live"},
		{"whep offer that sends", "POST", "/whep/studio", "play-token", "application/sdp", offer, nil, 400, "receives no audio or video"},
		{"delete unknown", "DELETE", "/whip/studio/0123456789abcdef", "pub-token", "", "", nil, 404, "no such WHIP resource"},
		{"delete unknown without token", "DELETE", "/whip/studio/0123456789abcdef", "", "", "", nil, 401, "bearer token"},
		{"patch unknown", "PATCH", "/whep/studio/0123456789abcdef", "play-token", "application/trickle-ice-sdpfrag", "a=end-of-candidates\r\n", nil, 404, "no such WHEP resource"},
		{"get endpoint", "GET", "/whip/studio", "pub-token", "", "", nil, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.do(tt.method, tt.path, tt.token, tt.ctype, tt.body, tt.hdr...)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("%s %s = %d %q, want %d with %q", tt.method, tt.path, resp.StatusCode, body, tt.status, tt.want)
			}
			if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", resp.Header.Get("WWW-Authenticate"))
			}
			if resp.StatusCode >= 400 && resp.StatusCode != 405 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("error body is %q, want clear text", resp.Header.Get("Content-Type"))
			}
		})
	}

	// A second publisher on a live stream: 409 (on_conflict reject).
	pub.publish(e, "studio", "pub-token")
	resp, body := e.do("POST", "/whip/studio", "pub-token", "application/sdp", second.Offer().SDP)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already has a publisher") {
		t.Errorf("second publisher = %d %q, want 409", resp.StatusCode, body)
	}
	// Publishing to a configured source stream is a conflict too, and a
	// PATCH with a stale ETag fails its precondition.
	resp, body = e.do("PATCH", pub.location, "pub-token", "application/trickle-ice-sdpfrag", "a=end-of-candidates\r\n", "If-Match", `"stale"`)
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PATCH with a stale If-Match = %d %q, want 412", resp.StatusCode, body)
	}
	resp, body = e.do("PATCH", pub.location, "pub-token", "text/plain", "x")
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("PATCH text/plain = %d %q, want 415", resp.StatusCode, body)
	}

	// DELETE frees it; a second DELETE is 404.
	if resp, body := e.do("DELETE", pub.location, "pub-token", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s = %d %q", pub.location, resp.StatusCode, body)
	}
	if resp, body := e.do("DELETE", pub.location, "pub-token", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE = %d %q, want 404", resp.StatusCode, body)
	}
	pub.video.Halt()
	pub.audio.Halt()
	_ = pub.PC.Close()
	_ = second.PC.Close()
	_ = p.PC.Close()

	if n := e.d.wish.Resources(); n != 0 {
		t.Errorf("%d WHIP/WHEP resources left", n)
	}
	if got := e.streams(); len(got) != 1 || got["studio"].WHIP.Publisher != wish.PublisherNone || got["studio"].State != wish.StateIdle {
		t.Errorf("/api/streams = %+v, want studio alone, idle", got)
	}
	waitFor(t, "the SFU sessions to end", func() bool { return e.d.sfu.Sessions() == 0 })
	waitGoroutines(t, baseline, settle)
}

// waitGoroutines waits until settle reports at most baseline goroutines,
// and shows the others when they do not go.
func waitGoroutines(t *testing.T, baseline int, settle func() int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for settle() > baseline {
		if time.Now().After(deadline) {
			var b strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), baseline, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWISHOptionsAndCORS checks OPTIONS (a CORS preflight, and the ICE
// servers as Link headers: TURN credentials only for an authorized
// request) and the CORS headers of a POST from a page of another origin.
func TestWISHOptionsAndCORS(t *testing.T) {
	e := newWISHEnv(t, func(c *config.Config) {
		c.WHIP.Token = "pub-token"
		c.WebRTC.ICEServers = []config.ICEServer{
			{URLs: []string{"stun:stun.example.net:3478"}},
			{URLs: []string{"turn:turn.example.net?transport=udp"}, Username: "user", Credential: "pa\"ss"},
		}
	})
	const origin = "http://page.example"
	resp, _ := e.do("OPTIONS", "/whip/cam", "", "", "", "Origin", origin,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	h := resp.Header
	links := strings.Join(h.Values("Link"), "\n")
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight = %d %v", resp.StatusCode, h)
	}
	if links != `<stun:stun.example.net:3478>; rel="ice-server"` {
		t.Errorf("preflight Link = %q, want the STUN server only (no credentials without a token)", links)
	}

	resp, _ = e.do("OPTIONS", "/whip/cam", "pub-token", "", "")
	want := `<stun:stun.example.net:3478>; rel="ice-server"` + "\n" +
		`<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="pa\"ss"; credential-type="password"`
	if got := strings.Join(resp.Header.Values("Link"), "\n"); resp.StatusCode != http.StatusNoContent || got != want {
		t.Errorf("authorized OPTIONS = %d, Link\n%s\nwant\n%s", resp.StatusCode, got, want)
	}
	if resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Errorf("Accept-Post = %q", resp.Header.Get("Accept-Post"))
	}

	// A cross-origin POST exposes what a WHIP client reads.
	c := newWHIPClient(t, "cors")
	resp, body := e.do("POST", "/whip/cam", "pub-token", "application/sdp", c.Offer().SDP, "Origin", origin)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d %s", resp.StatusCode, body)
	}
	expose := resp.Header.Get("Access-Control-Expose-Headers")
	for _, hd := range []string{"Location", "ETag", "Link"} {
		if !strings.Contains(expose, hd) {
			t.Errorf("Access-Control-Expose-Headers %q lacks %s", expose, hd)
		}
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != origin || len(resp.Header.Values("Link")) != 2 {
		t.Errorf("POST headers: %v", resp.Header)
	}
	if !strings.HasPrefix(resp.Header.Get("Location"), "/whip/cam/") {
		t.Errorf("Location = %q", resp.Header.Get("Location"))
	}
}

// TestWISHDelete checks that DELETE closes the publisher's tracks on the
// SFU (GET /sessions/{id}), in both modes, and that a WHIP-created stream
// leaves /api/streams with its publisher.
func TestWISHDelete(t *testing.T) {
	e := newWISHEnv(t, func(c *config.Config) {
		c.Streams = []config.Stream{{Name: "px", Source: "whip", WHIPMode: "proxy"}}
	})
	for _, stream := range []string{"px", "dyn"} { // proxy, configured; relay, created by the POST
		c := newWHIPClient(t, stream)
		c.publish(e, stream, "")
		var sid string
		waitFor(t, stream+" live", func() bool {
			s := e.streams()[stream]
			sid = s.SessionID
			return s.State == "live" && sid != ""
		})
		ctx := rtctest.Ctx(t)
		before, err := e.d.Realtime().Session(ctx, sid)
		if err != nil || len(before.Tracks) != 2 || before.Tracks[0].Status != rtapi.StatusActive {
			t.Fatalf("%s: GET /sessions/%s before DELETE = %+v, %v", stream, sid, before, err)
		}
		if resp, body := e.do("DELETE", c.location, "", "", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s = %d %s", c.location, resp.StatusCode, body)
		}
		after, err := e.d.Realtime().Session(ctx, sid)
		switch {
		case err != nil:
			// The relay publication closed its tracks, then its
			// PeerConnection: the SFU ended the session.
			if stream != "dyn" {
				t.Errorf("%s: GET /sessions/%s after DELETE: %v", stream, sid, err)
			}
		default:
			for _, tr := range after.Tracks {
				if tr.Status != rtapi.StatusInactive {
					t.Errorf("%s: track %s is %s after DELETE, want inactive (tracks/close)", stream, tr.TrackName, tr.Status)
				}
			}
		}
	}
	got := e.streams()
	if _, ok := got["dyn"]; ok || got["px"].WHIP == nil || got["px"].WHIP.Publisher != wish.PublisherNone {
		t.Errorf("/api/streams after DELETE = %+v: want px idle and no dyn", got)
	}
}

// TestWHIPReplace checks on_conflict replace in relay mode: the second
// publisher takes the stream over, the first one's resource is gone, and
// a viewer that stays receives the second publisher's packets.
func TestWHIPReplace(t *testing.T) {
	e := newWISHEnv(t, func(c *config.Config) { c.WHIP.OnConflict = config.ConflictReplace })
	first := newWHIPClient(t, "first")
	first.publish(e, "cam", "")
	v := play(e, "cam", "", true)
	video := v.NextTrack()
	if video.Track.Kind() != webrtc.RTPCodecTypeVideo {
		video = v.NextTrack()
	}
	video.Expect(t, "first-v", 30)

	second := newWHIPClient(t, "second")
	second.publish(e, "cam", "")
	if resp, _ := e.do("DELETE", first.location, "", "", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE of the replaced publisher = %d, want 404", resp.StatusCode)
	}
	// Packets of the first publisher may still be in flight: skip them.
	deadline := time.After(10 * time.Second)
	for {
		select {
		case pkt := <-video.Pkts:
			if strings.Contains(string(pkt.Payload), "second-v") {
				video.Expect(t, "second-v", 30)
				if st := e.streams()["cam"]; st.Viewers != 1 || st.WHIP.Publisher != wish.PublisherConnected {
					t.Errorf("/api/streams cam = %+v", st)
				}
				return
			}
		case <-deadline:
			t.Fatal("the viewer got no packet of the second publisher within 10 s")
		}
	}
}

// TestWISHProxyPatch checks the answers to PATCH in proxy mode: the SFU
// takes no trickle and no ICE restart, so WHIP answers 405 (RFC 9725
// 4.3.1) and WHEP, which takes PATCH for its SDP answer, 422.
func TestWISHProxyPatch(t *testing.T) {
	e := newWISHEnv(t, func(c *config.Config) { c.WHIP.Mode, c.WHEP.Mode = config.ModeProxy, config.ModeProxy })
	c := newWHIPClient(t, "p")
	c.publish(e, "cam", "")
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"a=candidate:1 1 udp 2130706431 127.0.0.1 9999 typ host\r\na=end-of-candidates\r\n"
	resp, body := e.do("PATCH", c.location, "", "application/trickle-ice-sdpfrag", frag, "If-Match", "*")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" || !strings.Contains(body, "proxy mode") {
		t.Errorf("WHIP proxy PATCH = %d %q (Allow %q), want 405 with Allow", resp.StatusCode, body, resp.Header.Get("Allow"))
	}
	v := play(e, "cam", "", true)
	resp, body = e.do("PATCH", v.location, "", "application/trickle-ice-sdpfrag", frag)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("WHEP proxy PATCH fragment = %d %q, want 422", resp.StatusCode, body)
	}
	resp, body = e.do("PATCH", v.location, "", "application/sdp", v.PC.LocalDescription().SDP)
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("WHEP proxy PATCH answer after a client offer = %d %q, want 409", resp.StatusCode, body)
	}
}

// TestWISHClientGone checks that resources whose client goes away without
// a DELETE are freed: a relay publisher that closes its PeerConnection, a
// proxy publisher whose SFU session ends, a viewer that never answers
// rtgate's offer; and that the relay pull stops with the last viewer.
func TestWISHClientGone(t *testing.T) {
	e := newWISHEnvWith(t, func(c *config.Config) {
		c.Streams = []config.Stream{{Name: "px", Source: "whip", WHIPMode: "proxy"}}
	}, func(o *wish.Options) { o.ConnectTimeout = 2 * time.Second })

	relay := newWHIPClient(t, "relay")
	relay.publish(e, "dyn", "")
	proxy := newWHIPClient(t, "proxy")
	proxy.publish(e, "px", "")
	waitFor(t, "both live", func() bool {
		s := e.streams()
		return s["dyn"].State == "live" && s["px"].State == "live"
	})

	// A viewer plays dyn and leaves: the pull's SFU session goes too.
	sessions := e.d.sfu.Sessions()
	v := play(e, "dyn", "", true)
	v.expectMedia(t, "relay", 20)
	if n := e.d.sfu.Sessions(); n != sessions+1 {
		t.Errorf("%d SFU sessions with a relay viewer, want %d (one pull)", n, sessions+1)
	}
	if resp, body := e.do("DELETE", v.location, "", "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE viewer = %d %s", resp.StatusCode, body)
	}
	waitFor(t, "the pull's session to end", func() bool { return e.d.sfu.Sessions() == sessions })

	// A viewer that never PATCHes its answer is freed after the connect
	// timeout.
	resp, body := e.do("POST", "/whep/px", "", "", "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /whep/px = %d %s", resp.StatusCode, body)
	}
	if resp, body := e.do("POST", "/whep/dyn", "", "", ""); resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /whep/dyn = %d %s", resp.StatusCode, body)
	}
	waitFor(t, "viewers counted", func() bool { s := e.streams(); return s["px"].Viewers == 1 && s["dyn"].Viewers == 1 })
	waitFor(t, "the relay viewer that never answered to go", func() bool { return e.streams()["dyn"].Viewers == 0 })

	// The publishers close their PeerConnections without a DELETE.
	relay.video.Halt()
	relay.audio.Halt()
	_ = relay.PC.Close()
	proxy.video.Halt()
	proxy.audio.Halt()
	_ = proxy.PC.Close()
	waitFor(t, "the relay publisher's stream to go", func() bool { _, ok := e.streams()["dyn"]; return !ok })
	waitFor(t, "the proxy publisher to go", func() bool {
		s := e.streams()["px"]
		return s.WHIP != nil && s.WHIP.Publisher == wish.PublisherNone
	})
	// The proxy viewer's SFU session never connected: it ends with the
	// publisher (its pulls have nothing left to pull).
	waitFor(t, "every resource to go", func() bool { return e.d.wish.Resources() == 0 })
	waitFor(t, "every SFU session to end", func() bool { return e.d.sfu.Sessions() == 0 })
}

// TestWISHReloadEndsViewers changes a configured WHIP stream by reload
// while a publisher and a relay viewer are on it: both resources end (the
// old stream object would never be fed again), and a new publisher and
// viewer of the reconfigured stream get media.
func TestWISHReloadEndsViewers(t *testing.T) {
	e := newWISHEnv(t, func(c *config.Config) {
		c.Streams = []config.Stream{{Name: "cam", Source: "whip", WHIPMode: "relay", WHEPMode: "relay"}}
	})
	pub := newWHIPClient(t, "before")
	pub.publish(e, "cam", "")
	waitFor(t, "cam live", func() bool { s := e.streams()["cam"]; return s.State == "live" && len(s.Tracks) == 2 })
	v := play(e, "cam", "", true)
	v.expectMedia(t, "before", 20)

	e.d.mu.Lock()
	next := e.d.cfg.Clone()
	e.d.mu.Unlock()
	next.Streams[0].VideoTrack = "cam-video-2"
	res, err := e.d.Reload(next)
	if err != nil || len(res.Changes) != 1 {
		t.Fatalf("Reload = %+v, %v; want one change", res, err)
	}
	// Both old resources are gone: DELETE finds nothing, and the viewer's
	// PeerConnection was closed by rtgate.
	for what, loc := range map[string]string{"publisher": pub.location, "viewer": v.location} {
		if resp, body := e.do("DELETE", loc, "", "", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("DELETE the old %s %s after the reload = %d %s, want 404", what, loc, resp.StatusCode, body)
		}
	}
	waitFor(t, "the old viewer disconnected", func() bool {
		st := v.PC.ConnectionState()
		return st == webrtc.PeerConnectionStateDisconnected || st == webrtc.PeerConnectionStateFailed ||
			st == webrtc.PeerConnectionStateClosed
	})

	pub2 := newWHIPClient(t, "after")
	pub2.publish(e, "cam", "")
	waitFor(t, "cam live again", func() bool {
		s := e.streams()["cam"]
		if s.State != "live" || len(s.Tracks) != 2 {
			return false
		}
		for _, tr := range s.Tracks {
			if tr.Kind == "video" && tr.Name != "cam-video-2" {
				return false
			}
		}
		return true
	})
	v2 := play(e, "cam", "", true)
	v2.expectMedia(t, "after", 20)
}
