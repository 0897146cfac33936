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
	"github.com/rtgate/rtgate/gateway/publish"
)

// streamStopTimeout bounds how long the daemon waits for its streams to
// close their tracks on the SFU at shutdown.
const streamStopTimeout = 5 * time.Second

// stream is a configured stream with the sources it owns.
type stream struct {
	*publish.Stream
	sources []bridge.Source
}

// openStreams opens every configured stream's sources (binding their
// ports) and makes the streams; nothing runs yet.
func (d *Daemon) openStreams() error {
	for i, sc := range d.cfg.Streams {
		srcs, err := publish.OpenSources(sc.SourceURLs(), d.log.With("component", "source", "stream", sc.Name))
		if err != nil {
			return fmt.Errorf("streams[%d] %s: %w", i, sc.Name, err)
		}
		st, err := publish.New(publish.Options{
			Name: sc.Name, Sources: srcs, VideoTrack: sc.VideoTrack, AudioTrack: sc.AudioTrack,
			Client: d.rt, API: d.peer, Logger: d.log.With("component", "publish"),
		})
		if err != nil {
			_ = publish.CloseSources(srcs)
			return fmt.Errorf("streams[%d] %s: %w", i, sc.Name, err)
		}
		d.streams = append(d.streams, &stream{Stream: st, sources: srcs})
	}
	return nil
}

// runStreams runs every stream until ctx is done and returns when all have
// stopped (each closes its tracks on the SFU first).
func (d *Daemon) runStreams(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range d.streams {
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
	for _, s := range d.streams {
		if err := publish.CloseSources(s.sources); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", s.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Streams returns the status of every stream, in configuration order.
func (d *Daemon) Streams() []publish.Status {
	out := make([]publish.Status, 0, len(d.streams))
	for _, s := range d.streams {
		out = append(out, s.Status())
	}
	return out
}

// handleStreams serves GET /api/streams.
func (d *Daemon) handleStreams(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(struct {
		Streams []publish.Status `json:"streams"`
	}{d.Streams()})
}
