package rtpudp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

func TestReceiveAndKeyframeRequest(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=vp8")
	rtpAddr, rtcpAddr := src.LocalAddr(0)
	if rtpAddr.Port() == 0 || rtcpAddr.Port() != rtpAddr.Port()+1 {
		t.Fatalf("bound %s and %s", rtpAddr, rtcpAddr)
	}
	if got := src.Tracks(); len(got) != 1 || got[0].Kind != bridge.KindVideo || got[0].Codec.PayloadType != 96 {
		t.Fatalf("tracks %+v", got)
	}
	if src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe with no sender yet returned true")
	}
	if src.RequestKeyframe(1) || src.RequestKeyframe(-1) {
		t.Fatal("RequestKeyframe of a missing track returned true")
	}

	sender, senderRTCP := portPair(t, "127.0.0.1")
	const ssrc = 0xcafe0001
	sendRTP(t, sender, rtpAddr, 96, ssrc, 65530, 20) // wraps the sequence number
	waitFor(t, "20 packets", 5*time.Second, func() bool { return c.count(0) == 20 })
	for i, p := range c.snapshot() {
		if p.seq != 65530+uint16(i) || p.ssrc != ssrc || p.pt != 96 || p.payload != 100 || p.marker != (i%3 == 2) {
			t.Fatalf("packet %d: %+v", i, p)
		}
	}

	// No RTCP from the sender yet: the request goes to its RTP port + 1.
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false with a known sender")
	}
	pli, fir, from := readKeyframeRequest(t, senderRTCP)
	if pli.MediaSSRC != ssrc || len(fir.FIR) != 1 || fir.FIR[0].SSRC != ssrc || pli.SenderSSRC == 0 || fir.SenderSSRC != pli.SenderSSRC {
		t.Fatalf("PLI %+v, FIR %+v", pli, fir)
	}
	if from != rtcpAddr {
		t.Fatalf("request sent from %s, want the RTCP socket %s", from, rtcpAddr)
	}
	seq1 := fir.FIR[0].SequenceNumber

	// Once the sender's RTCP arrived (from another port), requests go there.
	if _, _, _, ok := src.LastSenderReport(0); ok {
		t.Fatal("sender report before any arrived")
	}
	otherRTCP := listenUDP(t, "127.0.0.1:0")
	before := time.Now()
	send(t, otherRTCP, rtcpAddr, senderReport(t, ssrc, 0xe000000100000000, 123456))
	waitFor(t, "sender report", 5*time.Second, func() bool { return src.Stats().Tracks[0].SenderReports == 1 })
	ntp, ts, at, ok := src.LastSenderReport(0)
	if !ok || ntp != 0xe000000100000000 || ts != 123456 || at.Before(before) || time.Since(at) > 5*time.Second {
		t.Fatalf("LastSenderReport = %x %d %v %v", ntp, ts, at, ok)
	}
	if rtpFrom, rtcpFrom := src.SenderAddrs(0); rtpFrom != localAddr(sender) || rtcpFrom != localAddr(otherRTCP) {
		t.Fatalf("sender addresses %s %s", rtpFrom, rtcpFrom)
	}
	if !src.RequestKeyframe(0) {
		t.Fatal("second RequestKeyframe returned false")
	}
	pli, fir, _ = readKeyframeRequest(t, otherRTCP)
	if pli.MediaSSRC != ssrc || fir.FIR[0].SequenceNumber != seq1+1 {
		t.Fatalf("PLI %+v, FIR %+v", pli, fir)
	}

	st := src.Stats()
	if tr := st.Tracks[0]; tr.Packets != 20 || tr.Bytes != 20*112 || tr.PLIsSent != 2 || tr.PLIErrors != 0 ||
		!tr.HaveSSRC || tr.SSRC != ssrc || tr.SSRCChanges != 0 {
		t.Fatalf("stats %+v", tr)
	}
	if st.RTCPPackets != 1 || st.BadRTCP != 0 || len(st.BadPackets) != 0 || st.LastBadReason != "" {
		t.Fatalf("stats %+v", st)
	}
}

