// Package supervise runs pipelines and restarts them when they fail: with
// exponential backoff and full jitter, a reset after a run that lasted, a
// media watchdog that restarts a run whose activity counter stalls, and no
// restart for permanent errors or for a pipeline that ended by itself.
//
// A Supervisor runs one pipeline; a Group runs many, each added, removed
// and restarted by kind and name (hot reload, the control API) without
// touching the others.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Pipeline is anything that runs until its context ends: a published
// stream, a recording, a forward. Run returns nil when ctx is done or when
// the pipeline ended by itself (a file without loop); an error otherwise.
// It owns its goroutines: when Run returns they have stopped.
type Pipeline interface {
	Run(ctx context.Context) error
}

// PipelineFunc adapts a function to Pipeline.
type PipelineFunc func(ctx context.Context) error

// Run calls f(ctx).
func (f PipelineFunc) Run(ctx context.Context) error { return f(ctx) }

// State is where a supervised pipeline is.
type State string

// States of a supervised pipeline.
const (
	StateStarting State = "starting" // a run began; no activity seen yet
	StateLive     State = "live"     // the run is up (activity seen, or no Activity to watch)
	StateRetrying State = "retrying" // the last run failed; waiting to restart
	StateFailed   State = "failed"   // a permanent error; not restarted
	StateEnded    State = "ended"    // the pipeline returned nil by itself; not restarted
	StateStopped  State = "stopped"  // its context ended (shutdown, Remove)
)

// States lists every State, in lifecycle order (for enum metrics).
var States = []State{StateStarting, StateLive, StateRetrying, StateFailed, StateEnded, StateStopped}

// Defaults of Options.
const (
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	DefaultResetAfter = 30 * time.Second
)

// stopWarnAfter is how long a cancelled run may take to return before the
// supervisor logs that it is stuck (it keeps waiting: it owns the run).
const stopWarnAfter = 10 * time.Second

// ErrStalled is the error of a run the watchdog cancelled.
var ErrStalled = errors.New("no media activity")

// Options configure a Supervisor.
type Options struct {
	// Name and Kind identify the pipeline in logs, statuses and metrics,
	// e.g. "cam1" and "stream" (or "recording", "forward", "whip", "whep").
	Name, Kind string
	// MinBackoff and MaxBackoff shape the wait before a restart: after the
	// n-th consecutive failure (n from 0) it is uniform in [0, c] with
	// c = min(MaxBackoff, MinBackoff*2^n) (full jitter: many pipelines
	// failing together do not restart together). Defaults 500 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// ResetAfter: a run that lasted at least this long was a good one, and
	// the next failure waits as if it were the first (default 30 s).
	ResetAfter time.Duration
	// Watchdog, with Activity, cancels a run whose Activity did not advance
	// for this long (the run's error is then ErrStalled) and restarts it:
	// within MinBackoff when its activity had advanced (the run was live),
	// with the growing backoff when it never did. 0 turns the watchdog off.
	Watchdog time.Duration
	// Activity returns a counter that grows while the pipeline does its job
	// (packets received or sent). The supervisor reads it a few times per
	// Watchdog period, never per packet. A run is live once it advanced;
	// with Activity nil a run is live as soon as it starts.
	Activity func() uint64
	// Logger receives restarts (warn), permanent failures (error) and ends
	// (info); nil means slog.Default().
	Logger *slog.Logger
	// Clock is time for tests; nil means the system clock.
	Clock Clock
}

// Status is a supervised pipeline's state for the API and metrics.
type Status struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	State State  `json:"state"`
	// Since is when State was entered.
	Since time.Time `json:"since"`
	// LastError is the error of the last failed run; LastErrorAt its time.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Retries counts restarts since the supervisor started.
	Retries int `json:"retries"`
	// LastStart is when the current or last run began.
	LastStart time.Time `json:"lastStart,omitzero"`
	// NextStart is when the next run begins, while retrying.
	NextStart time.Time `json:"nextStart,omitzero"`
}

// permanent marks an error that restarting cannot fix.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Permanent marks err as one that restarting cannot fix (a bad source URL,
// a codec the SFU refuses): the supervisor then stops with StateFailed.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanent
	return errors.As(err, &p)
}

// Supervisor runs one pipeline and restarts it as Options say.
type Supervisor struct {
	p       Pipeline
	o       Options
	log     *slog.Logger
	running atomic.Bool

	mu sync.Mutex
	st Status
}

