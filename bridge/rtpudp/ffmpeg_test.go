package rtpudp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

// needFFmpeg returns ffmpeg's path, skipping the test without it (failing
// it when CI=true: CI must install it).
func needFFmpeg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg is required when CI=true: %v", err)
		}
		t.Skipf("ffmpeg not installed: %v", err)
	}
	return p
}

// ffmpeg runs ffmpeg with args, bounded in time, failing the test on error.
func ffmpeg(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, needFFmpeg(t), append([]string{"-hide_banner", "-nostdin", "-loglevel", "error", "-y"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Inputs and encoders, per TESTING.md. Each input is -re and bounded.
func videoIn(secs string) []string {
	return []string{"-re", "-t", secs, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"}
}

func audioIn(secs string, rate int) []string {
	return []string{"-re", "-t", secs, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=%d", rate)}
}

var (
	encVP8  = []string{"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k", "-g", "30", "-auto-alt-ref", "0"}
	encVP9  = []string{"-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "500k", "-g", "30", "-strict", "experimental"}
	encH264 = []string{"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-threads", "1"}
	encOpus = []string{"-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-frame_duration", "20"}
)

func join(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// checkStream checks the packets of one track as ffmpeg sends them: all of
// one payload type and SSRC, sequence numbers without gaps, and markers.
func checkStream(t *testing.T, pkts []got, track int, pt uint8, ssrc uint32, minPackets, minMarkers int, allMarkers bool) {
	t.Helper()
	var n, markers, gaps int
	var last uint16
	for _, p := range pkts {
		if p.track != track {
			continue
		}
		if p.pt != pt || p.ssrc != ssrc || p.payload == 0 {
			t.Fatalf("track %d: packet %+v, want pt %d ssrc %x", track, p, pt, ssrc)
		}
		if n > 0 && p.seq != last+1 {
			gaps++
		}
		last = p.seq
		if p.marker {
			markers++
		}
		n++
	}
	t.Logf("track %d: %d packets, %d markers, %d sequence gaps", track, n, markers, gaps)
	if n < minPackets || markers < minMarkers || gaps != 0 || (allMarkers && markers != n) {
		t.Fatalf("track %d: %d packets (want >= %d), %d markers (want >= %d, all: %v), %d gaps",
			track, n, minPackets, markers, minMarkers, allMarkers, gaps)
	}
}

func TestFFmpegRTP(t *testing.T) {
	needFFmpeg(t)
	cases := []struct {
		name, codec string
		pt          uint8
		in, enc     []string
		minPackets  int
		minMarkers  int
		allMarkers  bool
	}{
		// 2 s at 30 fps: 60 frames, one marker each.
		{"vp8", "vp8", 96, videoIn("2"), encVP8, 55, 55, false},
		{"h264", "h264", 102, videoIn("2"), encH264, 55, 55, false},
		{"vp9", "vp9", 98, videoIn("2"), encVP9, 55, 55, false},
		// 2 s of 20 ms frames; ffmpeg marks every Opus packet.
		{"opus", "opus", 111, audioIn("2", 48000), encOpus, 90, 90, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src, col := run(t, "rtp://127.0.0.1:0?codec="+c.codec)
			rtpAddr, _ := src.LocalAddr(0)
			ssrc := uint32(0x1111) + uint32(c.pt)
			ffmpeg(t, join(c.in, c.enc, []string{"-payload_type", fmt.Sprint(c.pt), "-ssrc", fmt.Sprint(ssrc),
				"-f", "rtp", fmt.Sprintf("rtp://%s?pkt_size=1200", rtpAddr)})...)
			// Loopback has delivered everything by now; let Run read it.
			waitStable(t, col)
			checkStream(t, col.snapshot(), 0, c.pt, ssrc, c.minPackets, c.minMarkers, c.allMarkers)

			st := src.Stats()
			if len(st.BadPackets) != 0 || st.UnknownPayloadType != 0 {
				t.Fatalf("stats %+v", st)
			}
			// ffmpeg sends a sender report with its first packet, to port+1.
			if st.Tracks[0].SenderReports < 1 || st.BadRTCP != 0 {
				t.Fatalf("sender reports %d, bad RTCP %d", st.Tracks[0].SenderReports, st.BadRTCP)
			}
			ntp, _, at, ok := src.LastSenderReport(0)
			if !ok || ntp == 0 || at.IsZero() {
				t.Fatalf("LastSenderReport %x %v %v", ntp, at, ok)
			}
			if _, rtcpFrom := src.SenderAddrs(0); !rtcpFrom.IsValid() {
				t.Fatal("no RTCP source address")
			}
		})
	}
}

// waitStable waits until no packet arrived for 200 ms.
func waitStable(t *testing.T, c *collector) {
	t.Helper()
	last := -1
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := len(c.snapshot())
		if n == last && n > 0 {
			return
		}
		last = n
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("packets kept arriving, or never did")
}

// ffmpegSDP writes the SDP ffmpeg makes for a VP8 + Opus session to the
// given ports, while sockets of the test hold those ports (so the short
// stream it sends meanwhile reaches no one else).
func ffmpegSDP(t *testing.T, dir string, vport, aport uint16) string {
	t.Helper()
	for _, p := range []uint16{vport, vport + 1, aport, aport + 1} {
		c := listenUDP(t, fmt.Sprintf("127.0.0.1:%d", p))
		defer c.Close()
	}
	path := filepath.Join(dir, "av.sdp")
	ffmpeg(t, avArgs("0.2", vport, aport, "-sdp_file", path)...)
	return path
}

func avArgs(secs string, vport, aport uint16, extra ...string) []string {
	return join(videoIn(secs), audioIn(secs, 48000),
		[]string{"-map", "0:v"}, encVP8, []string{"-payload_type", "96", "-ssrc", "0x1111",
			"-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d?pkt_size=1200", vport)},
		[]string{"-map", "1:a"}, encOpus, []string{"-payload_type", "111", "-ssrc", "0x2222",
			"-f", "rtp", fmt.Sprintf("rtp://127.0.0.1:%d", aport)},
		extra)
}

func TestParseSDPFFmpeg(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	sp, err := ParseURL("sdp://" + ffmpegSDP(t, dir, ports[0], ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.Tracks) != 2 {
		t.Fatalf("%d tracks", len(sp.Tracks))
	}
	v, a := sp.Tracks[0], sp.Tracks[1]
	lo := netip.MustParseAddr("127.0.0.1")
	if v.Kind != bridge.KindVideo || v.Codec != (bridge.Codec{MimeType: MimeTypeVP8, ClockRate: 90000, PayloadType: 96}) ||
		v.Local != netip.AddrPortFrom(lo, ports[0]) || v.rtcpPort() != ports[0]+1 {
		t.Fatalf("video %+v", v)
	}
	want := bridge.Codec{MimeType: MimeTypeOpus, ClockRate: 48000, Channels: 2, PayloadType: 111, Fmtp: "sprop-stereo=1"}
	if a.Kind != bridge.KindAudio || a.Codec != want || a.Local != netip.AddrPortFrom(lo, ports[1]) {
		t.Fatalf("audio %+v", a)
	}

	// One stream per file, including IPv6 and static payload types.
	one := func(name string, dst string, args ...string) *Spec {
		t.Helper()
		path := filepath.Join(dir, name+".sdp")
		hold := listenUDP(t, dst)
		defer hold.Close()
		ffmpeg(t, append(args, "-f", "rtp", "rtp://"+dst, "-sdp_file", path)...)
		sp, err := ParseURL("sdp://" + path)
		if err != nil {
			t.Fatal(err)
		}
		if len(sp.Tracks) != 1 || sp.Tracks[0].Local != netip.MustParseAddrPort(dst) {
			t.Fatalf("%s: %+v", name, sp.Tracks)
		}
		return sp
	}
	p := ports[0]
	check := func(name string, sp *Spec, want bridge.Codec) {
		t.Helper()
		got := sp.Tracks[0].Codec
		if got != want {
			t.Fatalf("%s: codec %+v, want %+v", name, got, want)
		}
	}
	check("h264", one("h264", fmt.Sprintf("127.0.0.1:%d", p), join(videoIn("0.1"), encH264, []string{"-payload_type", "102"})...),
		bridge.Codec{MimeType: MimeTypeH264, ClockRate: 90000, PayloadType: 102, Fmtp: "packetization-mode=1"})
	check("vp9", one("vp9", fmt.Sprintf("127.0.0.1:%d", p), join(videoIn("0.1"), encVP9)...),
		bridge.Codec{MimeType: MimeTypeVP9, ClockRate: 90000, PayloadType: 96})
	check("pcmu", one("pcmu", fmt.Sprintf("127.0.0.1:%d", p), join(audioIn("0.1", 8000), []string{"-c:a", "pcm_mulaw", "-ac", "1"})...),
		bridge.Codec{MimeType: MimeTypePCMU, ClockRate: 8000, Channels: 1, PayloadType: 0})
	check("pcma", one("pcma", fmt.Sprintf("127.0.0.1:%d", p), join(audioIn("0.1", 8000), []string{"-c:a", "pcm_alaw", "-ac", "1"})...),
		bridge.Codec{MimeType: MimeTypePCMA, ClockRate: 8000, Channels: 1, PayloadType: 8})
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		_ = c.Close()
		check("h264-ipv6", one("h264-ipv6", fmt.Sprintf("[::1]:%d", p), join(videoIn("0.1"), encH264, []string{"-payload_type", "102"})...),
			bridge.Codec{MimeType: MimeTypeH264, ClockRate: 90000, PayloadType: 102, Fmtp: "packetization-mode=1"})
	}
}

// An SDP file written by ffmpeg opens a Source with two tracks on two
// ports, which then receives that ffmpeg's audio and video.
func TestFFmpegSDPSource(t *testing.T) {
	needFFmpeg(t)
	ports := freePorts(t, 2)
	path := ffmpegSDP(t, t.TempDir(), ports[0], ports[1])
	src, col := run(t, "sdp://"+path)
	tracks := src.Tracks()
	if len(tracks) != 2 || tracks[0].Kind != bridge.KindVideo || tracks[1].Kind != bridge.KindAudio {
		t.Fatalf("tracks %+v", tracks)
	}
	ffmpeg(t, avArgs("2", ports[0], ports[1])...)
	waitStable(t, col)
	pkts := col.snapshot()
	checkStream(t, pkts, 0, 96, 0x1111, 55, 55, false)
	checkStream(t, pkts, 1, 111, 0x2222, 90, 90, true)
	st := src.Stats()
	for i, tr := range st.Tracks {
		if tr.SenderReports < 1 {
			t.Fatalf("track %d: no sender report", i)
		}
	}
	if len(st.BadPackets) != 0 || st.UnknownPayloadType != 0 || st.BadRTCP != 0 {
		t.Fatalf("stats %+v", st)
	}
	// ffmpeg ignores RTCP feedback, but the request is sent to it.
	if !src.RequestKeyframe(0) || src.RequestKeyframe(1) {
		t.Fatal("RequestKeyframe")
	}
}
