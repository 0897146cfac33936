package logswitch

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// lines returns the log lines in buf and empties it.
func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// logged reports whether some line contains every one of want.
func logged(ls []string, want ...string) bool {
	for _, l := range ls {
		all := true
		for _, w := range want {
			all = all && strings.Contains(l, w)
		}
		if all {
			return true
		}
	}
	return false
}

func TestComponentLevels(t *testing.T) {
	var buf bytes.Buffer
	sw := New(&buf, Config{Level: slog.LevelInfo, Levels: map[string]slog.Level{
		"sfu":  slog.LevelDebug, // below the global level
		"pion": slog.LevelWarn,  // above it
	}})
	root := sw.Logger()
	sfu := root.With("component", "sfu")
	pion := root.With("component", "pion")
	other := root.With("component", "publish")

	for _, l := range []*slog.Logger{root, sfu, pion, other} {
		l.Debug("d")
		l.Info("i")
		l.Warn("w")
	}
	got := lines(&buf)
	want := []string{
		"level=INFO msg=i",                   // root: info
		"level=WARN msg=w",                   //
		"level=DEBUG msg=d component=sfu",    // sfu: debug
		"level=INFO msg=i component=sfu",     //
		"level=WARN msg=w component=sfu",     //
		"level=WARN msg=w component=pion",    // pion: warn only
		"level=INFO msg=i component=publish", // publish: global
		"level=WARN msg=w component=publish", //
	}
	if len(got) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("line %d = %q, want it to contain %q", i, got[i], w)
		}
	}
	if sw.Level("sfu") != slog.LevelDebug || sw.Level("publish") != slog.LevelInfo || sw.Level("") != slog.LevelInfo {
		t.Errorf("Level(sfu, publish, \"\") = %v, %v, %v", sw.Level("sfu"), sw.Level("publish"), sw.Level(""))
	}
}

func TestSetAtRuntime(t *testing.T) {
	var buf bytes.Buffer
	sw := New(&buf, Config{Level: slog.LevelInfo})
	// Loggers made before Set, as running pipelines hold them; "record"
	// is made before any level names it.
	sfu := sw.Logger().With("component", "sfu")
	rec := sw.Logger().With("component", "record", "recording", "cam1")
	plain := sw.Logger()

	sfu.Debug("before")
	rec.Debug("before")
	if got := lines(&buf); len(got) != 0 {
		t.Fatalf("debug logged at info: %q", got)
	}

	sw.Set(Config{Level: slog.LevelWarn, Levels: map[string]slog.Level{"sfu": slog.LevelDebug, "record": slog.LevelDebug}})
	sfu.Debug("after")
	rec.Debug("after")
	plain.Info("hidden")
	plain.Warn("shown")
	got := lines(&buf)
	if !logged(got, "level=DEBUG", "msg=after", "component=sfu") ||
		!logged(got, "level=DEBUG", "msg=after", "component=record", "recording=cam1") ||
		logged(got, "msg=hidden") || !logged(got, "msg=shown") || len(got) != 3 {
		t.Errorf("after Set(warn, sfu: debug, record: debug):\n%s", strings.Join(got, "\n"))
	}

	// A component no longer listed falls back to the global level.
	sw.Set(Config{Level: slog.LevelInfo, Levels: map[string]slog.Level{"record": slog.LevelError}})
	sfu.Debug("gone")
	sfu.Info("sfu info")
	rec.Warn("rec warn")
	rec.Error("rec error")
	got = lines(&buf)
	if logged(got, "msg=gone") || !logged(got, "msg=\"sfu info\"") || logged(got, "rec warn") ||
		!logged(got, "msg=\"rec error\"") || len(got) != 2 {
		t.Errorf("after Set(info, record: error):\n%s", strings.Join(got, "\n"))
	}
}

