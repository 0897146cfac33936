package rtpudp

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
)

func TestParseOutURL(t *testing.T) {
	lo4, lo6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	good := []struct {
		raw    string
		host   netip.Addr
		v, a   OutPorts
		ttl    int
		bind   netip.Addr
		status string
	}{
		{raw: "rtp://127.0.0.1:5004", host: lo4, v: OutPorts{5004, 5005}, a: OutPorts{5006, 5007}, bind: lo4},
		{raw: "RTP://127.0.0.1:5004/", host: lo4, v: OutPorts{5004, 5005}, a: OutPorts{5006, 5007}, bind: lo4},
		{raw: "rtp://127.0.0.1:5004?media=audio", host: lo4, a: OutPorts{5004, 5005}, bind: lo4},
		{raw: "rtp://127.0.0.1:5004?media=video", host: lo4, v: OutPorts{5004, 5005}, bind: lo4},
		{raw: "rtp://127.0.0.1:5004?media=audio,video", host: lo4, v: OutPorts{5004, 5005}, a: OutPorts{5006, 5007}, bind: lo4},
		{raw: "rtp://127.0.0.1:65532?media=video", host: lo4, v: OutPorts{65532, 65533}, bind: lo4},
		{raw: "rtp://[::1]:6000", host: lo6, v: OutPorts{6000, 6001}, a: OutPorts{6002, 6003}, bind: lo6},
		{raw: "rtp://239.1.2.3:5004?ttl=4", host: netip.MustParseAddr("239.1.2.3"), v: OutPorts{5004, 5005},
			a: OutPorts{5006, 5007}, ttl: 4, bind: netip.IPv4Unspecified()},
		{raw: "rtp://192.168.1.20:5004?bind=192.168.1.10", host: netip.MustParseAddr("192.168.1.20"),
			v: OutPorts{5004, 5005}, a: OutPorts{5006, 5007}, bind: netip.MustParseAddr("192.168.1.10")},
		{raw: "rtp://[2001:db8::1]:5004", host: netip.MustParseAddr("2001:db8::1"),
			v: OutPorts{5004, 5005}, a: OutPorts{5006, 5007}, bind: netip.IPv6Unspecified()},
	}
	for _, g := range good {
		sp, err := ParseOutURL(g.raw)
		if err != nil {
			t.Errorf("%s: %v", g.raw, err)
			continue
		}
		if sp.URL != g.raw || sp.Host != g.host || sp.Video != g.v || sp.Audio != g.a || sp.TTL != g.ttl || sp.Bind != g.bind {
			t.Errorf("%s: got %+v", g.raw, sp)
		}
	}
	bad := []struct{ raw, want string }{
		{"127.0.0.1:5004", "missing scheme"},
		{"udp://127.0.0.1:5004", `scheme "udp"`},
		{"rtp://:5004", "missing host"},
		{"rtp://example.com:5004", `bad host "example.com": want an IP address`},
		{"rtp://0.0.0.0:5004", "not a destination"},
		{"rtp://127.0.0.1", "missing port"},
		{"rtp://127.0.0.1:0", `bad port "0"`},
		{"rtp://127.0.0.1:70000", `bad port "70000"`},
		{"rtp://127.0.0.1:65533", "port 65533 leaves no room"},
		{"rtp://127.0.0.1:65535?media=audio", "port 65535 leaves no room"},
		{"rtp://127.0.0.1:5004?media=data", `bad media "data"`},
		{"rtp://127.0.0.1:5004?media=", `bad media ""`},
		{"rtp://127.0.0.1:5004?ttl=3", "ttl=3 needs a multicast group"},
		{"rtp://239.1.1.1:5004?ttl=0", `bad ttl "0"`},
		{"rtp://127.0.0.1:5004?codec=vp8", `unknown parameter "codec"`},
		{"rtp://127.0.0.1:5004?bind=::1", "different families"},
		{"rtp://127.0.0.1:5004?bind=nope", `bad bind "nope"`},
		{"rtp://127.0.0.1:5004?bind=239.1.1.1", "not a multicast group"},
		{"rtp://127.0.0.1:5004/x", `unexpected path "/x"`},
		{"rtp://127.0.0.1:5004?media=video&media=audio", `"media" given 2 times`},
		{"rtp://u@127.0.0.1:5004", "user information"},
		{"rtp://127.0.0.1:5004#f", "fragment"},
	}
	for _, b := range bad {
		_, err := ParseOutURL(b.raw)
		if err == nil || !strings.Contains(err.Error(), b.want) || !strings.Contains(err.Error(), b.raw) {
			t.Errorf("%s: error %v, want one naming the URL and saying %q", b.raw, err, b.want)
		}
	}
}

