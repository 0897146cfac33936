package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rtgate/rtgate/config"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// loopbackConfig keeps every socket of the daemon on loopback.
func loopbackConfig() *config.Config {
	c := config.Default()
	c.HTTP.Listen = "127.0.0.1:0"
	c.SFU.Listen = "127.0.0.1:0"
	c.WebRTC.ListenIP = "127.0.0.1"
	c.SFU.ListenIP = "127.0.0.1"
	return c
}

func remoteConfig() *config.Config {
	c := loopbackConfig()
	c.Realtime = config.Realtime{URL: "http://127.0.0.1:9/v1/", AppID: "app", AppSecret: "secret"}
	return c
}

// runInBackground runs r until the test ends and returns a func that stops
// it and returns Run's error.
func runInBackground(t *testing.T, run func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var (
		stopped bool
		err     error
	)
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case err = <-done:
			case <-time.After(ShutdownTimeout + 5*time.Second):
				t.Fatal("Run did not return after its context was cancelled")
			}
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func getHealthz(t *testing.T, addr net.Addr) {
	t.Helper()
	resp, err := http.Get(httpURL(addr) + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
}

func TestDaemonRemote(t *testing.T) {
	d, err := New(remoteConfig(), testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if d.Realtime() == nil {
		t.Fatal("Realtime() = nil")
	}
	if d.sfu != nil {
		t.Error("remote realtime.url started the embedded SFU")
	}
	if d.realtimeURL != "http://127.0.0.1:9/v1" {
		t.Errorf("realtime base URL = %q", d.realtimeURL)
	}
	stop := runInBackground(t, d.Run)
	getHealthz(t, d.Addr())

	// Nothing of the SFU is mounted when it is not embedded.
	resp, err := http.Get(httpURL(d.Addr()) + "/v1/apps/app/sessions/new")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/apps/... = %d, want 404 without the embedded SFU", resp.StatusCode)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if _, err := net.DialTimeout("tcp", d.Addr().String(), time.Second); err == nil {
		t.Error("HTTP port still accepts connections after Run returned")
	}
	if err := d.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestDaemonEmbedded needs the embedded SFU (gateway/sfu) to start.
func TestDaemonEmbedded(t *testing.T) {
	d, err := New(loopbackConfig(), testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if d.sfu == nil {
		t.Fatal("embedded realtime.url did not start the SFU")
	}
	if want := httpURL(d.Addr()) + "/v1"; d.realtimeURL != want {
		t.Errorf("realtime base URL = %q, want %q", d.realtimeURL, want)
	}
	stop := runInBackground(t, d.Run)
	getHealthz(t, d.Addr())
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
}

func TestDaemonCloseWithoutRun(t *testing.T) {
	d, err := New(remoteConfig(), testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr := d.Addr().String()
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("HTTP port not released by Close: %v", err)
	}
	ln.Close()
}

func TestDaemonErrors(t *testing.T) {
	bad := remoteConfig()
	bad.Realtime.URL = "ftp://x"
	if _, err := New(bad, nil); err == nil || !strings.Contains(err.Error(), `realtime.url: "ftp://x"`) {
		t.Errorf("New(invalid) = %v, want the validation error", err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	c := remoteConfig()
	c.HTTP.Listen = busy.Addr().String()
	_, err = New(c, testLogger(t))
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.Contains(err.Error(), "listen http.listen") {
		t.Errorf("New(busy port) = %v, want a listen error", err)
	}
}

func TestHTTPURL(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}, "http://127.0.0.1:80"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}, "http://127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 8080}, "http://[::1]:8080"},
		{&net.TCPAddr{Port: 8080}, "http://127.0.0.1:8080"},
	}
	for _, tt := range tests {
		if got := httpURL(tt.addr); got != tt.want {
			t.Errorf("httpURL(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestSFUServer needs the embedded SFU (gateway/sfu) to start.
func TestSFUServer(t *testing.T) {
	c := loopbackConfig()
	c.Realtime.AppID = "sfu-test"
	s, err := NewSFUServer(c, testLogger(t))
	if err != nil {
		t.Fatalf("NewSFUServer: %v", err)
	}
	if !s.Secret().Generated() || s.AppID() != "sfu-test" {
		t.Errorf("secret %v, app id %q: want a generated secret and app id \"sfu-test\"", s.Secret(), s.AppID())
	}
	if want := httpURL(s.Addr()) + "/v1/apps/sfu-test"; s.BaseURL() != want {
		t.Errorf("BaseURL = %q, want %q", s.BaseURL(), want)
	}
	stop := runInBackground(t, s.Run)
	getHealthz(t, s.Addr())
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
}
