package record

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rtgate/rtgate/bridge/record/container"
)

// recordAll records the packets of the fixtures in order and returns the
// single file made.
func recordAll(t *testing.T, o Options, names ...string) (string, *Recorder) {
	t.Helper()
	var ms []*media
	for _, n := range names {
		ms = append(ms, packetize(t, n))
	}
	r, clk := newTestRecorder(t, o)
	feed(t, r, clk, ms, schedule(ms, nil), nil)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v, want 1", files)
	}
	if m := markers(t, r.o.Dir); len(m) != 0 {
		t.Fatalf("markers left after Close: %v", m)
	}
	return filepath.Join(r.o.Dir, files[0]), r
}

// checkSame compares the packets of a recorded stream with the source's.
func checkSame(t *testing.T, what string, src, got []packet) {
	t.Helper()
	if len(src) < 10 {
		t.Fatalf("%s: source has only %d packets", what, len(src))
	}
	if len(got) != len(src) {
		t.Errorf("%s: %d packets recorded, source has %d", what, len(got), len(src))
	}
	if !slices.Equal(hashes(got), hashes(src)) {
		for i := range min(len(got), len(src)) {
			if got[i].hash != src[i].hash {
				t.Errorf("%s: packet %d differs (size %d, source %d)", what, i, got[i].size, src[i].size)
				break
			}
		}
	}
}

// TestCompleteVP8OpusWebM: a complete stream gives a WebM file with every
// VP8 frame and Opus packet byte for byte, that decodes without error.
func TestCompleteVP8OpusWebM(t *testing.T) {
	path, r := recordAll(t, Options{Stream: "cam"}, "vp8.ivf", "opus.ogg")
	if filepath.Ext(path) != ".webm" {
		t.Errorf("file %s, want .webm (Auto)", path)
	}
	checkSame(t, "VP8", streamPackets(t, fixture(t, "vp8.ivf"), "v:0"), streamPackets(t, path, "v:0"))
	checkSame(t, "Opus", streamPackets(t, fixture(t, "opus.ogg"), "a:0"), streamPackets(t, path, "a:0"))
	if err := xerror(path); err != nil {
		t.Error(err)
	}
	p := ffprobe(t, path)
	if len(p.Streams) != 2 || p.Streams[0].Width != 320 {
		t.Errorf("ffprobe: %+v", p)
	}
	st := r.Stats()
	if st.Segments != 1 || st.Bytes == 0 || st.Tracks[0].Lost != 0 || st.Tracks[0].Frames == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestCompleteH264OpusMKV: H.264 (depacketized by hand to Annex-B) and
// Opus in Matroska: every frame, and the decoded pictures equal the
// source's.
func TestCompleteH264OpusMKV(t *testing.T) {
	path, _ := recordAll(t, Options{Stream: "cam"}, "h264.h264", "opus.ogg")
	if filepath.Ext(path) != ".mkv" {
		t.Errorf("file %s, want .mkv (Auto with H.264)", path)
	}
	src := decodedFrames(t, fixture(t, "h264.h264"), "v:0")
	got := decodedFrames(t, path, "v:0")
	checkSame(t, "H.264 decoded", src, got)
	checkSame(t, "Opus", streamPackets(t, fixture(t, "opus.ogg"), "a:0"), streamPackets(t, path, "a:0"))
	if err := xerror(path); err != nil {
		t.Error(err)
	}
}

// TestCompleteOtherFormats: VP9, AV1 (depacketized by hand), Ogg and IVF
// and MP4 outputs.
func TestCompleteOtherFormats(t *testing.T) {
	cases := []struct {
		format  container.Format
		fixture string
		stream  string
		decode  bool
	}{
		{container.IVF, "vp8.ivf", "v:0", false},
		{container.IVF, "vp9.ivf", "v:0", false},
		{container.WebM, "av1.ivf", "v:0", true},
		{container.Ogg, "opus.ogg", "a:0", false},
		{container.MP4, "h264.h264", "v:0", true},
		{container.MP4, "opus.ogg", "a:0", false},
	}
	for _, c := range cases {
		t.Run(string(c.format)+"-"+strings.TrimSuffix(c.fixture, filepath.Ext(c.fixture)), func(t *testing.T) {
			path, _ := recordAll(t, Options{Format: c.format}, c.fixture)
			if filepath.Ext(path) != c.format.Ext() {
				t.Errorf("file %s", path)
			}
			get := streamPackets
			if c.decode {
				get = decodedFrames
			}
			checkSame(t, c.fixture, get(t, fixture(t, c.fixture), c.stream), get(t, path, c.stream))
			if err := xerror(path); err != nil {
				t.Error(err)
			}
		})
	}
}
