package record

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record/container"
)

// recordSegments records the long fixtures with o and returns the files
// in the order they were written, checking that together they hold every
// frame of the source, byte for byte, and that each decodes cleanly.
func recordSegments(t *testing.T, o Options) ([]string, *Recorder) {
	t.Helper()
	v, a := packetize(t, "vp8-long.ivf"), packetize(t, "opus-long.ogg")
	tracks := []*media{v, a}
	r, clk := newTestRecorder(t, o)
	feed(t, r, clk, tracks, schedule(tracks, nil), nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	// Order by the time of their first frame: names with {start} sort so,
	// the -N suffixes do not ("cam.webm" < "cam-1.webm" is false).
	slices.SortFunc(files, func(a, b string) int { return strings.Compare(seqKey(a), seqKey(b)) })
	var gotV, gotA []string
	for _, f := range files {
		p := filepath.Join(r.o.Dir, f)
		if err := xerror(p); err != nil {
			t.Error(err)
		}
		gotV = append(gotV, hashes(streamPackets(t, p, "v:0"))...)
		gotA = append(gotA, hashes(streamPackets(t, p, "a:0"))...)
	}
	if src := hashes(streamPackets(t, fixture(t, "vp8-long.ivf"), "v:0")); !slices.Equal(gotV, src) {
		t.Errorf("segments hold %d video frames, source %d (or they differ)", len(gotV), len(src))
	}
	if src := hashes(streamPackets(t, fixture(t, "opus-long.ogg"), "a:0")); !slices.Equal(gotA, src) {
		t.Errorf("segments hold %d audio packets, source %d (or they differ)", len(gotA), len(src))
	}
	if st := r.Stats(); st.Segments != len(files) {
		t.Errorf("Stats.Segments %d, files %d", st.Segments, len(files))
	}
	return files, r
}

// seqKey sorts "x.webm" before "x-1.webm" before "x-2.webm".
func seqKey(name string) string {
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	if m := regexp.MustCompile(`^(.*)-(\d+)$`).FindStringSubmatch(base); m != nil {
		return m[1] + "\x01" + strings.Repeat("0", 6-len(m[2])) + m[2]
	}
	return base + "\x00"
}

// TestSegmentsByDuration: 10 s in 3 s segments, cut at keyframes: four
// files, no frame lost or doubled at the cuts, each about 3 s long; a
// template without {start} gets -1, -2, ... instead of overwriting.
func TestSegmentsByDuration(t *testing.T) {
	files, r := recordSegments(t, Options{SegmentDuration: 3 * time.Second, Template: "{stream}", Stream: "cam"})
	want := []string{"cam.webm", "cam-1.webm", "cam-2.webm", "cam-3.webm"}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	for _, f := range files[:3] {
		if d := lastPTS(t, filepath.Join(r.o.Dir, f)); d < 2500*time.Millisecond || d > 3500*time.Millisecond {
			t.Errorf("%s: last packet at %v, want about 3 s", f, d)
		}
	}
}

// TestSegmentsBySize: 100 kB segments: each file is at most the limit
// plus what comes before the next keyframe.
func TestSegmentsBySize(t *testing.T) {
	const limit = 100_000
	files, r := recordSegments(t, Options{SegmentSize: limit})
	if len(files) < 4 {
		t.Fatalf("files %v, want at least 4 of 100 kB for ~580 kB", files)
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(r.o.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		// Keyframes every 0.5 s at ~400 kbit/s + 64 kbit/s: ~30 kB of slack.
		if fi.Size() > limit+40_000 {
			t.Errorf("%s: %d bytes, limit %d", f, fi.Size(), limit)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"cam1":                   "cam1",
		"":                       "_",
		"../../etc/passwd":       "_._.._etc_passwd",
		"/abs":                   "_abs",
		"a/../../b":              "a_.._.._b",
		"日本":                     "__",
		"..":                     "_.",
		".hidden":                "_hidden",
		"a\x00b\nc":              "a_b_c",
		"x y:z":                  "x_y_z",
		strings.Repeat("a", 100): strings.Repeat("a", maxValueLen),
	} {
		got := sanitize(in)
		if got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
		if !regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*$`).MatchString(got) {
			t.Errorf("sanitize(%q) = %q has a forbidden character", in, got)
		}
	}
}

func TestTemplateChecked(t *testing.T) {
	for _, bad := range []string{"../../etc/passwd", "/abs", "a/../../b", "a//b", "./x", "{nope}", "{stream",
		".hidden/{start}", "a\\b", "x\ny"} {
		if _, err := New(Options{Dir: t.TempDir(), Template: bad}); err == nil {
			t.Errorf("template %q accepted", bad)
		}
	}
	for _, good := range []string{"{stream}-{start}", "{stream}/{session}/{track}-{start}", "rec", "日付-{start}"} {
		r, err := New(Options{Dir: t.TempDir(), Template: good})
		if err != nil {
			t.Errorf("template %q: %v", good, err)
			continue
		}
		r.Close()
	}
}

// TestTemplateValuesStayInDir: hostile stream, session and track names
// end up as harmless file names under Dir.
func TestTemplateValuesStayInDir(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "rec")
	o := Options{Dir: dir, Template: "{stream}/{session}/{track}-{start}", Stream: "../../etc/passwd"}
	r, clk := newTestRecorder(t, o)
	v := packetize(t, "vp8.ivf")
	idx, err := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "a/../../b", Session: "/abs"})
	if err != nil {
		t.Fatal(err)
	}
	start := clk.ns.Load()
	for _, p := range v.pkts[:60] {
		clk.Set(start + int64(p.send))
		r.WriteRTP(idx, &p.Packet)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, base)
	want := regexp.MustCompile(`^rec/_\._\.\._etc_passwd/_abs/a_\.\._\.\._b-20261121T101500Z\.webm$`)
	if len(files) != 1 || !want.MatchString(files[0]) {
		t.Fatalf("files under %s: %v", base, files)
	}
}

// TestRetentionByAge: after a segment, finished recordings older than
// MaxAge go; other files, hidden files and files with a marker stay.
func TestRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	old := clk.Now().Add(-2 * time.Hour)
	mk := func(name string, mod time.Time) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, make([]byte, 1000), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mod, mod)
		return p
	}
	oldWebm := mk("old.webm", old)
	oldSub := mk("sub/old.mkv", old)
	notes := mk("notes.txt", old)
	hidden := mk(".old.webm", old)
	crashed := mk("crashed.webm", old)
	mk(".crashed.webm.recording", old)
	fresh := mk("fresh.ogg", clk.Now().Add(-30*time.Minute))

	r, _ := newTestRecorder(t, Options{Dir: dir, Now: clk.Now, MaxAge: time.Hour, Template: "new"})
	recordShort(t, r, clk)
	for _, gone := range []string{oldWebm, oldSub} {
		if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived retention", gone)
		}
	}
	for _, kept := range []string{notes, hidden, crashed, fresh, filepath.Join(dir, "new.webm")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
}

// TestRetentionBySize: the oldest finished recordings go until the total
// is within MaxTotalSize; and retention also runs once a minute without
// a segment ending.
func TestRetentionBySize(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	mk := func(name string, age time.Duration, size int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, size), 0o640); err != nil {
			t.Fatal(err)
		}
		mod := clk.Now().Add(-age)
		os.Chtimes(p, mod, mod)
		return p
	}
	a := mk("a.webm", 3*time.Hour, 100_000)
	b := mk("b.mkv", 2*time.Hour, 100_000)
	c := mk("c.mp4", time.Hour, 100_000)
	r, _ := newTestRecorder(t, Options{Dir: dir, Now: clk.Now, MaxTotalSize: 300_000, Template: "new"})
	recordShort(t, r, clk) // ~50 kB: 350 kB in all, a goes, 250 kB stay
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the oldest file survived")
	}
	for _, kept := range []string{b, c, filepath.Join(dir, "new.webm")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}

	// Once a minute: a new old file goes without any segment ending.
	r2, _ := newTestRecorder(t, Options{Dir: dir, Now: clk.Now, MaxAge: 90 * time.Minute})
	_ = r2
	stale := mk("stale.ivf", 2*time.Hour, 10)
	clk.Add(2 * time.Minute)
	waitFor(t, 10*time.Second, "the periodic retention", func() bool {
		_, err := os.Stat(stale)
		return errors.Is(err, os.ErrNotExist)
	})
}

// recordShort records 1 s of VP8 and closes r.
func recordShort(t *testing.T, r *Recorder, clk *fakeClock) {
	t.Helper()
	v := packetize(t, "vp8.ivf")
	idx, err := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "v"})
	if err != nil {
		t.Fatal(err)
	}
	start := clk.ns.Load()
	for _, p := range v.pkts {
		if p.send > time.Second {
			break
		}
		clk.Set(start + int64(p.send))
		r.WriteRTP(idx, &p.Packet)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAddTrackUnsupported: codecs the package or the format cannot hold
// are refused with a clear error.
func TestAddTrackUnsupported(t *testing.T) {
	r, _ := newTestRecorder(t, Options{})
	pcmu := bridge.Track{Kind: bridge.KindAudio, Codec: bridge.Codec{MimeType: "audio/PCMU", ClockRate: 8000}}
	if _, err := r.AddTrack(bridge.SinkTrack{Track: pcmu, Name: "mic"}); !errors.Is(err, container.ErrUnsupported) ||
		!strings.Contains(err.Error(), "mic") {
		t.Errorf("PCMU: %v", err)
	}
	vp8 := bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: "video/VP8", ClockRate: 90000}}
	opus := bridge.Track{Kind: bridge.KindAudio, Codec: bridge.Codec{MimeType: "audio/opus", ClockRate: 48000, Channels: 2}}
	h264 := bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: "video/H264", ClockRate: 90000}}

	ivf, _ := newTestRecorder(t, Options{Format: container.IVF})
	if _, err := ivf.AddTrack(bridge.SinkTrack{Track: vp8, Name: "v"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ivf.AddTrack(bridge.SinkTrack{Track: opus, Name: "a"}); !errors.Is(err, container.ErrUnsupported) {
		t.Errorf("IVF with a second track: %v", err)
	}
	webm, _ := newTestRecorder(t, Options{Format: container.WebM})
	if _, err := webm.AddTrack(bridge.SinkTrack{Track: h264, Name: "v"}); !errors.Is(err, container.ErrUnsupported) {
		t.Errorf("H.264 in WebM: %v", err)
	}
	// Auto switches to MKV for H.264.
	auto, _ := newTestRecorder(t, Options{})
	for _, tr := range []bridge.Track{opus, h264} {
		if _, err := auto.AddTrack(bridge.SinkTrack{Track: tr}); err != nil {
			t.Errorf("auto: %v", err)
		}
	}
}

// TestAddTrackDuringRecording: a track added while recording starts a new
// segment (at the next keyframe) that holds it; the video goes on across
// the cut without a frame lost.
func TestAddTrackDuringRecording(t *testing.T) {
	v, a := packetize(t, "vp8.ivf"), packetize(t, "opus.ogg")
	r, clk := newTestRecorder(t, Options{Template: "{stream}", Stream: "s", KeyframeInterval: time.Millisecond})
	start := clk.ns.Load()
	keys := &keyCounter{}
	vi, err := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "v", RequestKeyframe: keys.request})
	if err != nil {
		t.Fatal(err)
	}
	ai := -1
	var keysBefore int64
	ds := schedule([]*media{v, a}, nil)
	audioFrom := 2 * time.Second
	for _, d := range ds {
		clk.Set(start + int64(d.arrive))
		if d.track == 1 {
			if d.arrive < audioFrom {
				continue
			}
			if ai < 0 {
				if ai, err = r.AddTrack(bridge.SinkTrack{Track: a.track, Name: "a"}); err != nil {
					t.Fatal(err)
				}
				keysBefore = keys.n.Load()
			}
			r.WriteRTP(ai, d.p)
			continue
		}
		r.WriteRTP(vi, d.p)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if !slices.Equal(files, []string{"s-1.webm", "s.webm"}) {
		t.Fatalf("files %v", files)
	}
	first, second := filepath.Join(r.o.Dir, "s.webm"), filepath.Join(r.o.Dir, "s-1.webm")
	if p := ffprobe(t, first); len(p.Streams) != 1 {
		t.Errorf("first segment: %+v", p)
	}
	if p := ffprobe(t, second); len(p.Streams) != 2 {
		t.Errorf("second segment: %+v", p)
	}
	gotV := append(hashes(streamPackets(t, first, "v:0")), hashes(streamPackets(t, second, "v:0"))...)
	if src := hashes(streamPackets(t, fixture(t, "vp8.ivf"), "v:0")); !slices.Equal(gotV, src) {
		t.Errorf("video across the cut: %d frames, source %d", len(gotV), len(src))
	}
	// The new segment starts at the next keyframe, which the file source
	// makes at 2.5 s (a live publisher would answer the request): the
	// audio from 2.0 s to there has no file to go to.
	if n := len(streamPackets(t, second, "a:0")); n < 70 || n > 80 {
		t.Errorf("second segment has %d audio packets, want ~75 (2.5 s to 4 s)", n)
	}
	if keys.n.Load() <= keysBefore {
		t.Errorf("no keyframe requested for the new segment")
	}
	for _, f := range []string{first, second} {
		if err := xerror(f); err != nil {
			t.Error(err)
		}
	}
}

// TestTrackReplacedKeepsSegment: a publisher that goes away and comes back
// (RemoveTrack, AddTrack with the same codec, a new SSRC and sequence)
// continues in the same file, in the same track.
func TestTrackReplacedKeepsSegment(t *testing.T) {
	v, a := packetize(t, "vp8.ivf"), packetize(t, "opus.ogg")
	r, clk := newTestRecorder(t, Options{})
	start := clk.ns.Load()
	vi, _ := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "v"})
	ai, _ := r.AddTrack(bridge.SinkTrack{Track: a.track, Name: "a"})
	var removed, readded bool
	nSent := 0
	for _, d := range schedule([]*media{v, a}, nil) {
		clk.Set(start + int64(d.arrive))
		if d.track == 0 {
			r.WriteRTP(vi, d.p)
			continue
		}
		switch {
		case d.arrive < 2*time.Second:
		case d.arrive < 2500*time.Millisecond:
			if !removed {
				r.RemoveTrack(ai)
				removed = true
			}
			continue
		default:
			if !readded {
				var err error
				if ai, err = r.AddTrack(bridge.SinkTrack{Track: a.track, Name: "a2"}); err != nil {
					t.Fatal(err)
				}
				readded = true
			}
			// The new publisher: another SSRC, sequence and timestamp base.
			p := *d.p
			p.SSRC ^= 0xffff
			p.SequenceNumber += 20000
			p.Timestamp += 1 << 30
			d.p = &p
		}
		if err := r.WriteRTP(ai, d.p); err != nil {
			t.Fatal(err)
		}
		nSent++
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	path := filepath.Join(r.o.Dir, files[0])
	got := streamPackets(t, path, "a:0")
	if len(got) != nSent {
		t.Errorf("audio: %d packets in the file, %d sent", len(got), nSent)
	}
	// The gap of 0.5 s is in the timeline.
	gap := 0.0
	for i := 1; i < len(got); i++ {
		gap = max(gap, got[i].pts-got[i-1].pts)
	}
	if gap < 0.4 || gap > 0.6 {
		t.Errorf("largest audio gap %.3f s, want ~0.5", gap)
	}
	if err := xerror(path); err != nil {
		t.Error(err)
	}
	if _, err := r.AddTrack(bridge.SinkTrack{Track: a.track}); !errors.Is(err, ErrClosed) {
		t.Errorf("AddTrack after Close: %v", err)
	}
	if err := r.WriteRTP(ai, &rtp.Packet{}); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteRTP after Close: %v", err)
	}
}

// TestSilentVideoTrack: a video track that sends nothing (a camera that
// is off) does not keep the audio from being recorded: after 2 s the
// audio goes into a segment of its own, and when the video starts, a
// segment with both begins at its first keyframe.
func TestSilentVideoTrack(t *testing.T) {
	v, a := packetize(t, "vp8.ivf"), packetize(t, "opus.ogg")
	r, clk := newTestRecorder(t, Options{Template: "{stream}", Stream: "s"})
	start := clk.ns.Load()
	vi, _ := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "v", RequestKeyframe: func() {}})
	ai, _ := r.AddTrack(bridge.SinkTrack{Track: a.track, Name: "a"})
	const videoFrom = 3 * time.Second
	video := &media{track: v.track}
	for _, p := range v.pkts {
		if p.send >= videoFrom {
			video.pkts = append(video.pkts, p)
		}
	}
	for _, d := range schedule([]*media{video, a}, nil) {
		clk.Set(start + int64(d.arrive))
		idx := ai
		if d.track == 0 {
			idx = vi
		}
		if err := r.WriteRTP(idx, d.p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if !slices.Equal(files, []string{"s-1.webm", "s.webm"}) {
		t.Fatalf("files %v", files)
	}
	first, second := filepath.Join(r.o.Dir, "s.webm"), filepath.Join(r.o.Dir, "s-1.webm")
	if p := ffprobe(t, first); len(p.Streams) != 1 || p.Streams[0].CodecType != "audio" {
		t.Errorf("first segment: %+v", p)
	}
	// Audio from 1.5 s (the frame the writer holds at 2 s, after videoWait,
	// having waited up to Reorder + 200 ms for the video) to the keyframe
	// at 3 s.
	if n := len(streamPackets(t, first, "a:0")); n < 70 || n > 80 {
		t.Errorf("first segment: %d audio packets, want ~75", n)
	}
	if p := ffprobe(t, second); len(p.Streams) != 2 {
		t.Errorf("second segment: %+v", p)
	}
	if n, want := len(streamPackets(t, second, "v:0")), len(video.pkts); n < 30 || n > want {
		t.Errorf("second segment: %d video frames", n)
	}
	for _, f := range []string{first, second} {
		if err := xerror(f); err != nil {
			t.Error(err)
		}
	}
}

// TestSenderRestartSameTrack: the sender restarts without continuity on
// the same track (new SSRC, sequence and timestamp base, after a pause):
// the file goes on forward in time with the pause as a gap, and decodes.
func TestSenderRestartSameTrack(t *testing.T) {
	v := packetize(t, "vp8.ivf")
	r, clk := newTestRecorder(t, Options{})
	start := clk.ns.Load()
	vi, _ := r.AddTrack(bridge.SinkTrack{Track: v.track, Name: "v", RequestKeyframe: func() {}})
	sent := 0
	for _, p := range v.pkts {
		if p.send >= 2*time.Second && p.send < 2500*time.Millisecond {
			continue // the pause
		}
		q := p.Packet
		if p.send >= 2500*time.Millisecond {
			q.SSRC ^= 0xbeef
			q.SequenceNumber += 31000
			q.Timestamp += 0x7654321
		}
		clk.Set(start + int64(p.send))
		if err := r.WriteRTP(vi, &q); err != nil {
			t.Fatal(err)
		}
		if q.Marker {
			sent++
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(r.o.Dir, files[0])
	got := streamPackets(t, path, "v:0")
	if len(got) != sent {
		t.Errorf("%d frames in the file, %d sent", len(got), sent)
	}
	gap := 0.0
	for i := 1; i < len(got); i++ {
		if got[i].pts < got[i-1].pts {
			t.Fatalf("PTS back at frame %d", i)
		}
		gap = max(gap, got[i].pts-got[i-1].pts)
	}
	if gap < 0.45 || gap > 0.6 {
		t.Errorf("largest gap %.3f s, want ~0.53 (the pause)", gap)
	}
	if st := r.Stats().Tracks[0]; st.Restarts != 1 {
		t.Errorf("%+v", st)
	}
	if err := xerror(path); err != nil {
		t.Error(err)
	}
}
