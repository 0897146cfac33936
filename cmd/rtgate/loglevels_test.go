package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// lastComponent is the value of the last component= of a text log line
// (pion's lines carry the component of the logger they were made from
// first, then component=pion), or "".
var lastComponent = regexp.MustCompile(`.*\bcomponent=(\S+)`)

// TestRunLogLevels runs the daemon with log.levels {sfu: debug} at
// log.level info and checks through its real logger (newSwitchedLogger,
// the loggers gateway hands every component):
//   - the SFU logs at debug (a session that never connects ends, logged at
//     debug by component sfu), while the debug lines of the other
//     components (the Realtime client's requests, pion) that publishing a
//     stream produces stay hidden;
//   - a reload of the file to level debug, levels {sfu: warn}, format json
//     applies to the loggers already running: the Realtime client's debug
//     lines of a stream added afterwards appear, as JSON, and a session
//     that ends afterwards is not logged.
func TestRunLogLevels(t *testing.T) {
	cleanEnv(t)
	demo, err := filepath.Abs("../../deploy/demo/demo.ogg")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "rtgate.yaml")
	base := `realtime:
  app_secret: s3cret
sfu:
  session_reuse_window: 300ms
streams:
  - name: demo
    source: file://` + demo + `?loop=true
`
	write := func(log string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(base+log), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("log:\n  level: info\n  levels: {sfu: debug}\n")
	s := start(t, "run", "-c", path, "--listen", "127.0.0.1:0")
	url := "http://" + s.addr.String()

	// waitLog polls stderr, from byte offset from on, for a line ok
	// accepts; it returns the offset after that line.
	waitLog := func(from int, what string, ok func(line string) bool) int {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			out := s.errOut.String()
			off := from
			for _, line := range strings.SplitAfter(out[from:], "\n") {
				if !strings.HasSuffix(line, "\n") {
					break
				}
				off += len(line)
				if ok(line) {
					return off
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("no log line with %s within 30 s:\n%s", what, s.errOut.String()[from:])
		return 0
	}

	// Phase 1: sfu at debug, the rest at info.
	waitLog(0, "stream demo live", func(l string) bool {
		return strings.Contains(l, "msg=live") && strings.Contains(l, "stream=demo")
	})
	id1 := newSession(t, url)
	waitLog(0, "the SFU's debug line of session "+id1, func(l string) bool {
		return strings.Contains(l, "level=DEBUG") && strings.Contains(l, `msg="session ended"`) &&
			strings.Contains(l, "session="+id1) && componentOf(l) == "sfu"
	})
	phase1 := s.errOut.String()
	for _, l := range strings.Split(phase1, "\n") {
		if !strings.Contains(l, "level=DEBUG") {
			continue
		}
		if componentOf(l) != "sfu" {
			t.Errorf("a debug line of another component than sfu at log.level info, log.levels {sfu: debug}:\n%s", l)
		}
	}

	// Phase 2: reload to debug, sfu at warn, JSON, by changing the file.
	write("log:\n  level: debug\n  levels: {sfu: warn}\n  format: json\n")
	mark := waitLog(len(phase1), "log settings applied", func(l string) bool {
		return strings.Contains(l, `"msg":"log settings applied"`)
	})
	addStream(t, url, `{"name":"demo2","source":"file://`+demo+`?loop=true"}`)
	waitLog(mark, "a JSON debug line of the Realtime client", func(l string) bool {
		var rec map[string]any
		return json.Unmarshal([]byte(l), &rec) == nil && rec["level"] == "DEBUG" && rec["component"] == "realtime"
	})
	id2 := newSession(t, url)
	waitEnded(t, url, id2)
	// The session ended (410) just before its debug line would be
	// written: give that line time to appear if the level let it through.
	time.Sleep(300 * time.Millisecond)
	after := s.errOut.String()[mark:]
	for _, l := range strings.Split(strings.TrimSpace(after), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("a line after the reload to format json is not JSON: %q", l)
			continue
		}
		if rec["component"] == "sfu" && rec["level"] == "DEBUG" {
			t.Errorf("sfu logged at debug after the reload to log.levels {sfu: warn}: %s", l)
		}
		if rec["session"] == id2 {
			t.Errorf("the end of session %s was logged with sfu at warn: %s", id2, l)
		}
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("run exited %d after cancel\n%s", code, s.errOut.String())
	}
}

// componentOf returns the last component= of a text log line, or "".
func componentOf(line string) string {
	if m := lastComponent.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// newSession creates a session on the embedded SFU that never connects.
func newSession(t *testing.T, base string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/apps/rtgate/sessions/new", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ SessionID string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusCreated || body.SessionID == "" {
		t.Fatalf("new session: %d, %+v, %v", resp.StatusCode, body, err)
	}
	return body.SessionID
}

// waitEnded polls a session until the SFU answers 410 Gone.
func waitEnded(t *testing.T, base, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/apps/rtgate/sessions/"+id, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("get session %s: %v", id, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusGone {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("session %s did not end within 20 s", id)
}

// addStream adds a stream with the control API (from loopback: no token).
func addStream(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/api/streams", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("add stream: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("add stream %s: %d", body, resp.StatusCode)
	}
}

// TestCheckLogLevels: rtgate check reports a bad log.levels with its key
// path and value, from the file and from the environment.
func TestCheckLogLevels(t *testing.T) {
	cleanEnv(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("log:\n  levels: {sfu: loud, mixer: debug}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := execute(t, "check", "-c", path)
	want := "log.levels.mixer: unknown component: must be one of forward, http, pion, publish, pull, realtime, record, sfu, source, supervise, webrtc, wish\n" +
		`log.levels.sfu: "loud": must be debug, info, warn or error` + "\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("check: exit %d, stdout %q, stderr\n%s\nwant exit 1, stderr\n%s", code, out, errOut, want)
	}

	t.Setenv("RTGATE_LOG_LEVELS", "pion=warn,sfu=debug")
	if code, out, errOut := execute(t, "check"); code != 0 || errOut != "" {
		t.Errorf("check with RTGATE_LOG_LEVELS=pion=warn,sfu=debug: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	t.Setenv("RTGATE_LOG_LEVELS", "sfu")
	code, _, errOut = execute(t, "check")
	if w := fmt.Sprintf("log.levels: %q: must be component=level pairs", "sfu"); code != 1 || !strings.HasPrefix(errOut, w) {
		t.Errorf("check with RTGATE_LOG_LEVELS=sfu: exit %d, stderr %q, want exit 1 and %q...", code, errOut, w)
	}
}
