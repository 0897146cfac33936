package rtpudp

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/rtgate/rtgate/bridge"
)

// sdpMedia is one m= line of a Sender's session description.
type sdpMedia struct {
	kind  string
	ports OutPorts
	codec bridge.Codec // with PayloadType the one the Sender writes
}

// codecByMime finds the codec of a MIME type in the table the URL and SDP
// parsers use, so that what the Sender writes reads back as what it sends.
func codecByMime(mime string) (codecInfo, bool) {
	for _, c := range codecs {
		if strings.EqualFold(c.mime, mime) {
			return c, true
		}
	}
	return codecInfo{}, false
}

// outCodec is the codec a Sender announces for a pulled track: the table's
// payload type (stable across re-pulls, whatever the SFU negotiated), the
// track's clock rate, channels and fmtp.
func outCodec(in bridge.Codec) (bridge.Codec, error) {
	ci, ok := codecByMime(in.MimeType)
	if !ok {
		return bridge.Codec{}, fmt.Errorf("codec %q cannot be forwarded as RTP/UDP: want one of %s", in.MimeType, codecNames())
	}
	out := bridge.Codec{MimeType: ci.mime, ClockRate: in.ClockRate, Channels: in.Channels, Fmtp: in.Fmtp, PayloadType: ci.pt}
	if out.ClockRate == 0 {
		out.ClockRate = ci.clock
	}
	if ci.mime == MimeTypeOpus {
		out.Channels = 2 // RFC 7587: opus is always signalled as 2 channels
	}
	return out, nil
}

// encodingName is the rtpmap name of a MIME type ("video/VP8" -> "VP8",
// "audio/opus" -> "opus").
func encodingName(mime string) string {
	_, sub, _ := strings.Cut(mime, "/")
	return sub
}

// outSDP renders the session description a receiver (ffmpeg, GStreamer's
// sdpdemux, VLC) opens to receive what a Sender sends: c= the destination,
// one m= line per kind with its port, rtpmap, fmtp and RTCP port.
func outSDP(sp *OutSpec, name string, sessID, version uint64, media []sdpMedia) ([]byte, error) {
	family := "IP4"
	if sp.Host.Is6() {
		family = "IP6"
	}
	origin := sp.Bind
	if !origin.IsValid() || origin.IsUnspecified() {
		origin = sp.Host
	}
	addr := &sdp.Address{Address: sp.Host.String()}
	if sp.Host.IsMulticast() && sp.Host.Is4() {
		ttl := max(sp.TTL, 1) // RFC 4566: an IPv4 multicast c= carries its TTL
		addr.TTL = &ttl
	}
	if name == "" {
		name = "rtgate"
	}
	sd := &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "-", SessionID: sessID, SessionVersion: version,
			NetworkType: "IN", AddressType: family, UnicastAddress: origin.String()},
		SessionName:           sdp.SessionName(sanitizeSDP(name)),
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: family, Address: addr},
		TimeDescriptions:      []sdp.TimeDescription{{Timing: sdp.Timing{}}},
	}
	sd.WithValueAttribute("tool", "rtgate")
	for _, m := range media {
		c := m.codec
		channels := uint16(0)
		if c.Kind() == bridge.KindAudio && c.Channels > 1 {
			channels = c.Channels
		}
		md := &sdp.MediaDescription{MediaName: sdp.MediaName{
			Media: m.kind, Port: sdp.RangedPort{Value: int(m.ports.RTP)}, Protos: []string{"RTP", "AVP"},
		}}
		md.WithCodec(c.PayloadType, encodingName(c.MimeType), c.ClockRate, channels, sanitizeSDP(c.Fmtp))
		md.WithValueAttribute("rtcp", strconv.Itoa(int(m.ports.RTCP)))
		sd.WithMedia(md)
	}
	return sd.Marshal()
}

// sanitizeSDP keeps a value on its SDP line.
func sanitizeSDP(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// writeFileAtomic replaces path with data so that a reader sees the old or
// the new file, never a partial one: a temporary file in the same directory,
// renamed over it.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
