package container

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

// Test media is made with ffmpeg once per test binary, in a directory
// removed by TestMain.
var (
	fixtureDir  string
	fixtureMu   sync.Mutex
	fixtureDone = map[string]error{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rtgate-container-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTool returns the path of an external tool. Without it the test
// is skipped on a developer's machine, but fails when CI=true (a copy of
// rtctest.RequireTool: bridge never imports gateway).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (.ci/install-deps installs it): %v", name, err)
	}
	t.Skipf("%s not found: %v", name, err)
	return ""
}

// requireEncoder skips (or fails under CI=true) when ffmpeg lacks an encoder.
func requireEncoder(t testing.TB, enc string) {
	t.Helper()
	requireTool(t, "ffmpeg")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-encoders").Output()
	if err != nil {
		t.Fatalf("ffmpeg -encoders: %v", err)
	}
	if !bytes.Contains(out, []byte(" "+enc+" ")) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("ffmpeg has no %s encoder (CI=true)", enc)
		}
		t.Skipf("ffmpeg has no %s encoder", enc)
	}
}

const (
	lavfiVideo = "testsrc2=size=320x240:rate=30"
	lavfiAudio = "sine=frequency=440:sample_rate=48000"
	fixtureSec = "3"
	fixtureFPS = 30
)

var videoArgs = []string{"-f", "lavfi", "-i", lavfiVideo, "-t", fixtureSec}

// fixtures: name -> encoder and ffmpeg arguments (output appended).
var fixtureArgs = map[string]struct {
	enc  string
	args []string
}{
	"vp8.ivf": {"libvpx", append(videoArgs[:len(videoArgs):len(videoArgs)], "-c:v", "libvpx", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "300k", "-g", "30", "-auto-alt-ref", "0")},
	"vp9.ivf": {"libvpx-vp9", append(videoArgs[:len(videoArgs):len(videoArgs)], "-c:v", "libvpx-vp9", "-deadline", "realtime",
		"-cpu-used", "8", "-b:v", "300k", "-g", "30")},
	"av1.ivf": {"libaom-av1", append(videoArgs[:len(videoArgs):len(videoArgs)], "-c:v", "libaom-av1", "-cpu-used", "8",
		"-b:v", "300k", "-g", "30", "-usage", "realtime")},
	"h264.h264": {"libx264", append(videoArgs[:len(videoArgs):len(videoArgs)], "-c:v", "libx264", "-preset", "ultrafast",
		"-tune", "zerolatency", "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-g", "30", "-bf", "0", "-threads", "1",
		"-f", "h264")},
	"h265.h265": {"libx265", append(videoArgs[:len(videoArgs):len(videoArgs)], "-c:v", "libx265", "-preset", "ultrafast",
		"-tune", "zerolatency", "-pix_fmt", "yuv420p", "-x265-params", "keyint=30:bframes=0:log-level=error",
		"-f", "hevc")},
	"opus.ogg": {"libopus", []string{"-f", "lavfi", "-i", lavfiAudio, "-t", fixtureSec, "-c:a", "libopus", "-ac", "2",
		"-b:a", "64k", "-frame_duration", "20", "-page_duration", "20000"}},
}

// fixture returns the path of a generated test file.
func fixture(t testing.TB, name string) string {
	t.Helper()
	requireTool(t, "ffprobe")
	fa, ok := fixtureArgs[name]
	if !ok {
		t.Fatalf("no fixture %q", name)
	}
	requireEncoder(t, fa.enc)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	p := filepath.Join(fixtureDir, name)
	err, done := fixtureDone[name]
	if !done {
		args := append([]string{"-v", "error", "-y"}, append(fa.args, p)...)
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

// src is one track of source media, parsed by the test itself.
type src struct {
	track  bridge.Track
	frames []Frame // Track fields are set by merge
	dur    time.Duration
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadSource parses a fixture: IVF (VP8, VP9, AV1), Annex-B (H.264, H.265,
// 30 fps) or Ogg Opus.
func loadSource(t testing.TB, name string) src {
	t.Helper()
	b := readFile(t, fixture(t, name))
	switch filepath.Ext(name) {
	case ".ivf":
		return parseIVFSource(t, b)
	case ".h264", ".h265":
		return parseAnnexBSource(t, b, filepath.Ext(name) == ".h265")
	case ".ogg":
		return parseOggSource(t, b)
	}
	t.Fatalf("fixture %s", name)
	return src{}
}

func parseIVFSource(t testing.TB, b []byte) src {
	t.Helper()
	if len(b) < 32 || string(b[:4]) != "DKIF" {
		t.Fatal("not IVF")
	}
	var s src
	mime := map[string]string{"VP80": "video/VP8", "VP90": "video/VP9", "AV01": "video/AV1"}[string(b[8:12])]
	s.track = bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: mime, ClockRate: 90000}}
	den := int64(binary.LittleEndian.Uint32(b[16:]))
	num := int64(binary.LittleEndian.Uint32(b[20:]))
	for p := 32; p+12 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[p:]))
		pts := int64(binary.LittleEndian.Uint64(b[p+4:]))
		data := b[p+12 : p+12+n]
		p += 12 + n
		f := Frame{PTS: time.Duration(pts * num * int64(time.Second) / den), Data: data}
		switch mime {
		case "video/VP8":
			f.Key = data[0]&1 == 0
		case "video/VP9":
			_, err := parseVP9Keyframe(data)
			f.Key = err == nil
		case "video/AV1":
			// As RTP depacketizing gives it: no temporal delimiter.
			var err error
			f.Data, err = appendAV1WithoutTD(nil, data)
			if err != nil {
				t.Fatal(err)
			}
			_, err = av1Config(f.Data)
			f.Key = err == nil
		}
		s.frames = append(s.frames, f)
	}
	s.dur = s.frames[len(s.frames)-1].PTS + time.Second/fixtureFPS
	return s
}

