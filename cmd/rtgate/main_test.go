package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rtgate/rtgate/config"
)

// TestMain lets the tests run this test binary as the rtgate command
// (RTGATE_TEST_MAIN=1) to send it real signals.
func TestMain(m *testing.M) {
	if os.Getenv("RTGATE_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// cleanEnv unsets every RTGATE_* variable of the schema and keeps the
// sockets of run and sfu on loopback.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, k := range config.Keys() {
		name := config.EnvName(k)
		t.Setenv(name, "")
		os.Unsetenv(name)
	}
	t.Setenv("RTGATE_WEBRTC_LISTEN_IP", "127.0.0.1")
	t.Setenv("RTGATE_SFU_LISTEN_IP", "127.0.0.1")
}

// syncBuffer is a bytes.Buffer a command writes to while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// execute runs a command to completion in-process.
func execute(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	code = runApp(context.Background(), &app{stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

// server is `rtgate run` or `rtgate sfu` running in-process.
type server struct {
	addr        net.Addr
	out, errOut syncBuffer
	cancel      context.CancelFunc
	done        chan int
}

// start runs a serving command in-process until the test stops it; it
// returns once the command listens.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cancel: cancel, done: make(chan int, 1)}
	addrc := make(chan net.Addr, 1)
	a := &app{stdout: &s.out, stderr: &s.errOut, listening: func(addr net.Addr) { addrc <- addr }}
	go func() { s.done <- runApp(ctx, a, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			t.Error("command did not return 20 s after cancel")
		}
	})
	select {
	case s.addr = <-addrc:
		return s
	case code := <-s.done:
		t.Fatalf("rtgate %s exited with %d before listening:\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), code, s.out.String(), s.errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("rtgate %s did not listen within 20 s", strings.Join(args, " "))
	}
	return nil
}

// stop cancels the command's context and returns its exit code.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code // for the cleanup
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("command did not return 20 s after cancel")
	}
	return -1
}

func healthz(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET %s/healthz = %d %q, want 200 \"ok\"", base, resp.StatusCode, body)
	}
}

