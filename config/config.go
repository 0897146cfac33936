// Package config is rtgate's typed configuration: the Config value with its
// defaults, loading from a YAML file, RTGATE_* environment variables and
// command-line flags (in that order of increasing precedence), validation
// that names the key path and the bad value of every problem, the app
// secret resolver, and the conversions into the options of gateway/peer and
// gateway/sfu and into the process's log handler (config/logswitch).
//
// A Config is a plain value: loading never starts anything, and two configs
// can be compared to find what a reload changes.
package config

import (
	"time"
)

// Embedded is the realtime.url that selects the embedded SFU.
const Embedded = "embedded"

// DefaultAppID is the app id of the embedded SFU when realtime.app_id is
// empty.
const DefaultAppID = "rtgate"

// Config is the whole rtgate configuration. The mapstructure tags are the
// key names of the file; a key path joins them with dots ("webrtc.nack.
// generator_size") and its environment variable joins them with
// underscores under the RTGATE_ prefix (RTGATE_WEBRTC_NACK_GENERATOR_SIZE).
type Config struct {
	HTTP     HTTP     `mapstructure:"http"`
	Realtime Realtime `mapstructure:"realtime"`
	WebRTC   WebRTC   `mapstructure:"webrtc"`
	SFU      SFU      `mapstructure:"sfu"`
	WHIP     WHIP     `mapstructure:"whip"`
	WHEP     WHEP     `mapstructure:"whep"`
	Log      Log      `mapstructure:"log"`
	Streams  []Stream `mapstructure:"streams"`
	// Record holds the defaults of every recording; Recordings and
	// Forwards are the pipelines that pull tracks out of the SFU.
	// API protects the control API; ShutdownTimeout bounds a graceful
	// stop.
	API             API           `mapstructure:"api"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	// MediaWatchdog restarts a source stream whose sources sent no packet
	// for this long (a camera or encoder that stalled); 0 turns it off.
	MediaWatchdog time.Duration `mapstructure:"media_watchdog"`
	Record        Record        `mapstructure:"record"`
	Recordings    []Recording   `mapstructure:"recordings"`
	Forwards      []Forward     `mapstructure:"forwards"`

	// sources maps each key path to where its value came from; set by Load.
	sources map[string]string
}

// HTTP configures the daemon's HTTP server: /healthz, the API and, with the
// embedded SFU, the Realtime API.
type HTTP struct {
	// Listen is the host:port of the daemon's HTTP server.
	Listen string `mapstructure:"listen"`
}

// Realtime selects the SFU rtgate publishes to and pulls from.
type Realtime struct {
	// URL is "embedded" or the http(s) base URL of a Realtime API including
	// its version, e.g. https://rtc.live.cloudflare.com/v1.
	URL string `mapstructure:"url"`
	// AppID is the application id; required with an http(s) URL, "rtgate"
	// for the embedded SFU when empty.
	AppID string `mapstructure:"app_id"`
	// AppSecret is the application's bearer token. Use ResolveSecret to
	// read it: it may come from AppSecretFile instead.
	AppSecret string `mapstructure:"app_secret"`
	// AppSecretFile names a file holding the secret (trailing whitespace
	// trimmed).
	AppSecretFile string `mapstructure:"app_secret_file"`
}

// WebRTC configures rtgate's own PeerConnections (publishers, pullers).
type WebRTC struct {
	// ListenIP is the address of the UDP port; empty means every interface.
	ListenIP string `mapstructure:"listen_ip"`
	// UDPPort is the single UDP port every PeerConnection shares; 0 lets
	// the OS choose.
	UDPPort int `mapstructure:"udp_port"`
	// PublicIPs replace the host candidates' addresses (1:1 NAT).
	PublicIPs []string `mapstructure:"public_ips"`
	// ICEServers are STUN/TURN servers handed to every PeerConnection.
	ICEServers []ICEServer `mapstructure:"ice_servers"`
	// NACK sizes loss repair.
	NACK NACK `mapstructure:"nack"`
}

// ICEServer is one STUN or TURN server.
type ICEServer struct {
	// URLs are stun:, stuns:, turn: or turns: URLs.
	URLs []string `mapstructure:"urls"`
	// Username and Credential authenticate to TURN servers.
	Username   string `mapstructure:"username"`
	Credential string `mapstructure:"credential"`
}

// NACK configures the NACK generator and responder interceptors.
type NACK struct {
	// MaxPerPacket caps how often the generator NACKs one packet.
	MaxPerPacket int `mapstructure:"max_per_packet"`
	// GeneratorSize is the receive history of the generator, a power of two
	// from 64 to 32768.
	GeneratorSize int `mapstructure:"generator_size"`
	// ResponderSize is the send history of the responder, a power of two
	// from 1 to 32768.
	ResponderSize int `mapstructure:"responder_size"`
}

// SFU configures the embedded SFU (realtime.url: embedded, and `rtgate sfu`).
type SFU struct {
	// Listen is the HTTP address of `rtgate sfu`; `rtgate run` mounts the
	// SFU on http.listen instead.
	Listen string `mapstructure:"listen"`
	// ListenIP is the address of the SFU's UDP port; empty means every
	// interface.
	ListenIP string `mapstructure:"listen_ip"`
	// UDPPort is the SFU's single UDP port; 0 lets the OS choose.
	UDPPort int `mapstructure:"udp_port"`
	// PublicIPs replace the SFU's host candidates' addresses (1:1 NAT).
	PublicIPs []string `mapstructure:"public_ips"`
	// TrackIdleTimeout collects a published track without media this long.
	TrackIdleTimeout time.Duration `mapstructure:"track_idle_timeout"`
	// FirstPacketWait is how long a pull waits for an announced track's
	// first packet.
	FirstPacketWait time.Duration `mapstructure:"first_packet_wait"`
	// ConnectWait is how long an operation waits for the transport to
	// connect.
	ConnectWait time.Duration `mapstructure:"connect_wait"`
	// SessionReuseWindow is how long a disconnected session stays usable.
	SessionReuseWindow time.Duration `mapstructure:"session_reuse_window"`
	// RateLimit is API calls per second per session.
	RateLimit float64 `mapstructure:"rate_limit"`
	// NACKBuffer is the packets of each published video track the SFU
	// keeps to answer its subscribers' NACKs (one history per track,
	// shared by all its subscribers), and the size of the NACK generator
	// toward publishers; a power of two from 64 to 32768.
	NACKBuffer int `mapstructure:"nack_buffer"`
}

// WHIP and WHEP modes (whip.mode, whep.mode, streams[].whip_mode,
// streams[].whep_mode).
const (
	// ModeRelay: rtgate terminates the client's PeerConnection and
	// republishes (WHIP) or serves from its own pull (WHEP).
	ModeRelay = "relay"
	// ModeProxy: rtgate only signals; media flows between the client and
	// the SFU.
	ModeProxy = "proxy"
)

// What whip.on_conflict does with a second publisher on a live stream.
const (
	ConflictReject  = "reject"
	ConflictReplace = "replace"
)

// SourceWHIP is the source of a stream fed by WHIP publishers
// (POST /whip/{name}) instead of a source URL.
const SourceWHIP = "whip"

// API configures the control API (POST and DELETE on /api/streams,
// /api/recordings and /api/forwards).
type API struct {
	// Token is the bearer token those calls need (ResolveAPIToken).
	// Without one, only clients on loopback may change anything.
	Token string `mapstructure:"token"`
	// TokenFile names a file holding the token.
	TokenFile string `mapstructure:"token_file"`
}

// WHIP configures WHIP ingest (RFC 9725) at POST /whip/{stream}.
type WHIP struct {
	// Token is the bearer token publishers send. Use ResolveWHIPToken to
	// read it: it may come from TokenFile instead. Without one, only
	// clients on loopback may publish.
	Token string `mapstructure:"token"`
	// TokenFile names a file holding the token (trailing whitespace
	// trimmed).
	TokenFile string `mapstructure:"token_file"`
	// Mode is relay or proxy, for streams that do not set whip_mode.
	Mode string `mapstructure:"mode"`
	// AllowAnyStream lets a publisher create a stream by publishing to a
	// name that is not configured.
	AllowAnyStream bool `mapstructure:"allow_any_stream"`
	// OnConflict is what a second publisher on a live stream gets: reject
	// (409) or replace (the first one is disconnected).
	OnConflict string `mapstructure:"on_conflict"`
}

// WHEP configures WHEP playback at POST /whep/{stream}.
type WHEP struct {
	// Token is the bearer token viewers send (ResolveWHEPToken). Without
	// one, playback is open to every client that reaches http.listen.
	Token string `mapstructure:"token"`
	// TokenFile names a file holding the token.
	TokenFile string `mapstructure:"token_file"`
	// Mode is relay or proxy, for streams that do not set whep_mode.
	Mode string `mapstructure:"mode"`
}

// Stream is one stream the daemon publishes: its sources' tracks become
// published tracks named <name>-video and <name>-audio unless named here.
type Stream struct {
	// Name identifies the stream (letters, digits, '.', '_', '-'; at most 64).
	Name string `mapstructure:"name"`
	// Source is one source URL; Sources lists several (a video file and an
	// audio file, say). Schemes: rtp://, sdp://, file://. Source "whip"
	// (SourceWHIP) makes a stream fed by WHIP publishers.
	Source  string   `mapstructure:"source"`
	Sources []string `mapstructure:"sources"`
	// VideoTrack and AudioTrack name the published tracks.
	VideoTrack string `mapstructure:"video_track"`
	AudioTrack string `mapstructure:"audio_track"`
	// WHIPMode and WHEPMode override whip.mode (WHIP streams only) and
	// whep.mode for this stream.
	WHIPMode string `mapstructure:"whip_mode"`
	WHEPMode string `mapstructure:"whep_mode"`
	// WHIPToken and WHEPToken override whip.token (WHIP streams only) and
	// whep.token for this stream.
	WHIPToken string `mapstructure:"whip_token"`
	WHEPToken string `mapstructure:"whep_token"`
}

// IsWHIP reports whether WHIP publishers feed the stream (source: whip).
func (s Stream) IsWHIP() bool { return s.Source == SourceWHIP && len(s.Sources) == 0 }

// SourceURLs returns the stream's source URLs: Source, then Sources.
func (s Stream) SourceURLs() []string {
	var out []string
	if s.Source != "" {
		out = append(out, s.Source)
	}
	return append(out, s.Sources...)
}

// Log configures logging (log/slog to stderr). A reload applies all of it
// in place (see NewLogSwitch).
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level"`
	// Format is text or json.
	Format string `mapstructure:"format"`
	// Levels maps a component (one of LogComponents) to its own level,
	// which overrides Level for that component's loggers.
	Levels map[string]string `mapstructure:"levels"`
}

