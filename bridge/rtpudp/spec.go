package rtpudp

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/rtgate/rtgate/bridge"
)

// DefaultBatch is the number of datagrams one batched read can return.
const DefaultBatch = 32

// maxBatch bounds the batch= parameter (each message holds a reused buffer).
const maxBatch = 256

// Spec is a parsed, validated source description: what Open will bind and
// which tracks the source will have. Making one opens nothing.
type Spec struct {
	// URL is the string the spec was parsed from ("" for ParseSDP).
	URL string
	// Tracks in the order of the URL or of the SDP's m= lines.
	Tracks []TrackSpec
	// Iface names the interface multicast groups are joined on; "" lets
	// the system choose.
	Iface string
	// Batch is the number of datagrams read per system call (recvmmsg,
	// on Linux; other systems always read single datagrams); 1 means
	// single reads. 0 means DefaultBatch.
	Batch int
}

// TrackSpec is one track of a Spec and where its packets arrive.
type TrackSpec struct {
	bridge.Track
	// Local is the address the RTP socket binds; port 0 picks a free port
	// at Open (with a free port+1 for RTCP unless RTCPMux).
	Local netip.AddrPort
	// Group is the multicast group to join, or the zero Addr.
	Group netip.Addr
	// RTCPPort is the local RTCP port; 0 means the RTP port + 1. With
	// RTCPMux it is ignored: RTCP shares the RTP port (RFC 5761).
	RTCPPort uint16
	RTCPMux  bool
}

// MIME types, equal to pion/webrtc's MimeType* constants (this package does
// not import webrtc).
const (
	MimeTypeVP8  = "video/VP8"
	MimeTypeVP9  = "video/VP9"
	MimeTypeH264 = "video/H264"
	MimeTypeAV1  = "video/AV1"
	MimeTypeOpus = "audio/opus"
	MimeTypePCMU = "audio/PCMU"
	MimeTypePCMA = "audio/PCMA"
)

type codecInfo struct {
	name      string // codec= value
	mime      string
	pt        uint8 // default payload type
	clock     uint32
	channels  uint16
	sdpNames  []string // rtpmap encoding names, upper case
	audioOnly bool
}

var codecs = []codecInfo{
	{name: "vp8", mime: MimeTypeVP8, pt: 96, clock: 90000, sdpNames: []string{"VP8"}},
	{name: "vp9", mime: MimeTypeVP9, pt: 98, clock: 90000, sdpNames: []string{"VP9"}},
	{name: "h264", mime: MimeTypeH264, pt: 102, clock: 90000, sdpNames: []string{"H264"}},
	{name: "av1", mime: MimeTypeAV1, pt: 45, clock: 90000, sdpNames: []string{"AV1", "AV1X"}},
	{name: "opus", mime: MimeTypeOpus, pt: 111, clock: 48000, channels: 2, sdpNames: []string{"OPUS"}, audioOnly: true},
	{name: "pcmu", mime: MimeTypePCMU, pt: 0, clock: 8000, channels: 1, sdpNames: []string{"PCMU"}, audioOnly: true},
	{name: "pcma", mime: MimeTypePCMA, pt: 8, clock: 8000, channels: 1, sdpNames: []string{"PCMA"}, audioOnly: true},
}

