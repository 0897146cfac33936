package web_test

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/web"
)

func get(t *testing.T, srv *httptest.Server, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(body)
}

// TestRoutes serves the pages through Register on a mux that has other
// routes too, as the daemon's does.
func TestRoutes(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"streams":[]}`)
	})
	mux.HandleFunc("POST /whep/{stream}", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	web.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `src="/static/index.js"`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/watch/demo", 200, "text/html; charset=utf-8", `src="/static/watch.js"`},
		// http.ServeFile would redirect this one to "./".
		{"GET", "/watch/index.html", 200, "text/html; charset=utf-8", `src="/static/watch.js"`},
		{"GET", "/publish/cam1", 200, "text/html; charset=utf-8", `src="/static/publish.js"`},
		{"GET", "/static/rtgate.js", 200, "text/javascript; charset=utf-8", "export class Session"},
		{"GET", "/static/rtgate.css", 200, "text/css; charset=utf-8", "font-family"},
		{"GET", "/static/", 404, "", ""},
		{"GET", "/static/nope.js", 404, "", ""},
		{"GET", "/watch/", 404, "", ""},
		{"GET", "/watch/a/b", 404, "", ""},
		{"GET", "/nope", 404, "", ""},
		{"POST", "/", 405, "", ""},
		// The other routes are untouched.
		{"GET", "/api/streams", 200, "", `{"streams":[]}`},
		{"POST", "/whep/demo", http.StatusTeapot, "", ""},
	} {
		resp, body := get(t, srv, tc.method, tc.path)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.contentType != "" && resp.Header.Get("Content-Type") != tc.contentType {
			t.Errorf("%s %s: Content-Type %q, want %q", tc.method, tc.path, resp.Header.Get("Content-Type"), tc.contentType)
		}
		if tc.contains != "" && !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s: body lacks %q:\n%.300s", tc.method, tc.path, tc.contains, body)
		}
		if tc.status == 200 && !strings.HasPrefix(tc.path, "/api/") {
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("%s %s: no %s header", tc.method, tc.path, h)
				}
			}
		}
	}
}

var (
	htmlRef    = regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	jsImport   = regexp.MustCompile(`(?m)^import .* from '([^']+)';$`)
	absoluteJS = regexp.MustCompile(`(?i)\bhttps?://`)
	scriptTag  = regexp.MustCompile(`<script[^>]*>`)
	eventAttr  = regexp.MustCompile(`<[^>]*\son[a-z]+=[^>]*>`)
)

// TestSelfContained checks that the pages load nothing from elsewhere:
// every src/href of the HTML is local and served, every module import is
// relative, and no file names a URL of another host.
func TestSelfContained(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	t.Cleanup(srv.Close)
	dir := os.DirFS("static")
	n := 0
	err := fs.WalkDir(dir, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(dir, path)
		if err != nil {
			return err
		}
		text := string(b)
		// No URL of another host; the watch page's hint names none either.
		if m := absoluteJS.FindString(text); m != "" {
			t.Errorf("%s names an absolute URL (%s...): the pages must work offline", path, m)
		}
		switch filepath.Ext(path) {
		case ".html":
			for _, m := range htmlRef.FindAllStringSubmatch(text, -1) {
				ref := m[1]
				if ref == "#" || strings.HasPrefix(ref, "data:") || ref == "/" || ref == "/api/streams" {
					continue
				}
				if !strings.HasPrefix(ref, "/static/") {
					t.Errorf("%s: reference %q is not under /static/", path, ref)
					continue
				}
				if resp, _ := get(t, srv, "GET", ref); resp.StatusCode != 200 {
					t.Errorf("%s: GET %s = %d", path, ref, resp.StatusCode)
				}
			}
			for _, tag := range scriptTag.FindAllString(text, -1) {
				if !strings.Contains(tag, " src=") {
					t.Errorf("%s: %s is inline script, which the Content-Security-Policy blocks", path, tag)
				}
			}
			if m := eventAttr.FindString(text); m != "" {
				t.Errorf("%s: %q is inline script, which the Content-Security-Policy blocks", path, m)
			}
		case ".js":
			for _, m := range jsImport.FindAllStringSubmatch(text, -1) {
				if !strings.HasPrefix(m[1], "./") {
					t.Errorf("%s imports %q: only ./ modules of static/", path, m[1])
				} else if resp, _ := get(t, srv, "GET", "/static/"+strings.TrimPrefix(m[1], "./")); resp.StatusCode != 200 {
					t.Errorf("%s imports %s: GET = %d", path, m[1], resp.StatusCode)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("walked %d files of static/, want the 3 pages, 4 scripts and the style sheet", n)
	}
}

// TestScripts checks every script's syntax with node and runs the unit
// checks of rtgate.js's pure functions (testdata/rtgate_test.mjs). The
// pages themselves run in Chromium in cmd/rtgate's end-to-end tests.
func TestScripts(t *testing.T) {
	node := rtctest.RequireTool(t, "node")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scripts, err := filepath.Glob(filepath.Join("static", "*.js"))
	if err != nil || len(scripts) < 4 {
		t.Fatalf("scripts in static/: %v %v", scripts, err)
	}
	for _, s := range scripts {
		if out, err := exec.CommandContext(ctx, node, "--check", s).CombinedOutput(); err != nil {
			t.Errorf("node --check %s: %v\n%s", s, err, out)
		}
	}
	out, err := exec.CommandContext(ctx, node, filepath.Join("testdata", "rtgate_test.mjs")).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("node testdata/rtgate_test.mjs: %v\n%s", err, out)
	}
}
