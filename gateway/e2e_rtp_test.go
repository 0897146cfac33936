package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
)

// udpPair binds two consecutive UDP ports on loopback (RTP, RTCP).
func udpPair(t *testing.T) (rtpConn, rtcpConn *net.UDPConn) {
	t.Helper()
	for range 50 {
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		if port%2 == 0 {
			if b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1}); err == nil {
				return a, b
			}
		}
		a.Close()
	}
	t.Fatal("no free pair of UDP ports")
	return nil, nil
}

// freePort returns an even port whose pair is free now (rtgate binds it).
func freePort(t *testing.T) int {
	a, b := udpPair(t)
	port := a.LocalAddr().(*net.UDPAddr).Port
	a.Close()
	b.Close()
	return port
}

// recordingRelay forwards RTP and RTCP from an encoder to rtgate and keeps
// a copy of every RTP packet, so the test knows exactly what was sent.
type recordingRelay struct {
	mu   sync.Mutex
	sent map[uint16][]byte // payload by sequence number
	port int
}

func newRelay(t *testing.T, to int) *recordingRelay {
	r := &recordingRelay{sent: map[uint16][]byte{}}
	in, inRTCP := udpPair(t)
	r.port = in.LocalAddr().(*net.UDPAddr).Port
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to}
	dstRTCP := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to + 1}
	out, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); inRTCP.Close(); out.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := in.Read(buf)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) == nil {
				r.mu.Lock()
				r.sent[p.SequenceNumber] = append([]byte(nil), p.Payload...)
				r.mu.Unlock()
			}
			_, _ = out.WriteTo(buf[:n], dst)
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := inRTCP.Read(buf)
			if err != nil {
				return
			}
			_, _ = out.WriteTo(buf[:n], dstRTCP)
		}
	}()
	return r
}