func codecNames() string {
	names := make([]string, len(codecs))
	for i, c := range codecs {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

func codecByName(name string) (codecInfo, bool) {
	for _, c := range codecs {
		if strings.EqualFold(c.name, name) {
			return c, true
		}
	}
	return codecInfo{}, false
}

func codecBySDPName(name string) (codecInfo, bool) {
	up := strings.ToUpper(name)
	for _, c := range codecs {
		if slices.Contains(c.sdpNames, up) {
			return c, true
		}
	}
	return codecInfo{}, false
}

// ParseURL parses and validates a source URL without opening anything:
//
//	rtp://HOST:PORT?codec=vp8[&pt=96][&fmtp=...][&rtcp=PORT|&rtcp_mux=1][&clock=N][&channels=N][&iface=NAME][&batch=N]
//	sdp:///path/stream.sdp[?bind=IP][&iface=NAME][&batch=N]
//
// HOST is the local address to bind (IPv4, [IPv6]) or a multicast group to
// join. An sdp:// URL reads the file (as written by ffmpeg -sdp_file or by
// hand for GStreamer) and yields one track per m= line.
func ParseURL(raw string) (*Spec, error) {
	sp, err := parseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", raw, err)
	}
	sp.URL = raw
	return sp, nil
}

func parseURL(raw string) (*Spec, error) {
	if !strings.Contains(raw, "://") {
		return nil, errors.New("missing scheme: want rtp:// or sdp://")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already named
		}
		return nil, err
	}
	if u.User != nil {
		return nil, errors.New("user information not allowed")
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("fragment %q not allowed", u.Fragment)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "rtp":
		return parseRTPURL(u, q)
	case "sdp":
		return parseSDPURL(u, q)
	case "":
		return nil, errors.New("missing scheme: want rtp:// or sdp://")
	default:
		return nil, fmt.Errorf("unknown scheme %q: want rtp or sdp", u.Scheme)
	}
}

// query reads the parameters of a URL, rejecting repeated and unknown ones.
type query struct {
	v url.Values
}

func (q *query) get(key string) (string, bool) {
	vs, ok := q.v[key]
	if !ok {
		return "", false
	}
	return vs[0], true
}

func (q *query) check(allowed ...string) error {
	for k, vs := range q.v {
		if !slices.Contains(allowed, k) {
			return fmt.Errorf("unknown parameter %q: want one of %s", k, strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return fmt.Errorf("parameter %q given %d times", k, len(vs))
		}
	}
	return nil
}

func parseUint(key, s string, lo, hi uint64) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("bad %s %q: want an integer in %d..%d", key, s, lo, hi)
	}
	return v, nil
}

func parseCommon(q *query, sp *Spec) error {
	if v, ok := q.get("iface"); ok {
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("bad iface %q: want an interface name", v)
		}
		sp.Iface = v
	}
	sp.Batch = DefaultBatch
	if v, ok := q.get("batch"); ok {
		n, err := parseUint("batch", v, 1, maxBatch)
		if err != nil {
			return err
		}
		sp.Batch = int(n)
	}
	return nil
}

func parseRTPURL(u *url.URL, v url.Values) (*Spec, error) {
	q := &query{v: v}
	if err := q.check("codec", "pt", "fmtp", "rtcp", "rtcp_mux", "clock", "channels", "iface", "batch"); err != nil {
		return nil, err
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("unexpected path %q: want rtp://HOST:PORT?codec=...", u.Path+u.Opaque)
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("missing host: want rtp://HOST:PORT (e.g. 0.0.0.0, [::] or a multicast group)")
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("bad host %q: want an IP address", host)
	}
	addr = addr.Unmap()
	if u.Port() == "" {
		return nil, errors.New("missing port: want rtp://HOST:PORT")
	}
	p, err := parseUint("port", u.Port(), 0, 65535)
	if err != nil {
		return nil, err
	}
	port := uint16(p)

	sp := &Spec{}
	if err := parseCommon(q, sp); err != nil {
		return nil, err
	}
	if sp.Iface != "" && !addr.IsMulticast() {
		return nil, fmt.Errorf("iface=%s needs a multicast group as host, not %s", sp.Iface, addr)
	}

	name, ok := q.get("codec")
	if !ok || name == "" {
		return nil, fmt.Errorf("missing codec: want codec= one of %s", codecNames())
	}
	ci, ok := codecByName(name)
	if !ok {
		return nil, fmt.Errorf("unknown codec %q: want one of %s", name, codecNames())
	}
	t := TrackSpec{Local: netip.AddrPortFrom(addr, port)}
	if addr.IsMulticast() {
		t.Group = addr
	}
	t.Codec = bridge.Codec{MimeType: ci.mime, ClockRate: ci.clock, Channels: ci.channels, PayloadType: ci.pt}
	t.Kind = t.Codec.Kind()

	if s, ok := q.get("pt"); ok {
		n, err := parseUint("pt", s, 0, 127)
		if err != nil {
			return nil, err
		}
		t.Codec.PayloadType = uint8(n)
	}
	if s, ok := q.get("fmtp"); ok {
		t.Codec.Fmtp = s // url.ParseQuery already decoded it
	}
	if s, ok := q.get("clock"); ok {
		n, err := parseUint("clock", s, 1, 1<<32-1)
		if err != nil {
			return nil, err
		}
		t.Codec.ClockRate = uint32(n)
	}
	if s, ok := q.get("channels"); ok {
		if !ci.audioOnly {
			return nil, fmt.Errorf("channels=%s given for video codec %s", s, ci.name)
		}
		n, err := parseUint("channels", s, 1, 255)
		if err != nil {
			return nil, err
		}
		t.Codec.Channels = uint16(n)
	}
	if s, ok := q.get("rtcp_mux"); ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, fmt.Errorf("bad rtcp_mux %q: want 1 or 0", s)
		}
		t.RTCPMux = b
	}
	if s, ok := q.get("rtcp"); ok {
		if t.RTCPMux {
			return nil, fmt.Errorf("rtcp=%s conflicts with rtcp_mux=1", s)
		}
		n, err := parseUint("rtcp", s, 1, 65535)
		if err != nil {
			return nil, err
		}
		if uint16(n) == port {
			return nil, fmt.Errorf("rtcp=%s equals the RTP port: use rtcp_mux=1", s)
		}
		t.RTCPPort = uint16(n)
	}
	if err := checkTrack(&t); err != nil {
		return nil, err
	}
	sp.Tracks = []TrackSpec{t}
	return sp, nil
}

