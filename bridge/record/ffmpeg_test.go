package record

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
)

// udpTrack receives one track's RTP and RTCP on 127.0.0.1 and feeds a
// Recorder, as a puller would.
type udpTrack struct {
	rtp, rtcp *net.UDPConn

	mu      sync.Mutex
	firstTS uint32 // of the first RTP packet
	haveTS  bool
	sr      *rtcp.SenderReport // the first
}

func listenUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(1 << 20)
	return c
}

func (u *udpTrack) port(c *net.UDPConn) int { return c.LocalAddr().(*net.UDPAddr).Port }

// run reads until the sockets are closed.
func (u *udpTrack) run(wg *sync.WaitGroup, r *Recorder, idx int) {
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		var p rtp.Packet
		for {
			n, err := u.rtp.Read(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) == nil {
				u.mu.Lock()
				if !u.haveTS {
					u.firstTS, u.haveTS = p.Timestamp, true
				}
				u.mu.Unlock()
				r.WriteRTP(idx, &p)
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, err := u.rtcp.Read(buf)
			if err != nil {
				return
			}
			pkts, err := rtcp.Unmarshal(buf[:n])
			if err != nil {
				continue
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					u.mu.Lock()
					if u.sr == nil {
						u.sr = sr
					}
					u.mu.Unlock()
					r.WriteSenderReport(idx, sr.NTPTime, sr.RTPTime)
				}
			}
		}
	}()
}

// TestFFmpegRTPLive: ffmpeg encodes H.264 and Opus in real time and sends
// them as RTP over UDP on 127.0.0.1 with its RTCP sender reports, while
// writing the same encoded streams to reference files (tee). The
// recorder, fed from the sockets with the real clock, writes a Matroska
// file with every frame ffmpeg sent (the H.264 pictures decode equal to
// the reference, the Opus packets are identical), decodable, with audio
// placed against video where ffmpeg's sender reports say.
func TestFFmpegRTPLive(t *testing.T) {
	requireTool(t, "ffmpeg", "ffprobe")
	dir := t.TempDir()
	r, err := New(Options{Dir: filepath.Join(dir, "rec"), Logger: testLogger(t), Stream: "live"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v := &udpTrack{rtp: listenUDP(t), rtcp: listenUDP(t)}
	a := &udpTrack{rtp: listenUDP(t), rtcp: listenUDP(t)}
	keys := &keyCounter{}
	vi, err := r.AddTrack(bridge.SinkTrack{Name: "video", RequestKeyframe: keys.request, Track: bridge.Track{
		Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: "video/H264", ClockRate: 90000, PayloadType: 102}}})
	if err != nil {
		t.Fatal(err)
	}
	ai, err := r.AddTrack(bridge.SinkTrack{Name: "audio", Track: bridge.Track{
		Kind: bridge.KindAudio, Codec: bridge.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2, PayloadType: 111}}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	v.run(&wg, r, vi)
	a.run(&wg, r, ai)
	closeAll := sync.OnceFunc(func() {
		for _, c := range []*net.UDPConn{v.rtp, v.rtcp, a.rtp, a.rtcp} {
			c.Close()
		}
		wg.Wait()
	})
	defer closeAll()

	refV, refA := filepath.Join(dir, "ref.h264"), filepath.Join(dir, "ref.ogg")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"-v", "error",
		"-re", "-t", "3", "-f", "lavfi", "-i", lavfiVideo,
		"-re", "-t", "3", "-f", "lavfi", "-i", lavfiAudio,
		"-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-threads", "1",
		"-f", "tee", fmt.Sprintf("[f=rtp:payload_type=102:ssrc=4369]rtp://127.0.0.1:%d?rtcpport=%d&pkt_size=1200|"+
			"[f=h264]%s", v.port(v.rtp), v.port(v.rtcp), refV),
		"-map", "1:a", "-c:a", "libopus", "-b:a", "64k", "-ac", "2", "-frame_duration", "20",
		"-f", "tee", fmt.Sprintf("[f=rtp:payload_type=111:ssrc=8738]rtp://127.0.0.1:%d?rtcpport=%d|"+
			"[f=ogg:page_duration=20000]%s", a.port(a.rtp), a.port(a.rtcp), refA),
	}
	if out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
	}
	// The last packets are in the sockets or on their way.
	waitFor(t, 5*time.Second, "the last packets", func() bool {
		st := r.Stats()
		return st.Tracks[0].Frames+st.Tracks[0].FramesWaitingKey >= 89 && st.Tracks[1].Frames >= 149
	})
	closeAll()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	t.Logf("stats: %+v", st)
	if st.Tracks[0].SenderReports == 0 || st.Tracks[1].SenderReports == 0 {
		t.Errorf("no sender reports from ffmpeg")
	}
	files := recordings(t, filepath.Join(dir, "rec"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(dir, "rec", files[0])
	if err := xerror(path); err != nil {
		t.Error(err)
	}
	wantV, gotV := decodedFrames(t, refV, "v:0"), decodedFrames(t, path, "v:0")
	if len(wantV) < 85 || !slices.Equal(hashes(gotV), hashes(wantV)) {
		t.Errorf("video: %d pictures recorded, ffmpeg sent %d (or they differ)", len(gotV), len(wantV))
	}
	wantA, gotA := streamPackets(t, refA, "a:0"), streamPackets(t, path, "a:0")
	// Audio before the first keyframe is dropped: the recorded packets are
	// the reference's from some point on.
	if len(gotA) < len(wantA)-3 || !slices.Equal(hashes(gotA), hashes(wantA[len(wantA)-len(gotA):])) {
		t.Errorf("audio: %d packets recorded, ffmpeg sent %d (or they differ)", len(gotA), len(wantA))
	}
	// ffmpeg's reports map RTP time to the time it sent the stream's first
	// packet, so its own scheduling shows in them (tens of ms on a busy
	// machine): check that the file places audio against video where the
	// reports say (within 15 ms: a report read after the first packet
	// leaves the first frames on arrival times, a few ms off on
	// loopback), and that this is close to together.
	if len(gotV) > 0 && len(gotA) > 0 && v.sr != nil && a.sr != nil {
		senderTime := func(u *udpTrack, ts uint32, rate float64) float64 {
			return float64(ntpToUnix(u.sr.NTPTime))/1e9 + float64(int32(ts-u.sr.RTPTime))/rate
		}
		firstA := a.firstTS + uint32(960*(len(wantA)-len(gotA))) // 20 ms packets
		want := senderTime(a, firstA, 48000) - senderTime(v, v.firstTS, 90000)
		got := gotA[0].pts - gotV[0].pts
		t.Logf("first PTS: video %.3f audio %.3f; A-V %.1f ms, by the sender reports %.1f ms", gotV[0].pts,
			gotA[0].pts, got*1000, want*1000)
		if d := time.Duration((got - want) * float64(time.Second)); abs(d) > 15*time.Millisecond {
			t.Errorf("A-V offset in the file %.1f ms, the sender reports say %.1f ms", got*1000, want*1000)
		}
		if abs(time.Duration(got*float64(time.Second))) > 150*time.Millisecond {
			t.Errorf("first audio and video PTS differ by %.0f ms", got*1000)
		}
	} else {
		t.Errorf("no sender reports from ffmpeg")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Error("ffmpeg took too long")
	}
}
