package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
)

// streamStopTimeout bounds how long the daemon waits for its streams to
// close their tracks on the SFU at shutdown.
const streamStopTimeout = 5 * time.Second

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
		if sc.IsWHIP() {
			d.registry.add(&entry{name: sc.Name, wish: wishStream(d.cfg, sc, nil)})
			continue
		}
		srcs, err := publish.OpenSources(sc.SourceURLs(), d.log.With("component", "source", "stream", sc.Name))
		if err != nil {
			return fmt.Errorf("streams[%d] %s: %w", i, sc.Name, err)
		}
		api, err := d.sfuAPI()
		if err != nil {
			_ = publish.CloseSources(srcs)
			return fmt.Errorf("streams[%d] %s: %w", i, sc.Name, err)
		}
		st, err := publish.New(publish.Options{
			Name: sc.Name, Sources: srcs, VideoTrack: sc.VideoTrack, AudioTrack: sc.AudioTrack,
			Client: d.rt, API: api, Logger: d.log.With("component", "publish"),
		})
		if err != nil {
			_ = publish.CloseSources(srcs)
			_ = api.Close()
			return fmt.Errorf("streams[%d] %s: %w", i, sc.Name, err)
		}
		s := &stream{Stream: st, sources: srcs, api: api}
		d.registry.add(&entry{name: sc.Name, src: s, wish: wishStream(d.cfg, sc, publishOrigin{st})})
	}
	return nil
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

// runStreams runs every source stream until ctx is done and returns when
// all have stopped (each closes its tracks on the SFU first). WHIP streams
// run while they have a publisher (gateway/wish).
func (d *Daemon) runStreams(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range d.sourceStreams() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx); err != nil {
				d.log.Error("stream stopped", "stream", s.Name(), "err", err)
			}
		}()
	}
	wg.Wait()
}

// closeStreams releases the streams' sources.
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
