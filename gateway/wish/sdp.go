package wish

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/rtgate/rtgate/bridge"
)

// media is one audio or video m= section of a client's SDP.
type media struct {
	mid       string
	kind      string // bridge.KindAudio or bridge.KindVideo
	direction string // the client's: sendonly, recvonly, sendrecv or inactive
	codecs    []codecDesc
}

// sends and receives say what the client does with the section.
func (m media) sends() bool    { return m.direction == "sendonly" || m.direction == "sendrecv" }
func (m media) receives() bool { return m.direction == "recvonly" || m.direction == "sendrecv" }

// codecDesc is one payload type of an m= section.
type codecDesc struct {
	pt       uint8
	name     string // as in rtpmap: "VP8", "opus", "rtx"
	clock    uint32
	channels uint16
	fmtp     string
}

// mime is the codec's MIME type, "video/VP8".
func (c codecDesc) mime(kind string) string { return kind + "/" + c.name }

func (c codecDesc) isRTX() bool { return strings.EqualFold(c.name, "rtx") }

// apt is an RTX codec's associated payload type.
func (c codecDesc) apt() (uint8, bool) {
	for kv := range strings.SplitSeq(c.fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, "apt") {
			n, err := strconv.ParseUint(v, 10, 8)
			return uint8(n), err == nil
		}
	}
	return 0, false
}

// parseSDP checks that text is an SDP a WebRTC client made (ICE
// credentials, a DTLS fingerprint, a mid per section) and lists its audio
// and video sections that are not rejected (port 0).
func parseSDP(text string) ([]media, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("the body is empty")
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("not an SDP session description: %w", err)
	}
	_, sessUfrag := sd.Attribute("ice-ufrag")
	_, sessFP := sd.Attribute("fingerprint")
	var out []media
	for i, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != bridge.KindAudio && kind != bridge.KindVideo {
			continue // application (DataChannels) and others: not ours
		}
		// Port 0 rejects a section, except with a=bundle-only (RFC 8843
		// section 6: GStreamer's webrtcbin offers its audio so); such a
		// section takes the bundle's transport, ICE credentials included.
		_, bundleOnly := md.Attribute("bundle-only")
		if md.MediaName.Port.Value == 0 && !bundleOnly {
			continue
		}
		m := media{kind: kind, direction: "sendrecv"}
		var ok bool
		if m.mid, ok = md.Attribute("mid"); !ok || m.mid == "" {
			return nil, fmt.Errorf("m= section %d (%s) has no a=mid", i, kind)
		}
		if _, ok := md.Attribute("ice-ufrag"); !ok && !sessUfrag && !bundleOnly {
			return nil, fmt.Errorf("m= section %d (%s) has no a=ice-ufrag", i, kind)
		}
		if _, ok := md.Attribute("fingerprint"); !ok && !sessFP && !bundleOnly {
			return nil, fmt.Errorf("m= section %d (%s) has no a=fingerprint (DTLS)", i, kind)
		}
		for _, a := range md.Attributes {
			switch a.Key {
			case "sendonly", "recvonly", "sendrecv", "inactive":
				m.direction = a.Key
			}
		}
		m.codecs = parseCodecs(md)
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, errors.New("no audio or video m= section")
	}
	return out, nil
}

// parseCodecs lists an m= section's payload types in the section's order.
func parseCodecs(md *sdp.MediaDescription) []codecDesc {
	byPT := map[uint8]*codecDesc{}
	var order []uint8
	for _, f := range md.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			continue
		}
		pt := uint8(n)
		if _, dup := byPT[pt]; !dup {
			byPT[pt] = &codecDesc{pt: pt}
			order = append(order, pt)
		}
	}
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" && a.Key != "fmtp" {
			continue
		}
		ptText, rest, ok := strings.Cut(a.Value, " ")
		n, err := strconv.ParseUint(ptText, 10, 8)
		if !ok || err != nil || byPT[uint8(n)] == nil {
			continue
		}
		c := byPT[uint8(n)]
		if a.Key == "fmtp" {
			c.fmtp = strings.TrimSpace(rest)
			continue
		}
		parts := strings.Split(strings.TrimSpace(rest), "/")
		c.name = parts[0]
		if len(parts) > 1 {
			if v, err := strconv.ParseUint(parts[1], 10, 32); err == nil {
				c.clock = uint32(v)
			}
		}
		if len(parts) > 2 {
			if v, err := strconv.ParseUint(parts[2], 10, 16); err == nil {
				c.channels = uint16(v)
			}
		}
	}
	out := make([]codecDesc, 0, len(order))
	for _, pt := range order {
		if c := byPT[pt]; c.name != "" {
			out = append(out, *c)
		}
	}
	return out
}

// firstCodec returns the first media codec of a section (not RTX, RED or
// FEC): the one an answer's receiver expects first.
func firstCodec(m media) (codecDesc, bool) {
	for _, c := range m.codecs {
		switch strings.ToLower(c.name) {
		case "rtx", "red", "ulpfec", "flexfec-03":
			continue
		}
		return c, true
	}
	return codecDesc{}, false
}

