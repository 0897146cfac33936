package record

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/file"
)

// Test media is made with ffmpeg, once per test binary, in a directory
// removed by TestMain.
var (
	fixtureDir  string
	fixtureMu   sync.Mutex
	fixtureDone = map[string]error{}
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	dir, err := os.MkdirTemp("", "rtgate-record-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool skips the test when a tool is missing, except under CI=true,
// where it fails.
func requireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI: %v", name, err)
			}
			t.Skipf("%s not found: %v", name, err)
		}
	}
}

const (
	lavfiVideo = "testsrc2=size=320x240:rate=30"
	lavfiAudio = "sine=frequency=440:sample_rate=48000"
)

// fixtures: name -> ffmpeg arguments (output appended). Keyframes every
// 15 frames (0.5 s), so a loss costs at most half a second of video.
var fixtureArgs = map[string][]string{
	"vp8.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "4", "-c:v", "libvpx", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "400k", "-g", "15", "-auto-alt-ref", "0"},
	"vp8-long.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "10", "-c:v", "libvpx", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "400k", "-g", "15", "-auto-alt-ref", "0"},
	"vp9.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "2", "-c:v", "libvpx-vp9", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "400k", "-g", "15"},
	"av1.ivf": {"-f", "lavfi", "-i", lavfiVideo, "-t", "2", "-c:v", "libaom-av1", "-cpu-used", "8",
		"-b:v", "400k", "-g", "15"},
	"h264.h264": {"-f", "lavfi", "-i", lavfiVideo, "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
		"-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "15", "-bf", "0", "-threads", "1",
		"-bsf:v", "h264_mp4toannexb", "-f", "h264"},
	"opus.ogg": {"-f", "lavfi", "-i", lavfiAudio, "-t", "4", "-c:a", "libopus", "-ac", "2", "-b:a", "64k",
		"-frame_duration", "20", "-page_duration", "20000"},
	"opus-long.ogg": {"-f", "lavfi", "-i", lavfiAudio, "-t", "10", "-c:a", "libopus", "-ac", "2", "-b:a", "64k",
		"-frame_duration", "20", "-page_duration", "20000"},
}

// fixture returns the path of a generated test file.
func fixture(t testing.TB, name string) string {
	t.Helper()
	requireTool(t, "ffmpeg", "ffprobe")
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

// pkt is one RTP packet of a source track and the time the sender sends
// it, relative to the track's start (from its RTP timestamp).
type pkt struct {
	rtp.Packet
	send time.Duration
}

// media is the packets of one file, as bridge/file packetizes it with
// pion's payloaders.
type media struct {
	track bridge.Track
	pkts  []pkt
}

var mediaCache sync.Map // path -> *media

// packetize plays a fixture through bridge/file as fast as it can and
// keeps the packets.
func packetize(t testing.TB, name string) *media {
	t.Helper()
	p := fixture(t, name)
	if m, ok := mediaCache.Load(p); ok {
		return m.(*media)
	}
	src, err := file.Open("file://"+p, file.Options{Epoch: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := &media{track: src.Tracks()[0]}
	rate := int64(m.track.Codec.ClockRate)
	var ts0 uint32
	err = src.Run(ctx, func(_ int, p *rtp.Packet) {
		c := pkt{}
		c.Header = p.Header.Clone()
		c.Payload = append([]byte(nil), p.Payload...)
		if len(m.pkts) == 0 {
			ts0 = p.Timestamp
		}
		c.send = time.Duration(int64(p.Timestamp-ts0) * 1e9 / rate)
		m.pkts = append(m.pkts, c)
	})
	if err != nil && err != io.EOF {
		t.Fatalf("packetize %s: %v", name, err)
	}
	mediaCache.Store(p, m)
	return m
}

// fakeClock is Options.Now for tests that feed packets faster than real
// time.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 21, 10, 15, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time           { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Set(t int64)              { c.ns.Store(t) }
func (c *fakeClock) Add(d time.Duration)      { c.ns.Add(int64(d)) }
func (c *fakeClock) At(d time.Duration) int64 { return c.ns.Load() + int64(d) }

// delivery is one packet as the recorder receives it.
type delivery struct {
	track  int
	p      *rtp.Packet
	arrive time.Duration // since the stream's start
}

// schedule turns the packets of several tracks into deliveries; modify may
// drop a packet (return nil), delay it, or add copies. Deliveries are
// sorted by arrival (stable: equal arrivals keep sending order).
func schedule(tracks []*media, modify func(track, i int, p pkt) []time.Duration) []delivery {
	var ds []delivery
	for ti, m := range tracks {
		for i := range m.pkts {
			p := m.pkts[i]
			arr := []time.Duration{p.send}
			if modify != nil {
				arr = modify(ti, i, p)
			}
			for _, a := range arr {
				pp := p.Packet // shares the payload; WriteRTP does not keep it
				ds = append(ds, delivery{track: ti, p: &pp, arrive: a})
			}
		}
	}
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].arrive < ds[j].arrive })
	return ds
}

