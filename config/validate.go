package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// FieldError is one configuration problem: the key path, the offending
// value as text (quoted for strings; empty when it is not shown, e.g. for a
// secret) and what is wrong with it. Error renders it as
//
//	realtime.url: "ftp://x": scheme must be http, https or "embedded"
type FieldError struct {
	Key   string
	Value string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return e.Key + ": " + e.Msg
	}
	return e.Key + ": " + e.Value + ": " + e.Msg
}

// Errors is every problem of a configuration, in schema order. Its Error
// puts one problem per line.
type Errors []*FieldError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As each FieldError.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// formatValue renders a configured value for a FieldError.
func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case time.Duration:
		return v.String()
	case []string:
		return fmt.Sprintf("%q", v)
	case fmt.Stringer:
		return v.String()
	}
	if k := reflect.ValueOf(v).Kind(); k == reflect.Map || k == reflect.Struct {
		return "{...}"
	}
	return fmt.Sprint(v)
}

// validator collects FieldErrors.
type validator struct{ errs Errors }

func (v *validator) add(key string, value any, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Key: key, Value: formatValue(value), Msg: fmt.Sprintf(format, args...)})
}

// Validate checks every key and returns all problems at once as Errors, or
// nil. It reads realtime.app_secret_file to check that it holds a secret.
func (c *Config) Validate() error {
	v := &validator{}
	v.listenAddr("http.listen", c.HTTP.Listen)
	c.validateRealtime(v)

	v.ip("webrtc.listen_ip", c.WebRTC.ListenIP)
	v.port("webrtc.udp_port", c.WebRTC.UDPPort)
	v.ips("webrtc.public_ips", c.WebRTC.PublicIPs)
	for i, s := range c.WebRTC.ICEServers {
		v.iceServer(fmt.Sprintf("webrtc.ice_servers[%d]", i), s)
	}
	if n := c.WebRTC.NACK.MaxPerPacket; n < 1 || n > math.MaxUint16 {
		v.add("webrtc.nack.max_per_packet", n, "must be from 1 to %d", math.MaxUint16)
	}
	v.powerOfTwo("webrtc.nack.generator_size", c.WebRTC.NACK.GeneratorSize, 64, 32768)
	v.powerOfTwo("webrtc.nack.responder_size", c.WebRTC.NACK.ResponderSize, 1, 32768)

	v.listenAddr("sfu.listen", c.SFU.Listen)
	v.ip("sfu.listen_ip", c.SFU.ListenIP)
	v.port("sfu.udp_port", c.SFU.UDPPort)
	if c.IsEmbedded() && c.SFU.UDPPort != 0 && c.SFU.UDPPort == c.WebRTC.UDPPort &&
		udpOverlap(c.SFU.ListenIP, c.WebRTC.ListenIP) {
		v.add("sfu.udp_port", c.SFU.UDPPort, "must differ from webrtc.udp_port: the embedded SFU and rtgate's own PeerConnections each need their own UDP port")
	}
	v.ips("sfu.public_ips", c.SFU.PublicIPs)
	v.positive("sfu.track_idle_timeout", c.SFU.TrackIdleTimeout)
	v.positive("sfu.first_packet_wait", c.SFU.FirstPacketWait)
	v.positive("sfu.connect_wait", c.SFU.ConnectWait)
	v.positive("sfu.session_reuse_window", c.SFU.SessionReuseWindow)
	if r := c.SFU.RateLimit; !(r > 0) || math.IsInf(r, 0) {
		v.add("sfu.rate_limit", r, "must be a positive number of API calls per second")
	}
	v.powerOfTwo("sfu.nack_buffer", c.SFU.NACKBuffer, 64, 32768)

	c.validateWISH(v)

	c.validateLog(v)

	c.validateStreams(v)
	c.validateRecord(v)
	v.positive("shutdown_timeout", c.ShutdownTimeout)
	v.nonNegative("media_watchdog", c.MediaWatchdog)
	if c.MediaWatchdog > 0 && c.MediaWatchdog < time.Second {
		v.add("media_watchdog", c.MediaWatchdog, "must be 0 (off) or at least 1s")
	}

	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// streamName is what a stream may be called: it appears in URL paths
// (/whip/{name}) and track names.
var streamName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validateStreams(v *validator) {
	names := map[string]bool{}
	tracks := map[string]string{}
	for i, s := range c.Streams {
		key := fmt.Sprintf("streams[%d]", i)
		switch {
		case s.Name == "":
			v.add(key+".name", s.Name, "is required")
		case !streamName.MatchString(s.Name):
			v.add(key+".name", s.Name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
		case names[s.Name]:
			v.add(key+".name", s.Name, "is used by another stream")
		}
		dup := names[s.Name]
		names[s.Name] = true
		urls := s.SourceURLs()
		if len(urls) == 0 {
			v.add(key+".source", "", "is required (or sources: a list)")
		}
		c.validateStreamWISH(v, key, s)
		if s.IsWHIP() {
			urls = nil // fed by WHIP publishers: no URL to check
		}
		for j, u := range urls {
			k := key + ".source"
			if s.Source == "" || j > 0 {
				k = fmt.Sprintf("%s.sources[%d]", key, j-btoi(s.Source != ""))
			}
			if u == SourceWHIP {
				v.add(k, u, "a WHIP stream has source: whip and no other source")
				continue
			}
			if err := CheckSource(u); err != nil {
				v.add(k, u, "%v", err)
			}
		}
		if dup {
			continue // its track names clash too; one error says it
		}
		for _, t := range [][2]string{{"video", s.VideoTrack}, {"audio", s.AudioTrack}} {
			kind, name := t[0], t[1]
			if name == "" {
				name = s.Name + "-" + kind
			} else if !streamName.MatchString(name) {
				v.add(key+"."+kind+"_track", name, "must be 1 to 64 letters, digits, '.', '_' or '-'")
			}
			if other, ok := tracks[name]; ok {
				v.add(key+"."+kind+"_track", name, "is also a track name of %s", other)
				continue
			}
			tracks[name] = key
		}
	}
}

// validateWISH checks the whip and whep sections.
func (c *Config) validateWISH(v *validator) {
	v.mode("whip.mode", c.WHIP.Mode, false)
	v.mode("whep.mode", c.WHEP.Mode, false)
	if o := c.WHIP.OnConflict; o != ConflictReject && o != ConflictReplace {
		v.add("whip.on_conflict", o, "must be %s or %s", ConflictReject, ConflictReplace)
	}
	for _, r := range []struct {
		key     string
		resolve func() (Secret, error)
	}{{"whip.token", c.ResolveWHIPToken}, {"whep.token", c.ResolveWHEPToken}, {"api.token", c.ResolveAPIToken}} {
		s, err := r.resolve()
		var fe *FieldError
		switch {
		case errors.As(err, &fe):
			v.errs = append(v.errs, fe)
		case err != nil:
			v.errs = append(v.errs, &FieldError{Key: r.key + "_file", Msg: err.Error()})
		default:
			v.token(r.key, s.Value)
		}
	}
}

// validateStreamWISH checks the WHIP and WHEP keys of streams[i] (key).
func (c *Config) validateStreamWISH(v *validator, key string, s Stream) {
	v.mode(key+".whip_mode", s.WHIPMode, true)
	v.mode(key+".whep_mode", s.WHEPMode, true)
	v.token(key+".whip_token", s.WHIPToken)
	v.token(key+".whep_token", s.WHEPToken)
	if s.IsWHIP() {
		return
	}
	if s.WHIPMode != "" {
		v.add(key+".whip_mode", s.WHIPMode, "applies to WHIP streams only (source: whip)")
	}
	if s.WHIPToken != "" {
		v.errs = append(v.errs, &FieldError{Key: key + ".whip_token", Msg: "applies to WHIP streams only (source: whip)"})
	}
}

// mode checks a WHIP/WHEP mode; optional allows "" (inherit the global one).
func (v *validator) mode(key, m string, optional bool) {
	if m == ModeRelay || m == ModeProxy || (optional && m == "") {
		return
	}
	v.add(key, m, "must be %s or %s", ModeRelay, ModeProxy)
}

// token checks a bearer token: it travels in an HTTP header, so it is
// printable ASCII without spaces. The value is never shown.
func (v *validator) token(key, t string) {
	for _, r := range t {
		if r <= ' ' || r > '~' {
			v.errs = append(v.errs, &FieldError{Key: key,
				Msg: "must be printable ASCII without spaces (it is sent in an Authorization header)"})
			return
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c *Config) validateRealtime(v *validator) {
	r := c.Realtime
	remote := false
	if r.URL != Embedded {
		u, err := url.Parse(r.URL)
		switch {
		case err != nil:
			v.add("realtime.url", r.URL, `must be "embedded" or an http(s) URL: %v`, unwrapURLError(err))
		case u.Scheme != "http" && u.Scheme != "https":
			v.add("realtime.url", r.URL, `scheme must be http, https or "embedded"`)
		case u.Host == "":
			v.add("realtime.url", r.URL, "must name a host")
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			v.add("realtime.url", r.URL, "must not have user info, a query or a fragment")
		default:
			remote = true
			if _, err := hostPort(u.Host, true); err != nil {
				v.add("realtime.url", r.URL, "%v", err)
			}
		}
	}

	switch {
	case r.AppID == "" && remote:
		v.add("realtime.app_id", r.AppID, "required when realtime.url is an http(s) URL")
	case strings.ContainsAny(r.AppID, "/?#%") || strings.ContainsFunc(r.AppID, isSpaceOrControl):
		v.add("realtime.app_id", r.AppID, "must be one URL path segment: no /, ?, #, %%, spaces or control characters")
	}

	s, err := c.ResolveSecret()
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		v.errs = append(v.errs, fe)
	case err != nil:
		v.add("realtime.app_secret_file", r.AppSecretFile, "%v", err)
	case s.Value == "" && remote:
		v.errs = append(v.errs, &FieldError{Key: "realtime.app_secret",
			Msg: "required when realtime.url is an http(s) URL (or set realtime.app_secret_file)"})
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// listenAddr checks a host:port to listen on.
func (v *validator) listenAddr(key, addr string) {
	if _, err := hostPort(addr, false); err != nil {
		v.add(key, addr, "%v", err)
	}
}

// hostPort checks host:port with a numeric port (optional when
// portOptional, as in a URL) and an empty host, an IP or a host name.
func hostPort(addr string, portOptional bool) (port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		if !portOptional {
			return 0, errors.New(`must be host:port, e.g. "127.0.0.1:8080" or ":8080"`)
		}
		host, p = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), ""
	}
	if p != "" || !portOptional {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return 0, fmt.Errorf("port %q must be a number from 0 to 65535", p)
		}
		port = n
	}
	if host != "" && net.ParseIP(host) == nil && !isHostName(host) {
		return 0, fmt.Errorf("host %q is neither an IP address nor a host name", host)
	}
	return port, nil
}

// isHostName reports whether s is a syntactically valid DNS name.
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) ip(key, ip string) {
	if ip != "" && net.ParseIP(ip) == nil {
		v.add(key, ip, `must be an IP address, or "" for every interface`)
	}
}

func (v *validator) ips(key string, ips []string) {
	for i, ip := range ips {
		if net.ParseIP(ip) == nil {
			v.add(fmt.Sprintf("%s[%d]", key, i), ip, "must be an IP address")
		}
	}
}

func (v *validator) port(key string, port int) {
	if port < 0 || port > 65535 {
		v.add(key, port, "must be from 0 to 65535 (0 lets the OS choose)")
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, d, "must be positive")
	}
}

