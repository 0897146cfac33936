package supervise

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Errors of Group.
var (
	ErrExists   = errors.New("a pipeline of that kind and name exists")
	ErrNotFound = errors.New("no pipeline of that kind and name")
	ErrStopped  = errors.New("the group is stopped")
)

// Group supervises many pipelines, each under its own Supervisor and
// context, keyed by Options.Kind and Options.Name: removing or restarting
// one leaves the others running. A pipeline that ended or failed keeps its
// entry (and its last Status) until it is removed or restarted.
type Group struct {
	mu      sync.Mutex
	entries map[key]*entry
	stopped bool
	// wg counts running supervisors, also those a Remove or Restart took
	// out of entries and is still stopping: Stop waits for all.
	wg sync.WaitGroup
}

type key struct{ kind, name string }

type entry struct {
	p      Pipeline
	o      Options
	sup    *Supervisor
	cancel context.CancelFunc
	done   chan struct{} // closed when sup.Run returned
}

// NewGroup returns an empty Group.
func NewGroup() *Group {
	return &Group{entries: map[key]*entry{}}
}

// Add starts supervising p under o.Kind and o.Name. It fails with ErrExists
// when that kind and name are taken, ErrStopped after Stop.
func (g *Group) Add(p Pipeline, o Options) error {
	switch {
	case p == nil:
		return fmt.Errorf("supervise: add %s %s: nil pipeline", o.Kind, o.Name)
	case o.Name == "":
		return fmt.Errorf("supervise: add a %s pipeline without a name", o.Kind)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	k := key{o.Kind, o.Name}
	switch {
	case g.stopped:
		return fmt.Errorf("supervise: add %s %s: %w", o.Kind, o.Name, ErrStopped)
	case g.entries[k] != nil:
		return fmt.Errorf("supervise: add %s %s: %w", o.Kind, o.Name, ErrExists)
	}
	g.entries[k] = g.start(p, o)
	return nil
}

// start runs a supervisor of p; g.mu is held and g is not stopped.
func (g *Group) start(p Pipeline, o Options) *entry {
	ctx, cancel := context.WithCancel(context.Background())
	e := &entry{p: p, o: o, sup: New(p, o), cancel: cancel, done: make(chan struct{})}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(e.done)
		// Its error (a permanent one) is in its Status and its log.
		_ = e.sup.Run(ctx)
	}()
	return e
}

// Remove stops the pipeline of kind and name, waits until its Run
// returned, and forgets it.
func (g *Group) Remove(kind, name string) error {
	g.mu.Lock()
	k := key{kind, name}
	e := g.entries[k]
	if e == nil {
		g.mu.Unlock()
		return fmt.Errorf("supervise: remove %s %s: %w", kind, name, ErrNotFound)
	}
	delete(g.entries, k)
	g.mu.Unlock()
	e.cancel()
	<-e.done
	return nil
}

// Restart stops the pipeline of kind and name (running, retrying, ended or
// failed), waits until its Run returned and starts it again under a fresh
// Supervisor: state, retries and backoff start over.
func (g *Group) Restart(kind, name string) error {
	g.mu.Lock()
	k := key{kind, name}
	e := g.entries[k]
	switch {
	case g.stopped:
		g.mu.Unlock()
		return fmt.Errorf("supervise: restart %s %s: %w", kind, name, ErrStopped)
	case e == nil:
		g.mu.Unlock()
		return fmt.Errorf("supervise: restart %s %s: %w", kind, name, ErrNotFound)
	}
	// Take the entry out while it stops, so a concurrent Restart or Remove
	// of the same name finds nothing rather than a half-stopped run.
	delete(g.entries, k)
	g.mu.Unlock()
	e.cancel()
	<-e.done

	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.stopped:
		return fmt.Errorf("supervise: restart %s %s: %w", kind, name, ErrStopped)
	case g.entries[k] != nil: // added again meanwhile
		return fmt.Errorf("supervise: restart %s %s: %w", kind, name, ErrExists)
	}
	g.entries[k] = g.start(e.p, e.o)
	return nil
}

// Status returns the status of the pipeline of kind and name.
func (g *Group) Status(kind, name string) (Status, bool) {
	g.mu.Lock()
	e := g.entries[key{kind, name}]
	g.mu.Unlock()
	if e == nil {
		return Status{}, false
	}
	return e.sup.Status(), true
}

// Statuses returns every pipeline's status, sorted by kind then name.
func (g *Group) Statuses() []Status {
	g.mu.Lock()
	sups := make([]*Supervisor, 0, len(g.entries))
	for _, e := range g.entries {
		sups = append(sups, e.sup)
	}
	g.mu.Unlock()
	out := make([]Status, 0, len(sups))
	for _, s := range sups {
		out = append(out, s.Status())
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Stop stops every pipeline and waits until all have returned. Later Adds
// fail with ErrStopped; statuses stay readable. Stop is idempotent.
func (g *Group) Stop() {
	g.mu.Lock()
	g.stopped = true
	entries := make([]*entry, 0, len(g.entries))
	for _, e := range g.entries {
		entries = append(entries, e)
	}
	g.mu.Unlock()
	for _, e := range entries {
		e.cancel()
	}
	g.wg.Wait()
}
