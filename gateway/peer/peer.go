// Package peer is the one place rtgate builds its pion WebRTC API: the codecs
// it negotiates (each video codec with RTX), the interceptors that repair
// loss and report (NACK generator and responder, RTCP reports, TWCC feedback,
// stats), and a SettingEngine that puts every PeerConnection of a process on
// a single UDP port, rewrites addresses for NAT and logs through slog. The
// port's writes can be batched (API.Cork, API.Flush: sendmmsg and UDP GSO).
//
// Both sides use it: the gateway's publishers and subscribers and the
// embedded SFU. Each needs its own API (its own UDP port): two agents on one
// socket talking to each other could not be told apart.
package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4/stdnet"
	"github.com/pion/webrtc/v4"
)

// Options configure an API. The zero value is usable: one UDP port chosen by
// the OS on every interface, no STUN/TURN, pion's NACK buffer defaults with a
// cap of 3 NACKs per packet.
type Options struct {
	// ListenIP binds the UDP port to one address ("127.0.0.1", "::1",
	// "192.168.1.10"); empty means every interface.
	ListenIP string
	// UDPPort is the single UDP port every PeerConnection shares; 0 lets the
	// OS choose one.
	UDPPort int
	// PublicIPs replace the host candidates' addresses (1:1 NAT, e.g. a cloud
	// VM with an elastic IP).
	PublicIPs []string
	// ICEServers are handed to every PeerConnection (STUN/TURN).
	ICEServers []webrtc.ICEServer
	// NACKMaxPerPacket caps how often the generator NACKs one packet. pion's
	// generator does not see packets repaired by RTX and would NACK them
	// forever otherwise (pion/webrtc#3063). 0 means 3.
	NACKMaxPerPacket uint16
	// NACKGeneratorSize and NACKResponderSize are the packet history of the
	// NACK generator (pion's) and responder (rtgate's, 1500 bytes a packet
	// per sent video stream); powers of two, 0 means 512 and 1024.
	NACKGeneratorSize uint16
	NACKResponderSize uint16
	// ICEDisconnectedTimeout and ICEFailedTimeout override pion's 5 s / 25 s.
	ICEDisconnectedTimeout time.Duration
	ICEFailedTimeout       time.Duration
	// RemoteIPFilter, if set, drops remote candidates it returns false for
	// (tests keep every packet on loopback with it).
	RemoteIPFilter func(net.IP) bool
	// WrapConn, if set, wraps the UDP socket (with ListenIP only): tests
	// put loss on the wire with it. A wrapper other than the socket itself
	// turns batched writes off (Cork and Flush do nothing).
	WrapConn func(net.PacketConn) net.PacketConn
	// Logger receives pion's logs; nil means slog.Default().
	Logger *slog.Logger
}

// API is a configured pion API with its UDP port. It is safe for concurrent
// use; Close releases the port after every PeerConnection is closed.
type API struct {
	api   *webrtc.API
	cfg   webrtc.Configuration
	mux   ice.UDPMux
	conn  net.PacketConn // set when the mux owns a single socket
	addrs []net.Addr
	// batch are the sockets Cork and Flush act on: the single socket, or
	// one per interface address; none when writes are not batched.
	batch []*batchConn
}

// Payload types rtgate offers. Browsers and Cloudflare answer with their own
// numbers; these only matter when rtgate makes the offer.
const (
	PTVP8       = 96
	PTVP9       = 98
	PTH264      = 102 // packetization-mode=1, constrained baseline 42e01f
	PTH264Base  = 104 // packetization-mode=1, baseline 42001f
	PTH264High  = 106 // packetization-mode=1, high 640032
	PTH264Mode0 = 108 // packetization-mode=0, constrained baseline
	PTAV1       = 45
	PTOpus      = 111
	PTPCMU      = 0
	PTPCMA      = 8
)

// Codec MIME types, for callers that pick a codec by name.
const (
	MimeTypeVP8  = webrtc.MimeTypeVP8
	MimeTypeVP9  = webrtc.MimeTypeVP9
	MimeTypeH264 = webrtc.MimeTypeH264
	MimeTypeAV1  = webrtc.MimeTypeAV1
	MimeTypeOpus = webrtc.MimeTypeOpus
	MimeTypePCMU = webrtc.MimeTypePCMU
	MimeTypePCMA = webrtc.MimeTypePCMA
)

