package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/spf13/pflag"
)

// clearEnv unsets every RTGATE_* variable of the schema for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range Keys() {
		name := EnvName(k)
		t.Setenv(name, "") // restores the old value after the test
		os.Unsetenv(name)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// values strips what Load adds beyond the values, for comparisons.
func values(c *Config) Config {
	v := *c
	v.sources = nil
	return v
}

func TestDefaults(t *testing.T) {
	clearEnv(t)
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := values(cfg), values(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(\"\", nil) =\n%+v\nwant\n%+v", got, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate defaults: %v", err)
	}
	for _, k := range Keys() {
		if src := cfg.Source(k); src != "default" {
			t.Errorf("Source(%q) = %q, want default", k, src)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"http.listen", cfg.HTTP.Listen, "127.0.0.1:8080"},
		{"realtime.url", cfg.Realtime.URL, "embedded"},
		{"AppID()", cfg.AppID(), "rtgate"},
		{"webrtc.nack.max_per_packet", cfg.WebRTC.NACK.MaxPerPacket, 3},
		{"webrtc.nack.generator_size", cfg.WebRTC.NACK.GeneratorSize, 512},
		{"webrtc.nack.responder_size", cfg.WebRTC.NACK.ResponderSize, 1024},
		{"sfu.listen", cfg.SFU.Listen, "127.0.0.1:8081"},
		{"sfu.track_idle_timeout", cfg.SFU.TrackIdleTimeout, 30 * time.Second},
		{"sfu.first_packet_wait", cfg.SFU.FirstPacketWait, 2 * time.Second},
		{"sfu.connect_wait", cfg.SFU.ConnectWait, 5 * time.Second},
		{"sfu.session_reuse_window", cfg.SFU.SessionReuseWindow, 30 * time.Second},
		{"sfu.rate_limit", cfg.SFU.RateLimit, 50.0},
		{"sfu.nack_buffer", cfg.SFU.NACKBuffer, 1024},
		{"log.level", cfg.Log.Level, "info"},
		{"log.format", cfg.Log.Format, "text"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

const fullFile = `
http:
  listen: 0.0.0.0:9000
realtime:
  url: https://rtc.live.cloudflare.com/v1
  app_id: abc123
  app_secret: s3cret
webrtc:
  listen_ip: 10.0.0.2
  udp_port: 50000
  public_ips: [203.0.113.7, 2001:db8::7]
  ice_servers:
    - urls: ["stun:stun.example.com:3478"]
    - urls: turn:turn.example.com?transport=tcp
      username: u
      credential: p
  nack:
    max_per_packet: 2
    generator_size: 1024
    responder_size: 2048
sfu:
  listen: "[::1]:9001"
  listen_ip: 10.0.0.3
  udp_port: 50001
  public_ips: [203.0.113.8]
  track_idle_timeout: 1m
  first_packet_wait: 500ms
  connect_wait: 3s
  session_reuse_window: 10s
  rate_limit: 12.5
  nack_buffer: 256
whip:
  token: pub-token
  mode: proxy
  allow_any_stream: false
  on_conflict: replace
whep:
  token: play-token
  mode: proxy
api:
  token: api-token
shutdown_timeout: 20s
media_watchdog: 1m
log:
  level: debug
  format: json
  levels: {pion: warn, SFU: debug}
streams:
  - name: cam1
    source: rtp://0.0.0.0:5004?codec=vp8&pt=96
    video_track: front-door
    whep_mode: relay
  - name: demo
    sources: ["file:///srv/demo.ivf?loop=true", "file:///srv/demo.ogg?loop=true"]
  - name: studio
    source: whip
    whip_mode: relay
    whip_token: studio-pub
    whep_token: studio-play
record:
  dir: /var/lib/rtgate/recordings
  format: mkv
  template: "{stream}/{start}"
  segment_duration: 10m
  segment_size: 1000000000
  reorder: 500ms
  max_age: 720h
  max_total_size: 50000000000
  not_found_timeout: 1m
recordings:
  - name: cam1-rec
    stream: cam1
  - name: call
    session: 0123abcd
    tracks: [mic, camera]
    format: webm
    segment_duration: 1h
forwards:
  - name: cam1-out
    stream: cam1
    to: rtp://127.0.0.1:5004
    sdp: /run/rtgate/cam1.sdp
`

var fullStreams = []Stream{
	{Name: "cam1", Source: "rtp://0.0.0.0:5004?codec=vp8&pt=96", VideoTrack: "front-door", WHEPMode: "relay"},
	{Name: "demo", Sources: []string{"file:///srv/demo.ivf?loop=true", "file:///srv/demo.ogg?loop=true"}},
	{Name: "studio", Source: "whip", WHIPMode: "relay", WHIPToken: "studio-pub", WHEPToken: "studio-play"},
}

var (
	fullRecord = Record{
		Dir: "/var/lib/rtgate/recordings", Format: "mkv", Template: "{stream}/{start}",
		SegmentDuration: 10 * time.Minute, SegmentSize: 1e9, Reorder: 500 * time.Millisecond,
		MaxAge: 720 * time.Hour, MaxTotalSize: 50e9, NotFoundTimeout: time.Minute,
	}
	fullRecordings = []Recording{
		{Name: "cam1-rec", Stream: "cam1"},
		{Name: "call", Session: "0123abcd", Tracks: []string{"mic", "camera"}, Format: "webm", SegmentDuration: time.Hour},
	}
	fullForwards = []Forward{{Name: "cam1-out", Stream: "cam1", To: "rtp://127.0.0.1:5004", SDP: "/run/rtgate/cam1.sdp"}}
)

func fullConfig() Config {
	return Config{
		HTTP:     HTTP{Listen: "0.0.0.0:9000"},
		Realtime: Realtime{URL: "https://rtc.live.cloudflare.com/v1", AppID: "abc123", AppSecret: "s3cret"},
		WebRTC: WebRTC{
			ListenIP:  "10.0.0.2",
			UDPPort:   50000,
			PublicIPs: []string{"203.0.113.7", "2001:db8::7"},
			ICEServers: []ICEServer{
				{URLs: []string{"stun:stun.example.com:3478"}},
				{URLs: []string{"turn:turn.example.com?transport=tcp"}, Username: "u", Credential: "p"},
			},
			NACK: NACK{MaxPerPacket: 2, GeneratorSize: 1024, ResponderSize: 2048},
		},
		SFU: SFU{
			Listen:             "[::1]:9001",
			ListenIP:           "10.0.0.3",
			UDPPort:            50001,
			PublicIPs:          []string{"203.0.113.8"},
			TrackIdleTimeout:   time.Minute,
			FirstPacketWait:    500 * time.Millisecond,
			ConnectWait:        3 * time.Second,
			SessionReuseWindow: 10 * time.Second,
			RateLimit:          12.5,
			NACKBuffer:         256,
		},
		WHIP:            WHIP{Token: "pub-token", Mode: "proxy", AllowAnyStream: false, OnConflict: "replace"},
		WHEP:            WHEP{Token: "play-token", Mode: "proxy"},
		API:             API{Token: "api-token"},
		ShutdownTimeout: 20 * time.Second,
		MediaWatchdog:   time.Minute,
		Log:             Log{Level: "debug", Format: "json", Levels: map[string]string{"pion": "warn", "sfu": "debug"}},
		Streams:         fullStreams,
		Record:          fullRecord,
		Recordings:      fullRecordings,
		Forwards:        fullForwards,
	}
}

func TestLoadFile(t *testing.T) {
	clearEnv(t)
	cfg, err := Load(writeFile(t, "rtgate.yaml", fullFile), nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := values(cfg), fullConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for _, k := range Keys() {
		if strings.HasSuffix(k, "_file") {
			continue // not in the file: they conflict with the values set
		}
		if src := cfg.Source(k); src != "config file" {
			t.Errorf("Source(%q) = %q, want config file", k, src)
		}
	}
}

func TestLoadEmptyAndPartialFile(t *testing.T) {
	clearEnv(t)
	for _, content := range []string{"", "# nothing\n", "http:\n", "sfu: {}\nlog:\n  level: warn\n"} {
		cfg, err := Load(writeFile(t, "c.yaml", content), nil)
		if err != nil {
			t.Fatalf("Load(%q): %v", content, err)
		}
		want := values(Default())
		if strings.Contains(content, "warn") {
			want.Log.Level = "warn"
		}
		if got := values(cfg); !reflect.DeepEqual(got, want) {
			t.Errorf("Load(%q) =\n%+v\nwant\n%+v", content, got, want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	clearEnv(t)
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
	_, err = Load(writeFile(t, "bad.yaml", "http: [\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "parse config file") {
		t.Errorf("Load(bad yaml) = %v, want a parse error", err)
	}
}

// TestEnv sets every key through its environment variable.
func TestEnv(t *testing.T) {
	clearEnv(t)
	env := map[string]string{
		"RTGATE_HTTP_LISTEN":                "0.0.0.0:9000",
		"RTGATE_REALTIME_URL":               "https://rtc.live.cloudflare.com/v1",
		"RTGATE_REALTIME_APP_ID":            "abc123",
		"RTGATE_REALTIME_APP_SECRET":        "s3cret",
		"RTGATE_WEBRTC_LISTEN_IP":           "10.0.0.2",
		"RTGATE_WEBRTC_UDP_PORT":            "50000",
		"RTGATE_WEBRTC_PUBLIC_IPS":          "203.0.113.7, 2001:db8::7",
		"RTGATE_WEBRTC_ICE_SERVERS":         `[{"urls":["stun:stun.example.com:3478"]},{"urls":"turn:turn.example.com?transport=tcp","username":"u","credential":"p"}]`,
		"RTGATE_WEBRTC_NACK_MAX_PER_PACKET": "2",
		"RTGATE_WEBRTC_NACK_GENERATOR_SIZE": "1024",
		"RTGATE_WEBRTC_NACK_RESPONDER_SIZE": "2048",
		"RTGATE_SFU_LISTEN":                 "[::1]:9001",
		"RTGATE_SFU_LISTEN_IP":              "10.0.0.3",
		"RTGATE_SFU_UDP_PORT":               "50001",
		"RTGATE_SFU_PUBLIC_IPS":             "203.0.113.8",
		"RTGATE_SFU_TRACK_IDLE_TIMEOUT":     "1m",
		"RTGATE_SFU_FIRST_PACKET_WAIT":      "500ms",
		"RTGATE_SFU_CONNECT_WAIT":           "3s",
		"RTGATE_SFU_SESSION_REUSE_WINDOW":   "10s",
		"RTGATE_SFU_RATE_LIMIT":             "12.5",
		"RTGATE_SFU_NACK_BUFFER":            "256",
		"RTGATE_WHIP_TOKEN":                 "pub-token",
		"RTGATE_WHIP_MODE":                  "proxy",
		"RTGATE_WHIP_ALLOW_ANY_STREAM":      "false",
		"RTGATE_WHIP_ON_CONFLICT":           "replace",
		"RTGATE_WHEP_TOKEN":                 "play-token",
		"RTGATE_WHEP_MODE":                  "proxy",
		"RTGATE_LOG_LEVEL":                  "debug",
		"RTGATE_LOG_FORMAT":                 "json",
		"RTGATE_LOG_LEVELS":                 "pion=warn, SFU=debug",
		"RTGATE_STREAMS": `[{"name":"cam1","source":"rtp://0.0.0.0:5004?codec=vp8&pt=96","video_track":"front-door","whep_mode":"relay"},
			{"name":"demo","sources":["file:///srv/demo.ivf?loop=true","file:///srv/demo.ogg?loop=true"]},
			{"name":"studio","source":"whip","whip_mode":"relay","whip_token":"studio-pub","whep_token":"studio-play"}]`,
		"RTGATE_API_TOKEN":                "api-token",
		"RTGATE_SHUTDOWN_TIMEOUT":         "20s",
		"RTGATE_MEDIA_WATCHDOG":           "1m",
		"RTGATE_RECORD_DIR":               "/var/lib/rtgate/recordings",
		"RTGATE_RECORD_FORMAT":            "mkv",
		"RTGATE_RECORD_TEMPLATE":          "{stream}/{start}",
		"RTGATE_RECORD_SEGMENT_DURATION":  "10m",
		"RTGATE_RECORD_SEGMENT_SIZE":      "1000000000",
		"RTGATE_RECORD_REORDER":           "500ms",
		"RTGATE_RECORD_MAX_AGE":           "720h",
		"RTGATE_RECORD_MAX_TOTAL_SIZE":    "50000000000",
		"RTGATE_RECORD_NOT_FOUND_TIMEOUT": "1m",
		"RTGATE_RECORDINGS": `[{"name":"cam1-rec","stream":"cam1"},
			{"name":"call","session":"0123abcd","tracks":["mic","camera"],"format":"webm","segment_duration":"1h"}]`,
		"RTGATE_FORWARDS": `[{"name":"cam1-out","stream":"cam1","to":"rtp://127.0.0.1:5004","sdp":"/run/rtgate/cam1.sdp"}]`,
	}
	// Every key but the *_file keys, which conflict with the values set
	// (TestResolveSecret and TestWISHTokens set them through the
	// environment).
	if len(env) != len(Keys())-4 {
		t.Fatalf("test covers %d keys, schema has %d", len(env), len(Keys()))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got, want := values(cfg), fullConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
	if got := cfg.Source("sfu.rate_limit"); got != "environment RTGATE_SFU_RATE_LIMIT" {
		t.Errorf("Source(sfu.rate_limit) = %q", got)
	}
}

func TestEnvICEServersAsURLs(t *testing.T) {
	clearEnv(t)
	t.Setenv("RTGATE_WEBRTC_ICE_SERVERS", "stun:a.example.com, stun:b.example.com:3478")
	t.Setenv("RTGATE_WEBRTC_PUBLIC_IPS", "")
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := []ICEServer{{URLs: []string{"stun:a.example.com"}}, {URLs: []string{"stun:b.example.com:3478"}}}
	if !reflect.DeepEqual(cfg.WebRTC.ICEServers, want) {
		t.Errorf("ice_servers = %+v, want %+v", cfg.WebRTC.ICEServers, want)
	}
	if len(cfg.WebRTC.PublicIPs) != 0 {
		t.Errorf("public_ips = %q, want none (empty variable is unset)", cfg.WebRTC.PublicIPs)
	}
}

// newFlags makes a flag set like cmd/rtgate's: canonical names and names
// bound with BindFlag.
func newFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("log-level", "info", "")
	fs.String("http-listen", "", "")
	fs.String("listen", "", "")
	fs.String("app-id", "", "")
	fs.String("app-secret", "", "")
	fs.Int("webrtc-udp-port", 0, "")
	fs.StringSlice("webrtc-public-ips", nil, "")
	fs.String("config", "", "not a key")
	BindFlag(fs, "listen", "sfu.listen")
	BindFlag(fs, "app-id", "realtime.app_id")
	BindFlag(fs, "app-secret", "realtime.app_secret")
	return fs
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		env        string
		flag       string
		want, from string
	}{
		{"default", "", "", "", "127.0.0.1:8080", "default"},
		{"file", "1.1.1.1:1", "", "", "1.1.1.1:1", "config file"},
		{"env over file", "1.1.1.1:1", "2.2.2.2:2", "", "2.2.2.2:2", "environment RTGATE_HTTP_LISTEN"},
		{"env", "", "2.2.2.2:2", "", "2.2.2.2:2", "environment RTGATE_HTTP_LISTEN"},
		{"flag over env and file", "1.1.1.1:1", "2.2.2.2:2", "3.3.3.3:3", "3.3.3.3:3", "flag --http-listen"},
		{"flag over file", "1.1.1.1:1", "", "3.3.3.3:3", "3.3.3.3:3", "flag --http-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			path := ""
			if tt.file != "" {
				path = writeFile(t, "c.yaml", "http:\n  listen: "+tt.file+"\n")
			}
			if tt.env != "" {
				t.Setenv("RTGATE_HTTP_LISTEN", tt.env)
			}
			fs := newFlags()
			var args []string
			if tt.flag != "" {
				args = []string{"--http-listen", tt.flag}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, fs)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.HTTP.Listen != tt.want || cfg.Source("http.listen") != tt.from {
				t.Errorf("http.listen = %q from %q, want %q from %q", cfg.HTTP.Listen, cfg.Source("http.listen"), tt.want, tt.from)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	clearEnv(t)
	t.Setenv("RTGATE_REALTIME_APP_ID", "from-env")
	path := writeFile(t, "c.yaml", "sfu:\n  listen: 127.0.0.1:1\nlog:\n  level: warn\nwebrtc:\n  udp_port: 1000\n")
	fs := newFlags()
	err := fs.Parse([]string{"--listen", "127.0.0.1:0", "--app-id", "from-flag", "--log-level", "debug",
		"--webrtc-public-ips", "203.0.113.1,203.0.113.2"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, fs)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct{ key, got, want, from string }{
		{"sfu.listen", cfg.SFU.Listen, "127.0.0.1:0", "flag --listen"},
		{"realtime.app_id", cfg.Realtime.AppID, "from-flag", "flag --app-id"},
		{"log.level", cfg.Log.Level, "debug", "flag --log-level"},
		{"http.listen", cfg.HTTP.Listen, "127.0.0.1:8080", "default"}, // flag default does not count
		{"realtime.app_secret", cfg.Realtime.AppSecret, "", "default"},
	}
	for _, c := range checks {
		if c.got != c.want || cfg.Source(c.key) != c.from {
			t.Errorf("%s = %q from %q, want %q from %q", c.key, c.got, cfg.Source(c.key), c.want, c.from)
		}
	}
	if cfg.WebRTC.UDPPort != 1000 {
		t.Errorf("webrtc.udp_port = %d, want 1000 from the file (flag not set)", cfg.WebRTC.UDPPort)
	}
	if want := []string{"203.0.113.1", "203.0.113.2"}; !reflect.DeepEqual(cfg.WebRTC.PublicIPs, want) {
		t.Errorf("webrtc.public_ips = %q, want %q", cfg.WebRTC.PublicIPs, want)
	}
}

func TestBindFlagPanicsOnUnknownKey(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("BindFlag with an unknown key did not panic")
		}
	}()
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("x", "", "")
	BindFlag(fs, "x", "realtime.nope")
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"top-level typo", "realtim:\n  url: embedded\n",
			[]string{`realtim: unknown key (line 1; did you mean "realtime"?)`}},
		{"top-level null", "http:\n  listen: :1\nrealtim:\n",
			[]string{`realtim: unknown key (line 3; did you mean "realtime"?)`}},
		{"nested typo", "realtime:\n  app_secert: x\n",
			[]string{`realtime.app_secert: unknown key (line 2; did you mean "realtime.app_secret"?)`}},
		{"nested unrelated", "webrtc:\n  nack:\n    foo: 1\n",
			[]string{`webrtc.nack.foo: unknown key (line 3)`}},
		{"inside a list item", "webrtc:\n  ice_servers:\n    - url: stun:x\n",
			[]string{`webrtc.ice_servers[0].url: unknown key (line 3; did you mean "webrtc.ice_servers[0].urls"?)`}},
		{"scalar for a section", "log: debug\n",
			[]string{`log: "debug": must be a section with keys level, format, levels (line 1)`}},
		{"several at once", "realtim: {}\nhttp:\n  listn: x\n  listen: x:1\nlogg: {}\n",
			[]string{`realtim: unknown key`, `http.listn: unknown key`, `logg: unknown key`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			_, err := Load(writeFile(t, "c.yaml", tt.file), nil)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Load = %v, want Errors", err)
			}
			if len(errs) != len(tt.want) {
				t.Fatalf("Load errors:\n%v\nwant %d", err, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want prefix %q", i, errs[i].Error(), w)
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want string
	}{
		{"int from file", "webrtc:\n  udp_port: abc\n", nil,
			`webrtc.udp_port: "abc": must be an integer`},
		{"int from env", "", map[string]string{"RTGATE_SFU_UDP_PORT": "5x"},
			`sfu.udp_port: "5x": must be an integer`},
		{"bool for int", "webrtc:\n  udp_port: true\n", nil,
			`webrtc.udp_port: true: must be an integer`},
		{"duration without unit", "sfu:\n  connect_wait: 5\n", nil,
			`sfu.connect_wait: 5: must be a duration with a unit, such as "30s" or "500ms"`},
		{"bad duration from env", "", map[string]string{"RTGATE_SFU_FIRST_PACKET_WAIT": "2 seconds"},
			`sfu.first_packet_wait: "2 seconds": must be a duration such as "30s" or "500ms"`},
		{"float", "sfu:\n  rate_limit: fast\n", nil,
			`sfu.rate_limit: "fast": must be a number`},
		{"map for a string", "http:\n  listen: {a: 1}\n", nil,
			`http.listen: {...}: must be a string`},
		{"bad ice json", "", map[string]string{"RTGATE_WEBRTC_ICE_SERVERS": `[{"urls": "turn:x", "credential": "hunter2"`},
			`webrtc.ice_servers: must be comma-separated URLs or a JSON list of servers`},
		{"unknown ice json key", "", map[string]string{"RTGATE_WEBRTC_ICE_SERVERS": `[{"url": "stun:x"}]`},
			`webrtc.ice_servers[0]: has invalid keys: url`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := ""
			if tt.file != "" {
				path = writeFile(t, "c.yaml", tt.file)
			}
			_, err := Load(path, nil)
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("Load = %v, want one FieldError", err)
			}
			if !strings.HasPrefix(errs[0].Error(), tt.want) {
				t.Errorf("error = %q, want prefix %q", errs[0].Error(), tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q shows a credential", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	secretFile := writeFile(t, "secret", "s3cret\n")
	tests := []struct {
		name   string
		modify func(c *Config)
		want   string // "" means valid
	}{
		{"defaults", func(c *Config) {}, ""},
		{"remote ok", func(c *Config) {
			c.Realtime = Realtime{URL: "https://rtc.live.cloudflare.com/v1", AppID: "a", AppSecret: "s"}
		}, ""},
		{"remote with secret file", func(c *Config) {
			c.Realtime = Realtime{URL: "http://127.0.0.1:8080/v1", AppID: "a", AppSecretFile: secretFile}
		}, ""},
		{"listen on all interfaces", func(c *Config) { c.HTTP.Listen = ":8080" }, ""},
		{"listen host name", func(c *Config) { c.HTTP.Listen = "localhost:0" }, ""},
		{"listen ipv6", func(c *Config) { c.SFU.Listen = "[::]:65535" }, ""},
		{"ice servers ok", func(c *Config) {
			c.WebRTC.ICEServers = []ICEServer{
				{URLs: []string{"stun:stun.l.google.com:19302", "stuns:stun.example.com"}},
				{URLs: []string{"turns:turn.example.com:443?transport=tcp"}, Username: "u", Credential: "p"},
			}
		}, ""},

		{"url scheme", func(c *Config) { c.Realtime.URL = "ftp://x" },
			`realtime.url: "ftp://x": scheme must be http, https or "embedded"`},
		{"url empty", func(c *Config) { c.Realtime.URL = "" },
			`realtime.url: "": scheme must be http, https or "embedded"`},
		{"url unparsable", func(c *Config) { c.Realtime.URL = "http://[::1" },
			`realtime.url: "http://[::1": must be "embedded" or an http(s) URL: missing ']' in host`},
		{"url without host", func(c *Config) {
			c.Realtime = Realtime{URL: "https:///v1", AppID: "a", AppSecret: "s"}
		}, `realtime.url: "https:///v1": must name a host`},
		{"url with query", func(c *Config) {
			c.Realtime = Realtime{URL: "https://x/v1?a=b", AppID: "a", AppSecret: "s"}
		}, `realtime.url: "https://x/v1?a=b": must not have user info, a query or a fragment`},
		{"app id required", func(c *Config) {
			c.Realtime = Realtime{URL: "https://rtc.live.cloudflare.com/v1", AppSecret: "s"}
		}, `realtime.app_id: "": required when realtime.url is an http(s) URL`},
		{"app id path segment", func(c *Config) { c.Realtime.AppID = "a/b" },
			`realtime.app_id: "a/b": must be one URL path segment: no /, ?, #, %, spaces or control characters`},
		{"secret required", func(c *Config) {
			c.Realtime = Realtime{URL: "https://rtc.live.cloudflare.com/v1", AppID: "a"}
		}, `realtime.app_secret: required when realtime.url is an http(s) URL (or set realtime.app_secret_file)`},
		{"secret and file", func(c *Config) {
			c.Realtime.AppSecret, c.Realtime.AppSecretFile = "s", secretFile
		}, `realtime.app_secret_file: "` + secretFile + `": cannot be set together with realtime.app_secret (config): set one of them`},
		{"secret file missing", func(c *Config) { c.Realtime.AppSecretFile = "/nonexistent/secret" },
			`realtime.app_secret_file: "/nonexistent/secret": cannot read the secret: open /nonexistent/secret: no such file or directory`},
		{"secret file empty", func(c *Config) { c.Realtime.AppSecretFile = writeFile(t, "empty", " \n\t\n") },
			`": the file is empty`},

		{"http listen no port", func(c *Config) { c.HTTP.Listen = "127.0.0.1" },
			`http.listen: "127.0.0.1": must be host:port, e.g. "127.0.0.1:8080" or ":8080"`},
		{"http listen bad port", func(c *Config) { c.HTTP.Listen = "127.0.0.1:70000" },
			`http.listen: "127.0.0.1:70000": port "70000" must be a number from 0 to 65535`},
		{"http listen named port", func(c *Config) { c.HTTP.Listen = "127.0.0.1:http" },
			`http.listen: "127.0.0.1:http": port "http" must be a number from 0 to 65535`},
		{"http listen bad host", func(c *Config) { c.HTTP.Listen = "bad host!:80" },
			`http.listen: "bad host!:80": host "bad host!" is neither an IP address nor a host name`},
		{"sfu listen", func(c *Config) { c.SFU.Listen = "" },
			`sfu.listen: "": must be host:port, e.g. "127.0.0.1:8080" or ":8080"`},

		{"webrtc listen ip", func(c *Config) { c.WebRTC.ListenIP = "eth0" },
			`webrtc.listen_ip: "eth0": must be an IP address, or "" for every interface`},
		{"webrtc udp port high", func(c *Config) { c.WebRTC.UDPPort = 65536 },
			`webrtc.udp_port: 65536: must be from 0 to 65535 (0 lets the OS choose)`},
		{"webrtc udp port negative", func(c *Config) { c.WebRTC.UDPPort = -1 },
			`webrtc.udp_port: -1: must be from 0 to 65535 (0 lets the OS choose)`},
		{"webrtc public ip", func(c *Config) { c.WebRTC.PublicIPs = []string{"1.2.3.4", "example.com"} },
			`webrtc.public_ips[1]: "example.com": must be an IP address`},
		{"ice scheme", func(c *Config) { c.WebRTC.ICEServers = []ICEServer{{URLs: []string{"http://x"}}} },
			`webrtc.ice_servers[0].urls[0]: "http://x": scheme must be stun, stuns, turn or turns`},
		{"ice no urls", func(c *Config) { c.WebRTC.ICEServers = []ICEServer{{}} },
			`webrtc.ice_servers[0].urls: []: must list at least one stun:, stuns:, turn: or turns: URL`},
		{"ice bad port", func(c *Config) { c.WebRTC.ICEServers = []ICEServer{{URLs: []string{"stun:x:abc"}}} },
			`webrtc.ice_servers[0].urls[0]: "stun:x:abc": invalid ICE server URL: invalid port`},
		{"turn needs username", func(c *Config) {
			c.WebRTC.ICEServers = []ICEServer{{URLs: []string{"turn:x"}, Credential: "p"}}
		}, `webrtc.ice_servers[0].username: "": required for turn: and turns: URLs`},
		{"turn needs credential", func(c *Config) {
			c.WebRTC.ICEServers = []ICEServer{{URLs: []string{"stun:y"}}, {URLs: []string{"turn:x"}, Username: "u"}}
		}, `webrtc.ice_servers[1].credential: required for turn: and turns: URLs`},
		{"nack max", func(c *Config) { c.WebRTC.NACK.MaxPerPacket = 0 },
			`webrtc.nack.max_per_packet: 0: must be from 1 to 65535`},
		{"nack generator not power of two", func(c *Config) { c.WebRTC.NACK.GeneratorSize = 500 },
			`webrtc.nack.generator_size: 500: must be a power of two from 64 to 32768`},
		{"nack generator too small", func(c *Config) { c.WebRTC.NACK.GeneratorSize = 32 },
			`webrtc.nack.generator_size: 32: must be a power of two from 64 to 32768`},
		{"nack responder too big", func(c *Config) { c.WebRTC.NACK.ResponderSize = 65536 },
			`webrtc.nack.responder_size: 65536: must be a power of two from 1 to 32768`},
		{"nack responder zero", func(c *Config) { c.WebRTC.NACK.ResponderSize = 0 },
			`webrtc.nack.responder_size: 0: must be a power of two from 1 to 32768`},

		{"sfu listen ip", func(c *Config) { c.SFU.ListenIP = "::g" },
			`sfu.listen_ip: "::g": must be an IP address, or "" for every interface`},
		{"sfu udp port", func(c *Config) { c.SFU.UDPPort = 100000 },
			`sfu.udp_port: 100000: must be from 0 to 65535 (0 lets the OS choose)`},
		{"sfu udp port clash", func(c *Config) { c.SFU.UDPPort, c.WebRTC.UDPPort = 5000, 5000 },
			`sfu.udp_port: 5000: must differ from webrtc.udp_port`},
		{"sfu public ip", func(c *Config) { c.SFU.PublicIPs = []string{"1.2.3"} },
			`sfu.public_ips[0]: "1.2.3": must be an IP address`},
		{"track idle timeout", func(c *Config) { c.SFU.TrackIdleTimeout = 0 },
			`sfu.track_idle_timeout: 0s: must be positive`},
		{"first packet wait", func(c *Config) { c.SFU.FirstPacketWait = -time.Second },
			`sfu.first_packet_wait: -1s: must be positive`},
		{"connect wait", func(c *Config) { c.SFU.ConnectWait = 0 },
			`sfu.connect_wait: 0s: must be positive`},
		{"session reuse window", func(c *Config) { c.SFU.SessionReuseWindow = -1 },
			`sfu.session_reuse_window: -1ns: must be positive`},
		{"rate limit", func(c *Config) { c.SFU.RateLimit = 0 },
			`sfu.rate_limit: 0: must be a positive number of API calls per second`},
		{"sfu nack buffer not power of two", func(c *Config) { c.SFU.NACKBuffer = 1000 },
			`sfu.nack_buffer: 1000: must be a power of two from 64 to 32768`},
		{"sfu nack buffer too small", func(c *Config) { c.SFU.NACKBuffer = 32 },
			`sfu.nack_buffer: 32: must be a power of two from 64 to 32768`},
		{"log level", func(c *Config) { c.Log.Level = "verbose" },
			`log.level: "verbose": must be debug, info, warn or error`},
		{"log format", func(c *Config) { c.Log.Format = "xml" },
			`log.format: "xml": must be text or json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("Validate = %v, want exactly one error", err)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tt.want) && !strings.HasSuffix(got, tt.want) {
				t.Errorf("Validate =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := Default()
	c.Realtime.URL = "ftp://x"
	c.HTTP.Listen = "nope"
	c.WebRTC.UDPPort = -5
	c.Log.Format = "xml"
	err := c.Validate()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Validate = %v, want Errors", err)
	}
	var keys []string
	for _, e := range errs {
		keys = append(keys, e.Key)
	}
	want := []string{"http.listen", "realtime.url", "webrtc.udp_port", "log.format"}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys = %q, want %q (schema order)", keys, want)
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want)-1 {
		t.Errorf("Error() has %d lines, want one per problem:\n%s", n+1, err)
	}
}

func TestResolveSecret(t *testing.T) {
	file := writeFile(t, "secret", "from-file \r\n\n")
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		file      string
		want, src string
	}{
		{"none", nil, nil, "", "", ""},
		{"flag", map[string]string{"RTGATE_REALTIME_APP_SECRET": "e"}, []string{"--app-secret", "f"}, "", "f", "flag --app-secret"},
		{"env", map[string]string{"RTGATE_REALTIME_APP_SECRET": "e"}, nil, "realtime:\n  app_secret: c\n", "e", "environment RTGATE_REALTIME_APP_SECRET"},
		{"config file", nil, nil, "realtime:\n  app_secret: c\n", "c", "config file"},
		{"secret file", map[string]string{"RTGATE_REALTIME_APP_SECRET_FILE": file}, nil, "", "from-file", "file " + file},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := newFlags()
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			path := ""
			if tt.file != "" {
				path = writeFile(t, "c.yaml", tt.file)
			}
			cfg, err := Load(path, fs)
			if err != nil {
				t.Fatal(err)
			}
			s, err := cfg.ResolveSecret()
			if err != nil {
				t.Fatalf("ResolveSecret: %v", err)
			}
			if s.Value != tt.want || s.Source != tt.src {
				t.Errorf("ResolveSecret = %q from %q, want %q from %q", s.Value, s.Source, tt.want, tt.src)
			}
		})
	}
}

func TestSecretErrorsAndGeneration(t *testing.T) {
	clearEnv(t)
	t.Setenv("RTGATE_REALTIME_APP_SECRET", "e")
	t.Setenv("RTGATE_REALTIME_APP_SECRET_FILE", "/x")
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.ResolveSecret()
	want := `realtime.app_secret_file: "/x": cannot be set together with realtime.app_secret (environment RTGATE_REALTIME_APP_SECRET): set one of them`
	if err == nil || err.Error() != want {
		t.Errorf("ResolveSecret = %v, want %s", err, want)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate = %v, want it to include %s", err, want)
	}

	c := Default()
	s1, err := c.EmbeddedSecret()
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := c.EmbeddedSecret()
	if !s1.Generated() || len(s1.Value) != 64 || s1.Value == s2.Value {
		t.Errorf("EmbeddedSecret = %q (%s), %q: want two different generated 64-hex-digit secrets", s1.Value, s1.Source, s2.Value)
	}
	c.Realtime.AppSecret = "mine"
	if s, _ := c.EmbeddedSecret(); s.Value != "mine" || s.Source != "config" {
		t.Errorf("EmbeddedSecret with a configured secret = %q from %q", s.Value, s.Source)
	}
	for _, text := range []string{s1.String(), s1.GoString(), s1.LogValue().String()} {
		if strings.Contains(text, s1.Value) {
			t.Errorf("Secret text %q shows the secret", text)
		}
	}
}

func TestOptions(t *testing.T) {
	c := fullConfig()
	po := c.PeerOptions(nil)
	if po.ListenIP != "10.0.0.2" || po.UDPPort != 50000 || len(po.PublicIPs) != 2 ||
		po.NACKMaxPerPacket != 2 || po.NACKGeneratorSize != 1024 || po.NACKResponderSize != 2048 {
		t.Errorf("PeerOptions = %+v", po)
	}
	wantICE := []webrtc.ICEServer{
		{URLs: []string{"stun:stun.example.com:3478"}},
		{URLs: []string{"turn:turn.example.com?transport=tcp"}, Username: "u", Credential: "p",
			CredentialType: webrtc.ICECredentialTypePassword},
	}
	if !reflect.DeepEqual(po.ICEServers, wantICE) {
		t.Errorf("PeerOptions.ICEServers = %+v, want %+v", po.ICEServers, wantICE)
	}
	so := c.SFUOptions("sec", nil)
	if so.AppID != "abc123" || so.AppSecret != "sec" || so.Peer.ListenIP != "10.0.0.3" || so.Peer.UDPPort != 50001 ||
		!reflect.DeepEqual(so.Peer.PublicIPs, []string{"203.0.113.8"}) || so.TrackIdleTimeout != time.Minute ||
		so.FirstPacketWait != 500*time.Millisecond || so.ConnectWait != 3*time.Second ||
		so.SessionReuseWindow != 10*time.Second || so.RateLimit != 12.5 ||
		so.Peer.NACKResponderSize != 256 || so.Peer.NACKGeneratorSize != 256 {
		t.Errorf("SFUOptions = %+v", so)
	}
	if got := Default().SFUOptions("", nil).AppID; got != "rtgate" {
		t.Errorf("default SFU app id = %q, want rtgate", got)
	}
	if lvl := (Log{Level: "WARN"}).SlogLevel(); lvl.String() != "WARN" {
		t.Errorf("SlogLevel(WARN) = %v", lvl)
	}
}

// TestDeployExample checks that deploy/rtgate.yaml sets every key to its
// default, so that it documents them all and "rtgate check" accepts it.
func TestDeployExample(t *testing.T) {
	clearEnv(t)
	cfg, err := Check("../deploy/rtgate.yaml", nil)
	if err != nil {
		t.Fatalf("Check(deploy/rtgate.yaml):\n%v", err)
	}
	if got, want := values(cfg), values(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("deploy/rtgate.yaml =\n%+v\nwant the defaults\n%+v", got, want)
	}
	for _, k := range Keys() {
		if src := cfg.Source(k); src != "config file" {
			t.Errorf("deploy/rtgate.yaml does not list %s", k)
		}
	}
}

func TestCheck(t *testing.T) {
	clearEnv(t)
	t.Setenv("RTGATE_WEBRTC_UDP_PORT", "99999")
	path := writeFile(t, "c.yaml", "realtim: {}\nhttp:\n  listen: nope\nsfu:\n  connect_wait: 5\nlog:\n  level: loud\n")
	_, err := Check(path, nil)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Check = %v, want Errors", err)
	}
	want := []string{
		`realtim: unknown key (line 1; did you mean "realtime"?)`,
		`http.listen: "nope": must be host:port, e.g. "127.0.0.1:8080" or ":8080"`,
		`webrtc.udp_port: 99999: must be from 0 to 65535 (0 lets the OS choose)`,
		// connect_wait failed to decode: not also "must be positive".
		`sfu.connect_wait: 5: must be a duration with a unit, such as "30s" or "500ms"`,
		`log.level: "loud": must be debug, info, warn or error`,
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Check =\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}

	os.Unsetenv("RTGATE_WEBRTC_UDP_PORT")
	cfg, err := Check(writeFile(t, "ok.yaml", "realtime:\n  app_id: 12345\n"), nil)
	if err != nil {
		t.Fatalf("Check(ok) = %v", err)
	}
	if cfg.Realtime.AppID != "12345" {
		t.Errorf("app_id: 12345 (a YAML integer) = %q, want \"12345\"", cfg.Realtime.AppID)
	}
}

func TestValidateStreams(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "s.yaml", `streams:
  - name: cam1
    source: rtp://0.0.0.0:5004?codec=vp8
  - name: cam1
    source: ftp://x/y
  - name: "bad name"
    sources: ["rtp://0.0.0.0:5006?codec=opus", "%zz"]
  - source: file:///a.ivf
  - name: other
    video_track: cam1-video
    source: rtp://0.0.0.0:5008?codec=vp8
  - name: empty
`)
	_, err := Check(path, nil)
	if err == nil {
		t.Fatal("Check accepted bad streams")
	}
	want := []string{
		`streams[1].name: "cam1": is used by another stream`,
		`streams[1].source: "ftp://x/y": scheme "ftp": want rtp://, sdp://, file:// or v4l2://`,
		`streams[2].name: "bad name": must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
		`streams[2].sources[1]: "%zz": not a URL: invalid URL escape "%zz"`,
		`streams[3].name: "": is required`,
		`streams[4].video_track: "cam1-video": is also a track name of streams[0]`,
		`streams[5].source: "": is required (or sources: a list)`,
	}
	got := strings.Split(err.Error(), "\n")
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing error %q in:\n%s", w, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(got), len(want), err)
	}
}
