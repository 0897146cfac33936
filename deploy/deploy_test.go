// Package deploy holds the files that install rtgate (systemd unit,
// Dockerfile, Grafana dashboard); its tests check them against the
// daemon: the unit's directives, the dashboard's metric names against what
// /metrics serves, the Dockerfile's ports against its configuration.
package deploy

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rtgate/rtgate/gateway/metrics"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// unit is a parsed systemd unit file: section -> key -> assignments in
// order (systemd keys may repeat; an empty assignment resets a list).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			if strings.HasSuffix(v, `\`) {
				t.Fatalf("%s:%d: continuation lines are not expected", path, n)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the single value of a key, failing if it is missing or set
// more than once.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s: %d assignments %q, want exactly one", section, key, len(vs), vs)
		return ""
	}
	return vs[0]
}

// TestUnitFile checks the systemd unit has what running rtgate as a
// service needs (notify and watchdog, reload by SIGHUP, restart on
// failure, a shutdown budget that covers rtgate's) and the sandbox the
// deployment promises, then has systemd-analyze verify it and score its
// exposure.
func TestUnitFile(t *testing.T) {
	u := parseUnit(t, "rtgate.service")
	want := map[string]map[string]string{
		"Service": {
			"Type":            "notify",
			"WatchdogSec":     "30",
			"ExecStart":       "/usr/local/bin/rtgate run --config /etc/rtgate/rtgate.yaml",
			"ExecReload":      "/bin/kill -HUP $MAINPID",
			"Restart":         "on-failure",
			"DynamicUser":     "yes",
			"StateDirectory":  "rtgate",
			"ProtectSystem":   "strict",
			"ProtectHome":     "yes",
			"PrivateTmp":      "yes",
			"DevicePolicy":    "closed",
			"NoNewPrivileges": "yes",
			// Empty: no capabilities at all.
			"CapabilityBoundingSet": "",
		},
		"Install": {"WantedBy": "multi-user.target"},
	}
	for section, kv := range want {
		for k, v := range kv {
			if got := u.one(t, section, k); got != v {
				t.Errorf("[%s] %s=%q, want %q", section, k, got, v)
			}
		}
	}
	for _, c := range []struct{ key, want string }{
		{"DeviceAllow", "char-video4linux rw"},
		{"SupplementaryGroups", "video"},
	} {
		if !slices.Contains(u["Service"][c.key], c.want) {
			t.Errorf("[Service] %s=%q, want an assignment %q", c.key, u["Service"][c.key], c.want)
		}
	}
	fams := strings.Fields(u.one(t, "Service", "RestrictAddressFamilies"))
	slices.Sort(fams)
	if !slices.Equal(fams, []string{"AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"}) {
		t.Errorf("RestrictAddressFamilies=%v", fams)
	}
	if v := u["Service"]["PrivateDevices"]; slices.Contains(v, "yes") || slices.Contains(v, "true") {
		t.Error("PrivateDevices=yes hides the cameras")
	}
	// rtgate's own shutdown: streams close on the SFU within 5 s, HTTP
	// drains within 10 s.
	if d, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec") + "s"); err != nil || d < 15*time.Second {
		t.Errorf("TimeoutStopSec=%v (%v); want >= 15 (rtgate stops within 5 s + 10 s)", d, err)
	}
	if n, err := strconv.Atoi(u.one(t, "Service", "LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("LimitNOFILE=%d (%v), want >= 4096", n, err)
	}
	if !slices.Contains(u["Unit"]["After"], "network-online.target") || !slices.Contains(u["Unit"]["Wants"], "network-online.target") {
		t.Error("the unit must start after network-online.target (ICE gathers the interfaces' addresses at start)")
	}

	tool := requireTool(t, "systemd-analyze")
	// verify wants ExecStart to exist: point it at a stand-in executable.
	dir := t.TempDir()
	stand := filepath.Join(dir, "rtgate")
	if err := os.WriteFile(stand, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("rtgate.service")
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "rtgate.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/rtgate", stand)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Exposure on systemd's 0-10 scale, times 10: at most 3.0 ("OK").
	out, err = exec.Command(tool, "security", "--offline=yes", "--no-pager", "--threshold=30", copyPath).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 3.0 or error: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out); m != nil {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	}
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (apt package systemd): %v", name, err)
	}
	t.Skipf("%s not found: %v", name, err)
	return ""
}