var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"},
	{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	{Type: webrtc.TypeRTCPFBNACK},
	{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
}

type videoCodec struct {
	pt, rtx uint8
	mime    string
	fmtp    string
}

// VideoCodecs lists the video codecs in offer order with their RTX payload
// types; exported for tests and for the bench harness.
var videoCodecs = []videoCodec{
	{PTVP8, 97, webrtc.MimeTypeVP8, ""},
	{PTVP9, 99, webrtc.MimeTypeVP9, "profile-id=0"},
	{PTH264, 103, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	{PTH264Base, 105, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"},
	{PTH264High, 107, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"},
	{PTH264Mode0, 109, webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"},
	{PTAV1, 46, webrtc.MimeTypeAV1, ""},
}

// Header extensions rtgate negotiates. transport-cc is added by the TWCC
// interceptor registration.
var headerExtensions = []struct {
	uri   string
	kinds []webrtc.RTPCodecType
}{
	{"urn:ietf:params:rtp-hdrext:sdes:mid", []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}},
	{"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
	{"urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
	{"urn:ietf:params:rtp-hdrext:ssrc-audio-level", []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}},
	{"urn:3gpp:video-orientation", []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo}},
}

// RegisterCodecs puts rtgate's codecs and header extensions into m.
func RegisterCodecs(m *webrtc.MediaEngine) error {
	for _, c := range videoCodecs {
		err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: c.mime, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: videoFeedback,
			},
			PayloadType: webrtc.PayloadType(c.pt),
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return fmt.Errorf("register %s/%d: %w", c.mime, c.pt, err)
		}
		err = m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{
				MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", c.pt),
			},
			PayloadType: webrtc.PayloadType(c.rtx),
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return fmt.Errorf("register rtx for %d: %w", c.pt, err)
		}
	}
	audio := []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: PTOpus},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, PayloadType: PTPCMU},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMA, ClockRate: 8000}, PayloadType: PTPCMA},
	}
	for _, c := range audio {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	for _, e := range headerExtensions {
		for _, k := range e.kinds {
			if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, k); err != nil {
				return fmt.Errorf("register header extension %s: %w", e.uri, err)
			}
		}
	}
	return nil
}

// RegisterInterceptors puts NACK (pion's generator, rtgate's own responder
// with RTX when negotiated), RTCP sender/receiver reports, stats and TWCC
// feedback into r.
func RegisterInterceptors(m *webrtc.MediaEngine, r *interceptor.Registry, o Options) error {
	maxNacks := o.NACKMaxPerPacket
	if maxNacks == 0 {
		maxNacks = 3
	}
	genOpts := []nack.GeneratorOption{nack.GeneratorMaxNacksPerPacket(maxNacks)}
	if o.NACKGeneratorSize != 0 {
		genOpts = append(genOpts, nack.GeneratorSize(o.NACKGeneratorSize))
	}
	lf := NewLoggerFactory(o.Logger)
	genOpts = append(genOpts, nack.WithGeneratorLoggerFactory(lf))
	// What webrtc.ConfigureNackWithOptions does, with rtgate's own responder
	// in place of pion's, which allocates for every packet sent (see
	// nack_responder.go). pion's generator stays on the receive side.
	generator, err := nack.NewGeneratorInterceptor(genOpts...)
	if err != nil {
		return fmt.Errorf("nack generator: %w", err)
	}
	responder, err := newNACKResponderFactory(o.NACKResponderSize, lf)
	if err != nil {
		return fmt.Errorf("nack responder: %w", err)
	}
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBNACK}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	r.Add(responder)
	// The stats interceptor goes before the generator: an interceptor's
	// RTCP writes pass only the interceptors registered before it, so this
	// order lets the inbound-rtp stats count the NACKs sent (GetStats's
	// nackCount, rtgate_pull_nacks_total).
	if err := webrtc.ConfigureStatsInterceptor(r); err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	// The generator, receiver reports and TWCC feedback serve received
	// streams only: recvOnly starts them at the first one (lazy_interceptor.go).
	r.Add(recvOnly{generator})
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"}, webrtc.RTPCodecTypeVideo)
	// What webrtc.ConfigureRTCPReports and ConfigureTWCCSender do, with the
	// receive side wrapped.
	receiver, err := report.NewReceiverInterceptor()
	if err != nil {
		return fmt.Errorf("rtcp receiver reports: %w", err)
	}
	sender, err := report.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("rtcp sender reports: %w", err)
	}
	r.Add(recvOnly{receiver})
	r.Add(sender)
	// TWCC feedback for what we receive, so a browser publisher's bandwidth
	// estimator works. rtgate runs no estimator of its own, so it does not
	// stamp transport-cc on what it sends.
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, k)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, k); err != nil {
			return fmt.Errorf("twcc header extension: %w", err)
		}
	}
	twccSender, err := twcc.NewSenderInterceptor()
	if err != nil {
		return fmt.Errorf("twcc: %w", err)
	}
	r.Add(recvOnly{twccSender})
	return nil
}

