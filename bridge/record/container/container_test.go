package container

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

// combos are the format and codec sets the issue asks for, plus H.265,
// VP9 and AV1 in MP4.
var combos = []struct {
	name     string
	format   Format
	fixtures []string
}{
	{"webm-vp8-opus", WebM, []string{"vp8.ivf", "opus.ogg"}},
	{"webm-vp9", WebM, []string{"vp9.ivf"}},
	{"webm-av1", WebM, []string{"av1.ivf"}},
	{"mkv-h264-opus", MKV, []string{"h264.h264", "opus.ogg"}},
	{"mkv-h265-opus", MKV, []string{"h265.h265", "opus.ogg"}},
	{"ogg-opus", Ogg, []string{"opus.ogg"}},
	{"ivf-vp8", IVF, []string{"vp8.ivf"}},
	{"ivf-vp9", IVF, []string{"vp9.ivf"}},
	{"ivf-av1", IVF, []string{"av1.ivf"}},
	{"mp4-h264-opus", MP4, []string{"h264.h264", "opus.ogg"}},
	{"mp4-h265-opus", MP4, []string{"h265.h265", "opus.ogg"}},
	{"mp4-vp9", MP4, []string{"vp9.ivf"}},
	{"mp4-av1-opus", MP4, []string{"av1.ivf", "opus.ogg"}},
}

func loadAll(t testing.TB, names []string) []src {
	var srcs []src
	for _, n := range names {
		srcs = append(srcs, loadSource(t, n))
	}
	return srcs
}

// TestRoundTrip writes real encoded media in every format and checks with
// ffprobe/ffmpeg that every frame is there (packet and decoded-frame counts
// equal the source's), decodes to the same pictures and the same Opus
// packets, decodes cleanly with -xerror, has the source's duration, and
// that Repair leaves a finalized file alone.
func TestRoundTrip(t *testing.T) {
	for _, c := range combos {
		t.Run(c.name, func(t *testing.T) {
			srcs := loadAll(t, c.fixtures)
			p := filepath.Join(t.TempDir(), "out"+c.format.Ext())
			writeFile(t, c.format, p, tracksOf(srcs...), merge(srcs...))

			pr := ffprobe(t, p, true)
			if len(pr.streams) != len(srcs) {
				t.Fatalf("ffprobe: %d streams, want %d: %+v", len(pr.streams), len(srcs), pr)
			}
			var want time.Duration
			for i, s := range srcs {
				st := pr.streams[i]
				n := len(s.frames)
				if st.packets != n || st.frame != n {
					t.Errorf("stream %d (%s): %d packets, %d frames; the source has %d", i, st.codec, st.packets, st.frame, n)
				}
				if s.track.Kind == bridge.KindVideo && (st.width != 320 || st.height != 240) {
					t.Errorf("stream %d: %dx%d, want 320x240", i, st.width, st.height)
				}
				want = max(want, s.dur)
			}
			if math.IsNaN(pr.duration) || math.Abs(pr.duration-want.Seconds()) > 0.05 {
				t.Errorf("duration %v s, source %v", pr.duration, want)
			}
			ffmpegClean(t, p)

			// Same pictures, same Opus packets as the source files.
			for i, s := range srcs {
				sel := "0:" + string(rune('0'+i))
				srcPath := fixture(t, c.fixtures[i])
				if s.track.Kind == bridge.KindVideo {
					got, want := framemd5(t, p, sel, false), framemd5(t, srcPath, "0:0", false)
					if !slices.Equal(got, want) {
						t.Errorf("stream %d: decoded pictures differ from the source (%d vs %d frames)", i, len(got), len(want))
					}
				} else {
					got, want := framemd5(t, p, sel, true), framemd5(t, srcPath, "0:0", true)
					if !slices.Equal(got, want) {
						t.Errorf("stream %d: Opus packets differ from the source (%d vs %d)", i, len(got), len(want))
					}
				}
			}

			before := readFile(t, p)
			res, err := Repair(p, c.format)
			if err != nil {
				t.Fatalf("Repair of a final file: %v", err)
			}
			if !res.AlreadyFinal || res.Truncated != 0 || string(readFile(t, p)) != string(before) {
				t.Errorf("Repair changed a final file: %+v", res)
			}
			if math.Abs(res.Duration.Seconds()-want.Seconds()) > 0.05 {
				t.Errorf("Repair reads duration %v, want %v", res.Duration, want)
			}
		})
	}
}