// exposed scrapes a Metrics that has a row of every kind and one Realtime
// API call, and returns every metric name a query may use: each family,
// and a histogram's _bucket, _sum and _count.
func exposed(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.Options{
		Streams: func() []publish.Status {
			return []publish.Status{{Name: "cam", State: publish.StateLive,
				Tracks: []publish.TrackStatus{{Name: "cam-video", Kind: "video", Codec: "video/VP8"}}}}
		},
		Pipelines: func() []supervise.Status {
			return []supervise.Status{{Name: "cam", Kind: "stream", State: supervise.StateLive}}
		},
		Pulls: func() []metrics.PullTrack {
			return []metrics.PullTrack{{Name: "rec", Track: "cam-video", Kind: "video"}}
		},
		Recordings: func() []metrics.Recording { return []metrics.Recording{{Name: "rec", Track: "cam-video"}} },
	})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"sessionId":"x"}`))
	}))
	defer api.Close()
	resp, err := (&http.Client{Transport: m.RealtimeTransport(nil)}).Post(api.URL+"/v1/apps/a/sessions/new", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err = http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		}
	}
	return names
}

// dashboardQueries returns every PromQL query of the dashboard: panel
// targets (rows' nested panels too), template variable queries and
// annotations.
func dashboardQueries(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string  `json:"title"`
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
		Templ  struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard without title or uid")
	}
	var qs []string
	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q has an empty query", p.Title)
				}
				qs = append(qs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templ.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable %s: query is neither an object nor a string", v.Name)
			}
			q.Query = s
		}
		qs = append(qs, q.Query)
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			qs = append(qs, a.Expr)
		}
	}
	return qs
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// metricName matches the metric names of a query: rtgate's, the Go
// runtime's and the process collector's. Label names, functions and
// variables do not start with these prefixes.
var metricName = regexp.MustCompile(`\b(?:rtgate|go|process)_[a-zA-Z0-9_:]+`)

// TestDashboardMetrics checks that every metric the Grafana dashboard
// queries is one rtgate serves, and that the dashboard covers what
// operators look at first.
func TestDashboardMetrics(t *testing.T) {
	have := exposed(t)
	qs := dashboardQueries(t, filepath.Join("grafana", "rtgate-dashboard.json"))
	used := map[string]bool{}
	for _, q := range qs {
		names := metricName.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("query %q names no rtgate, go or process metric", q)
		}
		for _, n := range names {
			used[n] = true
			if !have[n] {
				t.Errorf("the dashboard queries %s, which /metrics does not serve (query %q)", n, q)
			}
		}
	}
	for _, n := range []string{
		"rtgate_publish_packets_total", "rtgate_publish_bitrate_bits_per_second", "rtgate_pull_packets_lost_total",
		"rtgate_pull_nacks_total", "rtgate_pull_plis_total", "rtgate_realtime_requests_total",
		"rtgate_realtime_request_duration_seconds_bucket", "rtgate_recording_bytes_total", "rtgate_recording_errors_total",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
	var unused []string
	for n := range have {
		if strings.HasPrefix(n, "rtgate_") && !used[n] {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	t.Logf("%d queries, %d metrics used; rtgate series not on the dashboard: %v", len(qs), len(used), unused)
}

// TestDockerfile checks the image's consistency with the module and the
// configuration: the Go version of go.mod, a static trimmed build, a
// non-root user, and EXPOSEd ports equal to the ports its environment
// configures.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVer == nil {
		t.Fatal("go.mod has no go line")
	}
	if !strings.Contains(df, "FROM golang:"+string(goVer[1])+" AS build") {
		t.Errorf("the builder is not golang:%s (go.mod's go version)", goVer[1])
	}
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/rtgate", `ENTRYPOINT ["/usr/local/bin/rtgate", "run"]`} {
		if !strings.Contains(df, s) {
			t.Errorf("Dockerfile lacks %q", s)
		}
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(df, -1)
	if len(user) == 0 {
		t.Error("no USER: the image would run as root")
	}
	for _, u := range user {
		if id, _, _ := strings.Cut(u[1], ":"); id == "root" || id == "0" {
			t.Errorf("USER %s is root", u[1])
		}
	}
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`(RTGATE_[A-Z_]+)=(\S+)`).FindAllStringSubmatch(df, -1) {
		env[m[1]] = m[2]
	}
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^EXPOSE (\d+/(?:tcp|udp))`).FindAllStringSubmatch(df, -1) {
		exposed[m[1]] = true
	}
	_, httpPort, err := net.SplitHostPort(env["RTGATE_HTTP_LISTEN"])
	if err != nil || httpPort == "0" {
		t.Errorf("RTGATE_HTTP_LISTEN=%q: %v", env["RTGATE_HTTP_LISTEN"], err)
	}
	if h, _, _ := net.SplitHostPort(env["RTGATE_HTTP_LISTEN"]); h == "127.0.0.1" || h == "localhost" {
		t.Error("in a container the HTTP server must listen beyond loopback")
	}
	want := []string{httpPort + "/tcp", env["RTGATE_WEBRTC_UDP_PORT"] + "/udp", env["RTGATE_SFU_UDP_PORT"] + "/udp"}
	for _, p := range want {
		if p[0] == '/' || !exposed[p] {
			t.Errorf("port %s is configured but not EXPOSEd (EXPOSE %v, env %v)", p, exposed, env)
		}
	}
	if len(exposed) != len(want) || env["RTGATE_WEBRTC_UDP_PORT"] == env["RTGATE_SFU_UDP_PORT"] {
		t.Errorf("EXPOSE %v, want exactly %v on distinct UDP ports", exposed, want)
	}
	if _, err := os.Stat("Dockerfile.dockerignore"); err != nil {
		t.Error(err)
	}
}