// sameCodec reports whether two codecs are interchangeable for a receiver
// that negotiated one of them: same MIME type, clock and, for H.264, the
// same packetization mode and profile.
func sameCodec(kind string, a codecDesc, b bridge.Codec) bool {
	if !strings.EqualFold(a.mime(kind), b.MimeType) || a.clock != b.ClockRate {
		return false
	}
	if strings.EqualFold(a.name, "H264") {
		return fmtpValue(a.fmtp, "packetization-mode", "0") == fmtpValue(b.Fmtp, "packetization-mode", "0") &&
			h264Profile(a.fmtp) == h264Profile(b.Fmtp)
	}
	if strings.EqualFold(a.name, "VP9") {
		return fmtpValue(a.fmtp, "profile-id", "0") == fmtpValue(b.Fmtp, "profile-id", "0")
	}
	return true
}

func fmtpValue(line, key, def string) string {
	for kv := range strings.SplitSeq(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return strings.ToLower(v)
		}
	}
	return def
}

// h264Profile is the profile part of profile-level-id (constrained
// baseline folded together), ignoring the level.
func h264Profile(line string) string {
	p := fmtpValue(line, "profile-level-id", "42e01f")
	if len(p) != 6 {
		return p
	}
	if p[:2] == "42" && (p[2:4] == "e0" || p[2:4] == "c0") {
		return "42e0"
	}
	return p[:2]
}

// iceFrag is a trickle ICE SDP fragment (RFC 8840): new candidates, or new
// credentials and candidates for an ICE restart.
type iceFrag struct {
	ufrag, pwd string
	candidates []fragCandidate
	end        bool // a=end-of-candidates
}

type fragCandidate struct {
	mid   string
	value string // without the "candidate:" prefix's "a=" ("candidate:1 1 udp ...")
}

// parseFrag reads an application/trickle-ice-sdpfrag body.
func parseFrag(body string) (iceFrag, error) {
	var f iceFrag
	mid := ""
	for raw := range strings.SplitSeq(body, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "m="):
			mid = ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "a=candidate:"):
			f.candidates = append(f.candidates, fragCandidate{mid: mid, value: strings.TrimPrefix(line, "a=")})
		case line == "a=end-of-candidates":
			f.end = true
		case strings.HasPrefix(line, "a="):
			// ice-options, group and the like: nothing to do.
		default:
			return f, fmt.Errorf("line %q is not an SDP attribute or m= line", line)
		}
	}
	if (f.ufrag == "") != (f.pwd == "") {
		return f, errors.New("an ICE restart needs both a=ice-ufrag and a=ice-pwd")
	}
	return f, nil
}

// iceCredentials returns the ICE ufrag and password of an SDP (session
// level or its first media section).
func iceCredentials(text string) (ufrag, pwd string) {
	for raw := range strings.SplitSeq(text, "\n") {
		line := strings.TrimSpace(raw)
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok && ufrag == "" {
			ufrag = v
		}
		if v, ok := strings.CutPrefix(line, "a=ice-pwd:"); ok && pwd == "" {
			pwd = v
		}
	}
	return ufrag, pwd
}

// withICE rewrites an SDP for an ICE restart: new credentials everywhere,
// the old candidates dropped, the fragment's candidates in the section of
// their mid (the first one, bundled, when they name none), and the o=
// line's version bumped.
func withICE(text string, f iceFrag) string {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	var out []string
	section, mid := -1, ""
	flush := func() {
		if section < 0 {
			return
		}
		for _, c := range f.candidates {
			if c.mid == mid || (c.mid == "" && section == 0) {
				out = append(out, "a="+c.value)
			}
		}
		if f.end && section == 0 {
			out = append(out, "a=end-of-candidates")
		}
	}
	for _, line := range lines {
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "m="):
			flush()
			section++
			mid = ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			line = "a=ice-ufrag:" + f.ufrag
		case strings.HasPrefix(line, "a=ice-pwd:"):
			line = "a=ice-pwd:" + f.pwd
		case strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
			continue
		case strings.HasPrefix(line, "o="):
			line = bumpOrigin(line)
		}
		out = append(out, line)
	}
	flush()
	return strings.Join(out, "\r\n") + "\r\n"
}

// bumpOrigin increments the session version of an o= line.
func bumpOrigin(line string) string {
	f := strings.Fields(line)
	if len(f) < 3 {
		return line
	}
	if v, err := strconv.ParseUint(f[2], 10, 64); err == nil {
		f[2] = strconv.FormatUint(v+1, 10)
	}
	return strings.Join(f, " ")
}

// fragOf is the fragment that answers an ICE restart: rtgate's new
// credentials and candidates, in the first media section (RFC 9725 4.3.2).
func fragOf(local string) string {
	ufrag, pwd := iceCredentials(local)
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + ufrag + "\r\n")
	b.WriteString("a=ice-pwd:" + pwd + "\r\n")
	section := -1
	for raw := range strings.SplitSeq(local, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(line, "m="):
			section++
			if section == 0 {
				b.WriteString(line + "\r\n")
			}
		case section != 0:
		case strings.HasPrefix(line, "a=mid:"), strings.HasPrefix(line, "a=candidate:"), line == "a=end-of-candidates":
			b.WriteString(line + "\r\n")
		}
	}
	return b.String()
}
