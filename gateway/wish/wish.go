// Package wish serves WHIP ingest (RFC 9725) and WHEP playback
// (draft-ietf-wish-whep) for the daemon's streams: the HTTP resources, their
// authentication, and the two ways of carrying the media.
//
// In proxy mode rtgate only signals: a WHIP offer becomes sessions/new and
// tracks/new with autoDiscover on the Realtime API, a WHEP viewer gets its
// own SFU session pulling the stream's tracks, and media flows between the
// client and the SFU. In relay mode rtgate terminates the client's
// PeerConnection: a WHIP publisher's tracks become a bridge.Source published
// by a publish.Stream (continuity, keyframe routing, status), and WHEP
// viewers are served from one pull of the stream per stream, fanned out
// locally (a bridge.Sink).
//
// The daemon owns the stream registry; this package sees it through
// Registry and keeps, per stream, its WHIP publisher and WHEP viewers in a
// Stream.
package wish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
)

// Modes of a stream's WHIP ingest and WHEP playback.
const (
	ModeRelay = "relay" // rtgate terminates the client's PeerConnection
	ModeProxy = "proxy" // rtgate only signals; media is client <-> SFU
)

// What a second WHIP publisher on a live stream gets.
const (
	ConflictReject  = "reject"  // 409 Conflict
	ConflictReplace = "replace" // the first publisher is disconnected
)

// MaxSDPSize bounds a request body (an SDP offer or answer, a trickle
// fragment): browsers' offers are a few KiB.
const MaxSDPSize = 128 << 10

// Resolver is a stream's current publication on the SFU: what a pull of
// the stream pulls. It is the interface gateway/pull follows; Stream
// implements it.
type Resolver interface {
	Published() (session string, tracks []string, ok bool)
}

// PullFunc pulls the tracks that r (the stream called stream) publishes
// into sink until ctx is done, following r when it republishes (a new
// session, new track names). It returns nil when ctx ended it; an error
// makes the caller call it again after a while. It must not close sink.
type PullFunc func(ctx context.Context, stream string, r Resolver, sink bridge.Sink) error

