package pull_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/pull"
)

// freePortRun returns an even port p on 127.0.0.1 with p..p+n-1 free (and
// released again, for a tool that must be told its ports).
func freePortRun(t *testing.T, n int) uint16 {
	t.Helper()
	for range 200 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		base := c.LocalAddr().(*net.UDPAddr).Port
		_ = c.Close()
		if base%2 != 0 || base+n > 65535 {
			continue
		}
		var held []*net.UDPConn
		ok := true
		for i := range n {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base + i})
			if err != nil {
				ok = false
				break
			}
			held = append(held, c)
		}
		for _, c := range held {
			_ = c.Close()
		}
		if ok {
			return uint16(base)
		}
	}
	t.Fatal("no free port run")
	return 0
}

// bound reports whether someone holds a UDP port on 127.0.0.1.
func bound(port uint16) bool {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err == nil {
		_ = c.Close()
	}
	return errors.Is(err, syscall.EADDRINUSE)
}

func ivfFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var frames [][]byte
	for {
		b, _, err := r.ParseNextFrame()
		if err != nil {
			return frames
		}
		frames = append(frames, b)
	}
}

// TestForwardToFFmpeg is the whole way out: the demo files published as a
// stream, through the SFU, pulled, forwarded as RTP/UDP by rtpudp.Sender,
// and received by ffmpeg given only the SDP file the Sender wrote. ffmpeg
// writes 90 video frames that are the demo's, byte for byte and in loop
// order, and 3 s of its Opus audio; a PLI sent to the Sender's RTCP port
// reaches the publisher as a keyframe request.
func TestForwardToFFmpeg(t *testing.T) {
	ff := rtctest.RequireTool(t, "ffmpeg")
	ffprobe := rtctest.RequireTool(t, "ffprobe")
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	st := runStream(t, publish.Options{Name: "demo", Sources: demoSources(t, "demo.ivf", "demo.ogg"), Client: e.Client,
		API: rtctest.PeerAPI(t), MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second})
	waitStreamState(t, st, publish.StateLive, 10*time.Second)

	dir := t.TempDir()
	port := freePortRun(t, 4)
	sdp := filepath.Join(dir, "out.sdp")
	snd, err := rtpudp.NewSender(fmt.Sprintf("rtp://127.0.0.1:%d", port), rtpudp.SenderOptions{SDPFile: sdp, Name: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = snd.Close() })
	p, stop := runPull(t, pull.Options{Name: "fwd", Client: e.Client, API: rtctest.PeerAPI(t), Sink: snd,
		Stream: st, StreamName: "demo"})
	waitFor(t, "both tracks in the SDP", 10*time.Second, func() bool { return bytes.Count(snd.SDP(), []byte("m=")) == 2 })
	text, err := os.ReadFile(sdp)
	if err != nil || !bytes.Contains(text, []byte("a=rtpmap:96 VP8/90000")) || !bytes.Contains(text, []byte("a=rtpmap:111 opus/48000/2")) ||
		!bytes.Contains(text, []byte("m=video "+strconv.Itoa(int(port))+" ")) || !bytes.Contains(text, []byte("m=audio "+strconv.Itoa(int(port)+2)+" ")) {
		t.Fatalf("sdp file: %v\n%s", err, text)
	}

	outV, outA := filepath.Join(dir, "out.ivf"), filepath.Join(dir, "out.mka")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ff, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
		"-protocol_whitelist", "file,udp,rtp", "-sdp_flags", "rtcp_to_source", "-i", sdp,
		"-map", "0:v", "-frames:v", "90", "-c", "copy", outV,
		"-map", "0:a", "-t", "3", "-c", "copy", outA)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	waitFor(t, "ffmpeg to listen", 10*time.Second, func() bool { return bound(port) && bound(port+2) })

	// Meanwhile: the receiver asks for a keyframe.
	before := st.Status().Tracks[0].KeyframeRequests
	fb, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	var vssrc uint32
	for _, ts := range snd.Stats().Tracks {
		if ts.Kind == bridge.KindVideo {
			vssrc = ts.SSRC
		}
	}
	time.Sleep(600 * time.Millisecond) // past the keyframe coalescing windows of the pull and the publisher
	pli, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: vssrc}})
	if _, err := fb.WriteToUDPAddrPort(pli, snd.RTCPAddr(bridge.KindVideo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the receiver's PLI at the publisher", 5*time.Second, func() bool {
		return st.Status().Tracks[0].KeyframeRequests > before
	})

	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, out.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatalf("ffmpeg did not finish\n%s", out.String())
	}

	demo := ivfFrames(t, filepath.Join("..", "..", "deploy", "demo", "demo.ivf"))
	got := ivfFrames(t, outV)
	if len(got) != 90 {
		t.Fatalf("ffmpeg wrote %d video frames, want 90", len(got))
	}
	k := -1
	for i, d := range demo {
		if bytes.Equal(d, got[0]) {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatal("the first frame ffmpeg wrote is not a frame of the demo")
	}
	for i := range got {
		if j := (k + i) % len(demo); !bytes.Equal(got[i], demo[j]) {
			t.Fatalf("frame %d is not the demo's frame %d", i, j)
		}
	}
	probe := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(ffprobe, append([]string{"-v", "error"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %v: %v\n%s", args, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	if v := probe("-count_frames", "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", outV); v != "vp8,640,360,90" {
		t.Fatalf("video: %s", v)
	}
	a := probe("-count_packets", "-show_entries", "stream=codec_name,sample_rate,channels,nb_read_packets", "-of", "csv=p=0", outA)
	f := strings.Split(a, ",")
	if len(f) != 4 || f[0] != "opus" || f[1] != "48000" || f[2] != "2" {
		t.Fatalf("audio: %s", a)
	}
	if n, _ := strconv.Atoi(f[3]); n < 140 || n > 160 {
		t.Fatalf("audio: %d packets in 3 s, want about 150 (20 ms each)", n)
	}
	if _, err := exec.Command(ff, "-v", "error", "-xerror", "-i", outV, "-i", outA, "-map", "0", "-map", "1", "-f", "null", "-").CombinedOutput(); err != nil {
		t.Fatalf("decoding what ffmpeg wrote: %v", err)
	}

	ps := p.Status()
	ss := snd.Stats()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var vs pull.TrackStatus
	for _, ts := range ps.Tracks {
		if ts.Kind == bridge.KindVideo {
			vs = ts
		}
	}
	if vs.PLIs != 1 || vs.WriteErrors != 0 {
		t.Fatalf("pulled video %+v", vs)
	}
	for _, ts := range ss.Tracks {
		if ts.Packets == 0 || ts.WriteErrors != 0 || ts.SenderReports == 0 {
			t.Fatalf("forwarded %s: %+v", ts.Kind, ts)
		}
	}
	t.Logf("ffmpeg got 90 demo frames and %s audio packets; sender: %+v; receiver report: %+v", f[3], ss.Tracks, ss.Tracks[0].Receiver)
}
