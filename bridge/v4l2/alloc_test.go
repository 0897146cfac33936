package v4l2_test

import (
	"context"
	"testing"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge/v4l2"
	"github.com/rtgate/rtgate/bridge/v4l2/v4l2test"
)

// TestAllocsPerFrame measures allocations per captured frame (the fake's
// included: it allocates nothing per frame). The capture loop and the
// packetizer reuse their buffers, so what remains is each Run's setup
// (open, negotiation, buffers) spread over its frames.
func TestAllocsPerFrame(t *testing.T) {
	aus := cameraAUs(t)
	cam := v4l2test.NewCamera(aus, 320, 240, 30)
	src := openFake(t, cam, "", v4l2.Options{})
	var frames, packets int
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fn := func(_ int, p *rtp.Packet) {
		packets++
		if p.Marker {
			frames++
			if frames%600 == 0 {
				cancel()
			}
		}
	}
	if err := src.Run(ctx, fn); err != nil { // warm up: buffers grow
		t.Fatal(err)
	}
	f0, p0 := frames, packets
	allocs := testing.AllocsPerRun(1, func() {
		ctx, cancel = context.WithCancel(context.Background())
		if err := src.Run(ctx, fn); err != nil {
			t.Fatal(err)
		}
	})
	nf, np := (frames-f0)/2, (packets-p0)/2 // AllocsPerRun runs f twice (a warm-up)
	perFrame := allocs / float64(nf)
	t.Logf("%.0f allocations for %d frames, %d packets: %.2f per frame, %.2f per packet", allocs, nf, np, perFrame, allocs/float64(np))
	if limit := 0.5; perFrame > limit {
		t.Errorf("%.2f allocations per frame, want at most %.2f", perFrame, limit)
	}
}
