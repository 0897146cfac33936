package publish_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// The ingest benchmark runs its packet sender and the SFU in other
// processes (this test binary again, in a role), so the CPU time it reads
// from rusage is rtgate's own: reading RTP from UDP, continuity, the
// interceptors, SRTP and the write to the SFU.
func TestMain(m *testing.M) {
	switch os.Getenv("RTGATE_BENCH_ROLE") {
	case "sender":
		benchSender()
	case "sfu":
		benchSFU()
	default:
		os.Exit(m.Run())
	}
}

// benchSender sends RTP_COUNT packets of RTP_SIZE bytes to RTP_DST at
// RTP_RATE packets per second, in bursts each millisecond.
func benchSender() {
	dst := os.Getenv("RTP_DST")
	rate, _ := strconv.Atoi(os.Getenv("RTP_RATE"))
	count, _ := strconv.Atoi(os.Getenv("RTP_COUNT"))
	size, _ := strconv.Atoi(os.Getenv("RTP_SIZE"))
	conn, err := net.Dial("udp", dst)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 0xBE4C}, Payload: make([]byte, size-12)}
	buf := make([]byte, size)
	start := time.Now()
	for i := range count {
		due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if d := time.Until(due); d > time.Millisecond {
			time.Sleep(d)
		}
		p.SequenceNumber = uint16(i)
		p.Timestamp = uint32(i) * 90
		p.Marker = i%10 == 9
		n, _ := p.MarshalTo(buf)
		_, _ = conn.Write(buf[:n])
	}
	os.Exit(0)
}

// benchSFU serves an embedded SFU on loopback, prints its URL and runs
// until its stdin closes.
func benchSFU() {
	o := rtctest.FastOptions()
	o.AppID, o.AppSecret = "test", rtctest.Secret
	o.Peer.ListenIP = "127.0.0.1"
	f, err := sfu.New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	go func() { _ = http.Serve(ln, f.Handler()) }()
	fmt.Printf("URL http://%s\n", ln.Addr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = f.Close()
	os.Exit(0)
}

func role(b *testing.B, name string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"RTGATE_BENCH_ROLE=" + name}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure sends count packets at rate to addr from a sender process and
// reports rtgate's CPU time and allocations per packet that arrived.
func measure(b *testing.B, addr string, rate, count int, arrived func() uint64) {
	sender := role(b, "sender", "RTP_DST="+addr, fmt.Sprint("RTP_RATE=", rate),
		fmt.Sprint("RTP_COUNT=", count), "RTP_SIZE=1200")
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	n0, c0 := arrived(), cpuTime()
	b.ResetTimer()
	if err := sender.Run(); err != nil {
		b.Fatalf("sender: %v", err)
	}
	time.Sleep(50 * time.Millisecond) // the tail in flight
	b.StopTimer()
	c1, n1 := cpuTime(), arrived()
	runtime.ReadMemStats(&m1)
	n := float64(n1 - n0)
	if n < float64(count)*0.9 {
		b.Fatalf("only %v of %d packets arrived", n, count)
	}
	b.ReportMetric(float64((c1-c0).Nanoseconds())/n, "cpu-ns/pkt")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/n, "allocs/pkt")
	b.ReportMetric(n/float64(count)*100, "%delivered")
}

// BenchmarkIngest: RTP over UDP into a published track, at 1,000 and
// 20,000 packets/s of 1200 bytes, against a bare UDP relay (read one
// datagram, write one datagram) as the floor, measured in the same run.
// Run it with -benchtime=1x: each case sends 3 s of packets.
func BenchmarkIngest(b *testing.B) {
	for _, rate := range []int{1000, 20000} {
		count := rate * 3
		b.Run(fmt.Sprintf("floor/pps=%d", rate), func(b *testing.B) {
			in, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			_ = in.SetReadBuffer(4 << 20)
			drain, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}) // nobody reads it
			if err != nil {
				b.Fatal(err)
			}
			defer drain.Close()
			var got uint64
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 1500)
				for {
					n, err := in.Read(buf)
					if err != nil {
						return
					}
					got++
					_, _ = in.WriteTo(buf[:n], drain.LocalAddr())
				}
			}()
			for range b.N {
				measure(b, in.LocalAddr().String(), rate, count, func() uint64 { return got })
			}
			in.Close()
			<-done
		})
		b.Run(fmt.Sprintf("rtgate/pps=%d", rate), func(b *testing.B) {
			sfuProc := role(b, "sfu")
			stdin, _ := sfuProc.StdinPipe()
			stdout, _ := sfuProc.StdoutPipe()
			if err := sfuProc.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { stdin.Close(); _ = sfuProc.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			base := strings.TrimSpace(strings.TrimPrefix(line, "URL "))
			src, err := rtpudp.Open("rtp://127.0.0.1:0?codec=vp8&pt=96")
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			addr, _ := src.LocalAddr(0)
			st, err := publish.New(publish.Options{Name: "bench", Sources: []bridge.Source{src},
				Client: rtctest.Client(b, base), API: rtctest.PeerAPI(b)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- st.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for deadline := time.Now().Add(10 * time.Second); st.Status().State != publish.StateLive; {
				if time.Now().After(deadline) {
					b.Fatalf("not live: %+v", st.Status())
				}
				time.Sleep(10 * time.Millisecond)
			}
			for range b.N {
				measure(b, addr.String(), rate, count, func() uint64 { return st.Status().Tracks[0].Packets })
			}
		})
	}
}