// TestHeaderConfig checks what the headers get from the first keyframes:
// dimensions from the VP8 frame header, VP9 uncompressed header, AV1
// sequence header and the H.264/H.265 SPS.
func TestHeaderConfig(t *testing.T) {
	for _, name := range []string{"vp8.ivf", "vp9.ivf", "av1.ivf", "h264.h264", "h265.h265"} {
		s := loadSource(t, name)
		if !s.frames[0].Key {
			t.Fatalf("%s: first frame is not a keyframe", name)
		}
		cfg, err := configOf(codecOf(s.track), s.frames[0].Data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.width != 320 || cfg.height != 240 {
			t.Errorf("%s: %dx%d, want 320x240", name, cfg.width, cfg.height)
		}
		if c := codecOf(s.track); c != codecVP8 && len(cfg.priv) == 0 {
			t.Errorf("%s: no codec configuration record", name)
		}
		// A delta frame cannot start a track.
		for _, f := range s.frames {
			if !f.Key {
				if _, err := configOf(codecOf(s.track), f.Data); err == nil && codecOf(s.track) != codecH264 && codecOf(s.track) != codecH265 {
					t.Errorf("%s: a delta frame parsed as a keyframe", name)
				}
				break
			}
		}
	}
}

// TestOpusGaps: lost packets (a gap in the PTS, also at the start) keep
// their PTS in Ogg, WebM and MP4: ffprobe's packet pts_time is the PTS the
// writer was given, not a count of the packets before. In Ogg the gaps are
// filled with 1-byte lost-frame packets (one per 20 ms).
func TestOpusGaps(t *testing.T) {
	a := loadSource(t, "opus.ogg")
	drop := map[int]bool{0: true, 1: true, 2: true, 40: true}
	for i := 60; i < 85; i++ { // a 500 ms gap
		drop[i] = true
	}
	for i := 100; i < 103; i++ {
		drop[i] = true
	}
	var frames []Frame
	for i, f := range a.frames {
		if !drop[i] {
			frames = append(frames, f)
		}
	}
	for _, f := range []Format{Ogg, WebM, MP4} {
		t.Run(string(f), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "gaps"+f.Ext())
			writeFile(t, f, p, tracksOf(a), frames)
			ffmpegClean(t, p)
			var ps []pkt
			fillers := 0
			for _, pk := range packets(t, p) {
				if f == Ogg && pk.size == 1 {
					fillers++ // a "lost frame" packet filling a gap
					continue
				}
				ps = append(ps, pk)
			}
			if len(ps) != len(frames) {
				t.Fatalf("%d packets, wrote %d", len(ps), len(frames))
			}
			if want := len(drop) - 3; f == Ogg && fillers != want { // the 3 at the start are no gap
				t.Errorf("%d filler packets, want %d", fillers, want)
			}
			for i, pk := range ps {
				if d := math.Abs(pk.pts - frames[i].PTS.Seconds()); d > 0.0006 {
					t.Fatalf("packet %d: pts %.4f s, written at %v", i, pk.pts, frames[i].PTS)
				}
			}
		})
	}
}