func TestVersion(t *testing.T) {
	code, out, errOut := execute(t, "version")
	if code != 0 || errOut != "" {
		t.Fatalf("version: exit %d, stderr %q", code, errOut)
	}
	want := regexp.MustCompile(`^rtgate \S+\n  commit:      \S+\n  go:          go1\.\S+\n  pion/webrtc: v4\.\d+\.\d+\n$`)
	if !want.MatchString(out) {
		t.Errorf("version output:\n%s\ndoes not match %s", out, want)
	}
	if !strings.Contains(out, "pion/webrtc: v4.2.20") {
		t.Errorf("version output does not name the pinned pion/webrtc v4.2.20:\n%s", out)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("secret", "s3cret\n")
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		stdout     string
		stderr     []string // exact lines
		stderrLike string   // or a substring
	}{
		{name: "deploy example", args: []string{"-c", "../../deploy/rtgate.yaml"},
			stdout: "config ok: realtime embedded (app rtgate, secret generated per run), http 127.0.0.1:8080\n"},
		{name: "no file", args: nil,
			stdout: "config ok: realtime embedded (app rtgate, secret generated per run), http 127.0.0.1:8080\n"},
		{name: "remote", args: []string{"-c", write("remote.yaml",
			"realtime:\n  url: https://rtc.live.cloudflare.com/v1\n  app_id: abc\n  app_secret_file: "+secret+"\nhttp:\n  listen: :9000\n")},
			stdout: "config ok: realtime https://rtc.live.cloudflare.com/v1 (app abc, secret from file " + secret + "), http :9000\n"},
		{name: "flags and env", args: []string{"--realtime-url", "http://sfu.internal:8080/v1", "--app-id", "x"},
			env:    map[string]string{"RTGATE_REALTIME_APP_SECRET": "e"},
			stdout: "config ok: realtime http://sfu.internal:8080/v1 (app x, secret from environment RTGATE_REALTIME_APP_SECRET), http 127.0.0.1:8080\n"},
		{name: "bad values", code: 1, args: []string{"-c", write("bad.yaml",
			"http:\n  listen: nope\nrealtime:\n  url: ftp://x\nwebrtc:\n  udp_port: 70000\n  nack:\n    generator_size: 100\nlog:\n  format: xml\n")},
			stderr: []string{
				`http.listen: "nope": must be host:port, e.g. "127.0.0.1:8080" or ":8080"`,
				`realtime.url: "ftp://x": scheme must be http, https or "embedded"`,
				`webrtc.udp_port: 70000: must be from 0 to 65535 (0 lets the OS choose)`,
				`webrtc.nack.generator_size: 100: must be a power of two from 64 to 32768`,
				`log.format: "xml": must be text or json`,
			}},
		{name: "unknown key and bad value", code: 1, args: []string{"-c", write("typo.yaml",
			"realtim:\n  url: https://x/v1\nsfu:\n  connect_wait: 5\n")},
			stderr: []string{
				`realtim: unknown key (line 1; did you mean "realtime"?)`,
				`sfu.connect_wait: 5: must be a duration with a unit, such as "30s" or "500ms"`,
			}},
		{name: "remote without credentials", code: 1, args: []string{"--realtime-url", "https://rtc.live.cloudflare.com/v1"},
			stderr: []string{
				`realtime.app_id: "": required when realtime.url is an http(s) URL`,
				`realtime.app_secret: required when realtime.url is an http(s) URL (or set realtime.app_secret_file)`,
			}},
		{name: "missing file", code: 1, args: []string{"-c", filepath.Join(dir, "nope.yaml")},
			stderrLike: "read config file: open " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{name: "not yaml", code: 1, args: []string{"-c", write("broken.yaml", "http: [\n")},
			stderrLike: "parse config file"},
		{name: "extra argument", code: 2, args: []string{"deploy/rtgate.yaml"},
			stderrLike: "rtgate check takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out, errOut := execute(t, append([]string{"check"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if out != tt.stdout {
				t.Errorf("stdout = %q, want %q", out, tt.stdout)
			}
			switch {
			case tt.stderr != nil:
				if want := strings.Join(tt.stderr, "\n") + "\n"; errOut != want {
					t.Errorf("stderr =\n%s\nwant\n%s", errOut, want)
				}
			case tt.stderrLike != "":
				if !strings.Contains(errOut, tt.stderrLike) {
					t.Errorf("stderr = %q, want it to contain %q", errOut, tt.stderrLike)
				}
			case errOut != "":
				t.Errorf("stderr = %q, want nothing", errOut)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	cleanEnv(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--nope"}, "rtgate: unknown flag: --nope\nRun 'rtgate run --help' for usage.\n"},
		{[]string{"chek"}, "rtgate: unknown command \"chek\"; did you mean \"check\"?\nRun 'rtgate --help' for usage.\n"},
		{[]string{"sfu", "extra"}, "rtgate: rtgate sfu takes no arguments, got \"extra\"\nRun 'rtgate sfu --help' for usage.\n"},
		{[]string{"--log-level"}, "rtgate: flag needs an argument: --log-level\nRun 'rtgate --help' for usage.\n"},
	}
	for _, tt := range tests {
		code, _, errOut := execute(t, tt.args...)
		if code != 2 || errOut != tt.want {
			t.Errorf("rtgate %s: exit %d, stderr %q; want exit 2, %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
	}
}

func TestHelp(t *testing.T) {
	cleanEnv(t)
	tests := map[string][]string{
		"":        {"Configuration comes from", "RTGATE_REALTIME_APP_SECRET", "run", "publish", "sfu", "check", "version"},
		"run":     {"GET /healthz", "--listen", "--config", "--realtime-url", "--app-id", "--app-secret-file", "--log-level"},
		"sfu":     {"base URL:", "--listen", "--app-id", "--app-secret", "--app-secret-file", "-c, --config"},
		"check":   {"config ok:", "one per line", "--config", "--realtime-url"},
		"version": {"pion/webrtc"},
		"publish": {"SRC", "--name", "--listen", "--realtime-url", "loop=true", "tracks/close"},
	}
	for command, wants := range tests {
		args := []string{"--help"}
		if command != "" {
			args = []string{command, "--help"}
		}
		code, out, _ := execute(t, args...)
		if code != 0 {
			t.Errorf("rtgate %s --help: exit %d", command, code)
		}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("rtgate %s --help does not mention %q", command, w)
			}
		}
	}
}

func TestRunConfigError(t *testing.T) {
	cleanEnv(t)
	code, out, errOut := execute(t, "run", "--listen", "nope", "--log-format", "yaml")
	want := "rtgate: invalid configuration:\n" +
		"  http.listen: \"nope\": must be host:port, e.g. \"127.0.0.1:8080\" or \":8080\"\n" +
		"  log.format: \"yaml\": must be text or json\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr\n%s\nwant exit 1 and stderr\n%s", code, out, errOut, want)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, errOut = execute(t, "run", "--listen", busy.Addr().String())
	if code != 1 || !strings.Contains(errOut, "rtgate: listen http.listen "+busy.Addr().String()) {
		t.Errorf("run on a busy port: exit %d, stderr %q", code, errOut)
	}
}

func TestRunRemote(t *testing.T) {
	cleanEnv(t)
	t.Setenv("RTGATE_REALTIME_APP_SECRET", "s")
	s := start(t, "run", "--listen", "127.0.0.1:0", "--realtime-url", "http://127.0.0.1:9/v1", "--app-id", "a")
	healthz(t, "http://"+s.addr.String())
	if code := s.stop(t); code != 0 {
		t.Fatalf("run exited %d after cancel, want 0\nstderr:\n%s", code, s.errOut.String())
	}
	if strings.Contains(s.errOut.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", s.errOut.String())
	}
}

func TestRunEmbedded(t *testing.T) {
	cleanEnv(t)
	s := start(t, "run", "--listen", "127.0.0.1:0", "--log-level", "debug")
	healthz(t, "http://"+s.addr.String())
	if code := s.stop(t); code != 0 {
		t.Fatalf("run exited %d after cancel, want 0\nstderr:\n%s", code, s.errOut.String())
	}
	if !strings.Contains(s.errOut.String(), "level=DEBUG") {
		t.Errorf("--log-level debug logged nothing at debug:\n%s", s.errOut.String())
	}
}

var baseURLLine = regexp.MustCompile(`(?m)^  base URL:   (\S+)$`)

func TestSFU(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		appID      string
		secretLine string // a regexp
	}{
		{"flag secret", []string{"--app-id", "test", "--app-secret", "sekret"}, nil,
			"test", `from flag --app-secret`},
		{"secret file", []string{"--app-secret-file", secretFile}, nil,
			"rtgate", `from file ` + regexp.QuoteMeta(secretFile)},
		{"env secret", nil, map[string]string{"RTGATE_REALTIME_APP_SECRET": "sekret", "RTGATE_REALTIME_APP_ID": "envapp"},
			"envapp", `from environment RTGATE_REALTIME_APP_SECRET`},
		{"generated", nil, nil,
			"rtgate", `generated: [0-9a-f]{64} \(shown once; pass --app-secret to choose one\)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			s := start(t, append([]string{"sfu", "--listen", "127.0.0.1:0"}, tt.args...)...)
			want := regexp.MustCompile("^" + regexp.QuoteMeta("rtgate sfu: serving the Realtime API\n"+
				"  base URL:   http://"+s.addr.String()+"/v1/apps/"+tt.appID+"\n"+
				"  app id:     "+tt.appID+"\n") +
				"  app secret: " + tt.secretLine + "\n$")
			if out := s.out.String(); !want.MatchString(out) {
				t.Errorf("stdout:\n%s\nwant it to match\n%s", out, want)
			}
			if strings.Contains(s.out.String()+s.errOut.String(), "sekret") ||
				strings.Contains(s.out.String()+s.errOut.String(), "from-file") {
				t.Errorf("a configured secret was printed:\nstdout:\n%s\nstderr:\n%s", s.out.String(), s.errOut.String())
			}
			healthz(t, "http://"+s.addr.String())
			if code := s.stop(t); code != 0 {
				t.Fatalf("sfu exited %d after cancel, want 0\nstderr:\n%s", code, s.errOut.String())
			}
		})
	}
}

// subprocess is this test binary running as rtgate.
type subprocess struct {
	cmd   *exec.Cmd
	lines chan string // stdout and stderr lines
	out   syncBuffer
	done  chan error
}

func startSubprocess(t *testing.T, args ...string) *subprocess {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "RTGATE_TEST_MAIN=1")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start rtgate %s: %v", strings.Join(args, " "), err)
	}
	p := &subprocess{cmd: cmd, lines: make(chan string, 100), done: make(chan error, 1)}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer close(p.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintln(&p.out, sc.Text())
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-scanned
		p.done <- err
	}()
	t.Cleanup(func() {
		select {
		case err := <-p.done:
			p.done <- err
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitFor returns the first submatch of re in the output.
func (p *subprocess) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("rtgate exited without printing %s:\n%s", re, p.out.String())
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		case <-timeout:
			t.Fatalf("rtgate printed no %s within 20 s:\n%s", re, p.out.String())
		}
	}
}

// signal sends sig and waits for the process to exit 0.
func (p *subprocess) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("rtgate exited with %v after %v, want exit 0:\n%s", err, sig, p.out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("rtgate did not exit 20 s after %v:\n%s", sig, p.out.String())
	}
}

func TestRunSignal(t *testing.T) {
	cleanEnv(t)
	p := startSubprocess(t, "run", "--listen", "127.0.0.1:0")
	base := p.waitFor(t, regexp.MustCompile(`msg="rtgate running" http=(http://\S+)`))
	healthz(t, base)
	p.signal(t, syscall.SIGTERM)
	if !strings.Contains(p.out.String(), "shutting down") {
		t.Errorf("no shutdown logged:\n%s", p.out.String())
	}
}

func TestSFUSignal(t *testing.T) {
	cleanEnv(t)
	p := startSubprocess(t, "sfu", "--listen", "127.0.0.1:0", "--app-secret", "x")
	base := p.waitFor(t, regexp.MustCompile(baseURLLine.String()))
	healthz(t, strings.TrimSuffix(base, "/v1/apps/rtgate"))
	p.signal(t, os.Interrupt)
}

// TestPublish publishes the bundled demo audio file (5 s, no loop) into the
// embedded SFU: it prints the session and track once live and exits 0 when
// the file ends.
func TestPublish(t *testing.T) {
	cleanEnv(t)
	if testing.Short() {
		t.Skip("plays a 5 s file")
	}
	t.Setenv("RTGATE_WEBRTC_LISTEN_IP", "127.0.0.1")
	t.Setenv("RTGATE_SFU_LISTEN_IP", "127.0.0.1")
	start := time.Now()
	code, out, errOut := execute(t, "publish", "../../deploy/demo/demo.ogg", "--name", "pubtest", "--listen", "127.0.0.1:0")
	if code != 0 {
		t.Fatalf("publish exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^live: stream pubtest, session [0-9a-f]{32}, tracks pubtest-audio$`).MatchString(out) {
		t.Errorf("stdout does not announce the live stream:\n%s", out)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("publish of a 5 s file ended after %v: it did not play the file in real time", d)
	}

	code, _, errOut = execute(t, "publish", "rtp://0.0.0.0:5004?codec=vp7")
	want := `streams[0].sources[0]: "rtp://0.0.0.0:5004?codec=vp7": unknown codec "vp7"`
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("publish with a bad source: exit %d, stderr %q, want 1 and %q", code, errOut, want)
	}
}
