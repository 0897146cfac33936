package rtpudp

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/rtgate/rtgate/bridge"
)

// OutSpec is a parsed, validated RTP/UDP destination for a Sender: where the
// RTP and RTCP of each kind of track go. Making one opens nothing.
type OutSpec struct {
	// URL is the string the spec was parsed from.
	URL string
	// Host is the destination address (unicast or a multicast group).
	Host netip.Addr
	// Video and Audio are the destination ports of each kind; a zero RTP
	// port means that kind is not forwarded (AddTrack refuses it).
	Video, Audio OutPorts
	// TTL is the multicast TTL (hop limit); 0 leaves the system default
	// (1). Only with a multicast Host.
	TTL int
	// Bind is the local address the sockets bind (port chosen by the
	// system): 127.0.0.1 or ::1 for a loopback Host, else the unspecified
	// address of the Host's family, unless the URL says bind=.
	Bind netip.Addr
}

// OutPorts are the destination ports of one kind of track.
type OutPorts struct {
	RTP, RTCP uint16
}

// ports returns the ports of a kind.
func (sp *OutSpec) ports(kind string) OutPorts {
	if kind == bridge.KindAudio {
		return sp.Audio
	}
	return sp.Video
}

// ParseOutURL parses and validates an RTP/UDP destination without opening
// anything:
//
//	rtp://HOST:PORT[?media=video,audio][&ttl=N][&bind=IP]
//
// HOST is an IPv4 address, an [IPv6] address or a multicast group. Video goes
// to PORT (RTCP to PORT+1) and audio to PORT+2 (RTCP to PORT+3); with
// media=audio (audio only) audio goes to PORT and PORT+1, and with
// media=video only video is forwarded. These are the ports the SDP the
// Sender writes names.
func ParseOutURL(raw string) (*OutSpec, error) {
	sp, err := parseOutURL(raw)
	if err != nil {
		return nil, fmt.Errorf("rtp out %s: %w", raw, err)
	}
	sp.URL = raw
	return sp, nil
}

func parseOutURL(raw string) (*OutSpec, error) {
	if !strings.Contains(raw, "://") {
		return nil, errors.New("missing scheme: want rtp://HOST:PORT")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already named
		}
		return nil, err
	}
	if !strings.EqualFold(u.Scheme, "rtp") {
		return nil, fmt.Errorf("scheme %q: want rtp://HOST:PORT", u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New("user information not allowed")
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("fragment %q not allowed", u.Fragment)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("unexpected path %q: want rtp://HOST:PORT", u.Path+u.Opaque)
	}
	v, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	q := &query{v: v}
	if err := q.check("media", "ttl", "bind"); err != nil {
		return nil, err
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("missing host: want rtp://HOST:PORT with HOST the receiver's IP address")
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("bad host %q: want an IP address", host)
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() {
		return nil, fmt.Errorf("host %s is not a destination: want the receiver's address", addr)
	}
	if u.Port() == "" {
		return nil, errors.New("missing port: want rtp://HOST:PORT")
	}
	p, err := parseUint("port", u.Port(), 1, 65535)
	if err != nil {
		return nil, err
	}
	port := uint16(p)

	sp := &OutSpec{Host: addr}
	video, audio := true, true
	if s, ok := q.get("media"); ok {
		video, audio = false, false
		for _, m := range strings.Split(s, ",") {
			switch strings.ToLower(strings.TrimSpace(m)) {
			case bridge.KindVideo:
				video = true
			case bridge.KindAudio:
				audio = true
			default:
				return nil, fmt.Errorf("bad media %q: want video, audio or video,audio", s)
			}
		}
	}
	need := uint64(port) + 1 // the highest port used
	if video && audio {
		need += 2
	}
	if need > 65535 {
		return nil, fmt.Errorf("port %d leaves no room for the RTCP and second media ports (up to %d): use a lower port", port, need)
	}
	next := port
	if video {
		sp.Video = OutPorts{RTP: next, RTCP: next + 1}
		next += 2
	}
	if audio {
		sp.Audio = OutPorts{RTP: next, RTCP: next + 1}
	}
	if s, ok := q.get("ttl"); ok {
		if !addr.IsMulticast() {
			return nil, fmt.Errorf("ttl=%s needs a multicast group as host, not %s", s, addr)
		}
		n, err := parseUint("ttl", s, 1, 255)
		if err != nil {
			return nil, err
		}
		sp.TTL = int(n)
	}
	switch {
	case addr.IsLoopback() && addr.Is4():
		sp.Bind = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case addr.IsLoopback():
		sp.Bind = netip.IPv6Loopback()
	case addr.Is4():
		sp.Bind = netip.IPv4Unspecified()
	default:
		sp.Bind = netip.IPv6Unspecified()
	}
	if s, ok := q.get("bind"); ok {
		b, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("bad bind %q: want an IP address", s)
		}
		b = b.Unmap()
		if b.Is4() != addr.Is4() {
			return nil, fmt.Errorf("bind=%s and host %s are of different families", b, addr)
		}
		if b.IsMulticast() {
			return nil, fmt.Errorf("bind=%s: want a local address, not a multicast group", b)
		}
		sp.Bind = b
	}
	return sp, nil
}
