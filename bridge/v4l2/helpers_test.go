package v4l2_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/rtgate/rtgate/bridge/v4l2"
	"github.com/rtgate/rtgate/bridge/v4l2/v4l2test"
)

var (
	fixtureDir  string
	fixtureOnce sync.Once
	fixtureAUs  [][]byte
	fixtureErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rtgate-v4l2-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cameraAUs returns the access units of 2 s of 320x240 30 fps H.264 made
// by ffmpeg. Without ffmpeg the test is skipped, except under CI=true.
func cameraAUs(t testing.TB) [][]byte {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg not found (CI=true): %v", err)
		}
		t.Skipf("ffmpeg not found: %v", err)
	}
	fixtureOnce.Do(func() {
		p := filepath.Join(fixtureDir, "x.h264")
		out, err := exec.Command("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
			"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
			"-pix_fmt", "yuv420p", "-g", "15", "-bf", "0", "-f", "h264", p).CombinedOutput()
		if err != nil {
			fixtureErr = fmt.Errorf("ffmpeg: %v\n%s", err, out)
			return
		}
		b, err := os.ReadFile(p)
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureAUs = v4l2test.SplitAccessUnits(b)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	if len(fixtureAUs) != 60 {
		t.Fatalf("ffmpeg file has %d access units, want 60", len(fixtureAUs))
	}
	return fixtureAUs
}

type pkt struct {
	seq     uint16
	ts      uint32
	ssrc    uint32
	marker  bool
	payload []byte
}

type collector struct {
	mu     sync.Mutex
	pkts   []pkt
	frames int
	want   int
	done   chan struct{}
	once   sync.Once
	fnHook func() // called with mu held after each packet
	asked  bool
	ok     chan bool
}

func newCollector(frames int) *collector {
	return &collector{want: frames, done: make(chan struct{})}
}

func (c *collector) fn(track int, p *rtp.Packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pkts = append(c.pkts, pkt{p.SequenceNumber, p.Timestamp, p.SSRC, p.Marker, append([]byte(nil), p.Payload...)})
	if p.Marker {
		c.frames++
		if c.want > 0 && c.frames >= c.want {
			c.once.Do(func() { close(c.done) })
		}
	}
	if c.fnHook != nil {
		c.fnHook()
	}
}

func (c *collector) snapshot() []pkt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]pkt(nil), c.pkts...)
}

// runUntil runs src until c has its frames (then cancels) or Run returns.
func runUntil(t *testing.T, src *v4l2.Source, c *collector, limit time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, c.fn) }()
	select {
	case <-c.done:
		cancel()
		return <-done
	case err := <-done:
		return err
	case <-time.After(limit):
		cancel()
		<-done
		t.Fatalf("no %d frames within %v (got %d)", c.want, limit, c.frames)
		return nil
	}
}

type frame struct {
	ts   uint32
	nals [][]byte
}

// depacketize rebuilds access units with pion's H.264 depacketizer.
func depacketize(t testing.TB, pkts []pkt) []frame {
	t.Helper()
	var frames []frame
	var cur []byte
	var d codecs.H264Packet
	for i, p := range pkts {
		if cur == nil && len(frames) > 0 && frames[len(frames)-1].ts == p.ts {
			t.Fatalf("packet %d: timestamp %d repeats the previous frame's", i, p.ts)
		}
		b, err := d.Unmarshal(p.payload)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		cur = append(cur, b...)
		if p.marker {
			frames = append(frames, frame{ts: p.ts, nals: v4l2test.NALUnits(cur)})
			cur = nil
		}
	}
	return frames
}

// sent drops the NAL units a sender may drop (AUD, filler).
func sent(nals [][]byte) [][]byte {
	var out [][]byte
	for _, n := range nals {
		if t := n[0] & 0x1f; t != 9 && t != 12 {
			out = append(out, n)
		}
	}
	return out
}

func checkSeq(t testing.TB, pkts []pkt) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		if pkts[i].seq != pkts[i-1].seq+1 {
			t.Fatalf("packet %d: sequence %d after %d", i, pkts[i].seq, pkts[i-1].seq)
		}
		if pkts[i].ssrc != pkts[0].ssrc {
			t.Fatalf("packet %d: SSRC changed", i)
		}
	}
}

func openFake(t testing.TB, cam *v4l2test.Camera, query string, opts v4l2.Options) *v4l2.Source {
	t.Helper()
	opts.Open = cam.Open
	src, err := v4l2.Open("v4l2:///dev/video0?"+query, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}
