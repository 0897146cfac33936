package publish_test

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
)

// bursty is a bridge.Source that sends numbered packets in bursts of 8
// every 20 ms and announces each burst as a batch (bridge.Batch), as
// rtpudp announces the datagrams of one recvmmsg.
type bursty struct{ numbered }

func (s *bursty) Run(ctx context.Context, fn bridge.PacketFunc) error {
	b := bridge.BatchFrom(ctx)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var pkt rtp.Packet
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if b.Begin == nil || b.End == nil {
			continue // nothing is sent unless the stream asks for batches
		}
		b.Begin()
		for range 8 {
			pkt.Header = rtp.Header{Version: 2, PayloadType: s.codec.PayloadType, SequenceNumber: s.seq,
				Timestamp: s.n / 8 * 3000, SSRC: s.ssrc, Marker: s.n%8 == 7}
			pkt.Payload = rtctest.PayloadFor(s.tag, s.n)
			fn(0, &pkt)
			s.seq++
			s.n++
		}
		b.End()
	}
}

// The packets of a source's batch leave the stream's port in one
// sendmmsg (and, to the one SFU address, as one segmented datagram where
// the kernel can): they arrive whole and in order, and the port's counters
// show the batches.
func TestPublishBatchesWrites(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("writes are batched on Linux only")
	}
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	src := &bursty{numbered: *video("b")}
	api := rtctest.PeerAPI(t)
	st := runStream(t, publish.Options{Name: "cam", Sources: []bridge.Source{src}, Client: e.Client, API: api})
	s := waitState(t, st, publish.StateLive, 10*time.Second)
	got := pull(t, e.Client, s.SessionID, "cam-video").NextTrack().Expect(t, "b", 80)
	first := binary.BigEndian.Uint32(got[0].Payload)
	for i, p := range got {
		if idx := binary.BigEndian.Uint32(p.Payload); idx != first+uint32(i) {
			t.Fatalf("packet %d is number %d, want %d: lost or out of order", i, idx, first+uint32(i))
		}
	}
	bs := api.BatchStats()
	t.Logf("publisher's port: %+v", bs)
	if bs.Datagrams < 80 || bs.Batches > bs.Datagrams/4 || bs.Errors != 0 {
		t.Errorf("publisher's port %+v: want the media in sendmmsg batches of about 8", bs)
	}
}
