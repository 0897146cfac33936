package gateway

import (
	"time"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// SFUServer is the embedded SFU on its own HTTP server (`rtgate sfu`): the
// Realtime API on sfu.listen and GET /healthz, nothing else of the daemon.
type SFUServer struct {
	log    *slog.Logger
	ln     net.Listener
	srv    *http.Server
	sfu    *sfu.SFU
	appID  string
	secret config.Secret

	ran       atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// NewSFUServer validates cfg, starts the embedded SFU (app id
// realtime.app_id, default "rtgate"; secret realtime.app_secret or
// realtime.app_secret_file, or one generated now) and listens on
// sfu.listen. A nil logger means slog.Default().
func NewSFUServer(cfg *config.Config, logger *slog.Logger) (*SFUServer, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	secret, err := cfg.EmbeddedSecret()
	if err != nil {
		return nil, fmt.Errorf("embedded SFU secret: %w", err)
	}

	s := &SFUServer{log: logger, appID: cfg.AppID(), secret: secret}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close() // release what was opened before the failure
		}
	}()
	s.ln, err = net.Listen("tcp", cfg.SFU.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen sfu.listen %s: %w", cfg.SFU.Listen, err)
	}
	s.sfu, err = sfu.New(cfg.SFUOptions(secret.Value, logger.With("component", "sfu")))
	if err != nil {
		return nil, fmt.Errorf("start embedded SFU: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mountSFU(mux, s.sfu)
	s.srv = newHTTPServer(mux, logger)
	ok = true
	return s, nil
}

// Addr is the address the HTTP server listens on.
func (s *SFUServer) Addr() net.Addr { return s.ln.Addr() }

// BaseURL is the URL apps use as their Realtime API base,
// http://HOST:PORT/v1/apps/{appId} (127.0.0.1 when listening on every
// interface).
func (s *SFUServer) BaseURL() string {
	return httpURL(s.ln.Addr()) + "/v1/apps/" + url.PathEscape(s.appID)
}

// AppID is the app id the SFU serves.
func (s *SFUServer) AppID() string { return s.appID }

// Secret is the bearer token the SFU requires, with where it came from.
func (s *SFUServer) Secret() config.Secret { return s.secret }

// Run serves until ctx is done, then shuts HTTP down gracefully (at most
// ShutdownTimeout) and closes the SFU. It returns nil after a shutdown that
// ctx asked for. It may be called once.
func (s *SFUServer) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("gateway: SFUServer.Run called twice")
	}
	s.log.Info("embedded SFU serving", "base_url", s.BaseURL(), "app_id", s.appID, "app_secret", s.secret)
	err := serveHTTP(ctx, s.srv, s.ln, s.log, func() time.Duration { return ShutdownTimeout })
	return errors.Join(err, s.Close())
}

// Close releases the listener and the SFU (ending its sessions). Run calls
// it; it is safe to call more than once.
func (s *SFUServer) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = errors.Join(closeServing(s.ln, s.sfu)...)
	})
	return s.closeErr
}