// TestOutSDP checks the SDP text a Sender writes and that it reads back,
// through this package's own SDP parser, as the ports and codecs sent.
func TestOutSDP(t *testing.T) {
	sp, err := ParseOutURL("rtp://127.0.0.1:5004")
	if err != nil {
		t.Fatal(err)
	}
	vp8, _ := outCodec(bridge.Codec{MimeType: "video/vp8", ClockRate: 90000, PayloadType: 120})
	opus, _ := outCodec(bridge.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, Fmtp: "minptime=10;useinbandfec=1", PayloadType: 109})
	b, err := outSDP(sp, "cam1", 42, 3, []sdpMedia{{bridge.KindVideo, sp.Video, vp8}, {bridge.KindAudio, sp.Audio, opus}})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"v=0",
		"o=- 42 3 IN IP4 127.0.0.1",
		"s=cam1",
		"c=IN IP4 127.0.0.1",
		"t=0 0",
		"a=tool:rtgate",
		"m=video 5004 RTP/AVP 96",
		"a=rtpmap:96 VP8/90000",
		"a=rtcp:5005",
		"m=audio 5006 RTP/AVP 111",
		"a=rtpmap:111 opus/48000/2",
		"a=fmtp:111 minptime=10;useinbandfec=1",
		"a=rtcp:5007",
		"",
	}, "\r\n")
	if string(b) != want {
		t.Fatalf("sdp:\n%s\nwant:\n%s", b, want)
	}
	back, err := ParseSDP(b, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Tracks) != 2 {
		t.Fatalf("read back %d tracks", len(back.Tracks))
	}
	v, a := back.Tracks[0], back.Tracks[1]
	if v.Codec != (bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000, PayloadType: 96}) ||
		v.Local != netip.MustParseAddrPort("127.0.0.1:5004") || v.rtcpPort() != 5005 {
		t.Fatalf("video read back as %+v", v)
	}
	if a.Codec != (bridge.Codec{MimeType: MimeTypeOpus, ClockRate: 48000, Channels: 2, PayloadType: 111, Fmtp: "minptime=10;useinbandfec=1"}) ||
		a.Local != netip.MustParseAddrPort("127.0.0.1:5006") || a.rtcpPort() != 5007 {
		t.Fatalf("audio read back as %+v", a)
	}

	// H.264 keeps its fmtp; a multicast group carries its TTL; IPv6.
	mc, _ := ParseOutURL("rtp://239.1.2.3:6000?ttl=4&media=video")
	h264, _ := outCodec(bridge.Codec{MimeType: "video/H264", ClockRate: 90000, Fmtp: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"})
	b, err = outSDP(mc, "", 1, 1, []sdpMedia{{bridge.KindVideo, mc.Video, h264}})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"c=IN IP4 239.1.2.3/4", "s=rtgate", "m=video 6000 RTP/AVP 102", "a=rtpmap:102 H264/90000",
		"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"} {
		if !strings.Contains(string(b), line+"\r\n") {
			t.Errorf("multicast H.264 sdp lacks %q:\n%s", line, b)
		}
	}
	v6, _ := ParseOutURL("rtp://[::1]:6000?media=audio")
	pcmu, _ := outCodec(bridge.Codec{MimeType: "audio/PCMU", ClockRate: 8000, Channels: 1})
	b, err = outSDP(v6, "x", 1, 1, []sdpMedia{{bridge.KindAudio, v6.Audio, pcmu}})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"c=IN IP6 ::1", "m=audio 6000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=rtcp:6001"} {
		if !strings.Contains(string(b), line+"\r\n") {
			t.Errorf("IPv6 PCMU sdp lacks %q:\n%s", line, b)
		}
	}
	if _, err := outCodec(bridge.Codec{MimeType: "video/H265", ClockRate: 90000}); err == nil ||
		!strings.Contains(err.Error(), "video/H265") {
		t.Errorf("H.265: %v", err)
	}
}

