package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtgate/rtgate/gateway/supervise"
)

var quiet = slog.New(slog.DiscardHandler)

// fakeClock fires every timer at once and moves its time forward by the
// timer's duration, recording each duration: backoff is checked exactly,
// without waiting for it. A pipeline can move it forward too (a long run).
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) NewTimer(d time.Duration) supervise.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return firedTimer(ch)
}

func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

type firedTimer chan time.Time

func (t firedTimer) C() <-chan time.Time { return t }
func (t firedTimer) Stop() bool          { return false }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBackoff checks the restart waits against the rule: after the n-th
// consecutive failure the wait is uniform in [0, min(Max, Min*2^n)], and a
// run that lasted ResetAfter starts n over. Every 6th run is a long one, so
// the waits sample n = 0..5 many times each: the bounds prove the cap, the
// maxima near each ceiling prove the growth, the means near half the
// ceiling prove the jitter is full, and n = 0 after each long run proves the
// reset.
func TestBackoff(t *testing.T) {
	const (
		minB, maxB = 100 * time.Millisecond, 1600 * time.Millisecond
		resetAfter = 10 * time.Second
		failures   = 3000
	)
	clk := newFakeClock()
	var runs atomic.Int64
	blocked := make(chan struct{})
	p := supervise.PipelineFunc(func(ctx context.Context) error {
		k := runs.Add(1) - 1
		if k == failures {
			close(blocked)
			<-ctx.Done()
			return ctx.Err()
		}
		if k%6 == 5 {
			clk.Advance(resetAfter) // a good run that failed late
		}
		return fmt.Errorf("run %d: %w", k, io.ErrUnexpectedEOF)
	})
	s := supervise.New(p, supervise.Options{Name: "b", Kind: "test", MinBackoff: minB, MaxBackoff: maxB,
		ResetAfter: resetAfter, Logger: quiet, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the supervisor did not restart the pipeline 3000 times")
	}
	waits := clk.Waits()
	st := s.Status()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if len(waits) != failures {
		t.Fatalf("%d waits, want one per failure (%d)", len(waits), failures)
	}
	if st.Retries != failures || !strings.Contains(st.LastError, "unexpected EOF") {
		t.Errorf("status before cancel: retries %d lastError %q; want %d and the last error", st.Retries, st.LastError, failures)
	}
	if got := s.Status().State; got != supervise.StateStopped {
		t.Errorf("state after cancel = %s, want stopped", got)
	}

	type agg struct {
		n        int
		sum, top float64 // of wait/ceiling
		low      float64
	}
	byN := map[int]*agg{}
	n := 0
	for k, w := range waits {
		if k%6 == 5 {
			n = 0 // this run lasted resetAfter
		}
		ceiling := min(maxB, minB<<n)
		if w < 0 || w > ceiling {
			t.Fatalf("wait %d (n=%d) = %v, outside [0, %v]", k, n, w, ceiling)
		}
		a := byN[min(n, 5)]
		if a == nil {
			a = &agg{low: 1}
			byN[min(n, 5)] = a
		}
		r := float64(w) / float64(ceiling)
		a.n++
		a.sum += r
		a.top = max(a.top, r)
		a.low = min(a.low, r)
		n++
	}
	for n := 0; n <= 5; n++ {
		a := byN[n]
		if a == nil || a.n < 400 {
			t.Fatalf("n=%d sampled %v times; want >= 400", n, a)
		}
		mean := a.sum / float64(a.n)
		// Uniform on [0,1]: sd of the mean of 400+ samples < 0.015.
		if mean < 0.42 || mean > 0.58 || a.top < 0.95 || a.low > 0.05 {
			t.Errorf("n=%d: wait/ceiling mean %.3f, max %.3f, min %.3f over %d; want ~0.5, ~1, ~0 (full jitter)",
				n, mean, a.top, a.low, a.n)
		}
	}
	t.Logf("waits: %v ... (ceilings 100ms..1.6s)", waits[:12])
}

// TestResetAfterGoodRun checks that a failure after a run that lasted
// ResetAfter waits at most MinBackoff, while the failures before it had
// climbed to the cap.
func TestResetAfterGoodRun(t *testing.T) {
	clk := newFakeClock()
	var runs atomic.Int64
	blocked := make(chan struct{})
	p := supervise.PipelineFunc(func(ctx context.Context) error {
		switch k := runs.Add(1) - 1; {
		case k == 10:
			clk.Advance(time.Minute) // a long, good run
		case k == 12:
			close(blocked)
			<-ctx.Done()
			return nil
		}
		return errors.New("boom")
	})
	s := supervise.New(p, supervise.Options{Name: "r", MinBackoff: time.Second, MaxBackoff: 4 * time.Second,
		ResetAfter: time.Minute, Logger: quiet, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	<-blocked
	w := clk.Waits()
	if len(w) != 12 {
		t.Fatalf("%d waits, want 12: %v", len(w), w)
	}
	for k := 2; k < 10; k++ {
		if w[k] > 4*time.Second {
			t.Errorf("wait %d = %v exceeds the cap", k, w[k])
		}
	}
	if w[10] > time.Second || w[11] > 2*time.Second {
		t.Errorf("waits after the good run = %v, %v; want <= 1s, <= 2s (backoff reset)", w[10], w[11])
	}
}

// TestWatchdog checks that a run whose activity stops is cancelled and
// restarted, and that a run whose activity keeps moving is left alone.
func TestWatchdog(t *testing.T) {
	t.Run("stall", func(t *testing.T) {
		var packets atomic.Uint64
		var runs, cancelled atomic.Int64
		p := supervise.PipelineFunc(func(ctx context.Context) error {
			runs.Add(1)
			// Media for 300 ms, then nothing: a camera that froze.
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			until := time.Now().Add(300 * time.Millisecond)
			for {
				select {
				case <-ctx.Done():
					cancelled.Add(1)
					return ctx.Err()
				case now := <-tick.C:
					if now.Before(until) {
						packets.Add(1)
					}
				}
			}
		})
		s := supervise.New(p, supervise.Options{Name: "cam", Kind: "stream", MinBackoff: 10 * time.Millisecond,
			MaxBackoff: 50 * time.Millisecond, Watchdog: 400 * time.Millisecond, Activity: packets.Load, Logger: quiet})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		sawLive := false
		waitFor(t, "two watchdog restarts", 20*time.Second, func() bool {
			st := s.Status()
			sawLive = sawLive || st.State == supervise.StateLive
			return st.Retries >= 2
		})
		st := s.Status()
		if !strings.Contains(st.LastError, supervise.ErrStalled.Error()) {
			t.Errorf("last error %q, want the watchdog's %q", st.LastError, supervise.ErrStalled)
		}
		if c := cancelled.Load(); c < 2 {
			t.Errorf("the watchdog cancelled %d runs, want >= 2", c)
		}
		if !sawLive {
			t.Error("never saw the run live while its activity advanced")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	t.Run("flowing", func(t *testing.T) {
		var packets atomic.Uint64
		var runs atomic.Int64
		p := supervise.PipelineFunc(func(ctx context.Context) error {
			runs.Add(1)
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
					packets.Add(1)
				}
			}
		})
		s := supervise.New(p, supervise.Options{Name: "cam", Watchdog: 500 * time.Millisecond,
			Activity: packets.Load, Logger: quiet})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		waitFor(t, "live", 10*time.Second, func() bool { return s.Status().State == supervise.StateLive })
		// Four watchdog periods of flowing media: no restart.
		start := packets.Load()
		time.Sleep(2 * time.Second)
		if packets.Load()-start < 40 {
			t.Fatalf("the pipeline hardly ran (%d packets in 2 s); the check proves nothing", packets.Load()-start)
		}
		if st := s.Status(); st.Retries != 0 || runs.Load() != 1 || st.State != supervise.StateLive {
			t.Errorf("flowing pipeline: retries %d, runs %d, state %s; want 0, 1, live", st.Retries, runs.Load(), st.State)
		}
		cancel()
		<-done
	})
}

// TestPermanentAndEnded checks the two ways a pipeline is not restarted.
func TestPermanentAndEnded(t *testing.T) {
	bad := errors.New("unsupported codec")
	for _, tc := range []struct {
		name    string
		ret     error
		want    supervise.State
		wantErr bool
	}{
		{"permanent", supervise.Permanent(bad), supervise.StateFailed, true},
		{"wrapped permanent", fmt.Errorf("open source: %w", supervise.Permanent(bad)), supervise.StateFailed, true},
		{"ended", nil, supervise.StateEnded, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var runs atomic.Int64
			s := supervise.New(supervise.PipelineFunc(func(context.Context) error {
				runs.Add(1)
				return tc.ret
			}), supervise.Options{Name: "p", Kind: "stream", MinBackoff: time.Millisecond, Logger: quiet})
			err := s.Run(context.Background())
			if (err != nil) != tc.wantErr || (tc.wantErr && !errors.Is(err, bad)) {
				t.Errorf("Run = %v, want error %v", err, tc.wantErr)
			}
			st := s.Status()
			if st.State != tc.want || st.Retries != 0 || runs.Load() != 1 {
				t.Errorf("state %s, retries %d, runs %d; want %s, 0, 1", st.State, st.Retries, runs.Load(), tc.want)
			}
			if tc.wantErr && st.LastError != "open source: unsupported codec" && st.LastError != "unsupported codec" {
				t.Errorf("LastError %q", st.LastError)
			}
		})
	}
	if supervise.Permanent(nil) != nil || supervise.IsPermanent(bad) {
		t.Error("Permanent(nil) must be nil and a plain error not permanent")
	}
}

// TestRunTwice checks that one Supervisor refuses a second concurrent Run.
func TestRunTwice(t *testing.T) {
	started := make(chan struct{})
	s := supervise.New(supervise.PipelineFunc(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return nil
	}), supervise.Options{Name: "x", Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-started
	if err := s.Run(ctx); err == nil {
		t.Error("a second concurrent Run succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// TestWatchdogAfterLiveRestartsPromptly: a pipeline whose media flows for a
// while and then stops, again and again (a camera that keeps dying and
// coming back), is restarted within MinBackoff each time: a stall after
// media flowed is not a failure of the pipeline, and the backoff must not
// grow with the count of such stalls (it would reach MaxBackoff and leave a
// recovered source unpublished for up to that long).
func TestWatchdogAfterLiveRestartsPromptly(t *testing.T) {
	const minB = 100 * time.Millisecond
	var packets atomic.Uint64
	p := supervise.PipelineFunc(func(ctx context.Context) error {
		// Media for 100 ms, then nothing.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		until := time.Now().Add(100 * time.Millisecond)
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case now := <-tick.C:
				if now.Before(until) {
					packets.Add(1)
				}
			}
		}
	})
	s := supervise.New(p, supervise.Options{Name: "cam", Kind: "stream", MinBackoff: minB, MaxBackoff: 30 * time.Second,
		Watchdog: 200 * time.Millisecond, Activity: packets.Load, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// Each cycle takes ~100 ms of media, ~200 ms to notice the stall and at
	// most minB of backoff. With a backoff doubling from minB, ten restarts
	// would wait ~51 s in expectation.
	waits := map[int]time.Duration{}
	deadline := time.Now().Add(20 * time.Second)
	for s.Status().Retries < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d restarts in 20 s: the backoff grew (waits seen %v)", s.Status().Retries, waits)
		}
		if st := s.Status(); st.State == supervise.StateRetrying {
			waits[st.Retries] = st.NextStart.Sub(st.LastErrorAt)
			if !strings.Contains(st.LastError, supervise.ErrStalled.Error()) {
				t.Fatalf("restart %d: last error %q, want the watchdog's", st.Retries, st.LastError)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	for n, w := range waits {
		if w > minB {
			t.Errorf("restart %d waited %v, want at most MinBackoff %v", n, w, minB)
		}
	}
	t.Logf("10 restarts after stalls; waits seen %v", waits)
}
