package realtime

import (
	"context"
	"slices"
	"sync"
)

// lockTable serializes work per session: one holder at a time, the others
// served first come, first served. A session has an entry only while it is
// held, so the table holds no more entries than sessions being mutated.
type lockTable struct {
	mu sync.Mutex
	// queues maps a held session to the waiters behind its holder, oldest
	// first. Unlocking hands the lock to the oldest waiter by closing its
	// channel, or deletes the entry when nobody waits.
	queues map[string][]chan struct{}
}

// lock waits until the caller holds id's lock or ctx is done. The returned
// function releases the lock; it must be called exactly once.
func (l *lockTable) lock(ctx context.Context, id string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	unlock = func() { l.unlock(id) }
	l.mu.Lock()
	if l.queues == nil {
		l.queues = make(map[string][]chan struct{})
	}
	waiters, held := l.queues[id]
	if !held {
		l.queues[id] = nil
		l.mu.Unlock()
		return unlock, nil
	}
	turn := make(chan struct{})
	l.queues[id] = append(waiters, turn)
	l.mu.Unlock()

	select {
	case <-turn:
		return unlock, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-turn:
		// Handed the lock while giving up: pass it on.
		l.unlockLocked(id)
	default:
		l.queues[id] = slices.DeleteFunc(l.queues[id], func(c chan struct{}) bool { return c == turn })
	}
	return nil, ctx.Err()
}

func (l *lockTable) unlock(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unlockLocked(id)
}

func (l *lockTable) unlockLocked(id string) {
	waiters := l.queues[id]
	if len(waiters) == 0 {
		delete(l.queues, id)
		return
	}
	close(waiters[0])
	l.queues[id] = waiters[1:]
}

// len returns the number of sessions held.
func (l *lockTable) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queues)
}

// waiters returns how many callers wait for id's lock, or -1 if it is free.
func (l *lockTable) waiters(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, held := l.queues[id]
	if !held {
		return -1
	}
	return len(w)
}
