// Package pull brings tracks out of a Realtime SFU into a bridge.Sink (a
// recorder, an RTP/UDP forward). It pulls explicit (session, track) pairs,
// every track of a publisher session (and those published there later), or
// the tracks of a local stream, following the stream to its new session
// when its publisher restarts.
//
// A Pull is the long-lived object: its tracks keep their sink index across
// re-pulls, so a recording continues in the same file and a forward in the
// same RTP stream. Subscriber sessions are replaceable attempts under it:
// on ICE failure, a 410 or an SFU restart it pulls again, with backoff.
//
// Each attempt is one subscriber PeerConnection built by the peer API (NACK
// generator with RTX, RTCP reports), a read loop per track into a reused
// buffer and packet, and an RTCP reader per receiver that hands sender
// reports to the sink. Keyframe requests from the sink go upstream as PLIs,
// at most one per KeyframeInterval per track.
package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
)

// States of a pull.
const (
	StateStarting = "starting" // pulling, not receiving yet
	StateWaiting  = "waiting"  // nothing to receive: the stream is not live, or its tracks are not found yet
	StateLive     = "live"     // receiving at least one track
	StateRetrying = "retrying" // an attempt failed; waiting to pull again
	StateFailed   = "failed"   // Run returned an error
	StateEnded    = "ended"    // what it pulls went away for good (the session ended)
	StateStopped  = "stopped"  // Run returned after its context ended
)

// States of a pulled track.
const (
	TrackWaiting = "waiting" // to be pulled: not published, not found yet, or being re-pulled
	TrackPulling = "pulling" // pulled on the current subscriber session
	TrackRefused = "refused" // the sink refused it (LastError says why)
	TrackEnded   = "ended"   // unpublished: removed from the sink
)

// Ref names a published track.
type Ref struct{ Session, Track string }

// Resolver gives the current published session and track names of a local
// stream (publish.Stream implements it); ok is false while it is not live.
type Resolver interface {
	Published() (session string, tracks []string, ok bool)
}

