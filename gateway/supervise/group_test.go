package supervise_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtgate/rtgate/gateway/supervise"
)

// ticker is a pipeline that counts while it runs and says whether it is
// running.
type ticker struct {
	ticks   atomic.Uint64
	running atomic.Int32
	runs    atomic.Int32
}

func (p *ticker) Run(ctx context.Context) error {
	p.runs.Add(1)
	p.running.Add(1)
	defer p.running.Add(-1)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.ticks.Add(1)
		}
	}
}

// TestGroupRemoveOne checks that removing or restarting one pipeline waits
// for it and leaves the others running.
func TestGroupRemoveOne(t *testing.T) {
	g := supervise.NewGroup()
	defer g.Stop()
	ps := map[string]*ticker{"a": {}, "b": {}, "c": {}}
	for name, p := range ps {
		if err := g.Add(p, supervise.Options{Name: name, Kind: "stream", Logger: quiet}); err != nil {
			t.Fatal(err)
		}
	}
	// Same name, other kind: a different pipeline.
	rec := &ticker{}
	if err := g.Add(rec, supervise.Options{Name: "b", Kind: "recording", Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(&ticker{}, supervise.Options{Name: "a", Kind: "stream"}); !errors.Is(err, supervise.ErrExists) {
		t.Errorf("Add of a taken name = %v, want ErrExists", err)
	}
	waitFor(t, "all running", 10*time.Second, func() bool {
		for _, p := range ps {
			if p.ticks.Load() == 0 {
				return false
			}
		}
		return rec.ticks.Load() > 0
	})

	if err := g.Remove("stream", "b"); err != nil {
		t.Fatal(err)
	}
	if ps["b"].running.Load() != 0 {
		t.Error("Remove returned while the pipeline was still running")
	}
	if _, ok := g.Status("stream", "b"); ok {
		t.Error("a removed pipeline still has a status")
	}
	if err := g.Remove("stream", "b"); !errors.Is(err, supervise.ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	after := map[string]uint64{"a": ps["a"].ticks.Load(), "c": ps["c"].ticks.Load(), "rec": rec.ticks.Load()}
	bTicks := ps["b"].ticks.Load()
	waitFor(t, "the others keep running", 10*time.Second, func() bool {
		return ps["a"].ticks.Load() > after["a"]+20 && ps["c"].ticks.Load() > after["c"]+20 &&
			rec.ticks.Load() > after["rec"]+20
	})
	if ps["b"].ticks.Load() != bTicks {
		t.Error("the removed pipeline kept running")
	}

	if err := g.Restart("stream", "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a restarted", 10*time.Second, func() bool { return ps["a"].runs.Load() == 2 && ps["a"].running.Load() == 1 })
	if ps["c"].runs.Load() != 1 {
		t.Error("restarting a restarted c")
	}
	sts := g.Statuses()
	if len(sts) != 3 || sts[0].Kind != "recording" || sts[1].Name != "a" || sts[2].Name != "c" {
		t.Errorf("Statuses = %+v; want recording/b, stream/a, stream/c", sts)
	}

	g.Stop()
	for name, p := range ps {
		if p.running.Load() != 0 {
			t.Errorf("%s still running after Stop", name)
		}
	}
	if st, ok := g.Status("stream", "a"); !ok || st.State != supervise.StateStopped {
		t.Errorf("status after Stop = %+v %v; want stopped", st, ok)
	}
	if err := g.Add(&ticker{}, supervise.Options{Name: "d"}); !errors.Is(err, supervise.ErrStopped) {
		t.Errorf("Add after Stop = %v, want ErrStopped", err)
	}
}

// chaotic is a pipeline that fails at random: errors after a random time,
// sometimes a stall the watchdog must catch, rarely a permanent error or an
// end. It checks it never runs twice at once.
type chaotic struct {
	rng     *rand.Rand
	mu      sync.Mutex // rng
	running atomic.Int32
	overlap atomic.Bool
	runs    atomic.Int64
	packets atomic.Uint64
}

func (p *chaotic) intn(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.IntN(n)
}

func (p *chaotic) Run(ctx context.Context) error {
	if p.running.Add(1) > 1 {
		p.overlap.Store(true)
	}
	defer p.running.Add(-1)
	p.runs.Add(1)
	mode := p.intn(1000)
	life := time.NewTimer(time.Duration(p.intn(60)) * time.Millisecond)
	defer life.Stop()
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	// A goroutine of its own, as real pipelines have, stopped before Run
	// returns.
	var wg sync.WaitGroup
	inner, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-inner.Done()
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if mode >= 100 { // 10% stall: no activity, the watchdog ends it
				p.packets.Add(1)
			}
		case <-life.C:
			switch {
			case mode < 100:
				life.Reset(time.Hour) // keep stalling
			case mode < 103:
				return supervise.Permanent(errors.New("chaos: permanent"))
			case mode < 106:
				return nil // ended
			default:
				return fmt.Errorf("chaos: failure %d", mode)
			}
		}
	}
}

// TestChaos runs 50 pipelines failing at random for a while, with removes,
// adds and restarts in between, then stops the group: no pipeline ever
// ran twice at once, none runs after Stop, and the goroutine count is back
// to where it started.
func TestChaos(t *testing.T) {
	dur := 10 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	base := runtime.NumGoroutine()
	g := supervise.NewGroup()
	var mu sync.Mutex
	all := []*chaotic{}
	add := func(i int) {
		p := &chaotic{rng: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
		err := g.Add(p, supervise.Options{Name: fmt.Sprint("p", i), Kind: "chaos", MinBackoff: time.Millisecond,
			MaxBackoff: 30 * time.Millisecond, ResetAfter: 40 * time.Millisecond, Watchdog: 50 * time.Millisecond,
			Activity: p.packets.Load, Logger: quiet})
		if err != nil && !errors.Is(err, supervise.ErrExists) {
			t.Error(err)
			return
		}
		if err == nil {
			mu.Lock()
			all = append(all, p)
			mu.Unlock()
		}
	}
	for i := range 50 {
		add(i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var removes, restarts int
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
		i := rng.IntN(50)
		switch rng.IntN(4) {
		case 0:
			if g.Remove("chaos", fmt.Sprint("p", i)) == nil {
				removes++
			}
		case 1:
			add(i)
		case 2:
			if g.Restart("chaos", fmt.Sprint("p", i)) == nil {
				restarts++
			}
		default:
			_ = g.Statuses()
		}
	}
	states := map[supervise.State]int{}
	retries := 0
	for _, st := range g.Statuses() {
		states[st.State]++
		retries += st.Retries
	}
	g.Stop()

	var runs int64
	for _, p := range all {
		runs += p.runs.Load()
		if p.overlap.Load() {
			t.Error("a pipeline ran twice at once")
		}
		if p.running.Load() != 0 {
			t.Error("a pipeline still runs after Stop")
		}
	}
	t.Logf("%d pipelines, %d runs, %d removes, %d restarts, %d retries of those left; states before Stop %v",
		len(all), runs, removes, restarts, retries, states)
	if runs < int64(len(all))*5 {
		t.Errorf("only %d runs of %d pipelines: the chaos did not restart much", runs, len(all))
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after Stop, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
