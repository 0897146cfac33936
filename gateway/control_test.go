package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlAPI adds and removes a stream and a recording at runtime:
// 201 with the status, 409 for a taken name (recordings and forwards share
// one name space), 400 with every problem named, 404 for an unknown name,
// 401 without the token; a reload keeps the runtime additions.
func TestControlAPI(t *testing.T) {
	ivf, _ := filepath.Abs("../deploy/demo/demo.ivf")
	cfg := loopbackConfig()
	cfg.API.Token = "ctl-token"
	cfg.Record.Dir = t.TempDir()
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, d.Run)
	defer stop()
	<-d.Started()
	base := httpURL(d.Addr())
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, _ := call("POST", "/api/streams", "", `{"name":"cam"}`); code != http.StatusUnauthorized {
		t.Errorf("POST without the token: %d, want 401", code)
	}
	code, body := call("POST", "/api/streams", "ctl-token", `{"name":"cam","source":"file://`+ivf+`?loop=true"}`)
	if code != http.StatusCreated || !strings.Contains(body, `"name":"cam"`) {
		t.Fatalf("POST stream: %d %s", code, body)
	}
	code, body = call("POST", "/api/recordings", "ctl-token", `{"name":"rec","stream":"cam","format":"webm"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST recording: %d %s", code, body)
	}
	// A recording in a directory of its own finalizes what a crash left
	// there first (runtime recordings are not persisted, so no configured
	// recording points at it after a restart): a truncated IVF with its
	// marker, as a kill -9 leaves them.
	crashDir := t.TempDir()
	demo, err := os.ReadFile(ivf)
	if err != nil {
		t.Fatal(err)
	}
	left := filepath.Join(crashDir, "old.ivf")
	if err := os.WriteFile(left, demo[:len(demo)/2+7], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(crashDir, ".old.ivf.recording"), []byte("ivf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, body = call("POST", "/api/recordings", "ctl-token", `{"name":"rec2","stream":"cam","format":"ivf","dir":"`+crashDir+`"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST recording with its own dir: %d %s", code, body)
	}
	if _, err := os.Stat(filepath.Join(crashDir, ".old.ivf.recording")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the crash leftover's marker is still there after the recording started (%v): not repaired", err)
	}
	if fi, err := os.Stat(left); err != nil || fi.Size() >= int64(len(demo)/2+7) {
		t.Errorf("the leftover after repair: %v, %v; want it cut to its last whole frame", fi, err)
	}
	if code, _ := call("DELETE", "/api/recordings/rec2", "ctl-token", ""); code != http.StatusNoContent {
		t.Errorf("DELETE rec2: %d", code)
	}
	if code, _ := call("POST", "/api/forwards", "ctl-token", `{"name":"rec","stream":"cam","to":"rtp://127.0.0.1:7000"}`); code != http.StatusConflict {
		t.Errorf("a forward named like a recording: %d, want 409", code)
	}
	code, body = call("POST", "/api/recordings", "ctl-token", `{"name":"bad","format":"avi"}`)
	var e apiError
	_ = json.Unmarshal([]byte(body), &e)
	if code != http.StatusBadRequest || len(e.Details) < 2 || !strings.Contains(body, `recordings[1].format: \"avi\"`) {
		t.Errorf("POST invalid recording: %d %s", code, body)
	}
	if code, _ := call("DELETE", "/api/forwards/nope", "ctl-token", ""); code != http.StatusNotFound {
		t.Errorf("DELETE unknown: %d, want 404", code)
	}

	// The recording writes; a reload from a file without them keeps both.
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := d.Outputs(KindRecording)
		if len(st) == 1 && st[0].Recording != nil && st[0].Recording.Bytes > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runtime recording wrote nothing: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := d.Reload(cfg.Clone()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if len(d.Outputs(KindRecording)) != 1 || len(d.Streams()) != 1 {
		t.Errorf("a reload dropped runtime additions: %d recordings, %d streams", len(d.Outputs(KindRecording)), len(d.Streams()))
	}

	if code, body := call("DELETE", "/api/recordings/rec", "ctl-token", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE recording: %d %s", code, body)
	}
	if code, _ := call("DELETE", "/api/streams/cam", "ctl-token", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE stream: %d", code)
	}
	if n := len(d.Outputs(KindRecording)) + len(d.Streams()); n != 0 {
		t.Errorf("%d pipelines left after DELETE", n)
	}
	m, _ := filepath.Glob(filepath.Join(cfg.Record.Dir, "cam-*.webm"))
	if len(m) != 1 {
		t.Errorf("recording files: %v", m)
	}
}