// Options configure a Pull.
type Options struct {
	// Name is the pull's name in logs and status.
	Name string
	// Client talks to the SFU; API builds the PeerConnections.
	Client *realtime.Client
	API    *peer.API
	// Sink receives the tracks. The Pull does not close it.
	Sink bridge.Sink

	// What to pull: exactly one of Refs, Session and Stream.
	//
	// Refs are explicit tracks. Each ends (and leaves the sink) when its
	// session stops listing it as active; the pull ends when all have.
	Refs []Ref
	// Session pulls every track published on a session (location local,
	// status active), polling for tracks added later and removing those
	// that end; the pull ends when the session goes away.
	Session string
	// Stream follows a local stream: when its session changes (its
	// publisher restarted) the tracks are pulled again from the new one,
	// into the same sink indexes. StreamName goes into SinkTrack.Stream.
	Stream     Resolver
	StreamName string
	// Tracks, with Session or Stream, pulls only the tracks of these
	// names (empty: all).
	Tracks []string

	// NotFoundTimeout is how long a track that the SFU does not have yet
	// (not_found_track_error: its publisher is not sending yet) is retried
	// before Run fails (30 s).
	NotFoundTimeout time.Duration
	// KeyframeInterval is the least time between two PLIs upstream for
	// one track (500 ms).
	KeyframeInterval time.Duration
	// PollInterval is how often session state is read from the SFU
	// (GET /sessions/{id}) to find new and ended tracks and a subscriber
	// session that went away (2 s).
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (500 ms
	// and 10 s).
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds an attempt's wait for connected (10 s).
	ConnectTimeout time.Duration
	// DisconnectGrace is how long a disconnected PeerConnection may take
	// to recover before the attempt is abandoned (3 s).
	DisconnectGrace time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

type mode int

const (
	modeRefs mode = iota
	modeSession
	modeStream
)

// Pull pulls tracks into a sink and keeps them pulled.
type Pull struct {
	opts    Options
	log     *slog.Logger
	mode    mode
	filter  []string
	running atomic.Bool

	mu         sync.Mutex
	state      string
	lastErr    string
	since      time.Time
	retries    int
	subSession string
	tracks     map[string]*track // by key; changed only by Run's goroutine
	order      []*track          // tracks not ended, in the order first seen
	endedCount int

	// sinkMu serializes the sink's AddTrack and RemoveTrack (from the
	// readers and Run's goroutine).
	sinkMu sync.Mutex

	// Run's goroutine only: what GET /sessions/{id} said last, by
	// session, and the refs that ended.
	polls     map[string]*poll
	endedRefs map[string]bool
}

// Defaults.
const (
	defaultNotFoundTimeout  = 30 * time.Second
	defaultKeyframeInterval = 500 * time.Millisecond
	defaultPollInterval     = 2 * time.Second
	defaultMinBackoff       = 500 * time.Millisecond
	defaultMaxBackoff       = 10 * time.Second
	defaultConnectTimeout   = 10 * time.Second
	defaultDisconnectGrace  = 3 * time.Second
	// maxTick bounds how long the attempt loop sleeps: retries of tracks
	// not found yet and changes of a stream's session are seen this fast.
	maxTick = 200 * time.Millisecond
	// notFoundRetry and notFoundRetryMax shape the retries of a track
	// that is not found yet.
	notFoundRetry    = 250 * time.Millisecond
	notFoundRetryMax = 2 * time.Second
	// apiCleanupTimeout bounds closing tracks on the SFU after an attempt.
	apiCleanupTimeout = 2 * time.Second
)

// New checks o and makes a Pull; nothing runs until Run.
func New(o Options) (*Pull, error) {
	name := o.Name
	if name == "" {
		name = "pull"
	}
	switch {
	case o.Client == nil || o.API == nil:
		return nil, fmt.Errorf("pull %s: a Realtime client and a peer API are required", name)
	case o.Sink == nil:
		return nil, fmt.Errorf("pull %s: a sink is required", name)
	}
	p := &Pull{opts: o, state: StateStarting, since: time.Now(), tracks: map[string]*track{},
		polls: map[string]*poll{}, endedRefs: map[string]bool{}}
	n := 0
	if len(o.Refs) > 0 {
		n++
		p.mode = modeRefs
	}
	if o.Session != "" {
		n++
		p.mode = modeSession
	}
	if o.Stream != nil {
		n++
		p.mode = modeStream
	}
	if n != 1 {
		return nil, fmt.Errorf("pull %s: give exactly one of Refs, Session and Stream (%d given)", name, n)
	}
	if p.mode == modeRefs {
		if len(o.Tracks) > 0 {
			return nil, fmt.Errorf("pull %s: Tracks filters Session and Stream pulls; Refs already name their tracks", name)
		}
		seen := map[Ref]bool{}
		for i, r := range o.Refs {
			if r.Session == "" || r.Track == "" {
				return nil, fmt.Errorf("pull %s: Refs[%d] needs a session and a track name", name, i)
			}
			if seen[r] {
				return nil, fmt.Errorf("pull %s: Refs[%d] (%s/%s) is given twice", name, i, r.Session, r.Track)
			}
			seen[r] = true
		}
	}
	for i, tn := range o.Tracks {
		if tn == "" {
			return nil, fmt.Errorf("pull %s: Tracks[%d] is empty", name, i)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"NotFoundTimeout", o.NotFoundTimeout}, {"KeyframeInterval", o.KeyframeInterval}, {"PollInterval", o.PollInterval},
		{"MinBackoff", o.MinBackoff}, {"MaxBackoff", o.MaxBackoff}, {"ConnectTimeout", o.ConnectTimeout}, {"DisconnectGrace", o.DisconnectGrace}} {
		if d.v < 0 {
			return nil, fmt.Errorf("pull %s: %s is negative (%v)", name, d.name, d.v)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.NotFoundTimeout, defaultNotFoundTimeout)
	def(&o.KeyframeInterval, defaultKeyframeInterval)
	def(&o.PollInterval, defaultPollInterval)
	def(&o.MinBackoff, defaultMinBackoff)
	def(&o.MaxBackoff, defaultMaxBackoff)
	def(&o.ConnectTimeout, defaultConnectTimeout)
	def(&o.DisconnectGrace, defaultDisconnectGrace)
	if o.MinBackoff > o.MaxBackoff {
		return nil, fmt.Errorf("pull %s: MinBackoff (%v) exceeds MaxBackoff (%v)", name, o.MinBackoff, o.MaxBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Name = name
	p.opts = o
	p.filter = slices.Clone(o.Tracks)
	p.log = o.Logger.With("pull", name)
	return p, nil
}

// Name returns the pull's name.
func (p *Pull) Name() string { return p.opts.Name }

// Run pulls until ctx is done (it then closes its tracks on the SFU and
// returns nil) or what it pulls ended for good (state ended, nil). It
// returns an error, in state failed, when a track is still not found after
// NotFoundTimeout or the SFU rejects a track for good. Every track it
// added to the sink is removed from it before Run returns. Run runs at most
// once at a time.
func (p *Pull) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return fmt.Errorf("pull %s: already running", p.opts.Name)
	}
	defer p.running.Store(false)
	defer p.removeAll()
	backoff := p.opts.MinBackoff
	for {
		wasLive, err := p.attempt(ctx)
		if ctx.Err() != nil {
			p.setState(StateStopped, "")
			return nil
		}
		if errors.Is(err, errEnded) {
			p.log.Info("ended", "why", err)
			p.setState(StateEnded, err.Error())
			return nil
		}
		if fe, ok := errors.AsType[*fatalError](err); ok {
			err := fmt.Errorf("pull %s: %w", p.opts.Name, fe.err)
			p.log.Error("failed", "err", err)
			p.setState(StateFailed, err.Error())
			return err
		}
		if wasLive {
			backoff = p.opts.MinBackoff
		}
		wait := jitter(backoff)
		p.mu.Lock()
		p.retries++
		p.mu.Unlock()
		p.setState(StateRetrying, err.Error())
		p.log.Warn("pull attempt failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			p.setState(StateStopped, "")
			return nil
		}
		backoff = min(backoff*2, p.opts.MaxBackoff)
	}
}

// errEnded is wrapped by the error of an attempt whose pulled tracks all
// went away for good.
var errEnded = errors.New("ended")

// fatalError is an attempt's error that pulling again cannot fix.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func (p *Pull) setState(state, errText string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != state {
		p.since = time.Now()
	}
	p.state = state
	if errText != "" {
		p.lastErr = errText
	}
}

// removeAll takes every track out of the sink when Run ends.
func (p *Pull) removeAll() {
	p.mu.Lock()
	ts := slices.Clone(p.order)
	p.mu.Unlock()
	for _, t := range ts {
		p.removeFromSink(t)
	}
}

// jitter spreads retries of many pulls (±20 %), as the publisher does.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