// outRig is a Sender sending video to sockets of the test.
type outRig struct {
	s          *Sender
	rtpC       *net.UDPConn // receives the Sender's RTP
	rtcpC      *net.UDPConn // receives the Sender's RTCP
	keyframes  atomic.Int64
	sdpPath    string
	videoIndex int
}

func newOutRig(t *testing.T, o SenderOptions) *outRig {
	t.Helper()
	r := &outRig{}
	r.rtpC, r.rtcpC = portPair(t, "127.0.0.1")
	port := localAddr(r.rtpC).Port()
	r.sdpPath = filepath.Join(t.TempDir(), "out.sdp")
	o.SDPFile = r.sdpPath
	var err error
	r.s, err = NewSender("rtp://127.0.0.1:"+itoa(port)+"?media=video", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.s.Close() })
	r.videoIndex, err = r.s.AddTrack(bridge.SinkTrack{
		Track: bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000, PayloadType: 100}},
		Name:  "cam-video", RequestKeyframe: func() { r.keyframes.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// recv reads one RTP packet the Sender sent.
func (r *outRig) recv(t *testing.T) rtp.Packet {
	t.Helper()
	buf := make([]byte, 2000)
	_ = r.rtpC.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := r.rtpC.Read(buf)
	if err != nil {
		t.Fatalf("read forwarded RTP: %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return p
}

// write sends one input packet with a payload naming its input sequence
// number, and an RTP header extension the Sender must strip.
func (r *outRig) write(t *testing.T, idx int, ssrc uint32, seq uint16, ts uint32) error {
	t.Helper()
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc, Marker: true},
		Payload: []byte{0x10, byte(seq >> 8), byte(seq), 0xab}}
	if err := p.SetExtension(3, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	return r.s.WriteRTP(idx, p)
}

// TestOutRebase drives a Sender with inputs that restart and jump: what
// leaves it is one RTP stream with one SSRC, the SDP's payload type,
// consecutive sequence numbers across every restart and timestamps that
// move forward by about the wall time between inputs.
func TestOutRebase(t *testing.T) {
	r := newOutRig(t, SenderOptions{Name: "cam"})
	sdp, err := os.ReadFile(r.sdpPath)
	if err != nil || !strings.Contains(string(sdp), "a=rtpmap:96 VP8/90000") {
		t.Fatalf("sdp file: %v\n%s", err, sdp)
	}
	ssrc := r.s.Stats().Tracks[0].SSRC
	var lastSeq uint16
	var lastTS uint32
	var lastAt time.Time
	expectNext := func(what string, inSeq uint16, wantTSMin, wantTSMax uint32) rtp.Packet {
		t.Helper()
		p := r.recv(t)
		if p.SSRC != ssrc || p.PayloadType != 96 || p.Extension || len(p.Extensions) != 0 || !p.Marker {
			t.Fatalf("%s: header %+v", what, p.Header)
		}
		if got := uint16(p.Payload[1])<<8 | uint16(p.Payload[2]); got != inSeq || len(p.Payload) != 4 {
			t.Fatalf("%s: payload of input %d, want %d", what, got, inSeq)
		}
		if !lastAt.IsZero() && p.SequenceNumber != lastSeq+1 {
			t.Fatalf("%s: sequence number %d after %d", what, p.SequenceNumber, lastSeq)
		}
		if d := p.Timestamp - lastTS; !lastAt.IsZero() && (d < wantTSMin || d > wantTSMax) {
			t.Fatalf("%s: timestamp step %d, want %d..%d", what, d, wantTSMin, wantTSMax)
		}
		lastSeq, lastTS, lastAt = p.SequenceNumber, p.Timestamp, time.Now()
		return p
	}

	// Input A across the sequence number wrap: passed through as is.
	for i := range 10 {
		seq := uint16(65530 + i)
		if err := r.write(t, r.videoIndex, 0xaaaa, seq, 1000+uint32(i)*3000); err != nil {
			t.Fatal(err)
		}
		p := expectNext("input A", seq, 3000, 3000)
		if p.SequenceNumber != seq || p.Timestamp != 1000+uint32(i)*3000 {
			t.Fatalf("input A packet %d rewritten to seq %d ts %d", i, p.SequenceNumber, p.Timestamp)
		}
	}
	// pause waits 100 ms and bounds the timestamp step that follows: at
	// least the pause, at most the time it took plus 1 s of slack for a
	// busy machine.
	pause := func() (lo, hi uint32) {
		before := time.Now()
		time.Sleep(100 * time.Millisecond)
		return 90 * 100, uint32(time.Since(before).Seconds()*90000) + 90000
	}

	// Input B: a new SSRC with unrelated numbers.
	lo, hi := pause()
	if err := r.write(t, r.videoIndex, 0xbbbb, 1000, 7_000_000); err != nil {
		t.Fatal(err)
	}
	expectNext("input B", 1000, lo, hi)
	for i := uint16(1); i < 5; i++ {
		_ = r.write(t, r.videoIndex, 0xbbbb, 1000+i, 7_000_000+uint32(i)*3000)
		expectNext("input B", 1000+i, 3000, 3000)
	}
	// A late packet (a retransmission) keeps B's offsets.
	_ = r.write(t, r.videoIndex, 0xbbbb, 1002, 7_006_000)
	late := r.recv(t)
	if late.SequenceNumber != lastSeq-2 || late.Timestamp != lastTS-6000 {
		t.Fatalf("late packet mapped to seq %d ts %d; last was %d %d", late.SequenceNumber, late.Timestamp, lastSeq, lastTS)
	}
	// Same SSRC, sequence numbers jump ahead by 20000: rebased.
	lo, hi = pause()
	_ = r.write(t, r.videoIndex, 0xbbbb, 21005, 7_015_000)
	expectNext("sequence jump", 21005, lo, hi)
	// Same SSRC, next sequence number, timestamp 100 s ahead: rebased.
	_ = r.write(t, r.videoIndex, 0xbbbb, 21006, 7_015_000+100*90000)
	expectNext("timestamp jump", 21006, 1, 90000)

	// The track goes away and comes back (a re-pull) with the same SSRC
	// and numbers that continue: still rebased, since the input changed.
	r.s.RemoveTrack(r.videoIndex)
	if err := r.write(t, r.videoIndex, 0xbbbb, 21007, 7_015_000+100*90000+3000); err != ErrUnknownTrack {
		t.Fatalf("write to a removed track: %v", err)
	}
	idx, err := r.s.AddTrack(bridge.SinkTrack{Track: bridge.Track{Kind: bridge.KindVideo,
		Codec: bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000, PayloadType: 98}}, Name: "cam-video"})
	if err != nil {
		t.Fatal(err)
	}
	lo, hi = pause()
	_ = r.write(t, idx, 0xcccc, 50, 123)
	expectNext("re-added track", 50, lo, hi)

	st := r.s.Stats().Tracks[0]
	if st.Resyncs != 4 || st.Packets != 19 || st.WriteErrors != 0 || st.Codec != MimeTypeVP8 || !st.Active {
		t.Fatalf("stats %+v", st)
	}
	// One video track at a time; no audio on a video-only forward.
	if _, err := r.s.AddTrack(bridge.SinkTrack{Track: bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000}}, Name: "second"}); err == nil ||
		!strings.Contains(err.Error(), "already forwarded") {
		t.Fatalf("second video track: %v", err)
	}
	if _, err := r.s.AddTrack(bridge.SinkTrack{Track: bridge.Track{Kind: bridge.KindAudio, Codec: bridge.Codec{MimeType: MimeTypeOpus, ClockRate: 48000, Channels: 2}}, Name: "mic"}); err == nil ||
		!strings.Contains(err.Error(), "carries no audio") {
		t.Fatalf("audio on a video forward: %v", err)
	}
}

