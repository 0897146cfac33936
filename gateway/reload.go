package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/wish"
)

// ErrReloadRefused wraps the error of a reload that changed nothing: the
// new configuration is invalid or changes keys that need a restart.
var ErrReloadRefused = errors.New("reload refused")

// ReloadResult says what a reload did.
type ReloadResult struct {
	// Changes are the pipelines started, stopped or restarted.
	Changes []config.Change
	// Applied lists the other keys now in effect (tokens, log.*). The
	// caller applies log.* to its loggers (cmd/rtgate sets its
	// logswitch.Switch): the daemon does not own them.
	Applied []string
}

// Reload makes file (a configuration just loaded from the config file,
// the environment and the flags) the daemon's configuration, touching
// only the pipelines that changed: streams, recordings and forwards that
// the new configuration adds, removes or changes are started, stopped or
// restarted; the others keep running without a gap. Pipelines the control
// API added at runtime survive unless the file now defines one of the
// same name. An invalid configuration, or one that changes a key that
// needs a restart (http.*, realtime.*, webrtc.*, sfu.*), is refused with
// an error wrapping ErrReloadRefused and nothing changes. A pipeline that
// fails to start is reported in the error; the rest of the reload stands.
func (d *Daemon) Reload(file *config.Config) (ReloadResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	next := file.Clone()
	// A pipeline the file now defines belongs to the file from here on.
	for k := range d.runtime {
		if next.Has(k[0], k[1]) {
			delete(d.runtime, k)
		}
	}
	// Runtime additions stay (the file no longer defines any of them).
	for _, s := range d.cfg.Streams {
		if d.runtime[[2]string{config.KindStream, s.Name}] {
			next.Streams = append(next.Streams, s)
		}
	}
	for _, r := range d.cfg.Recordings {
		if d.runtime[[2]string{config.KindRecording, r.Name}] {
			next.Recordings = append(next.Recordings, r)
		}
	}
	for _, f := range d.cfg.Forwards {
		if d.runtime[[2]string{config.KindForward, f.Name}] {
			next.Forwards = append(next.Forwards, f)
		}
	}
	res, err := d.applyLocked(next)
	for k := range d.runtime {
		if !d.has(k[0], k[1]) {
			delete(d.runtime, k)
		}
	}
	if d.metrics != nil {
		d.metrics.ConfigReloaded(err)
	}
	if err != nil {
		d.log.Error("configuration reload", "err", err)
	} else {
		d.log.Info("configuration reloaded", "changes", len(res.Changes), "applied", res.Applied)
	}
	return res, err
}

// has reports whether the configuration in effect has a pipeline.
func (d *Daemon) has(kind, name string) bool { return d.cfg.Has(kind, name) }

// applyLocked moves the daemon from d.cfg to next; d.mu is held.
func (d *Daemon) applyLocked(next *config.Config) (ReloadResult, error) {
	var res ReloadResult
	if d.stopping.Load() || !d.running.Load() {
		return res, fmt.Errorf("%w: the daemon is not running", ErrReloadRefused)
	}
	if err := next.Validate(); err != nil {
		return res, fmt.Errorf("%w: invalid configuration:\n%w", ErrReloadRefused, err)
	}
	diff := config.DiffConfigs(d.cfg, next)
	if len(diff.Restart) > 0 {
		return res, fmt.Errorf("%w: %s changed: these take effect only when rtgate restarts",
			ErrReloadRefused, strings.Join(diff.Restart, ", "))
	}
	d.cfg = next
	d.registry.setConfig(next)
	res.Applied = diff.Other

	// Stop what goes away or changes first (a changed stream frees its
	// ports), then start what comes or changed.
	var errs []error
	for _, c := range diff.Pipelines {
		if c.Op == config.Added {
			continue
		}
		if err := d.stopPipeline(c.Kind, c.Name); err != nil {
			errs = append(errs, fmt.Errorf("stop %s %s: %w", c.Kind, c.Name, err))
		}
	}
	for _, c := range diff.Pipelines {
		if c.Op != config.Removed {
			if err := d.startPipeline(next, c.Kind, c.Name); err != nil {
				errs = append(errs, fmt.Errorf("start %s %s: %w", c.Kind, c.Name, err))
			}
		}
		res.Changes = append(res.Changes, c)
	}
	if err := d.updateWISH(next); err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// stopPipeline stops a stream, recording or forward and releases it.
func (d *Daemon) stopPipeline(kind, name string) error {
	if kind == config.KindStream {
		e, ok := d.registry.get(name)
		if !ok {
			return nil
		}
		err := d.closeStream(e)
		d.registry.Remove(e.wish)
		// Its WHIP publisher and WHEP viewers end too: they would stay on
		// the old stream, which nothing feeds any more.
		d.wish.End(e.wish, "the stream was stopped or reconfigured")
		return err
	}
	o, ok := d.outputs.get(kind, name)
	if !ok {
		return nil
	}
	_ = d.group.Remove(kind, name)
	d.outputs.remove(o)
	return o.close()
}

// startPipeline makes and starts the pipeline cfg defines.
func (d *Daemon) startPipeline(cfg *config.Config, kind, name string) error {
	switch kind {
	case config.KindStream:
		i := slices.IndexFunc(cfg.Streams, func(x config.Stream) bool { return x.Name == name })
		e, err := d.openStream(cfg.Streams[i])
		if err != nil {
			return err
		}
		if !d.registry.add(e) {
			_ = d.closeStream(e)
			return fmt.Errorf("a stream named %s exists (a WHIP publisher made it)", name)
		}
		d.startStream(e)
		return nil
	case config.KindRecording:
		i := slices.IndexFunc(cfg.Recordings, func(x config.Recording) bool { return x.Name == name })
		o, err := d.newRecording(cfg.Recordings[i])
		if err != nil {
			return err
		}
		d.outputs.put(o)
		return d.startOutput(o)
	default:
		i := slices.IndexFunc(cfg.Forwards, func(x config.Forward) bool { return x.Name == name })
		o, err := d.newForward(cfg.Forwards[i])
		if err != nil {
			return err
		}
		d.outputs.put(o)
		return d.startOutput(o)
	}
}

// updateWISH gives the WHIP/WHEP handler the tokens and publishing rules of
// cfg (the stream modes of new streams come from the registry's config).
func (d *Daemon) updateWISH(cfg *config.Config) error {
	whip, err := cfg.ResolveWHIPToken()
	if err != nil {
		return fmt.Errorf("whip token: %w", err)
	}
	whep, err := cfg.ResolveWHEPToken()
	if err != nil {
		return fmt.Errorf("whep token: %w", err)
	}
	d.wish.Update(wish.Settings{WHIPToken: whip.Value, WHEPToken: whep.Value,
		AllowAnyStream: cfg.WHIP.AllowAnyStream, OnConflict: cfg.WHIP.OnConflict})
	return nil
}
