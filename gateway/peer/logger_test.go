package peer

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := NewLoggerFactory(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))).NewLogger("ice")
	l.Info("state changed") // pion's chatter: hidden at info
	l.Debugf("x=%d", 1)     // hidden
	l.Trace("t")            // hidden
	l.Warnf("lost %d", 2)   // shown
	l.Error("broken")       // shown
	out := buf.String()
	for _, hidden := range []string{"state changed", "x=1", "msg=t "} {
		if strings.Contains(out, hidden) {
			t.Errorf("%q logged at info level:\n%s", hidden, out)
		}
	}
	for _, shown := range []string{"level=WARN msg=broken component=pion scope=ice"} {
		if !strings.Contains(out, shown) {
			t.Errorf("missing %q in:\n%s", shown, out)
		}
	}
	buf.Reset()
	d := NewLoggerFactory(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).NewLogger("pc")
	d.Info("state changed")
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("pion info should appear at debug: %q", buf.String())
	}
}
