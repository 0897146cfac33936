package wish

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// testRegistry is a registry of streams made on demand.
type testRegistry struct {
	mu sync.Mutex
	m  map[string]*Stream
}

func (g *testRegistry) Lookup(name string) (*Stream, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, ok := g.m[name]
	return s, ok
}

func (g *testRegistry) Create(name string) (*Stream, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.m[name]; ok {
		return nil, fmt.Errorf("stream %q exists", name)
	}
	s := NewStream(StreamOptions{Name: name, Dynamic: true})
	g.m[name] = s
	return s, nil
}

func (g *testRegistry) Remove(s *Stream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[s.Name()] == s {
		delete(g.m, s.Name())
	}
}

// testEnv is a Handler over the embedded SFU, served on loopback.
type testEnv struct {
	h    *Handler
	reg  *testRegistry
	base string
	env  *rtctest.Env
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	return newTestEnvSFU(t, rtctest.FastOptions())
}

// newTestEnvSFU is newTestEnv over an SFU with the given options.
func newTestEnvSFU(t *testing.T, o sfu.Options) *testEnv {
	t.Helper()
	env := rtctest.NewEnv(t, o)
	reg := &testRegistry{m: map[string]*Stream{}}
	h, err := New(Options{
		Registry: reg, Client: env.Client, API: rtctest.PeerAPI(t),
		SFUAPI: func() (*peer.API, error) {
			return peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: rtctest.LoopbackOnly})
		},
		Pull: func(ctx context.Context, stream string, r Resolver, sink bridge.Sink) error {
			p, err := pull.New(pull.Options{Name: stream, Client: env.Client, API: rtctest.PeerAPI(t), Sink: sink, Stream: r, StreamName: stream})
			if err != nil {
				return err
			}
			return p.Run(ctx)
		},
		AllowAnyStream: true, ConnectTimeout: 8 * time.Second, PublishBackoff: 50 * time.Millisecond,
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return &testEnv{h: h, reg: reg, base: srv.URL, env: env}
}

