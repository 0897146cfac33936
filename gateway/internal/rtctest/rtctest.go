// Package rtctest is test support shared by rtgate's WebRTC tests: an
// embedded SFU on loopback with a Realtime client, and real pion peers that
// publish numbered packets and check what they receive. Every peer has its
// own loopback UDP port and ICE is pinned to 127.0.0.1.
package rtctest

import (
	"context"
	"encoding/binary"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
	"github.com/rtgate/rtgate/gateway/sfu"
)

const Secret = "s3cret-for-tests"

// LoopbackOnly keeps every ICE check of the tests on 127.0.0.1.
func LoopbackOnly(ip net.IP) bool { return ip.IsLoopback() }

// Env is an embedded SFU served over loopback HTTP with a Realtime client
// pointed at it.
type Env struct {
	T      testing.TB
	SFU    *sfu.SFU
	Srv    *httptest.Server
	Client *realtime.Client
	Base   string // http://127.0.0.1:port/v1/apps/test
}

// FastOptions are SFU options with the waits shortened for tests.
func FastOptions() sfu.Options {
	return sfu.Options{
		TrackIdleTimeout:   30 * time.Second,
		FirstPacketWait:    time.Second,
		ConnectWait:        2 * time.Second,
		SessionReuseWindow: 30 * time.Second,
		KeyframeInterval:   100 * time.Millisecond,
	}
}

// NewEnv starts an SFU (app "test", secret Secret) whose UDP port and ICE
// stay on loopback; it is closed when the test ends.
func NewEnv(t testing.TB, o sfu.Options) *Env {
	t.Helper()
	f := NewSFU(t, o)
	srv := httptest.NewServer(f.Handler())
	c := Client(t, srv.URL)
	t.Cleanup(func() {
		srv.Close()
		if err := f.Close(); err != nil {
			t.Errorf("sfu close: %v", err)
		}
	})
	return &Env{T: t, SFU: f, Srv: srv, Client: c, Base: srv.URL + "/v1/apps/test"}
}

// NewSFU makes an SFU (app "test", secret Secret) on loopback; the caller
// serves its Handler and closes it.
func NewSFU(t testing.TB, o sfu.Options) *sfu.SFU {
	t.Helper()
	o.AppID, o.AppSecret = "test", Secret
	o.Peer.ListenIP = "127.0.0.1"
	o.Peer.RemoteIPFilter = LoopbackOnly
	f, err := sfu.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// PeerAPI is a pion API on its own loopback UDP port, closed with the test.
func PeerAPI(t testing.TB) *peer.API {
	t.Helper()
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: LoopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	return api
}

// Client is a Realtime client for an SFU served at base (http://host:port).
func Client(t testing.TB, base string) *realtime.Client {
	t.Helper()
	c, err := realtime.New(realtime.Options{BaseURL: base + "/v1", AppID: "test", AppSecret: Secret,
		RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Ctx is a context that ends with the test, or after 20 s.
func Ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// Peer is a real pion PeerConnection on its own loopback UDP port, the way
// an app talking to the Realtime API has one.
type Peer struct {
	t      testing.TB
	PC     *webrtc.PeerConnection
	tracks chan *webrtc.TrackRemote
	PLIs   atomic.Int64 // PLI/FIR received on our senders
}

// NewPeer makes a PeerConnection with its own loopback UDP port.
func NewPeer(t testing.TB) *Peer {
	t.Helper()
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: LoopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{t: t, PC: pc, tracks: make(chan *webrtc.TrackRemote, 16)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.tracks <- tr })
	t.Cleanup(func() {
		_ = pc.Close()
		_ = api.Close()
	})
	return p
}

// sendTrack adds a sendonly track and returns a source that writes to it.
func (p *Peer) SendTrack(kind webrtc.RTPCodecType, id string) (*Source, *webrtc.RTPTransceiver) {
	p.t.Helper()
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if kind == webrtc.RTPCodecTypeAudio {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	}
	track, err := webrtc.NewTrackLocalStaticRTP(codec, id, "stream-"+id)
	if err != nil {
		p.t.Fatal(err)
	}
	tr, err := p.PC.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.t.Fatal(err)
	}
	go func() { // read RTCP: interceptors need it, and we count keyframe requests
		for {
			pkts, _, err := tr.Sender().ReadRTCP()
			if err != nil {
				return
			}
			for _, pkt := range pkts {
				switch pkt.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					p.PLIs.Add(1)
				}
			}
		}
	}()
	return &Source{track: track, tag: id, kind: kind}, tr
}

func (p *Peer) Offer() *rtapi.SessionDescription {
	p.t.Helper()
	o, err := p.PC.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.setLocal(o)
}

func (p *Peer) Answer() *rtapi.SessionDescription {
	p.t.Helper()
	a, err := p.PC.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.setLocal(a)
}

func (p *Peer) setLocal(d webrtc.SessionDescription) *rtapi.SessionDescription {
	p.t.Helper()
	done := webrtc.GatheringCompletePromise(p.PC)
	if err := p.PC.SetLocalDescription(d); err != nil {
		p.t.Fatal(err)
	}
	<-done
	ld := p.PC.LocalDescription()
	return &rtapi.SessionDescription{Type: ld.Type.String(), SDP: ld.SDP}
}

func (p *Peer) Apply(sd *rtapi.SessionDescription) {
	p.t.Helper()
	if sd == nil {
		p.t.Fatal("no session description to apply")
	}
	typ := webrtc.NewSDPType(sd.Type)
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: sd.SDP}); err != nil {
		p.t.Fatalf("apply %s: %v", sd.Type, err)
	}
}