// TestFFmpegRTPThroughSFU: ffmpeg encodes VP8, H.264 or Opus and sends RTP
// to rtgate; rtgate publishes it into the embedded SFU; a pion subscriber
// pulls it through the Realtime API. Every packet ffmpeg sent from the
// subscriber's first one on arrives, with the payload bytes ffmpeg sent.
func TestFFmpegRTPThroughSFU(t *testing.T) {
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	video := []string{"-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "5"}
	cases := []struct {
		name, codec, track string
		args               []string
	}{
		{"vp8", "vp8&pt=96", "video", append(video, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
			"-b:v", "600k", "-g", "30", "-auto-alt-ref", "0", "-payload_type", "96")},
		{"h264", "h264&pt=102", "video", append(video, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
			"-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-threads", "1", "-payload_type", "102")},
		{"opus", "opus&pt=111", "audio", []string{"-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "5",
			"-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-frame_duration", "20", "-payload_type", "111"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			port := freePort(t)
			cfg := loopbackConfig()
			cfg.Realtime.AppID, cfg.Realtime.AppSecret = "test", rtctest.Secret
			cfg.Streams = []config.Stream{{Name: "e2e", Source: fmt.Sprintf("rtp://127.0.0.1:%d?codec=%s", port, c.codec)}}
			d, err := New(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			stop := runInBackground(t, d.Run)
			defer stop()

			relay := newRelay(t, port)
			args := append([]string{"-v", "error", "-nostdin"}, c.args...)
			args = append(args, "-ssrc", "4660", "-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", relay.port))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			enc := exec.CommandContext(ctx, ffmpeg, args...)
			if out, err := enc.StderrPipe(); err == nil {
				go func() {
					b := make([]byte, 4096)
					for n, err := out.Read(b); err == nil; n, err = out.Read(b) {
						t.Logf("ffmpeg: %s", b[:n])
					}
				}()
			}
			if err := enc.Start(); err != nil {
				t.Fatal(err)
			}
			encDone := make(chan error, 1)
			go func() { encDone <- enc.Wait() }()

			st := waitLive(t, d)
			// Pull once media flows: an encoder can take seconds to start.
			for deadline := time.Now().Add(15 * time.Second); d.Streams()[0].Tracks[0].Packets < 20; {
				if time.Now().After(deadline) {
					t.Fatalf("no media from ffmpeg through rtgate: %+v", d.Streams()[0])
				}
				time.Sleep(20 * time.Millisecond)
			}
			sub, _, _ := rtctest.Pull(t, rtctest.Client(t, httpURL(d.Addr())), st.SessionID, "e2e-"+c.track)
			sink := sub.NextTrack()
			if err := <-encDone; err != nil {
				t.Fatalf("ffmpeg: %v", err)
			}
			time.Sleep(500 * time.Millisecond) // the tail in flight
			var got []*rtp.Packet
		drain:
			for {
				select {
				case p := <-sink.Pkts:
					got = append(got, p)
				case <-time.After(300 * time.Millisecond):
					break drain
				}
			}
			relay.mu.Lock()
			defer relay.mu.Unlock()
			if len(got) < 50 {
				t.Fatalf("subscriber got %d packets of %d sent", len(got), len(relay.sent))
			}
			first := got[0].SequenceNumber
			last := got[len(got)-1].SequenceNumber
			received := map[uint16]bool{}
			for _, p := range got {
				want, ok := relay.sent[p.SequenceNumber]
				if !ok {
					t.Fatalf("received sequence %d, which ffmpeg never sent", p.SequenceNumber)
				}
				if string(want) != string(p.Payload) {
					t.Fatalf("packet %d: payload differs from what ffmpeg sent", p.SequenceNumber)
				}
				received[p.SequenceNumber] = true
			}
			missing := 0
			for seq := range relay.sent {
				if int16(seq-first) >= 0 && int16(last-seq) >= 0 && !received[seq] {
					missing++
				}
			}
			if missing > 0 {
				t.Fatalf("%d packets ffmpeg sent between the subscriber's first (%d) and last (%d) never arrived", missing, first, last)
			}
			lastSent := first
			for seq := range relay.sent {
				if int16(seq-lastSent) > 0 {
					lastSent = seq
				}
			}
			if last != lastSent {
				t.Fatalf("the subscriber's last packet is %d, ffmpeg's last %d: the tail is missing", last, lastSent)
			}
			t.Logf("%s: %d packets sent by ffmpeg, %d received intact and complete (from seq %d)", c.name, len(relay.sent), len(got), first)
		})
	}
}

func waitLive(t *testing.T, d *Daemon) publish.Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := d.Streams()[0]
		if st.State == publish.StateLive {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s is %s (%s), not live", st.Name, st.State, st.LastError)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeyframeRequestReachesRTPSender: a subscriber's PLI goes through the
// SFU to rtgate, which sends an RTCP PLI to the RTP sender's RTCP port (as
// GStreamer's rtpbin expects), naming the sender's SSRC.
func TestKeyframeRequestReachesRTPSender(t *testing.T) {
	port := freePort(t)
	cfg := loopbackConfig()
	cfg.Realtime.AppID, cfg.Realtime.AppSecret = "test", rtctest.Secret
	cfg.Streams = []config.Stream{{Name: "kf", Source: fmt.Sprintf("rtp://127.0.0.1:%d?codec=vp8", port)}}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer runInBackground(t, d.Run)()

	// The sender: RTP from an even port, RTCP received on the next one.
	out, rtcpIn := udpPair(t)
	defer out.Close()
	defer rtcpIn.Close()
	const ssrc = 0xCAFE
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	stopSend := make(chan struct{})
	defer close(stopSend)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopSend:
				return
			case <-tick.C:
			}
			p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i),
				Timestamp: uint32(i) * 3000, SSRC: ssrc, Marker: true}, Payload: []byte{0x10, 0, 0, 0, byte(i)}}
			b, _ := p.Marshal()
			_, _ = out.WriteTo(b, dst)
		}
	}()
	plis := make(chan uint32, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := rtcpIn.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				if pli, ok := p.(*rtcp.PictureLossIndication); ok {
					plis <- pli.MediaSSRC
				}
			}
		}
	}()

	st := waitLive(t, d)
	for deadline := time.Now().Add(10 * time.Second); d.Streams()[0].Tracks[0].Packets < 10; {
		if time.Now().After(deadline) {
			t.Fatal("no media through rtgate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sub, _, _ := rtctest.Pull(t, rtctest.Client(t, httpURL(d.Addr())), st.SessionID, "kf-video")
	sink := sub.NextTrack()
	drainPLIs := func() {
		for {
			select {
			case <-plis:
			case <-time.After(700 * time.Millisecond): // past the coalescing window
				return
			}
		}
	}
	drainPLIs() // the join's own keyframe request
	sub.SendPLI(sink.Track.SSRC())
	select {
	case got := <-plis:
		if got != ssrc {
			t.Fatalf("PLI names SSRC %#x, want the sender's %#x", got, ssrc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the subscriber's PLI never reached the RTP sender")
	}
}

// TestRecoveryWhileFFmpegSends: the SFU goes away and comes back on the same
// address while ffmpeg keeps sending; the stream is live again within 3 s of
// its return, under the same track name, and a new subscriber gets media.
func TestRecoveryWhileFFmpegSends(t *testing.T) {
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) func() {
		f := rtctest.NewSFU(t, rtctest.FastOptions())
		srv := &http.Server{Handler: f.Handler()}
		go func() { _ = srv.Serve(ln) }()
		return func() { _ = srv.Close(); _ = f.Close() }
	}
	stopSFU := serve(ln)

	port := freePort(t)
	cfg := loopbackConfig()
	cfg.Realtime = config.Realtime{URL: "http://" + addr + "/v1", AppID: "test", AppSecret: rtctest.Secret}
	cfg.Streams = []config.Stream{{Name: "cam", Source: fmt.Sprintf("rtp://127.0.0.1:%d?codec=vp8", port)}}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer runInBackground(t, d.Run)()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enc := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-nostdin", "-re", "-f", "lavfi", "-i",
		"testsrc2=size=320x240:rate=30", "-t", "30", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
		"-b:v", "500k", "-g", "30", "-auto-alt-ref", "0", "-payload_type", "96", "-f", "rtp",
		fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", port))
	if err := enc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = enc.Wait() }()

	first := waitLive(t, d)
	stopSFU()
	for deadline := time.Now().Add(10 * time.Second); d.Streams()[0].State != publish.StateRetrying; {
		if time.Now().After(deadline) {
			t.Fatalf("stream did not notice the SFU went away: %+v", d.Streams()[0])
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer serve(ln2)()
	back := time.Now()
	again := waitLive(t, d)
	if dt := time.Since(back); dt > 3*time.Second {
		t.Fatalf("live %v after the SFU came back, want within 3 s", dt)
	}
	if again.SessionID == first.SessionID || again.Tracks[0].Name != "cam-video" {
		t.Fatalf("after recovery: %+v", again)
	}
	before := again.Tracks[0].Packets
	sub, _, _ := rtctest.Pull(t, rtctest.Client(t, "http://"+addr), again.SessionID, "cam-video")
	sink := sub.NextTrack()
	for n := 0; n < 30; n++ {
		select {
		case <-sink.Pkts:
		case <-time.After(5 * time.Second):
			t.Fatalf("after recovery the subscriber got %d packets", n)
		}
	}
	if d.Streams()[0].Tracks[0].Packets <= before {
		t.Fatal("no packets counted after recovery")
	}
}
