package peer

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// NewLoggerFactory routes pion's logs through slog: pion has no slog adapter.
// Each pion scope becomes the "scope" attribute of a logger under component
// "pion". pion logs every state change at info; a daemon's info log is for
// operators, so pion's info maps to slog debug, its debug to debug-2 and its
// trace to debug-4.
func NewLoggerFactory(l *slog.Logger) logging.LoggerFactory {
	if l == nil {
		l = slog.Default()
	}
	return loggerFactory{l.With("component", "pion")}
}

type loggerFactory struct{ l *slog.Logger }

func (f loggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.l.With("scope", scope)}
}

type slogLogger struct{ l *slog.Logger }

const (
	levelTrace     = slog.LevelDebug - 4
	levelPionDebug = slog.LevelDebug - 2
	levelPionWarn  = slog.LevelInfo - 2
)

func (s slogLogger) log(level slog.Level, msg string) {
	ctx := context.Background()
	if s.l.Enabled(ctx, level) {
		s.l.Log(ctx, level, msg)
	}
}

func (s slogLogger) logf(level slog.Level, format string, args ...any) {
	ctx := context.Background()
	if s.l.Enabled(ctx, level) {
		s.l.Log(ctx, level, fmt.Sprintf(format, args...))
	}
}

func (s slogLogger) Trace(msg string)          { s.log(levelTrace, msg) }
func (s slogLogger) Tracef(f string, a ...any) { s.logf(levelTrace, f, a...) }
func (s slogLogger) Debug(msg string)          { s.log(levelPionDebug, msg) }
func (s slogLogger) Debugf(f string, a ...any) { s.logf(levelPionDebug, f, a...) }
func (s slogLogger) Info(msg string)           { s.log(slog.LevelDebug, msg) }
func (s slogLogger) Infof(f string, a ...any)  { s.logf(slog.LevelDebug, f, a...) }
func (s slogLogger) Warn(msg string)           { s.log(levelPionWarn, msg) }
func (s slogLogger) Warnf(f string, a ...any)  { s.logf(levelPionWarn, f, a...) }
func (s slogLogger) Error(msg string)          { s.log(slog.LevelWarn, msg) }
func (s slogLogger) Errorf(f string, a ...any) { s.logf(slog.LevelWarn, f, a...) }
