package notify_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rtgate/rtgate/gateway/notify"
)

// listen is systemd's end: a unixgram socket at NOTIFY_SOCKET whose
// datagrams arrive on the returned channel with their arrival times.
type datagram struct {
	msg string
	at  time.Time
}

func listen(t *testing.T) <-chan datagram {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan datagram, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ch <- datagram{string(buf[:n]), time.Now()}
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return ch
}

func next(t *testing.T, ch <-chan datagram) datagram {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10 s")
		return datagram{}
	}
}

// TestLifecycle checks the messages of start, reload, status and stop, in
// order, and the MONOTONIC_USEC of the reload.
func TestLifecycle(t *testing.T) {
	ch := listen(t)
	if !notify.Enabled() {
		t.Fatal("Enabled() false with NOTIFY_SOCKET set")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(notify.Ready())
	if d := next(t, ch); d.msg != "READY=1" {
		t.Errorf("Ready sent %q", d.msg)
	}

	var before unix.Timespec
	must(unix.ClockGettime(unix.CLOCK_MONOTONIC, &before))
	must(notify.Reloading())
	var after unix.Timespec
	must(unix.ClockGettime(unix.CLOCK_MONOTONIC, &after))
	d := next(t, ch)
	lines := strings.Split(d.msg, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading sent %q; want RELOADING=1 and MONOTONIC_USEC", d.msg)
	}
	us, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || us < before.Nano()/1000 || us > after.Nano()/1000 {
		t.Errorf("MONOTONIC_USEC=%d (%v), want CLOCK_MONOTONIC between %d and %d", us, err, before.Nano()/1000, after.Nano()/1000)
	}
	must(notify.Ready())
	if d := next(t, ch); d.msg != "READY=1" {
		t.Errorf("Ready after reload sent %q", d.msg)
	}

	must(notify.Status("2 streams live\nINJECTED=1"))
	if d := next(t, ch); d.msg != "STATUS=2 streams live INJECTED=1" {
		t.Errorf("Status sent %q", d.msg)
	}
	must(notify.Stopping())
	if d := next(t, ch); d.msg != "STOPPING=1" {
		t.Errorf("Stopping sent %q", d.msg)
	}
}

// TestWatchdog checks pings at about half of WATCHDOG_USEC while healthy,
// none while unhealthy, and that the loop ends with its context.
func TestWatchdog(t *testing.T) {
	ch := listen(t)
	t.Setenv("WATCHDOG_USEC", "400000") // 400 ms: pings every 200 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if d, err := notify.WatchdogInterval(); err != nil || d != 400*time.Millisecond {
		t.Fatalf("WatchdogInterval = %v, %v", d, err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- notify.Watchdog(ctx, healthy.Load) }()

	var gaps []time.Duration
	prev := next(t, ch)
	for range 6 {
		d := next(t, ch)
		if d.msg != "WATCHDOG=1" {
			t.Fatalf("watchdog sent %q", d.msg)
		}
		gaps = append(gaps, d.at.Sub(prev.at))
		prev = d
	}
	slices.Sort(gaps)
	// The median gap is half the timeout; the machine is shared, so allow
	// for late ticks but not for pinging at the full timeout or too fast.
	if med := gaps[len(gaps)/2]; med < 150*time.Millisecond || med > 300*time.Millisecond {
		t.Errorf("median gap between pings %v (all %v), want ~200 ms", med, gaps)
	}

	healthy.Store(false)
	// A tick may have read healthy just before the Store: let one period
	// pass and drop what came, then expect silence for two timeouts.
	time.Sleep(250 * time.Millisecond)
	for len(ch) > 0 {
		<-ch
	}
	select {
	case d := <-ch:
		t.Fatalf("sent %q while unhealthy", d.msg)
	case <-time.After(800 * time.Millisecond):
	}

	healthy.Store(true)
	if d := next(t, ch); d.msg != "WATCHDOG=1" {
		t.Errorf("after recovering, sent %q", d.msg)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watchdog = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog did not return after cancel")
	}
}

// TestWithoutSystemd checks that every call is a no-op without
// NOTIFY_SOCKET and that Watchdog returns at once without WATCHDOG_USEC, or
// when the watchdog is another process's.
func TestWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	for _, f := range []func() error{notify.Ready, notify.Reloading, notify.Stopping, func() error { return notify.Status("x") }} {
		if err := f(); err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v", err)
		}
	}
	if notify.Enabled() {
		t.Error("Enabled() without NOTIFY_SOCKET")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := notify.Watchdog(ctx, nil); err != nil || time.Since(start) > time.Second {
		t.Errorf("Watchdog without WATCHDOG_USEC = %v after %v; want nil at once", err, time.Since(start))
	}
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if err := notify.Watchdog(ctx, nil); err != nil || time.Since(start) > time.Second {
		t.Errorf("Watchdog of another pid = %v; want nil at once", err)
	}
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "soon")
	if err := notify.Watchdog(ctx, nil); err == nil {
		t.Error("Watchdog with WATCHDOG_USEC=soon: no error")
	}
	// A socket nobody listens on: the error says what failed.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	if err := notify.Ready(); err == nil || !strings.Contains(err.Error(), "READY=1") {
		t.Errorf("Ready to a missing socket = %v; want an error naming READY=1", err)
	}
}