// New returns a Supervisor of p; nothing runs until Run.
func New(p Pipeline, o Options) *Supervisor {
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.ResetAfter <= 0 {
		o.ResetAfter = DefaultResetAfter
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Supervisor{p: p, o: o, log: o.Logger.With("pipeline", o.Name, "kind", o.Kind)}
	s.st = Status{Name: o.Name, Kind: o.Kind, State: StateStarting, Since: o.Clock.Now()}
	return s
}

// Status returns the pipeline's current state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Run runs the pipeline until ctx is done, it ended by itself or it failed
// with a permanent error, restarting it after every other error. It returns
// nil in the first two cases and the permanent error in the third. It
// returns only after the pipeline's Run has returned. A Supervisor runs one
// Run at a time.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("supervise %s %s: already running", s.o.Kind, s.o.Name)
	}
	defer s.running.Store(false)
	failures := 0 // consecutive, for the backoff
	for {
		start := s.o.Clock.Now()
		s.update(func(st *Status) {
			st.LastStart, st.NextStart = start, time.Time{}
			s.setState(st, StateStarting, start)
		})
		live, err := s.runOnce(ctx)
		now := s.o.Clock.Now()
		switch {
		case ctx.Err() != nil:
			s.update(func(st *Status) { s.setState(st, StateStopped, now) })
			return nil
		case err == nil:
			s.log.Info("pipeline ended")
			s.update(func(st *Status) { s.setState(st, StateEnded, now) })
			return nil
		case IsPermanent(err):
			s.log.Error("pipeline failed; not restarting", "err", err)
			s.update(func(st *Status) {
				st.LastError, st.LastErrorAt = err.Error(), now
				s.setState(st, StateFailed, now)
			})
			return fmt.Errorf("%s %s: %w", s.o.Kind, s.o.Name, err)
		}
		// A run that lasted is a good one; so is one the watchdog ended
		// after its media flowed: what stopped is upstream (a camera or
		// encoder that died), and the restart that finds it back must come
		// within MinBackoff, not after a backoff grown by earlier deaths.
		// A run that never saw media still backs off (a source that stays
		// dead is not churned every Watchdog).
		if now.Sub(start) >= s.o.ResetAfter || (live && errors.Is(err, ErrStalled)) {
			failures = 0
		}
		wait := s.backoff(failures)
		failures++
		s.log.Warn("pipeline failed; restarting", "err", err, "ran", now.Sub(start).Round(time.Millisecond),
			"in", wait.Round(time.Millisecond))
		s.update(func(st *Status) {
			st.LastError, st.LastErrorAt = err.Error(), now
			st.Retries++
			st.NextStart = now.Add(wait)
			s.setState(st, StateRetrying, now)
		})
		t := s.o.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.update(func(st *Status) {
				st.NextStart = time.Time{}
				s.setState(st, StateStopped, s.o.Clock.Now())
			})
			return nil
		case <-t.C():
		}
	}
}

// backoff returns the full-jitter wait after the n-th consecutive failure
// (n from 0).
func (s *Supervisor) backoff(n int) time.Duration {
	ceiling := s.o.MinBackoff
	for i := 0; i < n && ceiling < s.o.MaxBackoff; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, s.o.MaxBackoff)
	return rand.N(ceiling + 1)
}

// runOnce is one run of the pipeline, watched: it marks the run live and
// cancels it when its activity stalls. It returns whether the run was live
// and the run's error (ErrStalled if the watchdog ended it) once the
// pipeline's Run returned.
func (s *Supervisor) runOnce(ctx context.Context) (bool, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.p.Run(runCtx) }()

	if s.o.Activity == nil {
		s.markLive()
		return true, s.wait(ctx, cancel, done, nil)
	}
	// Poll the counter a few times per watchdog period: a stall is noticed
	// within 1.25 Watchdog, and the counter is read ~4 times per period,
	// never on the media path.
	poll := 500 * time.Millisecond
	if s.o.Watchdog > 0 {
		poll = min(poll, max(s.o.Watchdog/4, time.Millisecond))
	}
	last := s.o.Activity()
	lastChange := s.o.Clock.Now()
	live := false
	for {
		t := s.o.Clock.NewTimer(poll)
		select {
		case err := <-done:
			t.Stop()
			return live, err
		case <-ctx.Done():
			t.Stop()
			return live, s.wait(ctx, cancel, done, nil)
		case <-t.C():
		}
		now := s.o.Clock.Now()
		if a := s.o.Activity(); a != last {
			last, lastChange = a, now
			if !live {
				live = true
				s.markLive()
			}
			continue
		}
		if s.o.Watchdog > 0 && now.Sub(lastChange) >= s.o.Watchdog {
			stalled := fmt.Errorf("%w for %s", ErrStalled, now.Sub(lastChange).Round(time.Millisecond))
			return live, s.wait(ctx, cancel, done, stalled)
		}
	}
}

// wait cancels the run if override is set, waits for it to return and
// returns override or the run's error. A run that does not return soon
// after being cancelled is logged, and still waited for: the supervisor
// owns it.
func (s *Supervisor) wait(ctx context.Context, cancel context.CancelFunc, done <-chan error, override error) error {
	if override != nil {
		cancel()
	} else {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
		}
	}
	t := s.o.Clock.NewTimer(stopWarnAfter)
	defer t.Stop()
	select {
	case err := <-done:
		return cmpErr(override, err)
	case <-t.C():
		s.log.Warn("pipeline has not stopped after cancel; still waiting", "after", stopWarnAfter)
	}
	return cmpErr(override, <-done)
}

func cmpErr(override, err error) error {
	if override != nil {
		return override
	}
	return err
}

func (s *Supervisor) markLive() {
	now := s.o.Clock.Now()
	s.update(func(st *Status) {
		if st.State == StateStarting {
			s.setState(st, StateLive, now)
		}
	})
}

func (s *Supervisor) update(f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.st)
}

func (s *Supervisor) setState(st *Status, state State, now time.Time) {
	if st.State != state {
		st.State, st.Since = state, now
	}
}
