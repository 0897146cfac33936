package wish

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/rtgate/rtgate/bridge"
)

// SPS, PPS as single NAL packets, then an IDR in FU-A: the first viewer
// must get all three.
func TestHoldKeepsParameterSets(t *testing.T) {
	ft := newFanTrack("s", "video", bridge.Codec{MimeType: "video/H264", ClockRate: 90000}, time.Second)
	mk := func(seq uint16, pl []byte) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 1, SequenceNumber: seq, Timestamp: 9000}, Payload: pl}
	}
	ft.write(mk(1, []byte{0x67, 0x42, 0, 0x1f}))       // SPS
	ft.write(mk(2, []byte{0x68, 0xce, 0x3c, 0x80}))    // PPS
	ft.write(mk(3, []byte{0x7c, 0x85, 1, 2, 3, 4, 5})) // FU-A start, IDR
	if n := len(ft.held.hdr); n != 3 {
		t.Fatalf("held %d packets, want 3 (SPS, PPS, IDR): the first viewer gets an IDR without its parameter sets", n)
	}
}
