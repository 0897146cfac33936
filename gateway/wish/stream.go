package wish

import (
	"context"
	"sync"
	"time"

	"github.com/rtgate/rtgate/gateway/publish"
)

// Registry is the daemon's stream registry as WHIP and WHEP see it.
type Registry interface {
	// Lookup returns the stream called name.
	Lookup(name string) (*Stream, bool)
	// Create adds a stream for a WHIP publisher that publishes to a name
	// the registry does not know (made with NewStream, Dynamic set). It
	// fails when the name is taken.
	Create(name string) (*Stream, error)
	// Remove takes a stream that Create made out of the registry: its
	// publisher went away.
	Remove(s *Stream)
}

// Origin is where a configured source stream is published on the SFU, with
// the kind and codec of each track.
type Origin interface {
	PublishedTracks() (session string, tracks []PublishedTrack, ok bool)
}

// PublishedTrack is one published track of a stream.
type PublishedTrack struct {
	Name  string // the track's name on the SFU
	Kind  string // bridge.KindAudio or bridge.KindVideo
	Codec string // MIME type, "video/VP8"
}

// StreamOptions describe a stream of the registry.
type StreamOptions struct {
	Name string
	// Origin is the publication of a configured source stream; nil for a
	// stream that WHIP publishers feed.
	Origin Origin
	// WHIPMode and WHEPMode are ModeRelay or ModeProxy; "" means relay.
	WHIPMode, WHEPMode string
	// WHIPToken and WHEPToken override the Handler's tokens; "" means the
	// Handler's.
	WHIPToken, WHEPToken string
	// VideoTrack and AudioTrack name the tracks a relay WHIP stream
	// publishes (default <name>-video, <name>-audio).
	VideoTrack, AudioTrack string
	// Dynamic marks a stream a WHIP publisher created: it leaves the
	// registry with its publisher.
	Dynamic bool
}

// Stream is one stream's WHIP and WHEP state: its publisher (WHIP streams)
// and its viewers. It implements Resolver, so recorders and forwards can
// pull any stream of the registry.
type Stream struct {
	o StreamOptions

	// op serializes the signalling of the stream: a POST, a DELETE and the
	// end of a resource never interleave.
	op sync.Mutex

	mu      sync.Mutex
	pub     publisher    // current WHIP publisher
	relay   *relayIngest // relay WHIP: the publish.Stream, kept across publishers
	viewers map[resource]struct{}
	fan     *fanPull // relay WHEP: the shared pull and fan-out
	removed bool
}

// NewStream makes a stream for the registry.
func NewStream(o StreamOptions) *Stream {
	if o.WHIPMode == "" {
		o.WHIPMode = ModeRelay
	}
	if o.WHEPMode == "" {
		o.WHEPMode = ModeRelay
	}
	return &Stream{o: o, viewers: map[resource]struct{}{}}
}

// Name returns the stream's name.
func (s *Stream) Name() string { return s.o.Name }

// Ingest reports whether WHIP publishers feed the stream.
func (s *Stream) Ingest() bool { return s.o.Origin == nil }

// Dynamic reports whether a WHIP publisher created the stream.
func (s *Stream) Dynamic() bool { return s.o.Dynamic }

// Published returns the stream's current session and track names on the
// SFU (Resolver).
func (s *Stream) Published() (session string, tracks []string, ok bool) {
	sess, pts, ok := s.PublishedTracks()
	if !ok {
		return "", nil, false
	}
	names := make([]string, len(pts))
	for i, t := range pts {
		names[i] = t.Name
	}
	return sess, names, true
}

// PublishedTracks is Published with each track's kind and codec.
func (s *Stream) PublishedTracks() (session string, tracks []PublishedTrack, ok bool) {
	if s.o.Origin != nil {
		return s.o.Origin.PublishedTracks()
	}
	s.mu.Lock()
	relay, pub := s.relay, s.pub
	s.mu.Unlock()
	if relay != nil {
		return relay.published()
	}
	if pub != nil {
		return pub.published()
	}
	return "", nil, false
}

