package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// chromiumPath is Debian's Chromium binary itself; the /usr/bin/chromium
// wrapper script adds noise. RTGATE_CHROMIUM overrides it.
const chromiumPath = "/usr/lib/chromium/chromium"

var baseURLLine = regexp.MustCompile(`base URL:\s+(\S+)`)

// TestBrowserEcho runs the Cloudflare Realtime echo demo, ported to
// testdata/browser/echo.html, in headless Chromium against `rtgate sfu`:
// the page publishes a fake camera and microphone, pulls both tracks back
// through the embedded SFU, and the echoed video must decode and the echoed
// audio must arrive. The page is served from a different origin than the SFU,
// as the demo calls Cloudflare cross-origin, so CORS and preflight are real.
func TestBrowserEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("browser e2e test skipped in -short mode")
	}
	chromium, node, browserDir := requireBrowser(t)

	bin := buildRtgate(t)
	secret := randomHex(t, 16)
	const appID = "e2e"
	sfu := startSFU(t, bin, appID, secret)

	// The page's origin is this server; the SFU is another origin.
	page := httptest.NewServer(pageHandler(browserDir))
	t.Cleanup(page.Close)

	base := strings.TrimSuffix(sfu.baseURL, "/apps/"+appID)
	q := url.Values{"base": {base}, "app": {appID}, "secret": {secret}}
	pageURL := page.URL + "/echo.html?" + q.Encode()
	t.Logf("SFU base URL %s, page %s/echo.html", sfu.baseURL, page.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, node, "echo.mjs",
		"--url", pageURL, "--chromium", chromium, "--timeout", "30000", "--frames", "30")
	cmd.Dir = browserDir
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1")
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()

	res, parseErr := parseDriverResult(stdout.Bytes())
	report := func() {
		t.Logf("driver exit: %v", runErr)
		t.Logf("driver stdout:\n%s", stdout.String())
		t.Logf("driver stderr (page console errors):\n%s", stderr.String())
		if res != nil {
			t.Logf("page steps:\n  %s", strings.Join(res.Steps, "\n  "))
			for _, r := range res.Requests {
				t.Logf("request: %s %s -> %d %s %s", r.Method, r.URL, r.Status, r.ErrorCode, r.ErrorDescription)
			}
		}
		t.Logf("rtgate sfu output:\n%s", sfu.output())
	}
	if parseErr != nil {
		report()
		t.Fatalf("driver printed no result: %v", parseErr)
	}
	if runErr != nil || !res.OK {
		report()
		t.Fatalf("echo failed at step %q: %s (pageError: %s)", res.Step, res.Error, res.PageError)
	}
	if res.FramesDecoded <= 30 {
		report()
		t.Fatalf("framesDecoded = %d, want > 30", res.FramesDecoded)
	}
	if res.AudioPacketsReceived <= 0 {
		report()
		t.Fatalf("echoed audio packetsReceived = %d, want > 0", res.AudioPacketsReceived)
	}
	t.Logf("echo ok in %d ms: video %s %dx%d framesDecoded=%d packets=%d, audio %s packets=%d",
		res.ElapsedMs, res.VideoCodec, res.VideoWidth, res.VideoHeight, res.FramesDecoded,
		res.VideoPacketsReceived, res.AudioCodec, res.AudioPacketsReceived)
}

