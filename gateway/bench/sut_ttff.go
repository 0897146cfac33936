package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway"
)

// ttffInfo is what the whep-ttff system under test reports once up.
type ttffInfo struct {
	Base      string            `json:"base"` // http://127.0.0.1:PORT
	WHIPToken string            `json:"whipToken"`
	WHEPToken string            `json:"whepToken"`
	Streams   map[string]string `json:"streams"` // WHEP mode -> stream name
}

// ttffSUT is the whep-ttff system under test: the daemon itself, as
// `rtgate run` starts it (gateway.New with a configuration), with the
// embedded SFU, everything on 127.0.0.1, and one WHIP stream per WHEP
// mode. Both streams are published in proxy mode (the publisher's media
// goes to the SFU directly), so that the two differ only in how viewers
// are served.
type ttffSUT struct {
	cancel   context.CancelFunc
	done     chan error
	timeline *timelineCapture
}

func newTTFFSUT(ctx context.Context, log *slog.Logger) (role, any, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	c := config.Default()
	c.HTTP.Listen = "127.0.0.1:0"
	c.Realtime.URL = config.Embedded
	c.WebRTC.ListenIP = "127.0.0.1"
	c.SFU.ListenIP = "127.0.0.1"
	c.WHIP.Token, c.WHEP.Token = "whip-"+tok, "whep-"+tok
	c.WHIP.AllowAnyStream = false
	c.ShutdownTimeout = 3 * time.Second
	info := ttffInfo{WHIPToken: c.WHIP.Token, WHEPToken: c.WHEP.Token, Streams: map[string]string{}}
	for _, mode := range ttffModes {
		name := "ttff-" + mode
		info.Streams[mode] = name
		c.Streams = append(c.Streams, config.Stream{Name: name, Source: config.SourceWHIP,
			WHIPMode: config.ModeProxy, WHEPMode: mode})
	}
	tc := newTimelineCapture(log.Handler())
	d, err := gateway.New(c, slog.New(tc))
	if err != nil {
		return nil, nil, fmt.Errorf("whep-ttff: start the daemon: %w", err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &ttffSUT{cancel: cancel, done: make(chan error, 1), timeline: tc}
	go func() { s.done <- d.Run(ctx) }() // owner: s; ends on close
	select {
	case <-d.Started():
	case err := <-s.done:
		cancel()
		return nil, nil, fmt.Errorf("whep-ttff: the daemon stopped: %w", err)
	case <-time.After(30 * time.Second):
		_ = s.close()
		return nil, nil, errors.New("whep-ttff: the daemon did not start within 30 s")
	}
	info.Base = "http://" + d.Addr().String()
	return s, sutReady{TTFF: &info}, nil
}

func (s *ttffSUT) handle(_ context.Context, op string, _ json.RawMessage) (any, error) {
	if op == "timelines" {
		return s.timeline.take(), nil
	}
	return nil, fmt.Errorf("whep-ttff sut: unknown request %q", op)
}

func (s *ttffSUT) close() error {
	s.cancel()
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		return errors.New("whep-ttff: the daemon did not stop within 20 s")
	}
}

// timelineMsg is the message of gateway/wish's viewer timelines.
const timelineMsg = "WHEP viewer timeline"

// timelineCapture is the daemon's log handler in the whep-ttff SUT: it
// keeps the viewer timelines gateway/wish logs at Debug, as one map per
// viewer (durations in ms), and passes everything else to next (the
// worker's log: warnings and errors). Debug is enabled for gateway/wish's
// logger only, so that pion's debug lines are not even formatted.
type timelineCapture struct {
	next slog.Handler
	wish bool // the logger of component=wish

	mu   *sync.Mutex
	list *[]map[string]any
}

func newTimelineCapture(next slog.Handler) *timelineCapture {
	return &timelineCapture{next: next, mu: &sync.Mutex{}, list: &[]map[string]any{}}
}

func (c *timelineCapture) Enabled(ctx context.Context, l slog.Level) bool {
	return (c.wish && l == slog.LevelDebug) || c.next.Enabled(ctx, l)
}

func (c *timelineCapture) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != timelineMsg {
		if !c.next.Enabled(ctx, r.Level) {
			return nil
		}
		return c.next.Handle(ctx, r)
	}
	m := map[string]any{}
	r.Attrs(func(a slog.Attr) bool {
		switch v := a.Value.Any().(type) {
		case time.Duration:
			m[a.Key] = float64(v) / 1e6
		default:
			m[a.Key] = a.Value.Any()
		}
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.list = append(*c.list, m)
	return nil
}

func (c *timelineCapture) WithAttrs(as []slog.Attr) slog.Handler {
	n := *c
	n.next = c.next.WithAttrs(as)
	for _, a := range as {
		if a.Key == "component" && a.Value.String() == "wish" {
			n.wish = true
		}
	}
	return &n
}

func (c *timelineCapture) WithGroup(name string) slog.Handler {
	n := *c
	n.next = c.next.WithGroup(name)
	return &n
}

// take returns the timelines logged since the last take.
func (c *timelineCapture) take() []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := *c.list
	*c.list = nil
	return out
}
