package peer

import (
	"sync/atomic"
	"time"
)

// KeyframeLimiter rate-limits the keyframe requests (PLI/FIR) sent to one
// source: keyframes are costly, and every viewer that joins or loses a
// packet asks for one. It allows Burst requests in a row after a quiet
// spell and one per Interval on average (a token bucket kept as its
// theoretical arrival time: GCRA). A request beyond the budget is not
// dropped: one request is sent when a token is due, however many came
// meanwhile, so a viewer that joins just after another still gets its
// keyframe within Interval instead of waiting for the source's next
// natural one. The publisher side (gateway/publish), the embedded SFU and
// the relay WHIP/WHEP paths (gateway/wish) all coalesce with it.
//
// The zero value with Interval set is ready; its methods are safe for
// concurrent use and allocate nothing but the deferred request's timer.
type KeyframeLimiter struct {
	// Interval is the average spacing of requests.
	Interval time.Duration
	// Burst is how many requests may go in a row after a quiet spell (0
	// means 1): two lets a viewer that connects right after another one's
	// keyframe was requested have its own at once.
	Burst int
	// Wanted, when set, is asked before a deferred request is sent; false
	// drops it (a keyframe answered it meanwhile).
	Wanted func() bool

	due     atomic.Int64 // Unix ns
	pending atomic.Bool
}

// Request calls send now when the budget allows and reports true; else it
// makes sure send is called once when a token is due (false).
func (l *KeyframeLimiter) Request(send func()) bool {
	now := time.Now().UnixNano()
	due := l.due.Load()
	next := max(due, now) + int64(l.Interval)
	wait := time.Duration(next - int64(max(l.Burst, 1))*int64(l.Interval) - now)
	if wait <= 0 {
		if l.due.CompareAndSwap(due, next) {
			send()
			return true
		}
		return false // another request took the token this instant
	}
	if l.pending.CompareAndSwap(false, true) {
		time.AfterFunc(wait, func() {
			l.pending.Store(false)
			if l.Wanted == nil || l.Wanted() {
				l.Request(send)
			}
		})
	}
	return false
}