func (e *testEnv) do(t *testing.T, method, path, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestTrickleAndICERestart publishes in relay mode with an offer that
// carries no candidate, trickles the candidates by PATCH (rtgate's
// PeerConnection then knows the client's host candidate, not only a
// peer-reflexive one learnt from checks), then restarts ICE by PATCH: the
// 200 fragment carries rtgate's new credentials, the client applies them,
// and media keeps flowing over the new ICE session.
func TestTrickleAndICERestart(t *testing.T) {
	e := newTestEnv(t)
	p := rtctest.NewPeer(t)
	video, _ := p.SendTrack(webrtc.RTPCodecTypeVideo, "v")
	defer video.Halt()

	var mu sync.Mutex
	var cands []string
	p.PC.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			mu.Lock()
			cands = append(cands, c.ToJSON().Candidate)
			mu.Unlock()
		}
	})
	offer, err := p.PC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.PC)
	if err := p.PC.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(offer.SDP, "a=candidate") {
		t.Fatal("the offer already has candidates")
	}
	resp, body := e.do(t, "POST", "/whip/cam", typeSDP, offer.SDP)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST = %d %s", resp.StatusCode, body)
	}
	loc, etag := resp.Header.Get("Location"), resp.Header.Get("ETag")
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
	<-gathered
	mu.Lock()
	frag := "a=ice-options:trickle\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
	for _, c := range cands {
		frag += "a=" + c + "\r\n"
	}
	mu.Unlock()
	frag += "a=end-of-candidates\r\n"
	resp, body = e.do(t, "PATCH", loc, typeSDPFrag, frag, "If-Match", etag)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH candidates = %d %s", resp.StatusCode, body)
	}
	p.WaitConnected()
	video.Start()

	res := e.h.lookup(loc[strings.LastIndex(loc, "/")+1:]).(*whipRelay)
	clientPort := hostPort(t, cands)
	// Polled: one CI run read no remote candidate at all in a snapshot
	// taken right after the client saw the connection up.
	var got map[int]bool
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got = remoteHostPorts(res.pc); got[clientPort] || time.Now().After(end) {
			break
		}
	}
	if !got[clientPort] {
		t.Errorf("rtgate's remote candidates %v lack the trickled host candidate port %d", got, clientPort)
	}
	st, _ := e.reg.Lookup("cam")
	packets := func() uint64 {
		ps, _ := st.Publication()
		var n uint64
		for _, t := range ps.Tracks {
			n += t.Packets
		}
		return n
	}
	waitUntil(t, "packets published", func() bool { return packets() > 20 })

	// ICE restart: new credentials and candidates from the client.
	restart, err := p.PC.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(p.PC)
	if err := p.PC.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	<-gathered
	local := p.PC.LocalDescription().SDP
	ufrag, pwd := iceCredentials(local)
	frag = "a=ice-ufrag:" + ufrag + "\r\na=ice-pwd:" + pwd + "\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
	for _, l := range strings.Split(local, "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			frag += l + "\r\n"
		}
	}
	oldUfrag, _ := iceCredentials(res.pc.LocalDescription().SDP)
	resp, body = e.do(t, "PATCH", loc, typeSDPFrag, frag, "If-Match", "*")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != typeSDPFrag {
		t.Fatalf("PATCH ICE restart = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if newTag := resp.Header.Get("ETag"); newTag == "" || newTag == etag {
		t.Errorf("ETag after the restart = %q, was %q: want a new one", newTag, etag)
	}
	newUfrag, newPwd := iceCredentials(body)
	if newUfrag == "" || newPwd == "" || newUfrag == oldUfrag || !strings.Contains(body, "a=candidate:") {
		t.Fatalf("restart fragment %q: want new credentials (old ufrag %s) and candidates", body, oldUfrag)
	}
	// The client applies rtgate's new credentials as its answer.
	answer := p.PC.RemoteDescription().SDP
	answer = replaceICE(answer, newUfrag, newPwd, body)
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("apply the restart answer: %v", err)
	}
	if u, _ := iceCredentials(res.pc.RemoteDescription().SDP); u != ufrag {
		t.Errorf("rtgate's remote ufrag = %s, want the client's new %s", u, ufrag)
	}
	// Media flows over the new ICE session: the old one is gone on both
	// sides, so wrong credentials would stop it.
	time.Sleep(500 * time.Millisecond)
	after := packets()
	waitUntil(t, "packets after the restart", func() bool { return packets() > after+100 })
	if s := p.PC.ConnectionState(); s != webrtc.PeerConnectionStateConnected {
		t.Errorf("client state after the restart = %s", s)
	}
	// A trickle PATCH with the old ETag fails its precondition.
	resp, _ = e.do(t, "PATCH", loc, typeSDPFrag, "a=end-of-candidates\r\n", "If-Match", etag)
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("PATCH with the ETag of before the restart = %d, want 412", resp.StatusCode)
	}
}

// replaceICE puts new credentials and the fragment's candidates into an
// answer, as a WHIP client does with the 200 of an ICE restart.
func replaceICE(sdp, ufrag, pwd, frag string) string {
	var out []string
	first := true
	for _, l := range strings.Split(sdp, "\r\n") {
		switch {
		case strings.HasPrefix(l, "a=ice-ufrag:"):
			l = "a=ice-ufrag:" + ufrag
		case strings.HasPrefix(l, "a=ice-pwd:"):
			l = "a=ice-pwd:" + pwd
		case strings.HasPrefix(l, "a=candidate:"), l == "a=end-of-candidates":
			continue
		}
		if l == "" {
			continue
		}
		out = append(out, l)
		if strings.HasPrefix(l, "a=mid:") && first {
			first = false
			for _, f := range strings.Split(frag, "\r\n") {
				if strings.HasPrefix(f, "a=candidate:") {
					out = append(out, f)
				}
			}
		}
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

// hostPort returns the port of the first host candidate.
func hostPort(t *testing.T, cands []string) int {
	for _, c := range cands {
		f := strings.Fields(c)
		if len(f) > 7 && f[7] == "host" {
			var port int
			fmt.Sscan(f[5], &port)
			return port
		}
	}
	t.Fatalf("no host candidate in %q", cands)
	return 0
}

// remoteHostPorts lists the ports of a PeerConnection's remote host
// candidates.
func remoteHostPorts(pc *webrtc.PeerConnection) map[int]bool {
	out := map[int]bool{}
	for _, s := range pc.GetStats() {
		// Host, or peer-reflexive: the client starts its checks as soon as
		// it has the answer, and one that reaches rtgate before the PATCH
		// makes pion learn the address as prflx first.
		if c, ok := s.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeRemoteCandidate &&
			(c.CandidateType == webrtc.ICECandidateTypeHost || c.CandidateType == webrtc.ICECandidateTypePrflx) {
			out[int(c.Port)] = true
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