// parseAnnexBSource groups NAL units into access units (a new one at an
// AUD, a parameter set or SEI after a slice, or a slice starting a picture).
func parseAnnexBSource(t testing.TB, b []byte, hevc bool) src {
	t.Helper()
	var s src
	mime := "video/H264"
	if hevc {
		mime = "video/H265"
	}
	s.track = bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: mime, ClockRate: 90000}}
	var cur []byte
	hasSlice, key := false, false
	emit := func() {
		if len(cur) > 0 {
			s.frames = append(s.frames, Frame{PTS: time.Duration(len(s.frames)) * time.Second / fixtureFPS, Key: key, Data: cur})
		}
		cur, hasSlice, key = nil, false, false
	}
	for pos := 0; pos < len(b); {
		nal, next := nextNAL(b, pos)
		pos = next
		if len(nal) < 3 {
			continue
		}
		var slice, firstInPic, irap bool
		if hevc {
			typ := (nal[0] >> 1) & 0x3f
			slice = typ < 32
			firstInPic = slice && nal[2]&0x80 != 0
			irap = typ >= 16 && typ <= 21
		} else {
			typ := nal[0] & 0x1f
			slice = typ == 1 || typ == 5
			firstInPic = slice && nal[1]&0x80 != 0
			irap = typ == 5
		}
		if hasSlice && (!slice || firstInPic) {
			emit()
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal...)
		hasSlice = hasSlice || slice
		key = key || irap
	}
	emit()
	s.dur = time.Duration(len(s.frames)) * time.Second / fixtureFPS
	return s
}

// parseOggSource reads the Opus packets of an Ogg file (lacing parsed) and
// gives them PTS by counting samples from 0.
func parseOggSource(t testing.TB, b []byte) src {
	t.Helper()
	var s src
	s.track = bridge.Track{Kind: bridge.KindAudio, Codec: bridge.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}
	var pkt []byte
	var samples int64
	headers := 0
	for p := 0; p+27 <= len(b); {
		if string(b[p:p+4]) != "OggS" {
			t.Fatalf("Ogg page at %d", p)
		}
		n := int(b[p+26])
		segs := b[p+27 : p+27+n]
		d := p + 27 + n
		for _, l := range segs {
			pkt = append(pkt, b[d:d+int(l)]...)
			d += int(l)
			if l < 255 {
				if headers < 2 {
					headers++
				} else {
					s.frames = append(s.frames, Frame{PTS: time.Duration(samples) * time.Second / 48000, Key: true, Data: pkt})
					samples += int64(opusSamples(pkt))
				}
				pkt = nil
			}
		}
		p = d
	}
	s.dur = time.Duration(samples) * time.Second / 48000
	return s
}

// merge interleaves the frames of several sources in PTS order (video
// first at equal PTS) and sets their Track.
func merge(srcs ...src) []Frame {
	var all []Frame
	for i, s := range srcs {
		for _, f := range s.frames {
			f.Track = i
			all = append(all, f)
		}
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].PTS < all[b].PTS })
	return all
}

func tracksOf(srcs ...src) []bridge.Track {
	var ts []bridge.Track
	for _, s := range srcs {
		ts = append(ts, s.track)
	}
	return ts
}

// loop repeats the frames of one merged list until d, shifting PTS.
func loop(frames []Frame, period, d time.Duration) []Frame {
	var out []Frame
	for off := time.Duration(0); off < d; off += period {
		for _, f := range frames {
			if f.PTS+off >= d {
				break
			}
			f.PTS += off
			out = append(out, f)
		}
	}
	return out
}

