package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/config/logswitch"
	"github.com/rtgate/rtgate/gateway"
	"github.com/rtgate/rtgate/gateway/notify"
)

const runLong = `Run the rtgate daemon until SIGINT or SIGTERM.

It publishes every configured stream (streams:) into the SFU, runs the
configured recordings and forwards, and serves WHIP and WHEP. Every pipeline
runs under a supervisor that restarts it with backoff. HTTP on http.listen:
  GET /healthz, /readyz  alive; ready (SFU reachable, no pipeline failed)
  GET /metrics           Prometheus metrics
  GET /api/streams, /api/recordings, /api/forwards   state and counters
  POST /api/{streams,recordings,forwards}, DELETE .../{name}
                         change pipelines at runtime (api.token)
  /whip/{stream}, /whep/{stream}   WHIP ingest and WHEP playback
  GET /, /watch/{stream}, /publish/{stream}   the built-in pages
  /v1/apps/{appId}/...   the embedded SFU's Realtime API, when realtime.url
                         is "embedded" (the default)

With realtime.url "embedded", the SFU's app id is realtime.app_id ("rtgate"
when empty) and its secret realtime.app_secret or realtime.app_secret_file,
or one generated for this run when neither is set.

SIGHUP, or a change of the -c file, reloads the configuration: only the
streams, recordings and forwards that changed are restarted, and log.*
(level, levels, format) applies to running pipelines' logs; a file that
does not load, or that changes http.*, realtime.*, webrtc.* or sfu.*, is
refused and the running configuration stays. Under systemd (NOTIFY_SOCKET)
it sends READY, RELOADING, STOPPING and WATCHDOG notifications.

On SIGINT or SIGTERM it stops accepting work, closes its tracks on the SFU,
finalizes every recording (at most shutdown_timeout) and exits 0. A second
signal exits at once.`

func newRunCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run [-c FILE]",
		Short: "Run the rtgate daemon",
		Long:  runLong,
		Example: `  rtgate run -c /etc/rtgate/rtgate.yaml
  rtgate run --listen 0.0.0.0:8080 --log-level debug
  RTGATE_REALTIME_URL=https://rtc.live.cloudflare.com/v1 RTGATE_REALTIME_APP_ID=... \
    RTGATE_REALTIME_APP_SECRET_FILE=/etc/rtgate/secret rtgate run`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			logger, sw := newSwitchedLogger(cmd, cfg, a.stderr)
			gateway.Version, gateway.Commit = version, commit
			d, err := gateway.New(cfg, logger)
			if err != nil {
				return err
			}
			if a.listening != nil {
				a.listening(d.Addr())
			}
			return serve(cmd, d, logger, sw)
		},
	}
	addRealtimeFlags(cmd)
	addListenFlag(cmd)
	return cmd
}

// serve runs the daemon: it tells systemd when it is ready, feeds the
// watchdog while healthy, reloads on SIGHUP and when the config file
// changes, and says STOPPING when the command's context ends.
func serve(cmd *cobra.Command, d *gateway.Daemon, logger *slog.Logger, logs *logswitch.Switch) error {
	ctx := cmd.Context()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	path, _ := cmd.Flags().GetString("config")
	changed := watchFile(ctx, path, logger)

	notifyErr := func(what string, err error) {
		if err != nil {
			logger.Warn("systemd notification failed", "state", what, "err", err)
		}
	}
	reload := func(why string) {
		logger.Info("reloading the configuration", "why", why)
		notifyErr("RELOADING", notify.Reloading())
		defer func() { notifyErr("READY", notify.Ready()) }()
		cfg, err := config.Check(path, cmd.Flags())
		if err != nil {
			d.ReloadFailed(err)
			return
		}
		res, err := d.Reload(cfg)
		if err != nil && errors.Is(err, gateway.ErrReloadRefused) {
			return
		}
		// log.* in place: the loggers running pipelines hold follow the
		// Switch from their next line.
		logs.Set(cfg.Log.SwitchConfig())
		if slices.ContainsFunc(res.Applied, func(k string) bool { return strings.HasPrefix(k, "log.") }) {
			logger.Info("log settings applied", "level", cfg.Log.Level, "levels", cfg.Log.Levels, "format", cfg.Log.Format)
		}
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		notifyErr("STOPPING", notify.Stopping())
		return <-done
	case <-d.Started():
	}
	notifyErr("READY", notify.Ready())
	go func() { _ = notify.Watchdog(ctx, d.Healthy) }()
	return waitServing(ctx, done, hup, changed, reload, notifyErr)
}

// waitServing handles reloads until the daemon stops.
func waitServing(ctx context.Context, done <-chan error, hup <-chan os.Signal, changed <-chan struct{},
	reload func(string), notifyErr func(string, error)) error {
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			reload("SIGHUP")
		case <-changed:
			reload("config file changed")
		case <-ctx.Done():
			notifyErr("STOPPING", notify.Stopping())
			return <-done
		}
	}
}

// watchFile reports changes of the config file at path (nothing when path
// is empty or cannot be watched): it watches the file's directory, so an
// editor that replaces the file (rename) or a ConfigMap update (symlink
// swap) is seen too, and coalesces a burst of events into one.
func watchFile(ctx context.Context, path string, logger *slog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	if path == "" {
		return out
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		logger.Warn("cannot watch the config file; reload with SIGHUP", "file", path, "err", err)
		return out
	}
	abs, _ := filepath.Abs(path)
	if err := w.Add(filepath.Dir(abs)); err != nil {
		logger.Warn("cannot watch the config file; reload with SIGHUP", "file", path, "err", err)
		_ = w.Close()
		return out
	}
	go func() {
		defer w.Close()
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
					fire = time.After(300 * time.Millisecond)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logger.Warn("watching the config file", "err", err)
			case <-fire:
				fire = nil
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// addListenFlag adds --listen, the daemon's HTTP address (http.listen).
func addListenFlag(cmd *cobra.Command) {
	cmd.Flags().String("listen", config.Default().HTTP.Listen, "HTTP listen address, host:port (http.listen)")
	config.BindFlag(cmd.Flags(), "listen", "http.listen")
}
