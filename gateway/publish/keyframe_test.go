package publish

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
)

// kfSource counts keyframe requests and when they came.
type kfSource struct {
	n    atomic.Int64
	last atomic.Int64
}

func (*kfSource) Tracks() []bridge.Track                       { return nil }
func (*kfSource) Run(context.Context, bridge.PacketFunc) error { return nil }
func (*kfSource) Close() error                                 { return nil }
func (k *kfSource) RequestKeyframe(int) bool {
	k.n.Add(1)
	k.last.Store(time.Now().UnixNano())
	return true
}

// TestKeyframeRequestsDeferred: the first request goes at once; requests
// inside the window fold into one sent at the window's end, not dropped;
// a request after a quiet window goes at once again.
func TestKeyframeRequestsDeferred(t *testing.T) {
	const window = 200 * time.Millisecond
	src := &kfSource{}
	s := &Stream{}
	tr := &track{kind: bridge.KindVideo, src: src, kf: peer.KeyframeLimiter{Interval: window}}
	start := time.Now()
	s.requestKeyframe(tr)
	if src.n.Load() != 1 {
		t.Fatalf("%d requests reached the source after the first, want 1", src.n.Load())
	}
	for range 5 {
		s.requestKeyframe(tr)
	}
	if src.n.Load() != 1 {
		t.Fatalf("%d requests reached the source inside the window, want 1", src.n.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for src.n.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := time.Duration(src.last.Load() - start.UnixNano()); src.n.Load() != 2 || got < window {
		t.Fatalf("%d requests, the deferred one %v after the first; want 2, at the window's end (%v)", src.n.Load(), got, window)
	}
	time.Sleep(2 * window) // nothing else was pending
	if src.n.Load() != 2 {
		t.Fatalf("%d requests after the deferred one, want 2", src.n.Load())
	}
	s.requestKeyframe(tr)
	if src.n.Load() != 3 {
		t.Fatalf("a request after a quiet window: %d requests, want 3", src.n.Load())
	}
	if r, c := tr.kfRequested.Load(), tr.kfCoalesced.Load(); r != 7 || c != 5 {
		t.Errorf("requested %d, coalesced %d; want 7, 5", r, c)
	}
	// Audio tracks never ask.
	s.requestKeyframe(&track{kind: bridge.KindAudio, src: src})
	if src.n.Load() != 3 {
		t.Error("an audio track asked for a keyframe")
	}
}