// checkTrack validates what URL and SDP tracks have in common.
func checkTrack(t *TrackSpec) error {
	if t.RTCPMux && t.Codec.PayloadType >= 64 && t.Codec.PayloadType <= 95 {
		return fmt.Errorf("payload type %d collides with RTCP packet types under rtcp-mux (RFC 5761): use 96-127 or 0-63",
			t.Codec.PayloadType)
	}
	if !t.RTCPMux && t.RTCPPort == 0 && t.Local.Port() == 65535 {
		return errors.New("port 65535 leaves no port+1 for RTCP: set rtcp= or rtcp_mux=1")
	}
	return nil
}

func parseSDPURL(u *url.URL, v url.Values) (*Spec, error) {
	q := &query{v: v}
	if err := q.check("bind", "iface", "batch"); err != nil {
		return nil, err
	}
	if u.Host != "" {
		return nil, fmt.Errorf("unexpected host %q: want sdp:///absolute/path.sdp", u.Host)
	}
	path := u.Path
	if u.Opaque != "" {
		path = u.Opaque
	}
	if path == "" {
		return nil, errors.New("missing path: want sdp:///absolute/path.sdp")
	}
	var bind netip.Addr
	if s, ok := q.get("bind"); ok {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("bad bind %q: want an IP address", s)
		}
		bind = a.Unmap()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sdp: %w", err)
	}
	sp, err := ParseSDP(data, bind)
	if err != nil {
		return nil, err
	}
	if err := parseCommon(q, sp); err != nil {
		return nil, err
	}
	return sp, nil
}

// ParseSDP reads a session description as ffmpeg (-sdp_file) or GStreamer
// users write it: one track per m= line, with its port, payload type and
// codec (a=rtpmap, a=fmtp), RTCP port (a=rtcp) or rtcp-mux (a=rtcp-mux) and
// connection address (c=, media or session level). bind, when valid,
// overrides the local address; otherwise a multicast or loopback c=
// address is bound (a multicast group is also joined) and any other
// address binds the unspecified address of its family.
//
// m= lines with port 0 (disabled streams) are skipped. When an m= line
// lists several payload types, the first supported one becomes the track
// and packets of the others are dropped as unknown payload types.
func ParseSDP(data []byte, bind netip.Addr) (*Spec, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("parse sdp: %w", err)
	}
	sp := &Spec{Batch: DefaultBatch}
	for i, md := range sd.MediaDescriptions {
		t, skip, err := sdpTrack(&sd, md, bind)
		if err != nil {
			return nil, fmt.Errorf("m= line %d (%s): %w", i+1, mediaLine(md), err)
		}
		if skip {
			continue
		}
		for j := range sp.Tracks {
			if err := checkPair(&sp.Tracks[j], &t); err != nil {
				return nil, fmt.Errorf("m= line %d (%s): %w", i+1, mediaLine(md), err)
			}
		}
		sp.Tracks = append(sp.Tracks, t)
	}
	if len(sp.Tracks) == 0 {
		return nil, errors.New("no enabled audio or video m= line")
	}
	return sp, nil
}

