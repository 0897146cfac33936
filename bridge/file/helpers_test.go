package file

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// Test media is made with ffmpeg, once per test binary, in a directory
// removed by TestMain.
var (
	fixtureDir  string
	fixtureMu   sync.Mutex
	fixtureDone = map[string]error{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rtgate-file-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needFFmpeg skips the test when ffmpeg is missing, except under CI=true,
// where it fails.
func needFFmpeg(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (CI=true): %v", tool, err)
			}
			t.Skipf("%s not found: %v", tool, err)
		}
	}
}

const (
	lavfiVideo = "testsrc2=size=320x240:rate=30"
	lavfiAudio = "sine=frequency=440:sample_rate=48000"
)

// fixtures: name -> ffmpeg arguments (output appended).
var fixtureArgs = map[string][]string{
	"vp8.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "1", "-c:v", "libvpx", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "300k", "-g", "15", "-auto-alt-ref", "0"},
	"vp8-half.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "0.5", "-c:v", "libvpx", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "300k", "-g", "15", "-auto-alt-ref", "0"},
	// Variable frame rate: frames 2, 5, 8, ... are dropped, so the PTS go 0 1 3 4 6 7 ...
	"vp8-vfr.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "1", "-vf", "select='not(eq(mod(n\\,3)\\,2))'",
		"-fps_mode", "passthrough", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
		"-auto-alt-ref", "0"},
	"vp9.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "1", "-c:v", "libvpx-vp9", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "300k", "-g", "15"},
	"av1.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "1", "-c:v", "libaom-av1", "-cpu-used", "8",
		"-b:v", "300k", "-g", "15"},
	// Default pages: ~1 s of packets per page.
	"opus.ogg": {"-f", "lavfi", "-i", lavfiAudio, "-t", "1", "-c:a", "libopus", "-ac", "2", "-b:a", "64k",
		"-frame_duration", "20"},
	// One packet per page.
	"opus-20ms.ogg": {"-f", "lavfi", "-i", lavfiAudio, "-t", "1", "-c:a", "libopus", "-ac", "2", "-b:a", "64k",
		"-frame_duration", "20", "-page_duration", "20000"},
	// 3 s at 60 ms packets: several pages of many packets, long packets.
	"opus-long.ogg": {"-f", "lavfi", "-i", lavfiAudio, "-t", "3", "-c:a", "libopus", "-ac", "1", "-b:a", "32k",
		"-frame_duration", "60"},
	"h264.h264": {"-f", "lavfi", "-i", lavfiVideo, "-t", "1", "-c:v", "libx264", "-preset", "ultrafast",
		"-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "10", "-bf", "0", "-threads", "1",
		"-bsf:v", "h264_mp4toannexb", "-f", "h264"},
}

// fixture returns the path of a generated test file.
func fixture(t testing.TB, name string) string {
	t.Helper()
	needFFmpeg(t)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	p := filepath.Join(fixtureDir, name)
	err, done := fixtureDone[name]
	if !done {
		args, ok := fixtureArgs[name]
		if !ok {
			t.Fatalf("no fixture %q", name)
		}
		args = append([]string{"-v", "error", "-y"}, append(args, p)...)
		out, cerr := exec.Command("ffmpeg", args...).CombinedOutput()
		if cerr != nil {
			err = fmt.Errorf("ffmpeg %s: %v\n%s", strings.Join(args, " "), cerr, out)
		}
		fixtureDone[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// md5Frame is one line of ffmpeg's framemd5 output.
type md5Frame struct {
	pts  int64
	size int
	hash string
}

// frameMD5 runs `ffmpeg -i FILE -c copy [args] -f framemd5 -`: the MD5 of
// each of the file's own packets.
func frameMD5(t testing.TB, path string, args ...string) []md5Frame {
	t.Helper()
	cmdArgs := append([]string{"-v", "error", "-i", path, "-map", "0:0", "-c", "copy"}, args...)
	cmdArgs = append(cmdArgs, "-f", "framemd5", "-")
	out, err := exec.Command("ffmpeg", cmdArgs...).Output()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v", cmdArgs, err)
	}
	var frames []md5Frame
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 6 {
			t.Fatalf("framemd5 line %q", line)
		}
		pts, err1 := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		size, err2 := strconv.Atoi(strings.TrimSpace(f[4]))
		if err1 != nil || err2 != nil {
			t.Fatalf("framemd5 line %q", line)
		}
		frames = append(frames, md5Frame{pts: pts, size: size, hash: strings.TrimSpace(f[5])})
	}
	return frames
}

// ffprobePackets counts the packets of the first stream with ffprobe.
func ffprobePackets(t testing.TB, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_packets", "-select_streams", "0",
		"-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("ffprobe %s: %q", path, out)
	}
	return n
}

