// Package notify tells systemd where the daemon is in its life through the
// sd_notify protocol: ready, reloading, stopping, a status line, and
// watchdog pings while the daemon is healthy. Without NOTIFY_SOCKET (not
// started by systemd with Type=notify) every call does nothing.
//
// The unit is expected to be Type=notify (deploy/rtgate.service), which
// works from systemd 219 on: the daemon reloads on SIGHUP (ExecReload=
// kill -HUP $MAINPID) and calls Reloading before and Ready after. With
// systemd 253 or later the unit may be Type=notify-reload instead, and
// systemd sends the SIGHUP itself; it then requires the MONOTONIC_USEC
// field that Reloading sends, to match the reload to its request.
package notify

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready says the daemon has started (or finished a reload): READY=1.
func Ready() error { return send(daemon.SdNotifyReady) }

// Reloading says a configuration reload has begun: RELOADING=1 with
// MONOTONIC_USEC, the CLOCK_MONOTONIC time in microseconds, as
// Type=notify-reload wants. Call Ready when the reload is done, whether it
// was applied or rejected: the daemon runs on either way.
func Reloading() error {
	msg := daemon.SdNotifyReloading
	if us := monotonicUsec(); us > 0 {
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d", us)
	}
	return send(msg)
}

// Stopping says the daemon is shutting down: STOPPING=1.
func Stopping() error { return send(daemon.SdNotifyStopping) }

// Status sets the one-line status `systemctl status` shows: STATUS=text.
// Line breaks become spaces (a newline would start another assignment).
func Status(text string) error {
	return send("STATUS=" + strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(text))
}

// Enabled reports whether the daemon runs under a service manager that
// listens (NOTIFY_SOCKET is set).
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// WatchdogInterval is the service's watchdog timeout (WATCHDOG_USEC) if
// systemd watches this process, 0 otherwise.
func WatchdogInterval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("notify: watchdog settings: %w", err)
	}
	return d, nil
}

// Watchdog pings systemd's watchdog (WATCHDOG=1) every half of
// WATCHDOG_USEC while healthy returns true, until ctx is done; a nil
// healthy is always healthy. While healthy returns false no ping is sent,
// so systemd restarts a daemon that stays unhealthy for WatchdogSec.
// Without a watchdog it returns nil at once; otherwise it returns nil when
// ctx is done. A ping that cannot be sent is retried at the next tick.
func Watchdog(ctx context.Context, healthy func() bool) error {
	d, err := WatchdogInterval()
	if err != nil || d <= 0 {
		return err
	}
	tick := time.NewTicker(d / 2)
	defer tick.Stop()
	for {
		if healthy == nil || healthy() {
			_ = send(daemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func send(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("notify: send %q: %w", strings.SplitN(state, "\n", 2)[0], err)
	}
	return nil
}