func mediaLine(md *sdp.MediaDescription) string {
	return fmt.Sprintf("m=%s %d %s", md.MediaName.Media, md.MediaName.Port.Value, strings.Join(md.MediaName.Protos, "/"))
}

func sdpTrack(sd *sdp.SessionDescription, md *sdp.MediaDescription, bind netip.Addr) (t TrackSpec, skip bool, err error) {
	mn := md.MediaName
	kind := strings.ToLower(mn.Media)
	if kind != bridge.KindAudio && kind != bridge.KindVideo {
		return t, false, fmt.Errorf("unsupported media %q: want audio or video", mn.Media)
	}
	proto := strings.ToUpper(strings.Join(mn.Protos, "/"))
	if proto != "RTP/AVP" && proto != "RTP/AVPF" {
		return t, false, fmt.Errorf("unsupported transport %q: want RTP/AVP or RTP/AVPF (no SRTP, no TCP)", strings.Join(mn.Protos, "/"))
	}
	if mn.Port.Value == 0 {
		return t, true, nil
	}
	if mn.Port.Value < 0 || mn.Port.Value > 65535 {
		return t, false, fmt.Errorf("bad port %d", mn.Port.Value)
	}
	if mn.Port.Range != nil && *mn.Port.Range != 1 {
		return t, false, fmt.Errorf("port ranges (%d/%d) are not supported", mn.Port.Value, *mn.Port.Range)
	}

	// Codec: the first supported format of this m= line, read with pion's
	// rtpmap/fmtp parsing applied to this media description alone.
	one := &sdp.SessionDescription{MediaDescriptions: []*sdp.MediaDescription{md}}
	cm := one.GetCodecMap()
	var found bool
	var unsupported []string
	for _, f := range mn.Formats {
		n, perr := strconv.ParseUint(f, 10, 8)
		if perr != nil || n > 127 {
			return t, false, fmt.Errorf("bad payload type %q", f)
		}
		sc, ok := cm[uint8(n)]
		if !ok {
			unsupported = append(unsupported, fmt.Sprintf("%d (no rtpmap)", n))
			continue
		}
		ci, ok := codecBySDPName(sc.Name)
		if !ok {
			unsupported = append(unsupported, fmt.Sprintf("%d %s", n, sc.Name))
			continue
		}
		if ci.audioOnly != (kind == bridge.KindAudio) {
			return t, false, fmt.Errorf("codec %s in m=%s", sc.Name, mn.Media)
		}
		t.Codec = bridge.Codec{MimeType: ci.mime, ClockRate: ci.clock, Channels: ci.channels, PayloadType: uint8(n), Fmtp: sc.Fmtp}
		if sc.ClockRate != 0 {
			t.Codec.ClockRate = sc.ClockRate
		}
		if sc.EncodingParameters != "" && ci.audioOnly {
			ch, cerr := strconv.ParseUint(sc.EncodingParameters, 10, 8)
			if cerr != nil || ch == 0 {
				return t, false, fmt.Errorf("bad channel count %q in rtpmap of payload type %d", sc.EncodingParameters, n)
			}
			t.Codec.Channels = uint16(ch)
		}
		found = true
		break
	}
	if !found {
		return t, false, fmt.Errorf("no supported codec in payload types %s: want one of %s",
			strings.Join(unsupported, ", "), codecNames())
	}
	t.Kind = kind

	// Connection address: media level, else session level.
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	var caddr netip.Addr
	if ci != nil {
		if !strings.EqualFold(ci.NetworkType, "IN") {
			return t, false, fmt.Errorf("unsupported network type %q in c=", ci.NetworkType)
		}
		if ci.Address == nil {
			return t, false, errors.New("c= line without an address")
		}
		a, perr := connectionAddr(ci)
		if perr != nil {
			return t, false, perr
		}
		caddr = a
	}
	local := netip.IPv4Unspecified()
	switch {
	case bind.IsValid():
		local = bind
	case caddr.IsMulticast() || caddr.IsLoopback():
		local = caddr
	case caddr.Is6():
		local = netip.IPv6Unspecified()
	}
	if caddr.IsMulticast() {
		t.Group = caddr
		if bind.IsValid() && bind.Is4() != caddr.Is4() {
			return t, false, fmt.Errorf("bind=%s and multicast group %s are of different families", bind, caddr)
		}
	}
	t.Local = netip.AddrPortFrom(local, uint16(mn.Port.Value))

	if _, ok := md.Attribute("rtcp-mux"); ok {
		t.RTCPMux = true
	}
	if v, ok := md.Attribute("rtcp"); ok && !t.RTCPMux {
		// a=rtcp:<port> [<nettype> <addrtype> <address>] (RFC 3605)
		f := strings.Fields(v)
		if len(f) == 0 {
			return t, false, errors.New("empty a=rtcp")
		}
		n, perr := strconv.ParseUint(f[0], 10, 16)
		if perr != nil || n == 0 {
			return t, false, fmt.Errorf("bad a=rtcp port %q", f[0])
		}
		if uint16(n) == t.Local.Port() {
			t.RTCPMux = true
		} else {
			t.RTCPPort = uint16(n)
		}
	}
	if err := checkTrack(&t); err != nil {
		return t, false, err
	}
	return t, false, nil
}

