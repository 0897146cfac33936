package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record"
	"github.com/rtgate/rtgate/bridge/record/container"
	"github.com/rtgate/rtgate/bridge/rtpudp"
)

// recordSUT is the recording system under test: K RTP/UDP inputs, each
// written to its own file in a temporary directory, removed at close.
type recordSUT struct {
	*sutBase
	dir string

	finishOnce sync.Once
	finish     []func() error // close the writers (finalize the files)
	result     recordResult
}

// recordResult is what the files hold once finished.
type recordResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Frames written (rtgate; pion's ivfwriter and the floor do not count).
	Frames uint64 `json:"frames,omitempty"`
	Error  string `json:"error,omitempty"`
}

func newRecordSUT(ctx context.Context, cfg workerConfig, log *slog.Logger) (role, any, error) {
	dir, err := os.MkdirTemp("", "rtgate-bench-record-")
	if err != nil {
		return nil, nil, fmt.Errorf("record: %w", err)
	}
	s := &recordSUT{sutBase: newSUTBase(ctx, log), dir: dir}
	s.closers = append(s.closers, func() error { return os.RemoveAll(dir) })
	ready := sutReady{RSSBefore: settledRSS()}
	switch cfg.Variant {
	case VariantFloor:
		err = s.floor(cfg, &ready)
	case VariantPion:
		err = s.pion(cfg, &ready)
	case VariantRTGate:
		err = s.rtgate(cfg, &ready)
	default:
		err = fmt.Errorf("unknown variant %q", cfg.Variant)
	}
	if err != nil {
		_ = s.close()
		return nil, nil, fmt.Errorf("record %s: %w", cfg.Variant, err)
	}
	ready.RSSIdle = settledRSS()
	return s, ready, nil
}

func (s *recordSUT) handle(ctx context.Context, op string, arg json.RawMessage) (any, error) {
	if op == "finish" {
		return s.finishFiles(), nil
	}
	return s.sutBase.handle(ctx, op, arg)
}

// finishFiles stops the inputs, finalizes the files and says what they
// hold.
func (s *recordSUT) finishFiles() recordResult {
	s.finishOnce.Do(func() {
		s.cancel()
		s.pipelines.Wait()
		var errs []error
		for _, f := range s.finish {
			errs = append(errs, f())
		}
		if err := errors.Join(errs...); err != nil {
			s.result.Error = err.Error()
		}
		_ = filepath.WalkDir(s.dir, func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil && fi.Size() > 0 {
					s.result.Files++
					s.result.Bytes += fi.Size()
				}
			}
			return nil
		})
	})
	return s.result
}

func (s *recordSUT) close() error {
	s.finishFiles()
	return s.sutBase.close()
}

// floor reads one datagram and writes it to its file: one write(2) per
// packet, no parsing.
func (s *recordSUT) floor(cfg workerConfig, ready *sutReady) error {
	for i := range cfg.Streams {
		c, err := listenLoopback()
		if err != nil {
			return err
		}
		s.closers = append(s.closers, c.Close)
		f, err := os.Create(filepath.Join(s.dir, fmt.Sprintf("bench%d.rtp", i)))
		if err != nil {
			return fmt.Errorf("record floor: %w", err)
		}
		s.finish = append(s.finish, f.Close)
		ready.Sources = append(ready.Sources, c.LocalAddr().String())
		s.pipelines.Go(func() {
			stop := context.AfterFunc(s.ctx, func() { _ = c.Close() })
			defer stop()
			eachDatagram(c, func(b []byte) {
				_, _ = f.Write(b)
				s.packets.Add(1)
			})
		})
	}
	return nil
}

// pion is pion's save-to-disk example with a UDP input: unmarshal each
// datagram into a new rtp.Packet and ivfwriter.WriteRTP it.
func (s *recordSUT) pion(cfg workerConfig, ready *sutReady) error {
	for i := range cfg.Streams {
		c, err := listenLoopback()
		if err != nil {
			return err
		}
		s.closers = append(s.closers, c.Close)
		w, err := ivfwriter.New(filepath.Join(s.dir, fmt.Sprintf("bench%d.ivf", i)))
		if err != nil {
			return fmt.Errorf("record pion: %w", err)
		}
		s.finish = append(s.finish, w.Close)
		ready.Sources = append(ready.Sources, c.LocalAddr().String())
		s.pipelines.Go(func() {
			stop := context.AfterFunc(s.ctx, func() { _ = c.Close() })
			defer stop()
			eachDatagram(c, func(b []byte) {
				pkt := &rtp.Packet{}
				if err := pkt.Unmarshal(b); err != nil {
					return
				}
				_ = w.WriteRTP(pkt)
				s.packets.Add(1)
			})
		})
	}
	return nil
}

// rtgate is bridge/rtpudp into bridge/record: one Recorder per input, in
// the format asked for (IVF by default, as pion's ivfwriter writes).
func (s *recordSUT) rtgate(cfg workerConfig, ready *sutReady) error {
	format := container.Format(cfg.Format)
	if format == "" {
		format = container.IVF
	}
	var recs []*record.Recorder
	for i := range cfg.Streams {
		src, err := rtpudp.Open("rtp://127.0.0.1:0?codec=vp8&pt=96")
		if err != nil {
			return err
		}
		s.closers = append(s.closers, src.Close)
		name := fmt.Sprintf("bench%d", i)
		rec, err := record.New(record.Options{Dir: s.dir, Template: "{stream}", Format: format, Stream: name, Logger: s.log})
		if err != nil {
			return fmt.Errorf("record rtgate: %w", err)
		}
		s.finish = append(s.finish, rec.Close)
		idx, err := rec.AddTrack(bridge.SinkTrack{Track: src.Tracks()[0], Name: name + "-video", Stream: name,
			RequestKeyframe: func() { src.RequestKeyframe(0) }})
		if err != nil {
			return fmt.Errorf("record rtgate: %w", err)
		}
		recs = append(recs, rec)
		addr, _ := src.LocalAddr(0)
		ready.Sources = append(ready.Sources, addr.String())
		s.pipelines.Go(func() {
			err := src.Run(s.ctx, func(_ int, pkt *rtp.Packet) {
				s.packets.Add(1)
				_ = rec.WriteRTP(idx, pkt)
			})
			if err != nil {
				s.log.Warn("record input stopped", "stream", name, "err", err)
			}
		})
	}
	s.finish = append(s.finish, func() error {
		for _, r := range recs {
			for _, t := range r.Stats().Tracks {
				s.result.Frames += t.Frames
			}
		}
		return nil
	})
	return nil
}