func (v *validator) powerOfTwo(key string, n, lo, hi int) {
	if n < lo || n > hi || n&(n-1) != 0 {
		v.add(key, n, "must be a power of two from %d to %d", lo, hi)
	}
}

func (v *validator) iceServer(key string, s ICEServer) {
	if len(s.URLs) == 0 {
		v.add(key+".urls", s.URLs, "must list at least one stun:, stuns:, turn: or turns: URL")
	}
	turn := false
	for i, raw := range s.URLs {
		k := fmt.Sprintf("%s.urls[%d]", key, i)
		scheme, _, _ := strings.Cut(raw, ":")
		switch strings.ToLower(scheme) {
		case "stun", "stuns":
		case "turn", "turns":
			turn = true
		default:
			v.add(k, raw, "scheme must be stun, stuns, turn or turns")
			continue
		}
		if _, err := stun.ParseURI(raw); err != nil {
			v.add(k, raw, "invalid ICE server URL: %v", unwrapURLError(err))
		}
	}
	if turn && s.Username == "" {
		v.add(key+".username", s.Username, "required for turn: and turns: URLs")
	}
	if turn && s.Credential == "" {
		v.errs = append(v.errs, &FieldError{Key: key + ".credential", Msg: "required for turn: and turns: URLs"})
	}
}

// udpOverlap reports whether UDP sockets bound to listen IPs a and b on one
// port would collide.
func udpOverlap(a, b string) bool {
	if a == "" || b == "" {
		return true
	}
	ia, ib := net.ParseIP(a), net.ParseIP(b)
	return ia == nil || ib == nil || ia.Equal(ib) || ia.IsUnspecified() || ib.IsUnspecified()
}