// checkPair rejects two tracks that a Source could not tell apart.
func checkPair(a, b *TrackSpec) error {
	if a.Local == b.Local && a.Codec.PayloadType == b.Codec.PayloadType {
		return fmt.Errorf("shares port %d and payload type %d with another m= line", b.Local.Port(), b.Codec.PayloadType)
	}
	if a.Local == b.Local && (a.RTCPMux != b.RTCPMux || a.rtcpPort() != b.rtcpPort()) {
		return fmt.Errorf("shares port %d with another m= line but not its RTCP port", b.Local.Port())
	}
	return nil
}

// rtcpPort is the configured local RTCP port (0 while the RTP port is 0).
func (t *TrackSpec) rtcpPort() uint16 {
	switch {
	case t.RTCPMux:
		return t.Local.Port()
	case t.RTCPPort != 0:
		return t.RTCPPort
	case t.Local.Port() == 0:
		return 0
	default:
		return t.Local.Port() + 1
	}
}

// connectionAddr returns the address of a c= line. pion/sdp leaves the
// RFC 4566 suffixes in the address: "/TTL[/count]" for IPv4 multicast,
// "/count" for IPv6 multicast.
func connectionAddr(ci *sdp.ConnectionInformation) (netip.Addr, error) {
	field := ci.Address.Address
	parts := strings.Split(field, "/")
	a, err := netip.ParseAddr(parts[0])
	if err != nil {
		return a, fmt.Errorf("bad c= address %q: want an IP address", field)
	}
	a = a.Unmap()
	if fam := strings.ToUpper(ci.AddressType); (fam == "IP4") != a.Is4() {
		return a, fmt.Errorf("c= address %s is not of address type %s", a, ci.AddressType)
	}
	count := ""
	switch {
	case len(parts) == 1:
	case a.Is4() && a.IsMulticast() && len(parts) <= 3:
		if _, err := strconv.ParseUint(parts[1], 10, 8); err != nil {
			return a, fmt.Errorf("bad TTL in c= address %q", field)
		}
		if len(parts) == 3 {
			count = parts[2]
		}
	case a.Is6() && a.IsMulticast() && len(parts) == 2:
		count = parts[1]
	default:
		return a, fmt.Errorf("bad c= address %q", field)
	}
	if count != "" && count != "1" {
		return a, fmt.Errorf("c= address ranges (%s) are not supported", field)
	}
	return a, nil
}
