// Package gateway is the rtgate daemon: it owns the HTTP server (health,
// API, and the embedded SFU when realtime.url is "embedded"), rtgate's own
// pion API (one UDP port for every PeerConnection it makes) and the
// Realtime API client the pipelines publish and pull through, and it shuts
// them down in order.
//
// The daemon's routes are all registered in routes (http.go), so that
// stream APIs, metrics and WHIP/WHEP handlers are added in one place.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/metrics"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/sfu"
	"github.com/rtgate/rtgate/gateway/supervise"
	"github.com/rtgate/rtgate/gateway/wish"
)

// Version and Commit say what was built (rtgate_build_info); the command
// sets them from its link-time values before New.
var (
	Version = "dev"
	Commit  = "dev"
)

// ShutdownTimeout bounds the graceful HTTP shutdown: requests still running
// after it are cut off.
const ShutdownTimeout = 10 * time.Second

// realtimeTimeout bounds one Realtime API HTTP request of the daemon's
// client; calls carry their own deadlines through their contexts too.
const realtimeTimeout = 30 * time.Second

// Daemon is a configured rtgate daemon. New opens its sockets; Run serves
// until its context ends and then releases everything. A Daemon whose Run
// is never called must be closed with Close.
type Daemon struct {
	cfg *config.Config
	log *slog.Logger

	ln  net.Listener
	srv *http.Server
	sfu *sfu.SFU // nil unless realtime.url is "embedded"

	peer        *peer.API
	rt          *realtime.Client
	rtHTTP      *http.Client // rt's; its idle connections are closed on Close
	realtimeURL string       // rt's base URL

	registry *registry     // every stream: configured ones and WHIP-created ones
	wish     *wish.Handler // WHIP and WHEP
	outputs  *outputs      // recordings and forwards
	metrics  *metrics.Metrics
	ready    readiness
	// group supervises every stream, recording and forward; reload and
	// the control API add and remove them by kind and name.
	group *supervise.Group
	// mu serializes reloads and control API changes; cfg is the
	// configuration in effect (the file's, plus runtime changes).
	mu      sync.Mutex
	runtime map[[2]string]bool // kind, name of pipelines the control API added

	ran       atomic.Bool
	running   atomic.Bool   // pipelines started: reload and the API apply changes
	stopping  atomic.Bool   // shutdown began
	started   chan struct{} // closed once Run serves and the pipelines run
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg and builds a daemon: it listens on http.listen, starts
// the embedded SFU when realtime.url is "embedded" (app id realtime.app_id,
// default "rtgate"; the configured secret or, without one, a secret
// generated for this run), opens rtgate's WebRTC UDP port and makes the
// Realtime client: over loopback HTTP to the embedded SFU, or to the
// configured URL. A nil logger means slog.Default().
func New(cfg *config.Config, logger *slog.Logger) (*Daemon, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	secret, err := daemonSecret(cfg)
	if err != nil {
		return nil, err
	}

	d := &Daemon{cfg: cfg, log: logger, group: supervise.NewGroup(), runtime: map[[2]string]bool{},
		started: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = d.Close() // release what was opened before the failure
		}
	}()

	d.ln, err = net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen http.listen %s: %w", cfg.HTTP.Listen, err)
	}
	if cfg.IsEmbedded() {
		d.sfu, err = sfu.New(cfg.SFUOptions(secret.Value, logger.With("component", "sfu")))
		if err != nil {
			return nil, fmt.Errorf("start embedded SFU: %w", err)
		}
		d.realtimeURL = httpURL(d.ln.Addr()) + "/v1"
	} else {
		d.realtimeURL = strings.TrimRight(cfg.Realtime.URL, "/")
	}

	d.peer, err = peer.New(cfg.PeerOptions(logger.With("component", "webrtc")))
	if err != nil {
		return nil, fmt.Errorf("open WebRTC UDP port (webrtc.udp_port %d): %w", cfg.WebRTC.UDPPort, err)
	}

	d.metrics = metrics.New(metrics.Options{
		Streams: d.Streams, Pipelines: d.group.Statuses, Pulls: d.pullMetrics, Recordings: d.recordingMetrics,
		Sessions: d.sessionCounts, Version: Version, Commit: Commit,
	})
	transport := http.DefaultTransport.(*http.Transport).Clone()
	d.rtHTTP = &http.Client{Transport: idleCloser{d.metrics.RealtimeTransport(transport), transport}, Timeout: realtimeTimeout}
	d.rt, err = realtime.New(realtime.Options{
		BaseURL:    d.realtimeURL,
		AppID:      cfg.AppID(),
		AppSecret:  secret.Value,
		HTTPClient: d.rtHTTP,
		Logger:     logger.With("component", "realtime"),
	})
	if err != nil {
		return nil, fmt.Errorf("realtime client for %s: %w", d.realtimeURL, err)
	}

	if err := d.openStreams(); err != nil {
		return nil, err
	}
	if err := d.openWISH(); err != nil {
		return nil, err
	}
	if err := d.openOutputs(); err != nil {
		return nil, err
	}

	d.srv = newHTTPServer(d.routes(), logger)
	ok = true
	return d, nil
}

// daemonSecret is the app secret of the daemon's Realtime client and, when
// embedded, of its SFU.
func daemonSecret(cfg *config.Config) (config.Secret, error) {
	if cfg.IsEmbedded() {
		s, err := cfg.EmbeddedSecret()
		if err != nil {
			return s, fmt.Errorf("embedded SFU secret: %w", err)
		}
		return s, nil
	}
	s, err := cfg.ResolveSecret()
	if err != nil {
		return s, fmt.Errorf("realtime app secret: %w", err)
	}
	return s, nil
}