func TestKeyframeRequestRTCPMux(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=h264&rtcp_mux=1")
	rtpAddr, rtcpAddr := src.LocalAddr(0)
	if rtpAddr != rtcpAddr {
		t.Fatalf("rtcp-mux bound %s and %s", rtpAddr, rtcpAddr)
	}
	sender := listenUDP(t, "127.0.0.1:0")
	sendRTP(t, sender, rtpAddr, 102, 42, 1, 5)
	// The sender's RTCP shares the RTP port: demultiplexed, not a bad packet.
	send(t, sender, rtpAddr, senderReport(t, 42, 1<<32, 9000))
	sendRTP(t, sender, rtpAddr, 102, 42, 6, 5)
	waitFor(t, "10 packets and a report", 5*time.Second, func() bool {
		return c.count(0) == 10 && src.Stats().Tracks[0].SenderReports == 1
	})
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false")
	}
	pli, fir, from := readKeyframeRequest(t, sender)
	if pli.MediaSSRC != 42 || fir.FIR[0].SSRC != 42 || from != rtpAddr {
		t.Fatalf("PLI %+v FIR %+v from %s", pli, fir, from)
	}
	if st := src.Stats(); len(st.BadPackets) != 0 || st.UnknownPayloadType != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestKeyframeRequestMuxNoRTCPYet(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=vp9&rtcp_mux=1")
	rtpAddr, _ := src.LocalAddr(0)
	sender := listenUDP(t, "127.0.0.1:0")
	sendRTP(t, sender, rtpAddr, 98, 7, 1, 3)
	waitFor(t, "3 packets", 5*time.Second, func() bool { return c.count(0) == 3 })
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false")
	}
	if pli, _, _ := readKeyframeRequest(t, sender); pli.MediaSSRC != 7 {
		t.Fatalf("PLI %+v", pli)
	}
}

func TestKeyframeRequestAudio(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=opus")
	rtpAddr, _ := src.LocalAddr(0)
	sender := listenUDP(t, "127.0.0.1:0")
	sendRTP(t, sender, rtpAddr, 111, 5, 1, 3)
	waitFor(t, "3 packets", 5*time.Second, func() bool { return c.count(0) == 3 })
	if src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe on audio returned true")
	}
}

func TestSenderReportBeforeRTP(t *testing.T) {
	src, _ := run(t, "rtp://127.0.0.1:0?codec=vp8")
	_, rtcpAddr := src.LocalAddr(0)
	sender := listenUDP(t, "127.0.0.1:0")
	send(t, sender, rtcpAddr, senderReport(t, 99, 5<<32, 77))
	waitFor(t, "sender report", 5*time.Second, func() bool { _, _, _, ok := src.LastSenderReport(0); return ok })
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false with a sender known from RTCP")
	}
	if pli, _, _ := readKeyframeRequest(t, sender); pli.MediaSSRC != 99 {
		t.Fatalf("PLI %+v", pli)
	}
	// An unrelated SSRC once the track has RTP is not the sender's.
	rtpAddr, _ := src.LocalAddr(0)
	sendRTP(t, sender, rtpAddr, 96, 99, 1, 1)
	send(t, sender, rtcpAddr, senderReport(t, 1234, 6<<32, 78))
	waitFor(t, "unmatched report", 5*time.Second, func() bool { return src.Stats().UnmatchedRTCP == 1 })
	if ntp, _, _, ok := src.LastSenderReport(0); !ok || ntp != 5<<32 {
		t.Fatalf("report of another SSRC replaced the sender's: %x %v", ntp, ok)
	}
}