// TestOutRTCP checks the Sender's RTCP: sender reports on the wall clock,
// then on the input's clock once the input sent one; keyframe requests and
// receiver reports from the receiver; a BYE on Close.
func TestOutRTCP(t *testing.T) {
	r := newOutRig(t, SenderOptions{SRInterval: 100 * time.Millisecond})
	ssrc := r.s.Stats().Tracks[0].SSRC
	for i := range 5 {
		_ = r.write(t, r.videoIndex, 0x1234, uint16(i), uint32(i)*3000)
		r.recv(t)
	}
	readSR := func() (*rtcp.SenderReport, time.Time) {
		t.Helper()
		buf := make([]byte, 1500)
		for {
			_ = r.rtcpC.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := r.rtcpC.Read(buf)
			if err != nil {
				t.Fatalf("no sender report: %v", err)
			}
			at := time.Now()
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					return sr, at
				}
			}
		}
	}
	sr, at := readSR()
	if sr.SSRC != ssrc || sr.PacketCount != 5 || sr.OctetCount != 20 {
		t.Fatalf("sender report %+v", sr)
	}
	if d := at.Sub(ntpToTime(sr.NTPTime)); d < 0 || d > time.Second {
		t.Fatalf("wall-clock sender report is %v before it arrived", d)
	}

	// The input's sender report: NTP 1000 s after 1900, RTP 12000 on the
	// input's timeline (the output's, since input 0x1234 was not rebased).
	upNTP := uint64(1000) << 32
	r.s.WriteSenderReport(r.videoIndex, upNTP, 12000)
	deadline := time.Now().Add(5 * time.Second)
	for {
		sr, _ = readSR()
		if sr.NTPTime>>32 < 2000 || time.Now().After(deadline) {
			break
		}
	}
	elapsed := float64(sr.NTPTime-upNTP) / (1 << 32)
	if sr.NTPTime < upNTP || elapsed > 3 {
		t.Fatalf("sender report NTP %d s, want just after the input's 1000 s", sr.NTPTime>>32)
	}
	if want := 12000 + uint32(elapsed*90000); sr.RTPTime < want-90 || sr.RTPTime > want+90 {
		t.Fatalf("sender report RTP time %d, want %d (input's 12000 + %.3f s)", sr.RTPTime, want, elapsed)
	}

	// Keyframe requests from the receiver: a PLI for another SSRC is not
	// ours; a PLI and a FIR for ours are.
	fb := listenUDP(t, "127.0.0.1:0")
	to := r.s.RTCPAddr(bridge.KindVideo)
	sendRTCP := func(pkts ...rtcp.Packet) {
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		send(t, fb, to, b)
	}
	sendRTCP(&rtcp.ReceiverReport{SSRC: 9}, &rtcp.PictureLossIndication{SenderSSRC: 9, MediaSSRC: ssrc + 1})
	sendRTCP(&rtcp.ReceiverReport{SSRC: 9, Reports: []rtcp.ReceptionReport{{SSRC: ssrc, FractionLost: 64, TotalLost: 7, Jitter: 30}}},
		&rtcp.PictureLossIndication{SenderSSRC: 9, MediaSSRC: ssrc})
	sendRTCP(&rtcp.FullIntraRequest{SenderSSRC: 9, FIR: []rtcp.FIREntry{{SSRC: ssrc, SequenceNumber: 1}}})
	waitFor(t, "three RTCP packets read", 5*time.Second, func() bool { return r.s.Stats().Tracks[0].RTCPIn == 3 })
	st := r.s.Stats().Tracks[0]
	if r.keyframes.Load() != 2 || st.KeyframeRequests != 2 || st.Unserved != 0 {
		t.Fatalf("keyframe requests: track got %d, stats %+v", r.keyframes.Load(), st)
	}
	if st.Receiver == nil || st.Receiver.FractionLost != 0.25 || st.Receiver.TotalLost != 7 || st.Receiver.Jitter != 30 {
		t.Fatalf("receiver stats %+v", st.Receiver)
	}
	// Without a track, requests are counted but go nowhere.
	r.s.RemoveTrack(r.videoIndex)
	sendRTCP(&rtcp.PictureLossIndication{SenderSSRC: 9, MediaSSRC: ssrc})
	waitFor(t, "an unserved request", 5*time.Second, func() bool { return r.s.Stats().Tracks[0].Unserved == 1 })

	// Close says BYE.
	if err := r.s.Close(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for {
		_ = r.rtcpC.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := r.rtcpC.Read(buf)
		if err != nil {
			t.Fatalf("no BYE after Close: %v", err)
		}
		pkts, _ := rtcp.Unmarshal(buf[:n])
		for _, p := range pkts {
			if bye, ok := p.(*rtcp.Goodbye); ok {
				if len(bye.Sources) != 1 || bye.Sources[0] != ssrc {
					t.Fatalf("BYE %+v", bye)
				}
				return
			}
		}
	}
}