// TestBadInput: frames for an unknown track, a first video frame that is
// not a keyframe, negative or decreasing PTS and empty data are refused
// with clear errors, and the file stays correct (every good frame there,
// clean decode).
func TestBadInput(t *testing.T) {
	v := loadSource(t, "vp8.ivf")
	h := loadSource(t, "h264.h264")
	a := loadSource(t, "opus.ogg")
	for _, c := range []struct {
		format Format
		srcs   []src
	}{{WebM, []src{v, a}}, {MKV, []src{h, a}}, {Ogg, []src{a}}, {IVF, []src{v}}, {MP4, []src{h, a}}} {
		t.Run(string(c.format), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad"+c.format.Ext())
			fh, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(c.format, fh, tracksOf(c.srcs...))
			if err != nil {
				t.Fatal(err)
			}
			frames := merge(c.srcs...)
			expect := func(err, want error, what string) {
				t.Helper()
				if !errors.Is(err, want) {
					t.Errorf("%s: error %v, want %v", what, err, want)
				} else if !strings.Contains(err.Error(), string(c.format)) {
					t.Errorf("%s: error %q does not name the format", what, err)
				}
			}
			expect(w.WriteFrame(Frame{Track: len(c.srcs), Data: []byte{1}}), ErrInvalidFrame, "unknown track")
			expect(w.WriteFrame(Frame{Track: -1, Data: []byte{1}}), ErrInvalidFrame, "negative track")
			expect(w.WriteFrame(Frame{Track: 0, PTS: -time.Millisecond, Key: true, Data: frames[0].Data}), ErrInvalidFrame, "negative PTS")
			expect(w.WriteFrame(Frame{Track: 0, Key: true}), ErrInvalidFrame, "empty frame")
			if c.srcs[0].track.Kind == bridge.KindVideo {
				delta := c.srcs[0].frames[1]
				expect(w.WriteFrame(Frame{Track: 0, PTS: 0, Key: false, Data: delta.Data}), ErrNeedKeyframe, "delta frame first")
				if codecOf(c.srcs[0].track) == codecH264 {
					// An IDR without its SPS/PPS cannot make avcC.
					var idr []byte
					for pos := 0; pos < len(frames[0].Data); {
						nal, next := nextNAL(frames[0].Data, pos)
						pos = next
						if nal[0]&0x1f == 5 {
							idr = append([]byte{0, 0, 0, 1}, nal...)
						}
					}
					expect(w.WriteFrame(Frame{Track: 0, Key: true, Data: idr}), ErrNeedKeyframe, "IDR without SPS")
				}
			}
			last := map[int]time.Duration{}
			for i, f := range frames {
				if err := w.WriteFrame(f); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				last[f.Track] = f.PTS
				if i == len(frames)/2 {
					expect(w.WriteFrame(Frame{Track: f.Track, PTS: f.PTS - 40*time.Millisecond, Key: true, Data: f.Data}),
						ErrInvalidFrame, "decreasing PTS")
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			expect(w.WriteFrame(frames[0]), ErrClosed, "after Close")
			if err := w.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			pr := ffprobe(t, p, false)
			for i, s := range c.srcs {
				if pr.streams[i].packets != len(s.frames) {
					t.Errorf("stream %d: %d packets, wrote %d good frames", i, pr.streams[i].packets, len(s.frames))
				}
			}
			ffmpegClean(t, p)
		})
	}
}

func TestFormats(t *testing.T) {
	for _, s := range []string{"webm", "MKV", ".ogg", " ivf", "mp4"} {
		f, err := ParseFormat(s)
		if err != nil || f.Ext() != "."+strings.ToLower(strings.Trim(s, ". ")) {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("avi"); err == nil || !strings.Contains(err.Error(), `"avi"`) || !strings.Contains(err.Error(), "webm, mkv, ogg, ivf, mp4") {
		t.Errorf("ParseFormat(avi): %v", err)
	}
	vt := func(m string) bridge.Track {
		return bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: m}}
	}
	opus := bridge.Track{Kind: bridge.KindAudio, Codec: bridge.Codec{MimeType: "audio/opus", Channels: 2}}
	ok := []struct {
		f  Format
		ts []bridge.Track
	}{
		{WebM, []bridge.Track{vt("video/VP8"), opus}}, {WebM, []bridge.Track{vt("video/vp9"), vt("video/AV1"), opus, opus}},
		{MKV, []bridge.Track{vt("video/H264"), opus}}, {MKV, []bridge.Track{vt("video/H265")}},
		{Ogg, []bridge.Track{opus, opus}}, {IVF, []bridge.Track{vt("video/AV1")}},
		{MP4, []bridge.Track{vt("video/H264"), opus}}, {MP4, []bridge.Track{vt("video/H265"), vt("video/AV1"), vt("video/VP9")}},
	}
	for _, c := range ok {
		if err := Check(c.f, c.ts); err != nil {
			t.Errorf("Check(%s): %v", c.f, err)
		}
	}
	bad := []struct {
		f    Format
		ts   []bridge.Track
		says string
	}{
		{WebM, []bridge.Track{vt("video/H264")}, "H.264"},
		{Ogg, []bridge.Track{vt("video/VP8")}, "VP8"},
		{IVF, []bridge.Track{vt("video/VP8"), vt("video/VP8")}, "exactly one"},
		{IVF, []bridge.Track{opus}, "Opus"},
		{MP4, []bridge.Track{vt("video/VP8")}, "VP8"},
		{MKV, []bridge.Track{{Codec: bridge.Codec{MimeType: "audio/PCMU"}}}, "audio/PCMU"},
		{MKV, []bridge.Track{{Codec: bridge.Codec{MimeType: "audio/opus", Channels: 6}}}, "6 channels"},
		{MKV, nil, "no tracks"},
		{Format("avi"), []bridge.Track{opus}, "avi"},
	}
	for _, c := range bad {
		err := Check(c.f, c.ts)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Check(%s, %v) = %v, want an error naming %q", c.f, c.ts, err, c.says)
		}
		if _, err := NewWriter(c.f, &discard{}, c.ts); !errors.Is(err, ErrUnsupported) {
			t.Errorf("NewWriter(%s) = %v", c.f, err)
		}
	}
	if f := Auto([]bridge.Track{vt("video/VP8"), opus}); f != WebM {
		t.Errorf("Auto(VP8, Opus) = %s", f)
	}
	if f := Auto([]bridge.Track{vt("video/H264"), opus}); f != MKV {
		t.Errorf("Auto(H264, Opus) = %s", f)
	}
}