func TestSSRCChange(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=vp8")
	rtpAddr, rtcpAddr := src.LocalAddr(0)
	sender, senderRTCP := portPair(t, "127.0.0.1")
	sendRTP(t, sender, rtpAddr, 96, 0xaaaa, 100, 50)
	send(t, senderRTCP, rtcpAddr, senderReport(t, 0xaaaa, 1<<32, 1))
	waitFor(t, "first sender", 5*time.Second, func() bool {
		_, _, _, ok := src.LastSenderReport(0)
		return c.count(0) == 50 && ok
	})
	// The encoder restarts: new SSRC, new sequence numbers and timestamps.
	sendRTP(t, sender, rtpAddr, 96, 0xbbbb, 7, 50)
	waitFor(t, "100 packets", 5*time.Second, func() bool { return c.count(0) == 100 })
	pk := c.snapshot()
	if pk[49].ssrc != 0xaaaa || pk[50].ssrc != 0xbbbb || pk[50].seq != 7 {
		t.Fatalf("packets passed through changed: %+v %+v", pk[49], pk[50])
	}
	st := src.Stats().Tracks[0]
	if st.SSRCChanges != 1 || st.SSRC != 0xbbbb || st.Packets != 100 || st.SenderAddrChanges != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, _, _, ok := src.LastSenderReport(0); ok {
		t.Fatal("the old sender's report survived the SSRC change")
	}
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false")
	}
	if pli, _, _ := readKeyframeRequest(t, senderRTCP); pli.MediaSSRC != 0xbbbb {
		t.Fatalf("PLI for %x, want the new SSRC", pli.MediaSSRC)
	}

	// Same SSRC from another socket (an encoder restarted with a fixed
	// SSRC): the new address gets the requests.
	sender2, sender2RTCP := portPair(t, "127.0.0.1")
	sendRTP(t, sender2, rtpAddr, 96, 0xbbbb, 1, 5)
	waitFor(t, "105 packets", 5*time.Second, func() bool { return c.count(0) == 105 })
	if st := src.Stats().Tracks[0]; st.SSRCChanges != 1 || st.SenderAddrChanges != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false")
	}
	if _, _, from := readKeyframeRequest(t, sender2RTCP); from != rtcpAddr {
		t.Fatalf("from %s", from)
	}
}

func TestBadPackets(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=vp8")
	rtpAddr, rtcpAddr := src.LocalAddr(0)
	s := listenUDP(t, "127.0.0.1:0")
	bad := []struct {
		b      []byte
		reason string
	}{
		{[]byte{0x80, 96, 0}, "short"},
		{raw(0x40, []byte{1}), "version"},
		{raw(0x8f, []byte{1, 2, 3, 4}), "csrc"},
		{raw(0x90, []byte{0xbe, 0xde, 0, 9}, []byte{1}), "extension"},
		{raw(0xa0, []byte{1, 0}), "padding"},
		{raw(0x80), "empty"},
		{raw(0x80, make([]byte, maxDatagram)), "truncated"},
	}
	for _, b := range bad {
		send(t, s, rtpAddr, b.b)
	}
	send(t, s, rtpAddr, rtpBytes(t, 97, 1, 1, 1, false, 10)) // no track has pt 97
	send(t, s, rtcpAddr, []byte{0x80, 0xc8, 0, 50, 1})       // not RTCP
	send(t, s, rtpAddr, rtpBytes(t, 96, 2, 2, 1, false, 10))
	waitFor(t, "the good packet", 5*time.Second, func() bool { return c.count(0) == 1 })
	waitFor(t, "the bad RTCP", 5*time.Second, func() bool { return src.Stats().BadRTCP == 1 })
	st := src.Stats()
	for _, b := range bad {
		if st.BadPackets[b.reason] != 1 || st.Tracks[0].BadPackets[b.reason] != 1 {
			t.Errorf("reason %s: %d", b.reason, st.BadPackets[b.reason])
		}
	}
	if len(st.BadPackets) != len(bad) || st.UnknownPayloadType != 1 || st.Tracks[0].UnknownPayloadType != 1 ||
		st.LastBadReason != "truncated" || st.Tracks[0].Packets != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSharedPortDemux(t *testing.T) {
	p := freePorts(t, 1)[0]
	sdpText := fmt.Sprintf("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=video %d RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\nm=audio %d RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n", p, p)
	sp, err := ParseSDP([]byte(sdpText), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenSpec(sp)
	if err != nil {
		t.Fatal(err)
	}
	c := runSource(t, src)
	v, vr := src.LocalAddr(0)
	a, ar := src.LocalAddr(1)
	if v != a || vr != ar || v.Port() != p || vr.Port() != p+1 {
		t.Fatalf("addresses %s %s %s %s", v, vr, a, ar)
	}
	s, sr := portPair(t, "127.0.0.1")
	sendRTP(t, s, v, 96, 1, 1, 10)
	sendRTP(t, s, v, 111, 2, 1, 7)
	sendRTP(t, s, v, 100, 3, 1, 2)
	send(t, sr, vr, senderReport(t, 2, 1<<32, 48000))
	send(t, sr, vr, senderReport(t, 1, 2<<32, 90000))
	waitFor(t, "17 packets, 2 reports", 5*time.Second, func() bool {
		st := src.Stats()
		return c.count(0) == 10 && c.count(1) == 7 && st.Tracks[0].SenderReports == 1 && st.Tracks[1].SenderReports == 1
	})
	for _, p := range c.snapshot() {
		if (p.track == 0) != (p.pt == 96) {
			t.Fatalf("%+v", p)
		}
	}
	if n, _, _, _ := src.LastSenderReport(1); n != 1<<32 {
		t.Fatalf("audio report %x", n)
	}
	if st := src.Stats(); st.UnknownPayloadType != 2 {
		t.Fatalf("stats %+v", st)
	}
	if src.RequestKeyframe(1) || !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe")
	}
	if pli, _, _ := readKeyframeRequest(t, sr); pli.MediaSSRC != 1 {
		t.Fatalf("PLI %+v", pli)
	}
}

func TestIPv6(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = probe.Close()
	for _, host := range []string{"[::1]", "[::]"} {
		t.Run(host, func(t *testing.T) {
			src, c := run(t, "rtp://"+host+":0?codec=h264&batch=4")
			rtpAddr, rtcpAddr := src.LocalAddr(0)
			dst := netip.AddrPortFrom(netip.IPv6Loopback(), rtpAddr.Port())
			s, sr := portPair(t, "::1")
			sendRTP(t, s, dst, 102, 9, 1, 40)
			waitFor(t, "40 packets", 5*time.Second, func() bool { return c.count(0) == 40 })
			if !src.RequestKeyframe(0) {
				t.Fatal("RequestKeyframe returned false")
			}
			if pli, _, from := readKeyframeRequest(t, sr); pli.MediaSSRC != 9 || from.Port() != rtcpAddr.Port() {
				t.Fatalf("PLI %+v from %s", pli, from)
			}
		})
	}
}

func TestDualStackReceivesIPv4(t *testing.T) {
	if _, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	src, c := run(t, "rtp://[::]:0?codec=vp8")
	rtpAddr, _ := src.LocalAddr(0)
	s, sr := portPair(t, "127.0.0.1")
	sendRTP(t, s, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), rtpAddr.Port()), 96, 3, 1, 5)
	waitFor(t, "5 packets", 5*time.Second, func() bool { return c.count(0) == 5 })
	if !src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe returned false")
	}
	if pli, _, _ := readKeyframeRequest(t, sr); pli.MediaSSRC != 3 {
		t.Fatalf("PLI %+v", pli)
	}
}