// writeFile writes frames with a new Writer to dir/name and closes it.
func writeFile(t testing.TB, f Format, path string, tracks []bridge.Track, frames []Frame) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, fh, tracks)
	if err != nil {
		fh.Close()
		t.Fatal(err)
	}
	for i, fr := range frames {
		if err := w.WriteFrame(fr); err != nil {
			t.Fatalf("frame %d (track %d, %v): %v", i, fr.Track, fr.PTS, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// probeStream is what ffprobe says about one stream.
type probeStream struct {
	codec          string
	width, height  int
	packets, frame int
}

type probe struct {
	streams  []probeStream
	duration float64 // format duration, NaN when ffprobe reports none
}

// ffprobe counts packets (and, with decode, frames) per stream.
func ffprobe(t testing.TB, path string, decode bool) probe {
	t.Helper()
	args := []string{"-v", "error", "-count_packets"}
	if decode {
		args = append(args, "-count_frames")
	}
	args = append(args, "-show_entries", "stream=codec_name,width,height,nb_read_packets,nb_read_frames:format=duration",
		"-of", "compact=p=0:nk=0", path)
	out, err := exec.Command("ffprobe", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	pr := probe{duration: math.NaN()}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		kv := map[string]string{}
		for _, f := range strings.Split(line, "|") {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		if d, ok := kv["duration"]; ok && len(kv) == 1 {
			if v, err := strconv.ParseFloat(d, 64); err == nil {
				pr.duration = v
			}
			continue
		}
		if _, ok := kv["codec_name"]; !ok {
			continue
		}
		var s probeStream
		s.codec = kv["codec_name"]
		s.width, _ = strconv.Atoi(kv["width"])
		s.height, _ = strconv.Atoi(kv["height"])
		s.packets, _ = strconv.Atoi(kv["nb_read_packets"])
		s.frame, _ = strconv.Atoi(kv["nb_read_frames"])
		pr.streams = append(pr.streams, s)
	}
	return pr
}

// ffmpegClean decodes the whole file with -xerror: no error, no message.
func ffmpegClean(t testing.TB, path string) {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-xerror", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("ffmpeg -xerror %s: %v\n%s", path, err, out)
	}
}

// ffmpegDecodes decodes the file without -xerror (a live or cut file) and
// fails only when ffmpeg fails.
func ffmpegDecodes(t testing.TB, path string) {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", path, err, out)
	}
}

type pkt struct {
	stream   int
	pts, dur float64
	size     int
}

// packets lists the packets ffprobe reads, in file order.
func packets(t testing.TB, path string) []pkt {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "packet=stream_index,pts_time,duration_time,size",
		"-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe packets %s: %v\n%s", path, err, out)
	}
	var ps []pkt
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		var p pkt
		p.stream, _ = strconv.Atoi(f[0])
		p.pts, err = strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		p.dur, _ = strconv.ParseFloat(f[2], 64)
		if len(f) > 3 {
			p.size, _ = strconv.Atoi(f[3])
		}
		ps = append(ps, p)
	}
	return ps
}

// playEnd is the end of the last packet ffprobe reads: how far the file
// plays.
func playEnd(ps []pkt) float64 {
	end := 0.0
	for _, p := range ps {
		end = math.Max(end, p.pts+p.dur)
	}
	return end
}

// framemd5 returns the MD5 of each packet (copy) or decoded frame of one
// stream, in order.
func framemd5(t testing.TB, path, stream string, copyPackets bool) []string {
	t.Helper()
	args := []string{"-v", "error", "-i", path, "-map", stream}
	if copyPackets {
		args = append(args, "-c", "copy")
	}
	args = append(args, "-f", "framemd5", "-")
	out, err := exec.Command("ffmpeg", args...).Output()
	if err != nil {
		t.Fatalf("ffmpeg framemd5 %s: %v", path, err)
	}
	var hs []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",") // stream, dts, pts, duration, size, hash[, side data]
		if len(f) < 6 {
			t.Fatalf("framemd5 line %q", line)
		}
		hs = append(hs, strings.TrimSpace(f[5]))
	}
	return hs
}

// failFile fails writes with err once limit bytes are written (the write
// that crosses it is partial, like a disk that fills up).
type failFile struct {
	*os.File
	limit, n int64
	err      error
}

func (f *failFile) Write(p []byte) (int, error) {
	if f.n+int64(len(p)) <= f.limit {
		n, err := f.File.Write(p)
		f.n += int64(n)
		return n, err
	}
	k := int(max(f.limit-f.n, 0))
	n, _ := f.File.Write(p[:k])
	f.n += int64(n)
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: f.err}
}

// discard is a File that keeps nothing (benchmarks).
type discard struct{ pos, end int64 }

func (d *discard) Write(p []byte) (int, error) {
	d.pos += int64(len(p))
	d.end = max(d.end, d.pos)
	return len(p), nil
}

func (d *discard) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		d.pos = off
	case io.SeekCurrent:
		d.pos += off
	case io.SeekEnd:
		d.pos = d.end + off
	}
	return d.pos, nil
}

func (d *discard) Close() error { return nil }
func (d *discard) Sync() error  { return nil }
