package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

var loopbackIP = net.IPv4(127, 0, 0, 1)

// loopbackOnly keeps a pion API's ICE on 127.0.0.1.
func loopbackOnly(s *webrtc.SettingEngine, log *slog.Logger) {
	s.LoggerFactory = peer.NewLoggerFactory(log)
	s.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	s.SetIncludeLoopbackCandidate(true)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

var vp8Capability = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}

// leanPeer is a PeerConnection of the load process (the publisher of the
// fan-out, the subscribers): VP8 with the feedback and RTX a browser
// negotiates, so the system under test does what it does for a browser,
// but no interceptors, so no NACKs (loss is counted raw) and little CPU
// taken from the shared cores. It has its own UDP socket with a large
// receive buffer: the SFU's side uses one port for every session, so
// peers sharing a socket could not be told apart.
type leanPeer struct {
	pc   *webrtc.PeerConnection
	mux  ice.UDPMux
	conn *net.UDPConn
}

func newLeanPeer(rcvbuf int, log *slog.Logger) (*leanPeer, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackIP})
	if err != nil {
		return nil, fmt.Errorf("lean peer: listen: %w", err)
	}
	_ = conn.SetReadBuffer(rcvbuf) // best effort: capped by rmem_max
	m := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBNACK}, {Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"}}
	err = errors.Join(
		m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: fb}, PayloadType: payloadTypeGen}, webrtc.RTPCodecTypeVideo),
		m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=96"}, PayloadType: 97}, webrtc.RTPCodecTypeVideo))
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("lean peer: codecs: %w", err)
	}
	var s webrtc.SettingEngine
	loopbackOnly(&s, log)
	mux := webrtc.NewICEUDPMux(s.LoggerFactory.NewLogger("udpmux"), conn)
	s.SetICEUDPMux(mux)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(s),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		_ = mux.Close()
		_ = conn.Close()
		return nil, fmt.Errorf("lean peer: %w", err)
	}
	return &leanPeer{pc: pc, mux: mux, conn: conn}, nil
}

func (p *leanPeer) close() error {
	err := p.pc.Close()
	_ = p.mux.Close()
	_ = p.conn.Close()
	return err
}

// pionAPI is the baseline a user would write from pion's examples: default
// codecs and default interceptors (webrtc.RegisterDefaultInterceptors), one
// UDP socket per PeerConnection. Only ICE is kept on loopback.
func pionAPI(log *slog.Logger) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("pion baseline: codecs: %w", err)
	}
	r := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, r); err != nil {
		return nil, fmt.Errorf("pion baseline: interceptors: %w", err)
	}
	var s webrtc.SettingEngine
	loopbackOnly(&s, log)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(r), webrtc.WithSettingEngine(s)), nil
}

// drainRTCP reads a sender's RTCP until its PeerConnection closes:
// interceptors only see RTCP that is read.
func drainRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := s.Read(buf); err != nil {
			return
		}
	}
}

// localDescription sets d as pc's local description and waits for ICE
// gathering (no trickle: the API takes whole SDPs).
func localDescription(ctx context.Context, pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", fmt.Errorf("set local %s: %w", d.Type, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return pc.LocalDescription().SDP, nil
}

// offer makes pc's offer, gathered.
func offer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	o, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	return localDescription(ctx, pc, o)
}

// answer applies a remote offer to pc and makes its answer, gathered.
func answer(ctx context.Context, pc *webrtc.PeerConnection, sdp string) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return "", fmt.Errorf("apply offer: %w", err)
	}
	a, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	return localDescription(ctx, pc, a)
}

// waitConnected waits until pc is connected.
func waitConnected(ctx context.Context, pc *webrtc.PeerConnection) error {
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		switch pc.ConnectionState() {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			return fmt.Errorf("peer connection %s", pc.ConnectionState())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not connected (%s): %w", pc.ConnectionState(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// sfuInfo says where an SFU's Realtime API is.
type sfuInfo struct {
	URL    string `json:"url"` // http://host:port (the API is under /v1)
	AppID  string `json:"appId"`
	Secret string `json:"secret"`
}

// client is a Realtime client for the SFU, with room for many concurrent
// sessions' keep-alive connections.
func (s sfuInfo) client(log *slog.Logger) (*realtime.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	c, err := realtime.New(realtime.Options{BaseURL: s.URL + "/v1", AppID: s.AppID, AppSecret: s.Secret,
		HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second}, Logger: log,
		RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: 500 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("realtime client for %s: %w", s.URL, err)
	}
	return c, nil
}

// publishRealtime publishes the sendonly track of tr on pc as name in a
// new session of c and returns the session id.
func publishRealtime(ctx context.Context, c *realtime.Client, pc *webrtc.PeerConnection, tr *webrtc.RTPTransceiver, name string) (string, error) {
	sdp, err := offer(ctx, pc)
	if err != nil {
		return "", err
	}
	ns, err := c.NewSession(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("sessions/new: %w", err)
	}
	res, err := c.AddTracks(ctx, ns.SessionID, rtapi.TracksRequest{
		SessionDescription: &rtapi.SessionDescription{Type: "offer", SDP: sdp},
		Tracks:             []rtapi.TrackObject{{Location: rtapi.LocationLocal, Mid: tr.Mid(), TrackName: name}}})
	if err != nil {
		return "", fmt.Errorf("tracks/new %s: %w", name, err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		return "", fmt.Errorf("tracks/new %s: %w", name, err)
	}
	if res.SessionDescription == nil {
		return "", fmt.Errorf("tracks/new %s: no answer", name)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SessionDescription.SDP}); err != nil {
		return "", fmt.Errorf("apply the SFU's answer: %w", err)
	}
	return ns.SessionID, nil
}

// pullRealtime pulls tracks into pc through a new session of c: the SFU
// offers, pc answers.
func pullRealtime(ctx context.Context, c *realtime.Client, pc *webrtc.PeerConnection, tracks []trackRef) error {
	ns, err := c.NewSession(ctx, nil)
	if err != nil {
		return fmt.Errorf("sessions/new: %w", err)
	}
	items := make([]rtapi.TrackObject, len(tracks))
	for i, t := range tracks {
		items[i] = rtapi.TrackObject{Location: rtapi.LocationRemote, SessionID: t.Session, TrackName: t.Name}
	}
	pulled, err := c.PullTracks(ctx, ns.SessionID, items, func(ctx context.Context, o rtapi.SessionDescription) (rtapi.SessionDescription, error) {
		sdp, err := answer(ctx, pc, o.SDP)
		return rtapi.SessionDescription{Type: "answer", SDP: sdp}, err
	})
	if err != nil {
		return fmt.Errorf("pull %d tracks: %w", len(tracks), err)
	}
	if err := realtime.ItemErrors(pulled); err != nil {
		return fmt.Errorf("pull %d tracks: %w", len(tracks), err)
	}
	return nil
}

// trackRef names a published track.
type trackRef struct {
	Session string `json:"session"`
	Name    string `json:"name"`
}

// postSDP sends an SDP offer to url and returns the answer: the pion
// baseline's signalling, WHIP/WHEP style.
func postSDP(ctx context.Context, url, sdp string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewBufferString(sdp))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", url, err)
	}
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %s: %s", url, res.Status, bytes.TrimSpace(b))
	}
	return string(b), nil
}
