// Package sfu is rtgate's embedded SFU: it serves the media part of the
// Cloudflare Realtime SFU HTTP API (sessions, tracks, renegotiation) over
// pion PeerConnections, so rtgate and the apps built on that API run and are
// tested offline. It stands on its own (`rtgate sfu`): of the rest of rtgate
// it imports only gateway/peer (the pion API) and gateway/rtapi (the wire
// types).
//
// Media is forwarded, never decoded: one goroutine per published track reads
// into pooled buffers and writes to every subscriber's binding with its own
// SSRC, payload type and header extension ids; with many subscribers it
// shares each packet's writes with GOMAXPROCS-1 shard workers (fanout.go).
// Loss is repaired by the interceptors of gateway/peer (NACK toward
// publishers, NACK/RTX toward subscribers, answered from one history per
// published track); keyframe requests from subscribers are coalesced per
// publisher.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rtgate/rtgate/gateway/peer"
)

// Options configure an SFU. Zero durations take the Realtime API's values.
type Options struct {
	// AppID is the application id in /v1/apps/{appId}/...
	AppID string
	// AppSecret is the bearer token every request must carry.
	AppSecret string
	// Peer configures the SFU's own pion API (its UDP port).
	Peer peer.Options
	// TrackIdleTimeout collects a published track that sent no media for
	// this long (30 s).
	TrackIdleTimeout time.Duration
	// FirstPacketWait is how long a pull of an announced track waits for the
	// track's first packet before answering not_found_track_error (2 s).
	FirstPacketWait time.Duration
	// ConnectWait is how long a mutation that needs the transport waits for
	// ICE/DTLS connected before answering session_error 425 (5 s).
	ConnectWait time.Duration
	// SessionReuseWindow is how long a session that lost connectivity can be
	// used again before it expires (30 s). A session that never connects
	// expires after twice this.
	SessionReuseWindow time.Duration
	// RateLimit is API calls per second per session (50).
	RateLimit float64
	// KeyframeInterval is the minimum time between two keyframe requests
	// sent to one publisher (500 ms).
	KeyframeInterval time.Duration
	// Logger is the SFU's logger; nil means slog.Default().
	Logger *slog.Logger

	// Set by setDefaults: the packets of history each published video
	// track keeps for its subscribers' NACKs (Peer.NACKResponderSize,
	// 1024 when 0), and the subscriber count from which a packet's writes
	// are spread over GOMAXPROCS goroutines.
	history  int
	shardMin int
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.TrackIdleTimeout, 30*time.Second)
	def(&o.FirstPacketWait, 2*time.Second)
	def(&o.ConnectWait, 5*time.Second)
	def(&o.SessionReuseWindow, 30*time.Second)
	def(&o.KeyframeInterval, 500*time.Millisecond)
	if o.RateLimit <= 0 {
		o.RateLimit = 50
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Peer.Logger == nil {
		o.Peer.Logger = o.Logger
	}
	o.history = int(o.Peer.NACKResponderSize)
	if o.history == 0 {
		o.history = defaultHistory
	}
	if o.shardMin <= 0 {
		o.shardMin = defaultShardMin
	}
}

// SFU is the embedded SFU. Create it with New, serve Handler, Close it.
type SFU struct {
	opts   Options
	api    *peer.API
	log    *slog.Logger
	secret [32]byte // sha256 of the app secret

	mu        sync.Mutex
	sessions  map[string]*session
	ended     map[string]time.Time // ended session ids, answered with 410 for a while
	published map[trackKey]*pubTrack

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type trackKey struct{ session, name string }

// New makes an SFU and opens its UDP port.
func New(o Options) (*SFU, error) {
	if o.AppID == "" {
		return nil, errors.New("sfu: an app id is required")
	}
	if o.AppSecret == "" {
		return nil, errors.New("sfu: an app secret is required")
	}
	o.setDefaults()
	api, err := peer.New(o.Peer)
	if err != nil {
		return nil, fmt.Errorf("sfu: %w", err)
	}
	f := &SFU{
		opts: o, api: api, log: o.Logger.With("component", "sfu"),
		secret:    hashSecret(o.AppSecret),
		sessions:  map[string]*session{},
		ended:     map[string]time.Time{},
		published: map[trackKey]*pubTrack{},
		done:      make(chan struct{}),
	}
	f.goFunc(f.janitor)
	return f, nil
}

// goFunc runs fn as a goroutine that Close waits for.
func (f *SFU) goFunc(fn func()) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
}

