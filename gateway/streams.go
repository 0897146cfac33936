package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// stream is a configured stream with the sources it owns and the pion API
// (its own UDP port) its PeerConnections toward the SFU use.
type stream struct {
	*publish.Stream
	sources []bridge.Source
	api     *peer.API
}

// openStreams opens every configured stream's sources (binding their
// ports) and makes the streams; nothing runs yet. Every configured stream,
// WHIP streams included, enters the registry.
func (d *Daemon) openStreams() error {
	d.registry = newRegistry(d.cfg)
	for i, sc := range d.cfg.Streams {
		e, err := d.openStream(sc)
		if err != nil {
			return fmt.Errorf("streams[%d] %s: %w", i, sc.Name, err)
		}
		d.registry.add(e)
	}
	return nil
}

// openStream makes one configured stream's registry entry: a WHIP stream
// waits for its publisher; a source stream opens its sources and the pion
// API (its own UDP port) of its PeerConnections toward the SFU.
func (d *Daemon) openStream(sc config.Stream) (*entry, error) {
	if sc.IsWHIP() {
		return &entry{name: sc.Name, wish: wishStream(d.cfg, sc, nil)}, nil
	}
	srcs, err := publish.OpenSources(sc.SourceURLs(), d.log.With("component", "source", "stream", sc.Name))
	if err != nil {
		return nil, err
	}
	api, err := d.sfuAPI()
	if err != nil {
		_ = publish.CloseSources(srcs)
		return nil, err
	}
	st, err := publish.New(publish.Options{
		Name: sc.Name, Sources: srcs, VideoTrack: sc.VideoTrack, AudioTrack: sc.AudioTrack,
		Client: d.rt, API: api, Logger: d.log.With("component", "publish"),
	})
	if err != nil {
		_ = publish.CloseSources(srcs)
		_ = api.Close()
		return nil, err
	}
	s := &stream{Stream: st, sources: srcs, api: api}
	return &entry{name: sc.Name, src: s, wish: wishStream(d.cfg, sc, publishOrigin{st})}, nil
}

// sourceStreams returns the registry's configured source streams.
func (d *Daemon) sourceStreams() []*stream {
	if d.registry == nil {
		return nil
	}
	var out []*stream
	for _, e := range d.registry.entries() {
		if e.src != nil {
			out = append(out, e.src)
		}
	}
	return out
}

// startStream runs a source stream under the supervisor (it retries
// failed sessions itself; the supervisor restarts it if Run fails).
// WHIP streams run while they have a publisher (gateway/wish).
func (d *Daemon) startStream(e *entry) {
	if e.src == nil {
		return
	}
	st := e.src.Stream
	err := d.group.Add(st, supervise.Options{
		Name: e.name, Kind: config.KindStream,
		Logger: d.log.With("component", "supervise", "stream", e.name),
		// The media watchdog: no packet from the sources for this long
		// restarts the stream (reopening a stalled camera's session).
		Watchdog: d.cfg.MediaWatchdog,
		Activity: func() uint64 {
			var n uint64
			for _, t := range st.Status().Tracks {
				n += t.Packets
			}
			return n
		},
	})
	if err != nil {
		d.log.Error("start stream", "stream", e.name, "err", err)
	}
}

// startStreams runs every source stream.
func (d *Daemon) startStreams() {
	for _, e := range d.registry.entries() {
		d.startStream(e)
	}
}

// closeStream stops a source stream (it closes its tracks on the SFU)
// and releases its sources and UDP port.
func (d *Daemon) closeStream(e *entry) error {
	if e.src == nil {
		return nil
	}
	if err := d.group.Remove(config.KindStream, e.name); err != nil && !errors.Is(err, supervise.ErrNotFound) {
		return err
	}
	return errors.Join(publish.CloseSources(e.src.sources), e.src.api.Close())
}

func (d *Daemon) closeStreams() error {
	var errs []error
	for _, s := range d.sourceStreams() {
		if err := publish.CloseSources(s.sources); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", s.Name(), err))
		}
		if err := s.api.Close(); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: close its UDP port: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Streams returns the publication status of every stream of the
// registry, configured ones first, in configuration order.
func (d *Daemon) Streams() []publish.Status {
	all := d.StreamStatuses()
	out := make([]publish.Status, len(all))
	for i, s := range all {
		out[i] = s.Status
	}
	return out
}

// StreamStatuses returns every stream of the registry with its WHIP and
// WHEP state, as GET /api/streams lists them.
func (d *Daemon) StreamStatuses() []StreamStatus {
	if d.registry == nil {
		return nil
	}
	es := d.registry.entries()
	out := make([]StreamStatus, len(es))
	for i, e := range es {
		out[i] = e.status()
	}
	return out
}

// handleStreams serves GET /api/streams.
func (d *Daemon) handleStreams(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	streams := d.StreamStatuses()
	if streams == nil {
		streams = []StreamStatus{}
	}
	_ = json.NewEncoder(w).Encode(struct {
		Streams []StreamStatus `json:"streams"`
	}{streams})
}
