package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/rtgate/rtgate/gateway/sfu"
	"github.com/rtgate/rtgate/gateway/web"
)

// routes is the daemon's HTTP mux, the one place its endpoints are
// registered:
//
//	GET /healthz            200 "ok" while the process serves
//	GET /readyz             200 when configured, the SFU answers and no pipeline failed
//	GET /metrics            Prometheus metrics (rtgate_*, go_*, process_*)
//	GET /api/streams        every stream's state and counters (JSON)
//	GET /api/recordings     every recording's state, pull and files (JSON)
//	GET /api/forwards       every forward's state, pull and counters (JSON)
//	POST /api/{streams,recordings,forwards}           add one (control API,
//	DELETE /api/{streams,recordings,forwards}/{name}  api.token; see docs/openapi.yaml)
//	/v1/apps/{appId}/...    the embedded SFU's Realtime API (embedded only)
//	/apps/{appId}/...       the same, without the version prefix
//	GET /, /watch/{stream}, /publish/{stream}, /static/...
//	                        the built-in pages (gateway/web)
//	/whip/{stream}[/{id}]   WHIP ingest (POST, PATCH, DELETE, OPTIONS)
//	/whep/{stream}[/{id}]   WHEP playback (same methods)
func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /readyz", d.handleReadyz)
	mux.Handle("GET /metrics", d.metrics.Handler())
	d.controlRoutes(mux)
	mux.HandleFunc("GET /api/streams", d.handleStreams)
	mux.HandleFunc("GET /api/recordings", d.handleOutputs(KindRecording, "recordings"))
	mux.HandleFunc("GET /api/forwards", d.handleOutputs(KindForward, "forwards"))
	web.Register(mux)
	if d.wish != nil {
		d.wish.Register(mux)
	}
	if d.sfu != nil {
		mountSFU(mux, d.sfu)
	}
	return mux
}

// mountSFU serves the embedded SFU's API under both of its prefixes.
func mountSFU(mux *http.ServeMux, s *sfu.SFU) {
	h := s.Handler()
	mux.Handle("/v1/apps/", h)
	mux.Handle("/apps/", h)
}

func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok")
}

// newHTTPServer makes the server of the daemon and of `rtgate sfu`.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn),
	}
}

// serveHTTP serves srv on ln until ctx is done or serving fails, then shuts
// srv down: gracefully for at most drain() (asked when the shutdown
// begins), then by closing the
// connections still open. It returns once Serve has returned; the error is
// nil when ctx ended it.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, drain func() time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "reason", context.Cause(ctx))
	timeout := drain()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful http shutdown incomplete: closing the remaining connections",
			"timeout", timeout, "err", err)
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	}
	return nil
}

// httpURL is the http:// URL of a listening address that a client on this
// machine dials: an unspecified host (0.0.0.0, ::) becomes 127.0.0.1.
func httpURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
