package gateway

import (
	"fmt"
	"sync"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/wish"
)

// registry is the daemon's set of streams. It changes at runtime: the
// configured streams are there from the start, WHIP publishers add streams
// by publishing to new names (and take them away when they leave), and the
// control API will add and remove streams too. Every entry has a
// wish.Stream (its WHIP publisher, its WHEP viewers, and the Resolver that
// recorders and forwards pull it through); a configured source stream also
// has its publish.Stream and sources.
type registry struct {
	cfg *config.Config

	mu     sync.Mutex
	order  []*entry
	byName map[string]*entry
}

// entry is one stream of the registry.
type entry struct {
	name string
	src  *stream // a configured source stream; nil for WHIP streams
	wish *wish.Stream
}

func newRegistry(cfg *config.Config) *registry {
	return &registry{cfg: cfg, byName: map[string]*entry{}}
}

// setConfig changes the configuration new WHIP-created streams take their
// modes from (a reload).
func (g *registry) setConfig(cfg *config.Config) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg = cfg
}

// add appends an entry; false when the name is taken.
func (g *registry) add(e *entry) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, taken := g.byName[e.name]; taken {
		return false
	}
	g.byName[e.name] = e
	g.order = append(g.order, e)
	return true
}

// entries returns the streams in registry order: configured ones in
// configuration order, then the others in the order they came.
func (g *registry) entries() []*entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*entry(nil), g.order...)
}

// get returns the entry called name.
func (g *registry) get(name string) (*entry, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.byName[name]
	return e, ok
}

// Lookup implements wish.Registry.
func (g *registry) Lookup(name string) (*wish.Stream, bool) {
	e, ok := g.get(name)
	if !ok {
		return nil, false
	}
	return e.wish, true
}

// Create implements wish.Registry: a stream a WHIP publisher makes by
// publishing to a new name, with the global whip and whep settings.
func (g *registry) Create(name string) (*wish.Stream, error) {
	g.mu.Lock()
	cfg := g.cfg
	g.mu.Unlock()
	ws := wish.NewStream(wish.StreamOptions{Name: name, WHIPMode: cfg.WHIP.Mode, WHEPMode: cfg.WHEP.Mode, Dynamic: true})
	if !g.add(&entry{name: name, wish: ws}) {
		return nil, fmt.Errorf("stream %q exists", name)
	}
	return ws, nil
}

// Remove implements wish.Registry.
func (g *registry) Remove(s *wish.Stream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.byName[s.Name()]
	if !ok || e.wish != s {
		return
	}
	delete(g.byName, s.Name())
	for i, x := range g.order {
		if x == e {
			g.order = append(g.order[:i:i], g.order[i+1:]...)
			break
		}
	}
}

// wishStream makes the wish.Stream of a configured stream.
func wishStream(cfg *config.Config, sc config.Stream, origin wish.Origin) *wish.Stream {
	o := wish.StreamOptions{Name: sc.Name, Origin: origin, WHEPMode: cfg.WHEP.Mode, WHEPToken: sc.WHEPToken,
		VideoTrack: sc.VideoTrack, AudioTrack: sc.AudioTrack}
	if sc.WHEPMode != "" {
		o.WHEPMode = sc.WHEPMode
	}
	if sc.IsWHIP() {
		o.WHIPMode, o.WHIPToken = cfg.WHIP.Mode, sc.WHIPToken
		if sc.WHIPMode != "" {
			o.WHIPMode = sc.WHIPMode
		}
	}
	return wish.NewStream(o)
}

// publishOrigin is a configured source stream's publication as WHEP and
// pulls see it.
type publishOrigin struct{ s *publish.Stream }

func (o publishOrigin) PublishedTracks() (string, []wish.PublishedTrack, bool) {
	st := o.s.Status()
	if st.State != publish.StateLive || st.SessionID == "" {
		return "", nil, false
	}
	out := make([]wish.PublishedTrack, len(st.Tracks))
	for i, t := range st.Tracks {
		out[i] = wish.PublishedTrack{Name: t.Name, Kind: t.Kind, Codec: t.Codec}
	}
	return st.SessionID, out, true
}

// StreamStatus is one stream of GET /api/streams: its publication (state,
// session, tracks with codec and bitrate), what feeds it, and its WHIP
// and WHEP state (publisher, WHEP mode, viewer count).
type StreamStatus struct {
	publish.Status
	// Type is "source" (configured source URLs) or "whip".
	Type string `json:"type"`
	// WHIP is the ingest of a WHIP stream: its mode and publisher.
	WHIP     *wish.WHIPStatus `json:"whip,omitempty"`
	WHEPMode string           `json:"whepMode"`
	// Viewers counts the stream's WHEP viewers.
	Viewers int `json:"viewers"`
}

// Stream types in StreamStatus.
const (
	TypeSource = "source"
	TypeWHIP   = "whip"
)

func (e *entry) status() StreamStatus {
	ws := e.wish.Status()
	st := StreamStatus{Status: publish.Status{Name: e.name}, Type: TypeWHIP, WHIP: ws.WHIP, WHEPMode: ws.WHEPMode, Viewers: ws.Viewers}
	if e.src != nil {
		st.Type = TypeSource
		st.Status = e.src.Status()
	} else if ps, ok := e.wish.Publication(); ok {
		st.Status = ps
	}
	if st.Tracks == nil {
		st.Tracks = []publish.TrackStatus{}
	}
	return st
}

// Resolver returns the stream called name as recorders and forwards pull
// it: its current session and track names on the SFU.
func (d *Daemon) Resolver(name string) (wish.Resolver, bool) {
	e, ok := d.registry.get(name)
	if !ok {
		return nil, false
	}
	return e.wish, true
}