// keyCounter counts keyframe requests of a track.
type keyCounter struct{ n atomic.Int64 }

func (k *keyCounter) request() { k.n.Add(1) }

// feed adds the tracks to r and delivers the packets with the fake clock
// at their arrival times, then waits for the writer to have taken them.
func feed(t testing.TB, r *Recorder, clk *fakeClock, tracks []*media, ds []delivery, keys []*keyCounter) []int {
	t.Helper()
	start := clk.ns.Load()
	idx := make([]int, len(tracks))
	for i, m := range tracks {
		st := bridge.SinkTrack{Track: m.track, Name: fmt.Sprintf("t%d-%s", i, m.track.Kind),
			Session: "sess1", Stream: "cam"}
		if m.track.Kind == bridge.KindVideo && keys != nil && keys[i] != nil {
			st.RequestKeyframe = keys[i].request
		}
		n, err := r.AddTrack(st)
		if err != nil {
			t.Fatalf("AddTrack %d: %v", i, err)
		}
		idx[i] = n
	}
	for _, d := range ds {
		clk.Set(start + int64(d.arrive))
		if err := r.WriteRTP(idx[d.track], d.p); err != nil {
			t.Fatalf("WriteRTP: %v", err)
		}
	}
	return idx
}

// newTestRecorder makes a Recorder with a fake clock that never drops on
// a full writer queue (the tests feed faster than real time).
func newTestRecorder(t testing.TB, o Options) (*Recorder, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Now == nil {
		o.Now = clk.Now
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.blockOnFull = true
	t.Cleanup(func() { r.Close() })
	return r, clk
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// recordings lists the media files under dir (relative paths, sorted).
func recordings(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// markers lists the marker files under dir.
func markers(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && isMarker(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// packet is one packet of a media file as ffmpeg demuxes it.
type packet struct {
	pts  float64 // seconds
	size int
	hash string
}

// streamPackets returns the packets of one stream ("v:0", "a:0") with
// their MD5 (ffmpeg -c copy -f framemd5), as stored in the file.
func streamPackets(t testing.TB, path, stream string) []packet {
	t.Helper()
	return framemd5(t, path, stream, true)
}

// decodedFrames returns the MD5 of the decoded frames of a stream.
func decodedFrames(t testing.TB, path, stream string) []packet {
	t.Helper()
	return framemd5(t, path, stream, false)
}

func framemd5(t testing.TB, path, stream string, copy bool) []packet {
	t.Helper()
	args := []string{"-v", "error", "-i", path, "-map", "0:" + stream}
	if copy {
		args = append(args, "-c", "copy")
	}
	args = append(args, "-f", "framemd5", "-")
	out, err := exec.Command("ffmpeg", args...).Output()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v", args, err)
	}
	var tb float64 = 1
	var pk []packet
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#tb 0:") {
			f := strings.Fields(strings.TrimPrefix(line, "#tb 0:"))
			if len(f) == 1 {
				num, den, _ := strings.Cut(f[0], "/")
				n, _ := strconv.ParseFloat(num, 64)
				d, _ := strconv.ParseFloat(den, 64)
				tb = n / d
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 6 {
			t.Fatalf("framemd5 line %q", line)
		}
		pts, _ := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		size, _ := strconv.Atoi(strings.TrimSpace(f[4]))
		pk = append(pk, packet{pts: float64(pts) * tb, size: size, hash: strings.TrimSpace(f[5])})
	}
	return pk
}

// xerror runs a full decode with -xerror: nil when the file decodes
// without an error.
func xerror(path string) error {
	out, err := exec.Command("ffmpeg", "-v", "error", "-xerror", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		return fmt.Errorf("ffmpeg -xerror %s: %v: %s", path, err, out)
	}
	return nil
}

// probe is what ffprobe says of a file.
type probe struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		Packets   string `json:"nb_read_packets"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

func ffprobe(t testing.TB, path string) probe {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_packets", "-show_entries",
		"stream=codec_name,codec_type,width,height,nb_read_packets:format=duration", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	return p
}

func (p probe) duration() time.Duration {
	f, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return time.Duration(f * float64(time.Second))
}

// hashes returns the MD5 column.
func hashes(ps []packet) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.hash
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