// answerFunc answers an SFU offer; it is what realtime.PullTracks calls.
func (p *Peer) AnswerFunc(_ context.Context, offer rtapi.SessionDescription) (rtapi.SessionDescription, error) {
	p.Apply(&offer)
	return *p.Answer(), nil
}

func (p *Peer) WaitConnected() {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.PC.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			p.t.Fatalf("peer connection state %s after 10 s", p.PC.ConnectionState())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextTrack waits for the next remote track and starts collecting its packets.
func (p *Peer) NextTrack() *Sink {
	p.t.Helper()
	select {
	case tr := <-p.tracks:
		s := &Sink{Track: tr, Pkts: make(chan *rtp.Packet, 4096)}
		go s.run()
		return s
	case <-time.After(10 * time.Second):
		p.t.Fatal("no remote track within 10 s")
		return nil
	}
}

func (p *Peer) SendPLI(ssrc webrtc.SSRC) {
	_ = p.PC.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
}

// Source writes numbered packets: the payload carries its tag and index so a
// receiver can check every byte arrived intact and where it came from.
type Source struct {
	track *webrtc.TrackLocalStaticRTP
	tag   string
	kind  webrtc.RTPCodecType
	seq   uint16
	n     uint32
	stop  chan struct{}
	done  chan struct{}
}

// PayloadFor is the payload of packet i of the source tagged tag.
func PayloadFor(tag string, i uint32) []byte {
	b := make([]byte, 4, 200)
	binary.BigEndian.PutUint32(b, i)
	b = append(b, tag...)
	for len(b) < 200 {
		b = append(b, byte(len(b)+int(i)))
	}
	return b
}

func (s *Source) WriteOne() {
	step := uint32(3000)
	if s.kind == webrtc.RTPCodecTypeAudio {
		step = 960
	}
	_ = s.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: s.seq,
		Timestamp: s.n * step, SSRC: 1}, Payload: PayloadFor(s.tag, s.n)})
	s.seq++
	s.n++
}

// start sends a packet every 10 ms until stopped.
func (s *Source) Start() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.WriteOne()
			}
		}
	}()
}

func (s *Source) Halt() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
}

// Sink collects the packets of a remote track.
type Sink struct {
	Track *webrtc.TrackRemote
	Pkts  chan *rtp.Packet
}

func (s *Sink) run() {
	defer close(s.Pkts)
	for {
		pkt, _, err := s.Track.ReadRTP()
		if err != nil {
			return
		}
		select {
		case s.Pkts <- pkt:
		default:
		}
	}
}

// expect reads n packets and checks each payload is one the source with tag
// sent, byte for byte.
func (s *Sink) Expect(t testing.TB, tag string, n int) []*rtp.Packet {
	t.Helper()
	var got []*rtp.Packet
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case pkt, ok := <-s.Pkts:
			if !ok {
				t.Fatalf("track ended after %d of %d packets", len(got), n)
			}
			i := binary.BigEndian.Uint32(pkt.Payload)
			want := PayloadFor(tag, i)
			if string(pkt.Payload) != string(want) {
				t.Fatalf("packet %d: payload is not what source %q sent (first bytes %q)", len(got), tag, pkt.Payload[:min(12, len(pkt.Payload))])
			}
			got = append(got, pkt)
		case <-timeout:
			t.Fatalf("got %d of %d packets from %q within 10 s", len(got), n, tag)
		}
	}
	return got
}

// quiet reports whether no packet arrives for d.
func (s *Sink) Quiet(d time.Duration) bool {
	// Drain what is in flight first.
	drain := time.After(300 * time.Millisecond)
	for {
		select {
		case <-s.Pkts:
			continue
		case <-drain:
		}
		break
	}
	select {
	case _, ok := <-s.Pkts:
		return !ok
	case <-time.After(d):
		return true
	}
}

// RequireTool returns the path of an external tool (ffmpeg, gst-launch-1.0)
// for an end-to-end test. Without it the test is skipped on a developer's
// machine, but fails when CI=true: in CI a missing tool is a broken setup,
// not a reason to pass.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (.ci/install-deps installs it): %v", name, err)
	}
	t.Skipf("%s not found: %v", name, err)
	return ""
}

// Pull makes a session without an offer on c and pulls the named tracks of
// the publisher session sid into it (the SFU offers, the peer answers). It
// fails the test on any request or item error and returns the subscriber,
// its session id and the pulled tracks (with their mids).
func Pull(t testing.TB, c *realtime.Client, sid string, names ...string) (*Peer, string, []rtapi.TrackObject) {
	t.Helper()
	ctx := Ctx(t)
	p := NewPeer(t)
	ns, err := c.NewSession(ctx, nil)
	if err != nil {
		t.Fatalf("sessions/new without body: %v", err)
	}
	if ns.SessionDescription != nil {
		t.Fatal("sessions/new without an offer must not return SDP")
	}
	items := make([]rtapi.TrackObject, 0, len(names))
	for _, n := range names {
		items = append(items, rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: sid, TrackName: n})
	}
	pulled, err := c.PullTracks(ctx, ns.SessionID, items, p.AnswerFunc)
	if err != nil {
		t.Fatalf("pull %v: %v", names, err)
	}
	if err := realtime.ItemErrors(pulled); err != nil {
		t.Fatalf("pull %v: %v", names, err)
	}
	return p, ns.SessionID, pulled
}