// Addr is the address the HTTP server listens on (with the port the OS
// chose for http.listen port 0).
func (d *Daemon) Addr() net.Addr { return d.ln.Addr() }

// Realtime is the client of the SFU rtgate publishes to and pulls from.
func (d *Daemon) Realtime() *realtime.Client { return d.rt }

// Run serves HTTP until ctx is done, then shuts the server down gracefully
// (at most ShutdownTimeout) and closes the SFU and the WebRTC port. It
// returns nil after a shutdown that ctx asked for, and the error otherwise.
// It may be called once.
func (d *Daemon) Run(ctx context.Context) error {
	if !d.ran.CompareAndSwap(false, true) {
		return errors.New("gateway: Daemon.Run called twice")
	}
	mode := "remote"
	if d.sfu != nil {
		mode = "embedded"
	}
	d.log.Info("rtgate running",
		"http", httpURL(d.ln.Addr()),
		"realtime", d.realtimeURL, "sfu", mode, "app_id", d.cfg.AppID(),
		"webrtc_udp", addrList(d.peer.Addrs()))

	// The streams reach the embedded SFU through this HTTP server: they stop
	// (closing their tracks on the SFU) before it shuts down.
	httpCtx, stopHTTP := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopHTTP(nil)
	served := make(chan error, 1)
	var deadline time.Time // of the shutdown, once it begins
	go func() {
		served <- serveHTTP(httpCtx, d.srv, d.ln, d.log, func() time.Duration {
			// What shutdown_timeout leaves, at least 1 s and at most ShutdownTimeout.
			return min(max(time.Until(deadline), time.Second), ShutdownTimeout)
		})
	}()

	d.startStreams()
	d.startOutputs()
	d.running.Store(true)
	close(d.started)

	var err error
	httpRunning := true
	select {
	case <-ctx.Done():
	case err = <-served: // serving failed: stop everything
		httpRunning = false
	}
	d.stopping.Store(true)
	d.mu.Lock() // no reload or API change from here on
	deadline = time.Now().Add(d.cfg.ShutdownTimeout)
	d.mu.Unlock()
	// Streams, recordings and forwards close their tracks on the SFU, and
	// WHIP publishers and WHEP viewers too, while the HTTP server (the
	// embedded SFU's API) still serves; then recordings are finalized.
	pipesDone := make(chan struct{})
	go func() {
		defer close(pipesDone)
		d.group.Stop()
		if err := d.outputs.closeSinks(); err != nil {
			d.log.Error("closing recordings and forwards", "err", err)
		}
	}()
	wishDone := make(chan struct{})
	go func() {
		defer close(wishDone)
		d.wish.Close()
	}()
	for what, done := range map[string]chan struct{}{"pipelines": pipesDone, "WHIP/WHEP sessions": wishDone} {
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			d.log.Warn(what+" did not stop within shutdown_timeout", "timeout", d.cfg.ShutdownTimeout)
		}
	}
	if httpRunning {
		stopHTTP(context.Cause(ctx))
		err = <-served
	}
	return errors.Join(err, d.Close())
}

// Started is closed once Run serves HTTP and has started the pipelines.
func (d *Daemon) Started() <-chan struct{} { return d.started }

// Healthy reports whether the daemon runs and is not shutting down (the
// systemd watchdog is fed while it is).
func (d *Daemon) Healthy() bool { return d.running.Load() && !d.stopping.Load() }

// ReloadFailed reports a reload that failed before Reload: the new
// configuration did not load. It is logged and counted; nothing changes.
func (d *Daemon) ReloadFailed(err error) {
	d.log.Error("configuration reload refused: the running configuration stays", "err", err)
	d.metrics.ConfigReloaded(err)
}

// Close releases everything New opened: the HTTP listener, the embedded SFU
// (ending its sessions), the WebRTC UDP port and the Realtime client's idle
// connections. Run calls it; it is safe to call more than once.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		if d.wish != nil {
			d.wish.Close() // before the SFU and the UDP port go
		}
		// Without Run the outputs never started; closing finalizes nothing
		// then, but releases their sockets and writer goroutines.
		d.group.Stop()
		var outErr error
		if d.outputs != nil {
			outErr = d.outputs.closeSinks()
		}
		errs := closeServing(d.ln, d.sfu)
		if outErr != nil {
			errs = append(errs, outErr)
		}
		if err := d.closeStreams(); err != nil {
			errs = append(errs, err)
		}
		if d.peer != nil {
			if err := d.peer.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close WebRTC UDP port: %w", err))
			}
		}
		if d.rtHTTP != nil {
			d.rtHTTP.CloseIdleConnections()
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// idleCloser is the metrics-counting RoundTripper of the Realtime client
// with the CloseIdleConnections of the transport under it: http.Client
// reaches idle connections only through its Transport, and without this
// Close would leave the keep-alive connections to the SFU (two goroutines
// and a socket each) open after the daemon stopped.
type idleCloser struct {
	http.RoundTripper
	idle *http.Transport
}

func (t idleCloser) CloseIdleConnections() { t.idle.CloseIdleConnections() }

func addrList(addrs []net.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// closeServing closes an HTTP listener and, if there is one, the embedded
// SFU behind it; the daemon and `rtgate sfu` both end this way.
func closeServing(ln net.Listener, f *sfu.SFU) []error {
	var errs []error
	if ln != nil {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close http listener: %w", err))
		}
	}
	if f != nil {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close embedded SFU: %w", err))
		}
	}
	return errs
}
