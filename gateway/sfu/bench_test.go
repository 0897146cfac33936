package sfu_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/gateway/sfu"
)

// BenchmarkFanOut measures the SFU's per-packet forwarding step for one
// published video track with 1, 10 and 100 subscribers: header rewrite
// (SSRC, payload type, extensions), the interceptor chain (NACK buffer, RTCP
// report and stats accounting), SRTP (AES-GCM) and the UDP write, once per
// subscriber. The subscribers are real pion PeerConnections on loopback in
// this process; they do not read their tracks (their SRTP decryption still
// runs on the other core). ns/op is per packet in; ns/fwd is per packet out.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		e := newEnv(b, fastOptions())
		sid, _, srcs, _ := publisherOf(b, e, "cam")
		for range n {
			subscriber(b, e, sid, "cam")
		}
		fan, subs := sfu.FanOut(e.sfu, sid, "cam")
		deadline := time.Now().Add(20 * time.Second)
		for subs() < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d subscribers bound", subs(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		srcs["cam"].halt() // from here on only the benchmark feeds the track
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}, Payload: make([]byte, 1100)}
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt.Payload)))
			b.ResetTimer()
			for range b.N {
				pkt.SequenceNumber++
				pkt.Timestamp += 3000
				fan(pkt)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fwd")
		})
	}
}
