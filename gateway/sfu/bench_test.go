package sfu_test

import (
	"fmt"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"net"
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
//
// The "udp-floor" case, measured in the same run, is one plain write of the
// same datagram to a loopback UDP socket: no header rewrite, no interceptors,
// no SRTP. docs/PERFORMANCE.md reports ns/fwd as a ratio to it.
func BenchmarkFanOut(b *testing.B) {
	b.Run("udp-floor", benchUDPFloor)
	for _, n := range []int{1, 10, 100} {
		benchFanOut(b, fmt.Sprintf("subscribers=%d", n), n, 0)
	}
}

// BenchmarkFanOutShards finds the subscriber count from which spreading a
// packet's writes over the shard workers beats writing them all from the
// forwarding goroutine (defaultShardMin): each count runs both ways.
func BenchmarkFanOutShards(b *testing.B) {
	if sfu.Shards() < 2 {
		b.Skip("GOMAXPROCS is 1: the SFU never shards")
	}
	for _, n := range []int{2, 4, 8, 12, 16, 32} {
		benchFanOut(b, fmt.Sprintf("subscribers=%d/inline", n), n, 1<<30)
		benchFanOut(b, fmt.Sprintf("subscribers=%d/sharded", n), n, 1)
	}
}

// benchFanOut runs the fan-out step of a track with n subscribers; a
// shardMin of 0 keeps the SFU's default.
func benchFanOut(b *testing.B, name string, n, shardMin int) {
	e := rtctest.NewEnv(b, rtctest.FastOptions())
	if shardMin > 0 {
		sfu.SetShardMin(e.SFU, shardMin)
	}
	sid, _, srcs, _ := publisherOf(b, e, "cam")
	for range n {
		subscriber(b, e, sid, "cam")
	}
	fan, subs, settle := sfu.FanOut(e.SFU, sid, "cam")
	deadline := time.Now().Add(20 * time.Second)
	for subs() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d subscribers bound", subs(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	srcs["cam"].Halt()                // from here on only the benchmark feeds the track
	time.Sleep(50 * time.Millisecond) // let the last packet in flight through
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 1, SequenceNumber: 1 << 15}, Payload: make([]byte, 1100)}
	for range 1200 { // past the history: the packet pool is at its size
		pkt.SequenceNumber++
		pkt.Timestamp += 3000
		fan(pkt)
	}
	settle()
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pkt.Payload)))
		b.ResetTimer()
		for range b.N {
			pkt.SequenceNumber++
			pkt.Timestamp += 3000
			fan(pkt)
		}
		settle()
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fwd")
	})
}

func benchUDPFloor(b *testing.B) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := rx.Read(buf); err != nil {
				return
			}
		}
	}()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	pkt := make([]byte, 1100+12)
	b.ReportAllocs()
	b.SetBytes(1100)
	for b.Loop() {
		if _, err := tx.Write(pkt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/fwd")
}