// srtpProfiles is the SRTP protection profiles rtgate's DTLS offers or,
// as the DTLS server, picks from, best first. pion's default puts
// AES-256-GCM first; AES-128-GCM encrypts a 1200-byte packet about 10%
// faster here (BenchmarkSRTPEncrypt, medians of 5: 304 against 342 ns;
// another run 305 against 334) and is what RFC 7714 recommends as the
// default, so rtgate prefers it. Both GCM profiles are several times
// cheaper than AES-CM with HMAC-SHA1 (1.97 µs), kept last for peers
// without GCM.
var srtpProfiles = []dtls.SRTPProtectionProfile{
	dtls.SRTP_AEAD_AES_128_GCM,
	dtls.SRTP_AEAD_AES_256_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_80,
}

// socketBuffer is the receive and send buffer asked for the UDP port: the
// kernel's default (~208 KiB) overflowed at the embedded SFU with a few
// hundred subscribers of one stream (the bench's fan-out; 4 MiB held 300
// without loss).
const socketBuffer = 4 << 20

// New builds an API and opens its UDP port.
func New(o Options) (*API, error) {
	m := &webrtc.MediaEngine{}
	if err := RegisterCodecs(m); err != nil {
		return nil, err
	}
	r := &interceptor.Registry{}
	if err := RegisterInterceptors(m, r, o); err != nil {
		return nil, err
	}

	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	lf := NewLoggerFactory(logger)
	s := webrtc.SettingEngine{LoggerFactory: lf}
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetSRTPProtectionProfiles(srtpProfiles...)
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if o.ICEDisconnectedTimeout > 0 || o.ICEFailedTimeout > 0 {
		d, f := o.ICEDisconnectedTimeout, o.ICEFailedTimeout
		if d == 0 {
			d = 5 * time.Second
		}
		if f == 0 {
			f = 25 * time.Second
		}
		s.SetICETimeouts(d, f, 2*time.Second)
	}
	if o.RemoteIPFilter != nil {
		s.SetRemoteIPFilter(o.RemoteIPFilter)
	}
	if len(o.PublicIPs) > 0 {
		for _, ip := range o.PublicIPs {
			if net.ParseIP(ip) == nil {
				return nil, fmt.Errorf("public IP %q is not an IP address", ip)
			}
		}
		err := s.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: o.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost,
		})
		if err != nil {
			return nil, fmt.Errorf("public IPs: %w", err)
		}
	}

	a := &API{cfg: webrtc.Configuration{ICEServers: o.ICEServers, BundlePolicy: webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire}}
	if o.ListenIP != "" {
		ip := net.ParseIP(o.ListenIP)
		if ip == nil {
			return nil, fmt.Errorf("listen IP %q is not an IP address", o.ListenIP)
		}
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: o.UDPPort})
		if err != nil {
			return nil, fmt.Errorf("listen udp %s: %w", net.JoinHostPort(o.ListenIP, fmt.Sprint(o.UDPPort)), err)
		}
		// Best effort: the kernel caps it at net.core.rmem_max/wmem_max.
		_ = conn.SetReadBuffer(socketBuffer)
		_ = conn.SetWriteBuffer(socketBuffer)
		a.conn = conn
		var pc net.PacketConn = conn
		if o.WrapConn != nil {
			pc = o.WrapConn(conn)
		}
		if pc == net.PacketConn(conn) {
			if bc := newBatchConn(conn); bc != nil {
				a.batch = append(a.batch, bc)
				pc = bc
			}
		}
		a.mux = webrtc.NewICEUDPMux(lf.NewLogger("udpmux"), pc)
		a.addrs = []net.Addr{conn.LocalAddr()}
		if ip.IsLoopback() {
			s.SetIncludeLoopbackCandidate(true)
		}
	} else {
		stdNet, err := stdnet.NewNet()
		if err != nil {
			return nil, fmt.Errorf("network interfaces: %w", err)
		}
		// pion opens one socket per interface address; batchNet makes each
		// a batchConn.
		bn := &batchNet{Net: stdNet, add: func(c *batchConn) { a.batch = append(a.batch, c) }}
		mm, err := ice.NewMultiUDPMuxFromPort(o.UDPPort, ice.UDPMuxFromPortWithLogger(lf.NewLogger("udpmux")),
			ice.UDPMuxFromPortWithReadBufferSize(socketBuffer), ice.UDPMuxFromPortWithWriteBufferSize(socketBuffer),
			ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6), ice.UDPMuxFromPortWithNet(bn))
		if err != nil {
			return nil, fmt.Errorf("listen udp port %d: %w", o.UDPPort, err)
		}
		a.mux = mm
		a.addrs = mm.GetListenAddresses()
	}
	s.SetICEUDPMux(a.mux)

	cert, err := newCertificate()
	if err != nil {
		_ = a.mux.Close()
		return nil, err
	}
	a.cfg.Certificates = []webrtc.Certificate{*cert}
	a.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(r), webrtc.WithSettingEngine(s))
	return a, nil
}