func TestSingleReads(t *testing.T) {
	src, c := run(t, "rtp://127.0.0.1:0?codec=vp8&batch=1")
	rtpAddr, _ := src.LocalAddr(0)
	s := listenUDP(t, "127.0.0.1:0")
	sendRTP(t, s, rtpAddr, 96, 3, 1, 100)
	waitFor(t, "100 packets", 5*time.Second, func() bool { return c.count(0) == 100 })
}

func TestRunRestartAndClose(t *testing.T) {
	src, err := Open("rtp://127.0.0.1:0?codec=vp8")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rtpAddr, _ := src.LocalAddr(0)
	s := listenUDP(t, "127.0.0.1:0")
	c := &collector{}

	if err := src.Run(context.Background(), nil); err == nil {
		t.Fatal("Run with a nil PacketFunc")
	}
	for round := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, c.fn) }()
		sendRTP(t, s, rtpAddr, 96, 1, uint16(round*10), 10)
		waitFor(t, "packets", 5*time.Second, func() bool { return c.count(0) == 10*(round+1) })
		if round == 0 {
			if err := src.Run(context.Background(), c.fn); err == nil || !errors.Is(err, errRunning) {
				t.Fatalf("concurrent Run: %v", err)
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}

	// Close unblocks a running Run, which reports it.
	done := make(chan error, 1)
	go func() { done <- src.Run(context.Background(), c.fn) }()
	time.Sleep(50 * time.Millisecond)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := src.Run(context.Background(), c.fn); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Run on a closed source: %v", err)
	}
	if err := src.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if src.RequestKeyframe(0) {
		t.Fatal("RequestKeyframe on a closed source")
	}
	if st := src.Stats(); st.Tracks[0].PLIErrors != 1 {
		t.Fatalf("stats %+v", st.Tracks[0])
	}
}

