package sfu_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/http/httptest"
	"sync"
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

const testSecret = "s3cret-for-tests"

// loopbackOnly keeps every ICE check of the tests on 127.0.0.1.
func loopbackOnly(ip net.IP) bool { return ip.IsLoopback() }

type env struct {
	t      testing.TB
	sfu    *sfu.SFU
	srv    *httptest.Server
	client *realtime.Client
	base   string // http://127.0.0.1:port/v1/apps/test
}

func fastOptions() sfu.Options {
	return sfu.Options{
		TrackIdleTimeout:   30 * time.Second,
		FirstPacketWait:    time.Second,
		ConnectWait:        2 * time.Second,
		SessionReuseWindow: 30 * time.Second,
		KeyframeInterval:   100 * time.Millisecond,
	}
}

func newEnv(t testing.TB, o sfu.Options) *env {
	t.Helper()
	o.AppID, o.AppSecret = "test", testSecret
	o.Peer.ListenIP = "127.0.0.1"
	o.Peer.RemoteIPFilter = loopbackOnly
	f, err := sfu.New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Handler())
	c, err := realtime.New(realtime.Options{BaseURL: srv.URL + "/v1", AppID: "test", AppSecret: testSecret,
		RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		if err := f.Close(); err != nil {
			t.Errorf("sfu close: %v", err)
		}
	})
	return &env{t: t, sfu: f, srv: srv, client: c, base: srv.URL + "/v1/apps/test"}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// testPeer is a real pion PeerConnection on its own loopback UDP port, the
// way an app talking to the Realtime API has one.
type testPeer struct {
	t  testing.TB
	pc *webrtc.PeerConnection

	mu       sync.Mutex
	received map[string]chan *rtp.Packet // by track id of the remote track
	tracks   chan *webrtc.TrackRemote
	plis     atomic.Int64 // PLI/FIR received on our senders
}

func newPeer(t testing.TB) *testPeer {
	t.Helper()
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: loopbackOnly})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	p := &testPeer{t: t, pc: pc, tracks: make(chan *webrtc.TrackRemote, 16)}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { p.tracks <- tr })
	t.Cleanup(func() {
		_ = pc.Close()
		_ = api.Close()
	})
	return p
}

// sendTrack adds a sendonly track and returns a source that writes to it.
func (p *testPeer) sendTrack(kind webrtc.RTPCodecType, id string) (*source, *webrtc.RTPTransceiver) {
	p.t.Helper()
	codec := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if kind == webrtc.RTPCodecTypeAudio {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	}
	track, err := webrtc.NewTrackLocalStaticRTP(codec, id, "stream-"+id)
	if err != nil {
		p.t.Fatal(err)
	}
	tr, err := p.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
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
					p.plis.Add(1)
				}
			}
		}
	}()
	return &source{track: track, tag: id, kind: kind}, tr
}

func (p *testPeer) offer() *rtapi.SessionDescription {
	p.t.Helper()
	o, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.setLocal(o)
}

func (p *testPeer) answer() *rtapi.SessionDescription {
	p.t.Helper()
	a, err := p.pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.setLocal(a)
}

func (p *testPeer) setLocal(d webrtc.SessionDescription) *rtapi.SessionDescription {
	p.t.Helper()
	done := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(d); err != nil {
		p.t.Fatal(err)
	}
	<-done
	ld := p.pc.LocalDescription()
	return &rtapi.SessionDescription{Type: ld.Type.String(), SDP: ld.SDP}
}

func (p *testPeer) apply(sd *rtapi.SessionDescription) {
	p.t.Helper()
	if sd == nil {
		p.t.Fatal("no session description to apply")
	}
	typ := webrtc.NewSDPType(sd.Type)
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: typ, SDP: sd.SDP}); err != nil {
		p.t.Fatalf("apply %s: %v", sd.Type, err)
	}
}

// answerFunc answers an SFU offer; it is what realtime.PullTracks calls.
func (p *testPeer) answerFunc(_ context.Context, offer rtapi.SessionDescription) (rtapi.SessionDescription, error) {
	p.apply(&offer)
	return *p.answer(), nil
}

func (p *testPeer) waitConnected() {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			p.t.Fatalf("peer connection state %s after 10 s", p.pc.ConnectionState())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextTrack waits for the next remote track and starts collecting its packets.
func (p *testPeer) nextTrack() *sink {
	p.t.Helper()
	select {
	case tr := <-p.tracks:
		s := &sink{track: tr, pkts: make(chan *rtp.Packet, 4096)}
		go s.run()
		return s
	case <-time.After(10 * time.Second):
		p.t.Fatal("no remote track within 10 s")
		return nil
	}
}

func (p *testPeer) sendPLI(ssrc webrtc.SSRC) {
	_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(ssrc)}})
}

// source writes numbered packets: the payload carries its tag and index so a
// receiver can check every byte arrived intact and where it came from.
type source struct {
	track *webrtc.TrackLocalStaticRTP
	tag   string
	kind  webrtc.RTPCodecType
	seq   uint16
	n     uint32
	stop  chan struct{}
	done  chan struct{}
}

func payloadFor(tag string, i uint32) []byte {
	b := make([]byte, 4, 200)
	binary.BigEndian.PutUint32(b, i)
	b = append(b, tag...)
	for len(b) < 200 {
		b = append(b, byte(len(b)+int(i)))
	}
	return b
}

func (s *source) writeOne() {
	step := uint32(3000)
	if s.kind == webrtc.RTPCodecTypeAudio {
		step = 960
	}
	_ = s.track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: s.seq,
		Timestamp: s.n * step, SSRC: 1}, Payload: payloadFor(s.tag, s.n)})
	s.seq++
	s.n++
}

// start sends a packet every 10 ms until stopped.
func (s *source) start() {
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
				s.writeOne()
			}
		}
	}()
}

func (s *source) halt() {
	if s.stop != nil {
		close(s.stop)
		<-s.done
		s.stop = nil
	}
}

type sink struct {
	track *webrtc.TrackRemote
	pkts  chan *rtp.Packet
}

func (s *sink) run() {
	defer close(s.pkts)
	for {
		pkt, _, err := s.track.ReadRTP()
		if err != nil {
			return
		}
		select {
		case s.pkts <- pkt:
		default:
		}
	}
}

// expect reads n packets and checks each payload is one the source with tag
// sent, byte for byte.
func (s *sink) expect(t testing.TB, tag string, n int) []*rtp.Packet {
	t.Helper()
	var got []*rtp.Packet
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case pkt, ok := <-s.pkts:
			if !ok {
				t.Fatalf("track ended after %d of %d packets", len(got), n)
			}
			i := binary.BigEndian.Uint32(pkt.Payload)
			want := payloadFor(tag, i)
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
func (s *sink) quiet(d time.Duration) bool {
	// Drain what is in flight first.
	drain := time.After(300 * time.Millisecond)
	for {
		select {
		case <-s.pkts:
			continue
		case <-drain:
		}
		break
	}
	select {
	case _, ok := <-s.pkts:
		return !ok
	case <-time.After(d):
		return true
	}
}