// requireBrowser returns Chromium's binary, node and the absolute path of
// testdata/browser with playwright-core installed, or skips (fails with
// CI=true) when one is missing.
func requireBrowser(t *testing.T) (chromium, node, browserDir string) {
	t.Helper()
	chromium = os.Getenv("RTGATE_CHROMIUM")
	if chromium == "" {
		chromium = chromiumPath
	}
	if _, err := os.Stat(chromium); err != nil {
		skipOrFail(t, "chromium not found (%v): run .ci/install-deps (apt-get install chromium)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node not found: %v", err)
	}
	browserDir, err = filepath.Abs(filepath.Join("testdata", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(browserDir, "node_modules", "playwright-core", "package.json")); err != nil {
		skipOrFail(t, "playwright-core not installed in %s: run .ci/install-deps (npm ci there)", browserDir)
	}
	return chromium, node, browserDir
}

// driverResult is the JSON line echo.mjs prints.
type driverResult struct {
	OK                   bool     `json:"ok"`
	FramesDecoded        int      `json:"framesDecoded"`
	VideoPacketsReceived int      `json:"videoPacketsReceived"`
	AudioPacketsReceived int      `json:"audioPacketsReceived"`
	VideoWidth           int      `json:"videoWidth"`
	VideoHeight          int      `json:"videoHeight"`
	VideoCodec           string   `json:"videoCodec"`
	AudioCodec           string   `json:"audioCodec"`
	ElapsedMs            int      `json:"elapsedMs"`
	Step                 string   `json:"step"`
	Steps                []string `json:"steps"`
	Requests             []struct {
		Method           string `json:"method"`
		URL              string `json:"url"`
		Status           int    `json:"status"`
		ErrorCode        string `json:"errorCode"`
		ErrorDescription string `json:"errorDescription"`
	} `json:"requests"`
	PageError string `json:"pageError"`
	Error     string `json:"error"`
}

// parseDriverResult decodes the last JSON line of the driver's stdout.
func parseDriverResult(out []byte) (*driverResult, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r driverResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("decode %q: %w", line, err)
		}
		return &r, nil
	}
	return nil, errors.New("no JSON line in its output")
}

// pageHandler serves the test page, and only it, from dir.
func pageHandler(dir string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /echo.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFile(w, r, filepath.Join(dir, "echo.html"))
	})
	return mux
}

// skipOrFail skips the test on a developer machine that lacks a tool, and
// fails it in CI (CI=true), where a missing tool is a broken install.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true and "+format, args...)
	}
	t.Skipf(format, args...)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// buildRtgate builds the rtgate binary into a temporary directory, or
// returns $RTGATE_BIN when that names an already built one.
func buildRtgate(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("RTGATE_BIN"); bin != "" {
		return bin
	}
	// go test puts its own GOROOT/bin first on PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "rtgate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/rtgate/rtgate/cmd/rtgate").CombinedOutput()
	if err != nil {
		t.Fatalf("go build rtgate: %v\n%s", err, out)
	}
	return bin
}

// sfuProcess is a running `rtgate sfu`.
type sfuProcess struct {
	*process
	baseURL string
}

// startSFU starts `rtgate sfu` on a free loopback port and waits for the
// base URL line it prints. t.Cleanup stops it.
func startSFU(t *testing.T, bin, appID, secret string) *sfuProcess {
	t.Helper()
	// Keep the media on loopback too: without sfu.listen_ip the SFU's UDP
	// port offers host candidates on every interface.
	p, base := startProcess(t, "rtgate sfu", bin,
		[]string{"sfu", "--listen", "127.0.0.1:0", "--app-id", appID, "--app-secret", secret},
		append(os.Environ(), "RTGATE_SFU_LISTEN_IP=127.0.0.1"), baseURLLine)
	return &sfuProcess{process: p, baseURL: base}
}

// process is a running subprocess of a test whose output it keeps.
type process struct {
	name string
	mu   sync.Mutex
	out  bytes.Buffer // stdout and stderr, interleaved
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startProcess starts bin with args and env (nil: this process's), waits
// up to 30 s for an output line that matches ready and returns the process
// and ready's first submatch. t.Cleanup stops it with SIGINT (SIGKILL 5 s
// later) and logs its exit status if the test failed.
func startProcess(t *testing.T, name, bin string, args, env []string, ready *regexp.Regexp) (*process, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name}
	found := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if m := ready.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		_ = pw.Close()
		exited <- err
	}()
	var waitErr error
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case waitErr = <-exited:
			case <-time.After(5 * time.Second):
				t.Logf("%s did not exit 5 s after SIGINT: killing it", name)
				_ = cmd.Process.Kill()
				waitErr = <-exited
			}
		}
		<-scanned
		if t.Failed() {
			t.Logf("%s exit: %v", name, waitErr)
		}
	})

	select {
	case m := <-found:
		return p, m
	case waitErr = <-exited:
		stopped = true
		<-scanned
		t.Fatalf("%s exited before printing %s: %v\n%s", name, ready, waitErr, p.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s printed no %s within 30 s:\n%s", name, ready, p.output())
	}
	return nil, ""
}