// Status is a stream's WHIP and WHEP state for GET /api/streams.
type Status struct {
	// WHIP is set for streams WHIP publishers feed.
	WHIP     *WHIPStatus `json:"whip,omitempty"`
	WHEPMode string      `json:"whepMode"`
	// Viewers counts the WHEP viewers.
	Viewers int `json:"viewers"`
}

// WHIPStatus is a WHIP stream's ingest.
type WHIPStatus struct {
	Mode string `json:"mode"`
	// Publisher is "none", "connecting" or "connected".
	Publisher string    `json:"publisher"`
	Remote    string    `json:"remote,omitempty"` // the publisher's HTTP client address
	Since     time.Time `json:"since,omitzero"`   // when the publisher arrived
	Dynamic   bool      `json:"dynamic,omitempty"`
}

// Publisher states.
const (
	PublisherNone       = "none"
	PublisherConnecting = "connecting"
	PublisherConnected  = "connected"
)

// Status returns the stream's WHIP and WHEP state.
func (s *Stream) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{WHEPMode: s.o.WHEPMode, Viewers: len(s.viewers)}
	if s.Ingest() {
		w := &WHIPStatus{Mode: s.o.WHIPMode, Publisher: PublisherNone, Dynamic: s.o.Dynamic}
		if s.pub != nil {
			b := s.pub.base()
			w.Publisher, w.Remote, w.Since = s.pub.state(), b.remote, b.created
		}
		st.WHIP = w
	}
	return st
}

// Viewers returns how many WHEP viewers the stream has.
func (s *Stream) Viewers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.viewers)
}

// Publication returns the publication status of a WHIP stream (its
// tracks, codecs, bitrates) and true; false for a configured source
// stream, whose publish.Stream reports it.
func (s *Stream) Publication() (publish.Status, bool) {
	if !s.Ingest() {
		return publish.Status{}, false
	}
	s.mu.Lock()
	relay, pub := s.relay, s.pub
	s.mu.Unlock()
	switch {
	case relay != nil:
		st := relay.stream.Status()
		if !relay.running() {
			st.State = StateIdle
		}
		return st, true
	case pub != nil:
		return pub.publication(), true
	}
	return publish.Status{Name: s.o.Name, State: StateIdle, Tracks: []publish.TrackStatus{}}, true
}

// StateIdle is the state of a WHIP stream without a publisher.
const StateIdle = "idle"

// removeViewer takes a viewer out of the viewer set (Handler.addViewer
// puts it in).
func (s *Stream) removeViewer(r resource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.viewers, r)
}

// publisher is a WHIP resource: relay or proxy.
type publisher interface {
	resource
	// published is the publication of a proxy publisher (relay
	// publications come from the stream's relayIngest).
	published() (session string, tracks []PublishedTrack, ok bool)
	publication() publish.Status
	state() string
	// finish is end with st.op already held (a replacement in a POST).
	finish(why string)
}

// detachPublisher clears p as the stream's publisher; it reports whether
// p was the publisher.
func (s *Stream) detachPublisher(p publisher) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pub != p {
		return false
	}
	s.pub = nil
	return true
}

// idle reports whether a dynamic stream has nothing left: no publisher.
func (s *Stream) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pub == nil
}

// endViewers ends every viewer of the stream (its publication changed in
// a way they cannot follow, or it went away).
func (s *Stream) endViewers(why string) {
	s.mu.Lock()
	vs := make([]resource, 0, len(s.viewers))
	for v := range s.viewers {
		vs = append(vs, v)
	}
	s.mu.Unlock()
	for _, v := range vs {
		v.end(why)
	}
}

// waitPublished polls the stream's publication until it is there or ctx
// ends.
func (s *Stream) waitPublished(ctx context.Context) (string, []PublishedTrack, bool) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if sess, tracks, ok := s.PublishedTracks(); ok {
			return sess, tracks, true
		}
		select {
		case <-ctx.Done():
			return "", nil, false
		case <-t.C:
		}
	}
}