// sent is a copy of one packet a Source emitted, and when.
type sent struct {
	rtp.Packet
	at time.Time
}

// capture runs src until Run returns or limit packets were seen, and
// returns the packets and Run's error.
func capture(t testing.TB, src *Source, limit int) ([]sent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var pkts []sent
	err := src.Run(ctx, func(track int, p *rtp.Packet) {
		if track != 0 {
			t.Errorf("track %d", track)
		}
		c := sent{at: time.Now()}
		c.Header = p.Header.Clone()
		c.Payload = append([]byte(nil), p.Payload...)
		pkts = append(pkts, c)
		if limit > 0 && len(pkts) >= limit {
			cancel()
		}
	})
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatal("Run did not end within 15 s")
	}
	return pkts, err
}

// openFast opens a URL with an Epoch far in the past, so every frame is late
// and the whole file is sent at once.
func openFast(t testing.TB, url string) *Source {
	t.Helper()
	src, err := Open(url, Options{Epoch: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// rtpFrame is one frame put back together from RTP packets.
type rtpFrame struct {
	ts   uint32
	data []byte
	at   time.Time
}

// depacketize rebuilds the frames with pion's depacketizers: a video frame
// ends at the marker bit, an Opus frame is one packet.
func depacketize(t testing.TB, mime string, pkts []sent) []rtpFrame {
	t.Helper()
	var (
		unmarshal func([]byte) ([]byte, error)
		video     = true
	)
	switch mime {
	case "video/VP8":
		unmarshal = (&codecs.VP8Packet{}).Unmarshal
	case "video/VP9":
		unmarshal = (&codecs.VP9Packet{}).Unmarshal
	case "video/AV1":
		unmarshal = (&codecs.AV1Depacketizer{}).Unmarshal
	case "video/H264":
		// Length-prefixed NAL units, as in MP4 samples.
		unmarshal = (&codecs.H264Packet{IsAVC: true}).Unmarshal
	case "audio/opus":
		unmarshal = (&codecs.OpusPacket{}).Unmarshal
		video = false
	default:
		t.Fatalf("mime %s", mime)
	}
	var frames []rtpFrame
	var cur *rtpFrame
	for i, p := range pkts {
		if cur == nil {
			frames = append(frames, rtpFrame{ts: p.Timestamp, at: p.at})
			cur = &frames[len(frames)-1]
		} else if p.Timestamp != cur.ts {
			t.Fatalf("packet %d: timestamp %d inside the frame of %d (marker missing)", i, p.Timestamp, cur.ts)
		}
		b, err := unmarshal(p.Payload)
		if err != nil {
			t.Fatalf("packet %d: depacketize: %v", i, err)
		}
		cur.data = append(cur.data, b...)
		if !video || p.Marker {
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("last frame (ts %d) has no marker", cur.ts)
	}
	return frames
}

func md5hex(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

// checkSeq checks that sequence numbers go up by exactly 1 and there is
// one SSRC.
func checkSeq(t testing.TB, pkts []sent) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		if pkts[i].SequenceNumber != pkts[i-1].SequenceNumber+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, pkts[i].SequenceNumber, pkts[i-1].SequenceNumber)
		}
		if pkts[i].SSRC != pkts[0].SSRC {
			t.Fatalf("packet %d: SSRC %08x, first %08x", i, pkts[i].SSRC, pkts[0].SSRC)
		}
	}
}

func fileURL(p string, query string) string {
	u := "file://" + p
	if query != "" {
		u += "?" + query
	}
	return u
}

// annexBNALs splits an Annex-B stream (test-side, independent of the
// package's reader): NAL units without start codes or trailing zeros.
func annexBNALs(b []byte) [][]byte {
	var nals [][]byte
	start := -1
	for i := 0; i+2 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				nals = append(nals, bytes.TrimRight(b[start:i], "\x00"))
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 {
		nals = append(nals, bytes.TrimRight(b[start:], "\x00"))
	}
	return nals
}

func isRunErr(err error) bool {
	return err != nil && !errors.Is(err, io.EOF)
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
