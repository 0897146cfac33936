package peer

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestKeyframeLimiter: Burst requests go at once after a quiet spell; the
// ones beyond fold into one sent when a token is due; Wanted can drop the
// deferred one.
func TestKeyframeLimiter(t *testing.T) {
	const interval = 150 * time.Millisecond
	for _, burst := range []int{1, 2} {
		var sent atomic.Int64
		send := func() { sent.Add(1) }
		l := &KeyframeLimiter{Interval: interval, Burst: burst}
		start := time.Now()
		for i := range burst {
			if !l.Request(send) {
				t.Fatalf("burst %d: request %d was not sent at once", burst, i+1)
			}
		}
		for range 5 {
			if l.Request(send) {
				t.Fatalf("burst %d: a request beyond the burst was sent at once", burst)
			}
		}
		for deadline := time.Now().Add(5 * time.Second); sent.Load() < int64(burst)+1 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if got := time.Since(start); sent.Load() != int64(burst)+1 || got < interval {
			t.Fatalf("burst %d: %d sent after %v; want %d, the last one deferred by about %v", burst, sent.Load(), got, burst+1, interval)
		}
		time.Sleep(3 * interval) // nothing else was pending
		if sent.Load() != int64(burst)+1 {
			t.Fatalf("burst %d: %d sent; the five beyond the burst must fold into one", burst, sent.Load())
		}
	}

	var sent atomic.Int64
	l := &KeyframeLimiter{Interval: interval, Wanted: func() bool { return false }}
	l.Request(func() { sent.Add(1) })
	l.Request(func() { sent.Add(1) })
	time.Sleep(3 * interval)
	if sent.Load() != 1 {
		t.Fatalf("%d sent; the deferred one was not wanted any more", sent.Load())
	}
}