func ntpToTime(ntp uint64) time.Time {
	secs := int64(ntp>>32) - ntpEpochOffset
	frac := int64((ntp & 0xffffffff) * 1_000_000_000 >> 32)
	return time.Unix(secs, frac)
}

func TestOutNTP(t *testing.T) {
	at := time.Date(2024, 5, 21, 12, 0, 0, 250_000_000, time.UTC)
	n := ntpTime(at)
	if n>>32 != uint64(at.Unix()+ntpEpochOffset) || n&0xffffffff != 1<<30 {
		t.Fatalf("ntpTime = %x", n)
	}
	if got := ntpToTime(n + ntpDuration(int64(1500*time.Millisecond))); !got.Equal(at.Add(1500 * time.Millisecond)) {
		t.Fatalf("ntp + 1.5 s = %v", got)
	}
	if ticks(int64(time.Second), 90000) != 90000 || ticks(0, 90000) != 1 || ticks(int64(time.Hour*24*30), 90000) != 1<<31-1 {
		t.Fatal("ticks")
	}
}

// TestOutWriteAllocs: forwarding a packet allocates nothing.
func TestOutWriteAllocs(t *testing.T) {
	r := newOutRig(t, SenderOptions{})
	go func() { // drain, so the socket never pushes back
		buf := make([]byte, 2000)
		for {
			if _, err := r.rtpC.Read(buf); err != nil {
				return
			}
		}
	}()
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SSRC: 5, Marker: true}, Payload: make([]byte, 1100)}
	_ = p.SetExtension(3, []byte{1})
	allocs := testing.AllocsPerRun(2000, func() {
		p.SequenceNumber++
		p.Timestamp += 3000
		if err := r.s.WriteRTP(r.videoIndex, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet, want 0", allocs)
	}
}

// BenchmarkOutWriteRTP measures one forwarded 1100-byte packet: rewrite,
// marshal and one UDP write on loopback.
func BenchmarkOutWriteRTP(b *testing.B) {
	rtpC, _ := portPair(b, "127.0.0.1")
	s, err := NewSender("rtp://127.0.0.1:"+itoa(localAddr(rtpC).Port())+"?media=video", SenderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	idx, err := s.AddTrack(bridge.SinkTrack{Track: bridge.Track{Kind: bridge.KindVideo,
		Codec: bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000}}})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		buf := make([]byte, 2000)
		for {
			if _, err := rtpC.Read(buf); err != nil {
				return
			}
		}
	}()
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}, Payload: make([]byte, 1100)}
	b.ReportAllocs()
	b.SetBytes(int64(p.MarshalSize()))
	for b.Loop() {
		p.SequenceNumber++
		p.Timestamp += 30
		_ = s.WriteRTP(idx, p)
	}
}