func TestWithChainsAndGroups(t *testing.T) {
	var buf bytes.Buffer
	sw := New(&buf, Config{Level: slog.LevelInfo, Levels: map[string]slog.Level{"pion": slog.LevelDebug}})
	// pion's logger is made from the webrtc one: the last component wins.
	webrtc := sw.Logger().With("component", "webrtc")
	pion := webrtc.With("component", "pion").With("scope", "ice")
	pion.Debug("pion debug")
	webrtc.Debug("webrtc debug")
	// The component stays through later With and WithGroup.
	pion.WithGroup("g").With("k", 1).Debug("grouped")
	// slog.String and a group attribute both name a component at top level.
	sw.Logger().With(slog.String("component", "pion")).Debug("attr form")
	// Inside a group, "component" is g.component: no component.
	sw.Logger().WithGroup("g").With("component", "pion").Debug("in group")
	sw.Logger().WithGroup("g").With("component", "pion").Info("in group info")
	// A per-call attribute is not the logger's component.
	sw.Logger().Debug("per call", "component", "pion")

	got := lines(&buf)
	checks := []struct {
		want  []string
		shown bool
	}{
		{[]string{"msg=\"pion debug\"", "component=webrtc component=pion scope=ice"}, true},
		{[]string{"webrtc debug"}, false},
		{[]string{"msg=grouped", "scope=ice g.k=1"}, true},
		{[]string{"msg=\"attr form\"", "component=pion"}, true},
		{[]string{"msg=\"in group\" "}, false},
		{[]string{"msg=\"in group info\"", "g.component=pion"}, true},
		{[]string{"per call"}, false},
	}
	for _, c := range checks {
		if logged(got, c.want...) != c.shown {
			t.Errorf("line with %q: shown = %v, want %v, in:\n%s", c.want, !c.shown, c.shown, strings.Join(got, "\n"))
		}
	}
	if len(got) != 4 {
		t.Errorf("%d lines, want 4:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestFormatChange(t *testing.T) {
	var buf bytes.Buffer
	sw := New(&buf, Config{Level: slog.LevelInfo})
	l := sw.Logger().With("component", "record").WithGroup("rec").With("name", "cam1")
	l.Info("text", "n", 1)
	sw.Set(Config{Level: slog.LevelInfo, JSON: true})
	l.Info("json", "n", 2)
	sw.Set(Config{Level: slog.LevelInfo})
	l.Info("text again", "n", 3)

	got := lines(&buf)
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(got), strings.Join(got, "\n"))
	}
	if !strings.Contains(got[0], "msg=text component=record rec.name=cam1 rec.n=1") {
		t.Errorf("text line = %q", got[0])
	}
	var rec struct {
		Msg       string
		Component string
		Rec       struct {
			Name string
			N    int
		}
	}
	if err := json.Unmarshal([]byte(got[1]), &rec); err != nil {
		t.Fatalf("after Set(JSON) the line is not JSON: %q: %v", got[1], err)
	}
	if rec.Msg != "json" || rec.Component != "record" || rec.Rec.Name != "cam1" || rec.Rec.N != 2 {
		t.Errorf("JSON line %q lost attributes or groups: %+v", got[1], rec)
	}
	if !strings.Contains(got[2], `msg="text again" component=record rec.name=cam1 rec.n=3`) {
		t.Errorf("text line after switching back = %q", got[2])
	}
}

// TestConcurrentSet logs from several goroutines while levels and format
// change; with -race it shows the handler needs no lock of its callers.
func TestConcurrentSet(t *testing.T) {
	var buf syncBuffer
	sw := New(&buf, Config{Level: slog.LevelInfo})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			l := sw.Logger().With("component", "sfu", "g", g)
			for i := range 200 {
				l.Info("x", "i", i)
				l.Debug("y")
			}
		})
	}
	for i := range 50 {
		sw.Set(Config{Level: slog.LevelInfo, JSON: i%2 == 0, Levels: map[string]slog.Level{"sfu": slog.Level(i % 2 * -4)}})
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "\n"); n < 800 {
		t.Errorf("%d lines, want at least the 800 info lines", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEnabledDoesNotAllocate: Enabled is asked before every line, also on
// media paths, so it must not allocate, with or without a component level.
func TestEnabledDoesNotAllocate(t *testing.T) {
	var buf bytes.Buffer
	sw := New(&buf, Config{Level: slog.LevelInfo, Levels: map[string]slog.Level{"sfu": slog.LevelWarn}})
	ctx := context.Background()
	for name, l := range map[string]*slog.Logger{
		"component with level":    sw.Logger().With("component", "sfu"),
		"component without level": sw.Logger().With("component", "publish"),
		"no component":            sw.Logger(),
	} {
		allocs := testing.AllocsPerRun(1000, func() {
			_ = l.Enabled(ctx, slog.LevelDebug)
			l.Debug("hidden") // a disabled line costs only Enabled
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Enabled and disabled Debug, want 0", name, allocs)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("disabled lines were logged: %q", buf.String())
	}
}

func BenchmarkEnabled(b *testing.B) {
	sw := New(&bytes.Buffer{}, Config{Level: slog.LevelInfo, Levels: map[string]slog.Level{"sfu": slog.LevelWarn}})
	h := sw.Logger().With("component", "sfu").Handler()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Enabled(ctx, slog.LevelDebug)
	}
}

// BenchmarkEnabledLevelVar is the baseline: slog's own handler with a
// LevelVar, what rtgate had before.
func BenchmarkEnabledLevelVar(b *testing.B) {
	var lv slog.LevelVar
	h := slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: &lv}).WithAttrs([]slog.Attr{slog.String("component", "sfu")})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Enabled(ctx, slog.LevelDebug)
	}
}