func TestOpenPortConflict(t *testing.T) {
	busy := listenUDP(t, "127.0.0.1:0")
	p := localAddr(busy).Port()
	raw := fmt.Sprintf("rtp://127.0.0.1:%d?codec=vp8", p)
	_, err := Open(raw)
	if err == nil || !isAddrInUseErr(err) || !strings.HasPrefix(err.Error(), raw+": ") ||
		!strings.Contains(err.Error(), fmt.Sprintf("listen udp4 127.0.0.1:%d: bind: address already in use", p)) {
		t.Fatalf("error %v", err)
	}
}

func TestOpenRTCPPortConflict(t *testing.T) {
	// Only the RTCP port (RTP port + 1) is taken: Open fails naming it and
	// closes the RTP socket it had opened.
	for range 20 {
		busy := listenUDP(t, "127.0.0.1:0")
		p := localAddr(busy).Port()
		if p < 2 {
			continue
		}
		_, err := Open(fmt.Sprintf("rtp://127.0.0.1:%d?codec=vp8", p-1))
		if err == nil {
			t.Fatal("Open succeeded with its RTCP port taken")
		}
		if strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d:", p-1)) {
			continue // p-1 was taken by someone else: try another
		}
		if !isAddrInUseErr(err) || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", p)) {
			t.Fatalf("error %v", err)
		}
		listenUDP(t, fmt.Sprintf("127.0.0.1:%d", p-1)) // free again
		return
	}
	t.Skip("no free port below a busy one")
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open("rtp://127.0.0.1:5004?codec=vp7"); err == nil || !strings.Contains(err.Error(), `unknown codec "vp7"`) {
		t.Fatalf("%v", err)
	}
	if _, err := OpenSpec(&Spec{}); err == nil {
		t.Fatal("no tracks")
	}
	if _, err := Open("rtp://239.1.2.3:0?codec=vp8&iface=nonexist0"); err == nil || !strings.Contains(err.Error(), "iface nonexist0") {
		t.Fatalf("%v", err)
	}
	// Two tracks on one port with one payload type (a hand-made Spec;
	// ParseSDP rejects it): the sockets opened are closed again.
	p := freePorts(t, 1)[0]
	tr := TrackSpec{Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)}
	tr.Codec = bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000, PayloadType: 96}
	tr.Kind = bridge.KindVideo
	_, err := OpenSpec(&Spec{Tracks: []TrackSpec{tr, tr}})
	if err == nil || !strings.Contains(err.Error(), "payload type 96 on 127.0.0.1:") {
		t.Fatalf("%v", err)
	}
	listenUDP(t, tr.Local.String())
	listenUDP(t, fmt.Sprintf("127.0.0.1:%d", p+1))
}

func TestExplicitRTCPPort(t *testing.T) {
	q := freePorts(t, 1)[0]
	src, c := run(t, fmt.Sprintf("rtp://127.0.0.1:0?codec=vp8&rtcp=%d", q))
	rtpAddr, rtcpAddr := src.LocalAddr(0)
	if rtcpAddr.Port() != q {
		t.Fatalf("RTCP on %s, want port %d", rtcpAddr, q)
	}
	s, sr := portPair(t, "127.0.0.1")
	sendRTP(t, s, rtpAddr, 96, 5, 1, 2)
	send(t, sr, rtcpAddr, senderReport(t, 5, 1<<32, 0))
	waitFor(t, "packets and report", 5*time.Second, func() bool {
		return c.count(0) == 2 && src.Stats().Tracks[0].SenderReports == 1
	})
}

// The hot path, through the socket and Run, does not allocate per packet,
// with single reads or batched ones (recvmmsg on Linux, read by hand:
// x/net's ReadBatch allocated the source address of each message, a
// *net.UDPAddr and its IP, about 2 per packet). What is left is Run's own
// setup, once per chunk of 1024 packets (about 0.02 per packet).
// TestReadOnceAllocs holds the reader alone to exactly zero.
func TestReceiveAllocs(t *testing.T) {
	for _, batch := range []int{1, 4, DefaultBatch} {
		t.Run(fmt.Sprint("batch=", batch), func(t *testing.T) {
			res := receiveBench(t, batch, 4*benchChunk)
			t.Logf("%.3f allocs/packet, %.0f ns/packet", res.allocsPerPacket, res.nsPerPacket)
			if max := 0.05; res.allocsPerPacket > max {
				t.Fatalf("%.3f allocs per packet, want at most %.2f", res.allocsPerPacket, max)
			}
		})
	}
}
