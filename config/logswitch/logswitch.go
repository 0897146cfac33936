// Package logswitch is the slog.Handler of rtgate's processes: a level per
// component and a format (text or JSON) that a reload changes in place,
// under loggers that running pipelines already hold.
//
// A component is the value of the "component" attribute a logger gets
// through With (logger.With("component", "sfu")), the way every rtgate
// package tags its logger. Enabled applies that component's level when one
// is configured and the global level otherwise. The level of a record is
// decided before its attributes are known, so only attributes given
// through With count, not those of a single call
// (logger.Info("x", "component", "sfu") is at the global level), and only
// outside groups (logger.WithGroup("g").With("component", ...) names an
// attribute g.component, not a component). The last component given wins:
// pion's logger, made from the webrtc one, is component "pion".
//
// It is written by hand because slog has no such handler: slog.LevelVar
// changes one level, and slog.HandlerOptions fixes the format. Why a
// package of its own: the handler outlives configurations (a reload makes
// a new config.Config, not new loggers) and depends on log/slog alone;
// package config only turns log.* into a Config of this package.
//
// Enabled is on the hot path (pion asks it before every trace line, and
// media code may ask before logging), so it reads atomics only: a
// component's level lives in a slot the handler found once, in WithAttrs.
package logswitch

import (
	"context"
	"io"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
)

// ComponentKey is the attribute that names a logger's component.
const ComponentKey = "component"

// Config is what a Switch applies: the levels and the format.
type Config struct {
	// Level is the level of every logger without a level of its own.
	Level slog.Level
	// Levels maps a component to its level; components not in it log at
	// Level.
	Levels map[string]slog.Level
	// JSON selects slog's JSON handler; false selects its text handler.
	JSON bool
}

// Switch owns the levels and the format of every logger made from its
// Handler, and changes them all at once with Set. It is safe for
// concurrent use.
type Switch struct {
	w      *lockedWriter
	global slog.LevelVar

	mu     sync.Mutex
	slots  map[string]*slot      // component -> its level; guarded by mu
	levels map[string]slog.Level // the configured levels; guarded by mu

	// out is the text or JSON handler every Handler writes through; Set
	// replaces it, and each Handler rebuilds its own inner handler once.
	out atomic.Pointer[output]
	// root is the Handler without attributes or groups.
	root *Handler
}

// output is one text or JSON handler writing to the Switch's writer.
type output struct {
	h    slog.Handler
	json bool
}

// unset marks a slot without a level of its own.
const unset = math.MinInt64

// slot is the level of one component; unset means the global level.
type slot struct{ level atomic.Int64 }

// New returns a Switch writing to w as c says.
func New(w io.Writer, c Config) *Switch {
	s := &Switch{w: &lockedWriter{w: w}, slots: map[string]*slot{}}
	s.root = &Handler{s: s}
	s.Set(c)
	return s
}

// Handler returns the handler of the Switch, for slog.New.
func (s *Switch) Handler() slog.Handler { return s.root }

// Logger returns slog.New(s.Handler()).
func (s *Switch) Logger() *slog.Logger { return slog.New(s.root) }

// Set applies c to every logger made from the Switch: loggers held by
// running code log at the new levels from the next call, and in the new
// format from their next record.
func (s *Switch) Set(c Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.global.Set(c.Level)
	s.levels = make(map[string]slog.Level, len(c.Levels))
	for name, l := range c.Levels {
		s.levels[name] = l
		if _, ok := s.slots[name]; !ok {
			s.slots[name] = newSlot()
		}
	}
	for name, sl := range s.slots {
		if l, ok := s.levels[name]; ok {
			sl.level.Store(int64(l))
		} else {
			sl.level.Store(unset)
		}
	}
	if cur := s.out.Load(); cur == nil || cur.json != c.JSON {
		// The inner handler filters nothing: Enabled has decided.
		opts := &slog.HandlerOptions{Level: slog.Level(math.MinInt)}
		o := &output{json: c.JSON}
		if c.JSON {
			o.h = slog.NewJSONHandler(s.w, opts)
		} else {
			o.h = slog.NewTextHandler(s.w, opts)
		}
		s.out.Store(o)
	}
}

// Level returns the level a logger of component logs at ("" for none).
func (s *Switch) Level(component string) slog.Level {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.levels[component]; ok && component != "" {
		return l
	}
	return s.global.Level()
}

func newSlot() *slot {
	sl := &slot{}
	sl.level.Store(unset)
	return sl
}

// slotOf returns the level slot of a component, making it on first use.
func (s *Switch) slotOf(name string) *slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl, ok := s.slots[name]
	if !ok {
		sl = newSlot()
		if l, ok := s.levels[name]; ok {
			sl.level.Store(int64(l))
		}
		s.slots[name] = sl
	}
	return sl
}

// Handler is a slog.Handler of a Switch. Each one made by WithAttrs or
// WithGroup remembers that one step, so that after a format change it can
// replay its chain onto the new text or JSON handler.
type Handler struct {
	s      *Switch
	parent *Handler
	attrs  []slog.Attr // the WithAttrs step, or
	group  string      // the WithGroup step
	groups int         // groups open at this handler
	comp   *slot       // the component's level; nil without a component

	built atomic.Pointer[built]
}

// built is a Handler's inner handler for one output.
type built struct {
	out *output
	h   slog.Handler
}

// Enabled reports whether a record at level is logged: at or above the
// component's level if it has one, else the global level. It does not
// allocate.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	if h.comp != nil {
		if l := h.comp.level.Load(); l != unset {
			return int64(level) >= l
		}
	}
	return level >= h.s.global.Level()
}

// Handle writes r through the current text or JSON handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner().Handle(ctx, r)
}

// WithAttrs returns a Handler with attrs added; a "component" attribute
// outside groups makes its value the handler's component.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	c := &Handler{s: h.s, parent: h, attrs: attrs, groups: h.groups, comp: h.comp}
	if h.groups == 0 {
		for _, a := range attrs {
			if a.Key == ComponentKey {
				c.comp = h.s.slotOf(a.Value.Resolve().String())
			}
		}
	}
	c.built.Store(&built{out: h.s.out.Load(), h: h.inner().WithAttrs(attrs)})
	return c
}

// WithGroup returns a Handler that puts later attributes in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := &Handler{s: h.s, parent: h, group: name, groups: h.groups + 1, comp: h.comp}
	c.built.Store(&built{out: h.s.out.Load(), h: h.inner().WithGroup(name)})
	return c
}

// inner returns h's text or JSON handler for the current output,
// rebuilding it (once per Handler) after a format change.
func (h *Handler) inner() slog.Handler {
	out := h.s.out.Load()
	if b := h.built.Load(); b != nil && b.out == out {
		return b.h
	}
	var ih slog.Handler
	switch {
	case h.parent == nil:
		ih = out.h
	case h.group != "":
		ih = h.parent.inner().WithGroup(h.group)
	default:
		ih = h.parent.inner().WithAttrs(h.attrs)
	}
	// A concurrent Set may have made a newer output meanwhile: then the
	// next call rebuilds again.
	h.built.Store(&built{out: out, h: ih})
	return ih
}

// lockedWriter serializes writes: during a format change a record of the
// old handler and one of the new may be written at once, and the two do
// not share slog's internal lock.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