// Default returns the configuration used for every key nothing sets.
func Default() *Config {
	return &Config{
		HTTP: HTTP{Listen: "127.0.0.1:8080"},
		Realtime: Realtime{
			URL: Embedded,
		},
		WebRTC: WebRTC{
			PublicIPs:  []string{},
			ICEServers: []ICEServer{},
			NACK: NACK{
				MaxPerPacket:  3,
				GeneratorSize: 512,
				ResponderSize: 1024,
			},
		},
		SFU: SFU{
			Listen:             "127.0.0.1:8081",
			PublicIPs:          []string{},
			TrackIdleTimeout:   30 * time.Second,
			FirstPacketWait:    2 * time.Second,
			ConnectWait:        5 * time.Second,
			SessionReuseWindow: 30 * time.Second,
			RateLimit:          50,
			NACKBuffer:         1024,
		},
		WHIP:            WHIP{Mode: ModeRelay, AllowAnyStream: true, OnConflict: ConflictReject},
		WHEP:            WHEP{Mode: ModeRelay},
		Log:             Log{Level: "info", Format: "text", Levels: map[string]string{}},
		Streams:         []Stream{},
		ShutdownTimeout: 15 * time.Second,
		MediaWatchdog:   30 * time.Second,
		Record: Record{
			Dir:             "recordings",
			Format:          "auto",
			Template:        "{stream}-{start}",
			Reorder:         300 * time.Millisecond,
			NotFoundTimeout: 30 * time.Second,
		},
		Recordings: []Recording{},
		Forwards:   []Forward{},
	}
}

// IsEmbedded reports whether realtime.url selects the embedded SFU.
func (c *Config) IsEmbedded() bool { return c.Realtime.URL == Embedded }

// AppID returns realtime.app_id, or DefaultAppID when it is empty.
func (c *Config) AppID() string {
	if c.Realtime.AppID == "" {
		return DefaultAppID
	}
	return c.Realtime.AppID
}

// Source says where the value of a key path came from: "flag --app-id",
// "environment RTGATE_REALTIME_APP_ID", "config file" or "default". It is
// empty for a Config that Load did not make or for an unknown key.
func (c *Config) Source(key string) string {
	return c.sources[key]
}