// NewPeerConnection makes a PeerConnection on the shared port with the
// configured ICE servers and the process-wide DTLS certificate.
func (a *API) NewPeerConnection() (*webrtc.PeerConnection, error) {
	return a.api.NewPeerConnection(a.cfg)
}

// WebRTC returns the underlying pion API.
func (a *API) WebRTC() *webrtc.API { return a.api }

// Addrs returns the local addresses of the shared UDP port.
func (a *API) Addrs() []net.Addr { return a.addrs }

// Cork opens a batch of writes on the API's UDP port: until the matching
// Flush, the datagrams that any PeerConnection of the API writes (media,
// and RTCP, STUN or DTLS of other goroutines meanwhile) are queued in
// preallocated buffers, and leave with one sendmmsg(2) per 16 (the ring
// is sent when full, and by Flush); where the kernel has UDP GSO, a run
// of them to one address leaves as one datagram that the kernel cuts up.
// A goroutine that does a burst of media work (the packets of one
// recvmmsg batch, one packet to many subscribers on the shared port) calls
// Cork before it and Flush right after: the burst costs a system call per
// 16 datagrams instead of one each (and with GSO the kernel's send path
// once per run), and no datagram waits for more than 15 others to be
// written. Every Cork needs one Flush, from the same goroutine and soon:
// datagrams wait until then. Batches of several goroutines may overlap: a
// datagram leaves with the first Flush (or full ring) after it was
// written. Neither allocates; Cork is an atomic add, Flush takes two
// uncontended locks when nothing is queued. Datagrams stay separate (this
// is not UDP_CORK). On platforms without sendmmsg, or with
// Options.WrapConn, both do nothing.
func (a *API) Cork() {
	for _, c := range a.batch {
		c.cork()
	}
}

// Flush sends what was queued since Cork and closes the batch Cork
// opened. When it returns, what the calling goroutine wrote is with the
// kernel. Errors of sendmmsg are not returned (a PeerConnection's own
// write would have returned one to pion, which drops it): the datagram is
// counted in BatchStats().Errors and the rest of the batch still goes.
func (a *API) Flush() {
	for _, c := range a.batch {
		c.flush()
	}
}

// BatchStats counts what an API's port sent in batches (Cork, Flush).
type BatchStats struct {
	Batches   uint64 // sendmmsg(2) calls that sent something
	Datagrams uint64 // datagrams they sent
	Segmented uint64 // ... of which in runs to one address that the kernel cut up (GSO)
	Errors    uint64 // queued datagrams not sent: refused by the kernel, or the socket closed
}

// BatchStats returns the counters of the API's sockets, summed.
func (a *API) BatchStats() BatchStats {
	var s BatchStats
	for _, c := range a.batch {
		cs := c.stats()
		s.Batches += cs.Batches
		s.Datagrams += cs.Datagrams
		s.Segmented += cs.Segmented
		s.Errors += cs.Errors
	}
	return s
}

// Close releases the UDP port.
func (a *API) Close() error {
	err := a.mux.Close()
	if a.conn != nil {
		if cerr := a.conn.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	return err
}