// Close ends every session and releases the UDP port.
func (f *SFU) Close() error {
	f.closeOnce.Do(func() {
		close(f.done)
		f.mu.Lock()
		all := make([]*session, 0, len(f.sessions))
		for _, s := range f.sessions {
			all = append(all, s)
		}
		f.mu.Unlock()
		for _, s := range all {
			f.expire(s, "sfu closing")
		}
	})
	f.wg.Wait()
	return f.api.Close()
}

// Sessions returns how many sessions are alive.
func (f *SFU) Sessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// Addrs returns the local addresses of the SFU's UDP port.
func (f *SFU) Addrs() []string {
	var out []string
	for _, a := range f.api.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// TrackStats describes a published track for observers and tests.
type TrackStats struct {
	SessionID, TrackName, Kind, Codec string
	Packets, Bytes, KeyframeRequests  uint64
	Subscribers                       int
}

// Tracks lists the published tracks.
func (f *SFU) Tracks() []TrackStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]TrackStats, 0, len(f.published))
	for k, p := range f.published {
		ts := TrackStats{SessionID: k.session, TrackName: k.name, Kind: p.kind.String(),
			Packets: p.packets.Load(), Bytes: p.bytes.Load(), KeyframeRequests: p.plisSent.Load(),
			Subscribers: p.subscribers()}
		if p.isReady() {
			ts.Codec = p.codec.MimeType
		}
		out = append(out, ts)
	}
	return out
}

func (f *SFU) addSession(s *session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[s.id] = s
}

// session finds a live session; gone is true for one that ended.
func (f *SFU) session(id string) (s *session, gone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.sessions[id]; ok {
		return s, false
	}
	_, gone = f.ended[id]
	return nil, gone
}

func (f *SFU) register(sessionID, name string, p *pubTrack) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := trackKey{sessionID, name}
	if old, ok := f.published[k]; ok && !old.isClosed() {
		return fmt.Errorf("track %q is already published by this session", name)
	}
	f.published[k] = p
	return nil
}

func (f *SFU) unregister(sessionID, name string, p *pubTrack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := trackKey{sessionID, name}
	if f.published[k] == p {
		delete(f.published, k)
	}
}

func (f *SFU) lookup(sessionID, name string) *pubTrack {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.published[trackKey{sessionID, name}]
	if p == nil || p.isClosed() {
		return nil
	}
	return p
}

// expire ends a session: its tracks are unpublished and its PeerConnection
// closed. Later calls with its id get 410.
func (f *SFU) expire(s *session, why string) {
	s.endOnce.Do(func() {
		close(s.ended)
		f.mu.Lock()
		delete(f.sessions, s.id)
		f.ended[s.id] = time.Now()
		for k, p := range f.published {
			if p.sess == s {
				delete(f.published, k)
				p.close()
			}
		}
		f.mu.Unlock()
		f.log.Debug("session ended", "session", s.id, "why", why)
		if err := s.pc.Close(); err != nil {
			f.log.Debug("close peer connection", "session", s.id, "err", err)
		}
	})
}

// janitor collects idle tracks, expires sessions that lost connectivity for
// longer than the reuse window (or never connected), and forgets ended
// session ids after a while.
func (f *SFU) janitor() {
	tick := min(f.opts.TrackIdleTimeout, f.opts.SessionReuseWindow) / 4
	tick = max(tick, 10*time.Millisecond)
	t := time.NewTicker(min(tick, time.Second))
	defer t.Stop()
	for {
		select {
		case <-f.done:
			return
		case now := <-t.C:
			f.sweep(now)
		}
	}
}

func (f *SFU) sweep(now time.Time) {
	var expire []*session
	f.mu.Lock()
	for k, p := range f.published {
		last := time.Unix(0, p.lastPacket.Load())
		if !p.isReady() {
			last = p.announced
		}
		if now.Sub(last) > f.opts.TrackIdleTimeout {
			delete(f.published, k)
			p.close()
			f.log.Debug("track collected: no media", "session", k.session, "track", k.name, "idle", now.Sub(last))
		}
	}
	for _, s := range f.sessions {
		if lost := s.lostAt.Load(); lost != 0 && now.Sub(time.Unix(0, lost)) > f.opts.SessionReuseWindow {
			expire = append(expire, s)
		} else if !s.everConnected.Load() && now.Sub(s.created) > 2*f.opts.SessionReuseWindow {
			expire = append(expire, s)
		}
	}
	for id, at := range f.ended {
		if now.Sub(at) > 10*time.Minute {
			delete(f.ended, id)
		}
	}
	f.mu.Unlock()
	for _, s := range expire {
		f.expire(s, "connectivity lost")
	}
}