// Options configure a Handler.
type Options struct {
	// Registry finds and creates streams.
	Registry Registry
	// Client talks to the SFU; API builds rtgate's PeerConnections.
	Client *realtime.Client
	API    *peer.API
	// ICEServers are advertised to clients in Link headers (rel="ice-server").
	ICEServers []webrtc.ICEServer
	// WHIPToken and WHEPToken are the global bearer tokens ("" = none); a
	// stream's Settings override them.
	WHIPToken, WHEPToken string
	// AllowAnyStream lets a WHIP publisher create a stream by publishing to
	// a name the registry does not know.
	AllowAnyStream bool
	// OnConflict is ConflictReject (default) or ConflictReplace.
	OnConflict string
	// WHIPMode and WHEPMode are the modes of streams whose Settings leave
	// them empty (ModeRelay by default).
	WHIPMode, WHEPMode string
	// ConnectTimeout bounds how long a relay client's PeerConnection may
	// take to connect (15 s); DisconnectGrace how long it may stay
	// disconnected (5 s) before its resource is freed.
	ConnectTimeout, DisconnectGrace time.Duration
	// PollInterval is how often a proxy resource checks that its SFU
	// session still exists (GET /sessions/{id}); 5 s.
	PollInterval time.Duration
	// MediaWait bounds how long a relay WHEP viewer waits for the stream's
	// pull to deliver its first packets (5 s).
	MediaWait time.Duration
	// SFUAPI makes a pion API with its own UDP port for rtgate's
	// PeerConnections toward the SFU (the publication of a relay WHIP
	// stream, the pull of a relay WHEP stream). The SFU serves every
	// session on one port and tells them apart by the peer's address, as
	// pion's UDP mux does on rtgate's side: two rtgate PeerConnections to
	// the SFU on one port would receive each other's packets. nil means
	// API is used (fine for one such PeerConnection at a time only).
	SFUAPI func() (*peer.API, error)
	// Pull pulls a stream for its relay WHEP viewers (the daemon's is
	// gateway/pull over a PeerConnection from SFUAPI). Required.
	Pull PullFunc
	// PublishBackoff is the first wait between publish attempts of a relay
	// WHIP stream (publish.Options.MinBackoff; 0 means its default).
	PublishBackoff time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Handler serves the WHIP and WHEP endpoints and owns every resource they
// create. Close frees them all.
type Handler struct {
	o   Options
	log *slog.Logger

	ctx    context.Context // ends with Close: background work of resources
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// live holds the options a reload may change (Update).
	live atomic.Pointer[Settings]

	mu        sync.Mutex
	resources map[string]resource
	relays    map[*relayIngest]struct{} // relay publications, for Close
	closed    bool
}

// Settings are the Options a running Handler can change (Update): they
// apply to requests from then on; sessions already up keep going.
type Settings struct {
	WHIPToken, WHEPToken string
	AllowAnyStream       bool
	OnConflict           string
}

// Update changes the Handler's tokens and publishing rules.
func (h *Handler) Update(s Settings) { h.live.Store(&s) }

// settings returns the Settings in effect: those of the last Update, or
// the Options'.
func (h *Handler) settings() *Settings {
	if s := h.live.Load(); s != nil {
		return s
	}
	return &Settings{WHIPToken: h.o.WHIPToken, WHEPToken: h.o.WHEPToken, AllowAnyStream: h.o.AllowAnyStream, OnConflict: h.o.OnConflict}
}

// New makes a Handler.
func New(o Options) (*Handler, error) {
	if o.Registry == nil || o.Client == nil || o.API == nil || o.Pull == nil {
		return nil, errors.New("wish: a registry, a Realtime client, a peer API and a pull function are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ConnectTimeout, 15*time.Second)
	def(&o.DisconnectGrace, 5*time.Second)
	def(&o.PollInterval, 5*time.Second)
	def(&o.MediaWait, 5*time.Second)
	if o.OnConflict == "" {
		o.OnConflict = ConflictReject
	}
	if o.WHIPMode == "" {
		o.WHIPMode = ModeRelay
	}
	if o.WHEPMode == "" {
		o.WHEPMode = ModeRelay
	}
	for _, m := range []string{o.WHIPMode, o.WHEPMode} {
		if m != ModeRelay && m != ModeProxy {
			return nil, errors.New("wish: mode " + m + " is neither relay nor proxy")
		}
	}
	if o.OnConflict != ConflictReject && o.OnConflict != ConflictReplace {
		return nil, errors.New("wish: on_conflict " + o.OnConflict + " is neither reject nor replace")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h := &Handler{o: o, log: o.Logger.With("component", "wish"), resources: map[string]resource{},
		relays: map[*relayIngest]struct{}{}}
	h.Update(Settings{WHIPToken: o.WHIPToken, WHEPToken: o.WHEPToken, AllowAnyStream: o.AllowAnyStream, OnConflict: o.OnConflict})
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h, nil
}

// Register adds the endpoints to mux:
//
//	POST    /whip/{stream}        publish (SDP offer -> 201 answer)
//	PATCH   /whip/{stream}/{id}   trickle ICE and ICE restarts
//	DELETE  /whip/{stream}/{id}   stop publishing
//	POST    /whep/{stream}        play (offer -> answer, or empty -> offer)
//	PATCH   /whep/{stream}/{id}   the answer to rtgate's offer; trickle ICE
//	DELETE  /whep/{stream}/{id}   stop playing
//	OPTIONS on each of them       CORS and Link rel="ice-server"
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("POST /whip/{stream}", h.cors(h.postWHIP))
	mux.Handle("POST /whep/{stream}", h.cors(h.postWHEP))
	for _, p := range []string{"/whip/", "/whep/"} {
		mux.Handle("OPTIONS "+p+"{stream}", h.cors(h.options))
		mux.Handle("OPTIONS "+p+"{stream}/{id}", h.cors(h.options))
		mux.Handle("PATCH "+p+"{stream}/{id}", h.cors(h.patch))
		mux.Handle("DELETE "+p+"{stream}/{id}", h.cors(h.delete))
	}
}

// Close frees every resource (closing their tracks on the SFU) and stops
// every pull, then waits for the goroutines they owned. New requests are
// refused from its start. It is safe to call more than once.
func (h *Handler) Close() {
	h.mu.Lock()
	h.closed = true
	all := make([]resource, 0, len(h.resources))
	for _, r := range h.resources {
		all = append(all, r)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.end("shutdown")
		}()
	}
	wg.Wait()
	h.mu.Lock()
	relays := h.relays
	h.relays = map[*relayIngest]struct{}{}
	h.mu.Unlock()
	for ri := range relays {
		ri.close()
	}
	h.cancel()
	h.wg.Wait()
}

// sfuAPI returns the API of a new PeerConnection toward the SFU and the
// func that releases it.
func (h *Handler) sfuAPI() (*peer.API, func(), error) {
	if h.o.SFUAPI == nil {
		return h.o.API, func() {}, nil
	}
	api, err := h.o.SFUAPI()
	if err != nil {
		return nil, nil, err
	}
	return api, func() { _ = api.Close() }, nil
}

// Resources returns how many WHIP and WHEP resources are open.
func (h *Handler) Resources() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.resources)
}

// Counts returns how many WHIP publishers and WHEP viewers are open.
func (h *Handler) Counts() (publishers, viewers int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.resources {
		if _, ok := r.(publisher); ok {
			publishers++
		} else {
			viewers++
		}
	}
	return publishers, viewers
}

// goFunc runs fn as a goroutine Close waits for.
func (h *Handler) goFunc(fn func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
}

// add registers a resource; false after Close.
func (h *Handler) add(r resource) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.resources[r.base().id] = r
	return true
}

func (h *Handler) remove(r resource) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.resources[r.base().id] == r {
		delete(h.resources, r.base().id)
	}
}

func (h *Handler) lookup(id string) resource {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.resources[id]
}

// newID is a resource id or an ETag: 128 random bits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
