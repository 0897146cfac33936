package rtpudp

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

const benchPacketSize = 1200

// sourceBench is a Source on loopback and a sender socket.
type sourceBench struct {
	src *Source
	dst netip.AddrPort
	snd *net.UDPConn
}

func newSourceBench(tb testing.TB, batch int) *sourceBench {
	tb.Helper()
	src, err := Open(fmt.Sprintf("rtp://127.0.0.1:0?codec=vp8&rtcp_mux=1&batch=%d", batch))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = src.Close() })
	dst, _ := src.LocalAddr(0)
	return &sourceBench{src: src, dst: dst, snd: listenUDP(tb, "127.0.0.1:0")}
}

// benchChunk is the number of packets queued before each timed drain:
// well within the 4 MiB receive buffer (about 2,900 such datagrams).
const benchChunk = 1024

// fill sends n packets from snd to dst, numbered on from *seq.
func fill(tb testing.TB, snd *net.UDPConn, dst netip.AddrPort, seq *uint16, n int) {
	buf := make([]byte, benchPacketSize)
	buf[0], buf[1] = 0x80, 96
	binary.BigEndian.PutUint32(buf[8:], 0x5eed)
	for range n {
		binary.BigEndian.PutUint16(buf[2:], *seq)
		binary.BigEndian.PutUint32(buf[4:], uint32(*seq)*3000)
		*seq++
		if _, err := snd.WriteToUDPAddrPort(buf, dst); err != nil {
			tb.Fatal(err)
		}
	}
}

// drain runs the Source until n packets arrived.
func (sb *sourceBench) drain(tb testing.TB, n int64) {
	var recv atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fn := func(_ int, p *rtp.Packet) {
		if len(p.Payload) != benchPacketSize-fixedHeader {
			panic("payload size")
		}
		if recv.Add(1) == n {
			cancel()
		}
	}
	if err := sb.src.Run(ctx, fn); err != nil {
		tb.Fatal(err)
	}
	if got := recv.Load(); got != n {
		tb.Fatalf("received %d of %d queued packets", got, n)
	}
}

// timer is the part of testing.B that the chunked measurements use, so
// that tests can run them too.
type timer interface {
	StartTimer()
	StopTimer()
}

type noTimer struct{}

func (noTimer) StartTimer() {}
func (noTimer) StopTimer()  {}

// receiveChunked queues packets in chunks while the timer is stopped and
// times only their reading: by a bare ReadFromUDPAddrPort loop when sb is
// nil (the floor), else through sb's Run.
func receiveChunked(tb testing.TB, tm timer, conn *net.UDPConn, sb *sourceBench, n int) {
	snd := listenUDP(tb, "127.0.0.1:0")
	dst := localAddr(conn)
	buf := make([]byte, maxDatagram)
	var seq uint16
	for left := n; left > 0; {
		k := min(left, benchChunk)
		left -= k
		tm.StopTimer()
		fill(tb, snd, dst, &seq, k)
		tm.StartTimer()
		if sb != nil {
			sb.drain(tb, int64(k))
			continue
		}
		for range k {
			if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

type benchResult struct {
	nsPerPacket     float64
	allocsPerPacket float64
}

// receiveBench measures n packets through a Source reading batch
// datagrams at a time, counting heap allocations.
func receiveBench(tb testing.TB, batch int, n int) benchResult {
	sb := newSourceBench(tb, batch)
	receiveChunked(tb, noTimer{}, sb.src.ports[0].conn, sb, 100) // warm up
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	receiveChunked(tb, noTimer{}, sb.src.ports[0].conn, sb, n)
	el := time.Since(start)
	runtime.ReadMemStats(&ms1)
	return benchResult{
		nsPerPacket:     float64(el.Nanoseconds()) / float64(n),
		allocsPerPacket: float64(ms1.Mallocs-ms0.Mallocs) / float64(n),
	}
}

// BenchmarkReceive measures reading a 1200-byte RTP packet that another
// socket sent over loopback: the packets of each chunk are queued while
// the timer is stopped, then read, validated and delivered through Run
// (which is started once per chunk of 1024). One op is one packet.
// "floor" is a bare single-datagram ReadFromUDPAddrPort loop on the same
// queue, measured in the same run: compare against it.
func BenchmarkReceive(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		conn := listenUDP(b, "127.0.0.1:0")
		_ = conn.SetReadBuffer(readBuffer)
		b.ReportAllocs()
		b.ResetTimer()
		receiveChunked(b, b, conn, nil, b.N)
	})
	for _, batch := range []int{1, DefaultBatch} {
		name := "single"
		if batch > 1 {
			name = fmt.Sprintf("batch%d", batch)
		}
		b.Run(name, func(b *testing.B) {
			sb := newSourceBench(b, batch)
			conn := sb.src.ports[0].conn
			receiveChunked(b, noTimer{}, conn, sb, 100)
			b.ReportAllocs()
			b.ResetTimer()
			receiveChunked(b, b, conn, sb, b.N)
		})
	}
}
