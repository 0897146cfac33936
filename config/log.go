package config

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/rtgate/rtgate/config/logswitch"
)

// logComponents are the values of the "component" attribute that rtgate's
// packages give their loggers (logger.With("component", ...)), the keys
// log.levels accepts. TestLogComponentsInCode keeps it equal to what the
// code uses.
var logComponents = []string{
	"forward",   // forwards: tracks out as RTP/UDP
	"http",      // the HTTP server's own errors
	"pion",      // pion's own logs (attribute "scope": ice, dtls, pc, ...)
	"publish",   // publishing streams into the SFU
	"pull",      // pulling tracks out of the SFU (recordings, forwards, WHEP relay)
	"realtime",  // the Realtime API client
	"record",    // recordings
	"sfu",       // the embedded SFU
	"source",    // stream sources: RTP in, files, cameras
	"supervise", // pipeline supervisors: restarts and backoff
	"webrtc",    // rtgate's own PeerConnections
	"wish",      // the WHIP/WHEP handler
}

// LogComponents returns the components log.levels can set, sorted.
func LogComponents() []string { return slices.Clone(logComponents) }

// SwitchConfig returns log.* as the Config of a logswitch.Switch. Call it
// on a validated Log: an invalid level reads as info, an invalid format as
// text.
func (l Log) SwitchConfig() logswitch.Config {
	c := logswitch.Config{Level: l.SlogLevel(), JSON: strings.EqualFold(l.Format, "json")}
	if len(l.Levels) > 0 {
		c.Levels = make(map[string]slog.Level, len(l.Levels))
		for name, s := range l.Levels {
			if lvl, err := parseLevel(s); err == nil {
				c.Levels[name] = lvl
			}
		}
	}
	return c
}

// NewLogSwitch returns the Switch of a process's loggers, writing to w as
// log.* says. A reload applies a new log.* (levels, per-component levels
// and format) to every logger made from it with
// sw.Set(cfg.Log.SwitchConfig()).
func (l Log) NewLogSwitch(w io.Writer) *logswitch.Switch {
	return logswitch.New(w, l.SwitchConfig())
}

// parseLevels reads the text form of log.levels (an environment variable
// or a flag): comma-separated component=level pairs.
func parseLevels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range splitList(s) {
		name, level, ok := strings.Cut(item, "=")
		name, level = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(level)
		switch {
		case !ok || name == "":
			return nil, &valueError{s, fmt.Sprintf(`must be component=level pairs separated by commas, such as "pion=warn,sfu=debug": %q has no component=`, item)}
		case out[name] != "":
			return nil, &valueError{s, fmt.Sprintf("must name each component once: %s is given twice", name)}
		}
		out[name] = level
	}
	return out, nil
}

// validateLog checks log.*.
func (c *Config) validateLog(v *validator) {
	if _, err := parseLevel(c.Log.Level); err != nil {
		v.add("log.level", c.Log.Level, "must be debug, info, warn or error")
	}
	if f := strings.ToLower(c.Log.Format); f != "text" && f != "json" {
		v.add("log.format", c.Log.Format, "must be text or json")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Log.Levels)) {
		key := "log.levels." + name
		if !slices.Contains(logComponents, name) {
			v.errs = append(v.errs, &FieldError{Key: key,
				Msg: "unknown component: must be one of " + strings.Join(logComponents, ", ")})
			continue
		}
		if _, err := parseLevel(c.Log.Levels[name]); err != nil {
			v.add(key, c.Log.Levels[name], "must be debug, info, warn or error")
		}
	}
}
