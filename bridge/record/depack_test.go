package record

import (
	"bytes"
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record/container"
)

// keyframes counts the keyframes ffprobe sees in a stream.
func keyframes(t *testing.T, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
		"-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return strings.Count(string(out), "K")
}

// collect runs the package's depacketizer over a packetized source the
// way input.release does for an in-order stream, returning the frames and
// their key flags. It checks frameStart: never true inside a frame
// (except on an H.264 first slice after parameter sets), always true on
// the first packet of a keyframe.
func collect(t *testing.T, m *media, kind codecKind) (frames [][]byte, keys []bool) {
	t.Helper()
	d := depack{kind: kind}
	var cur []byte
	key, sliceSeen, startOK := false, false, false
	for i, p := range m.pkts {
		first := i == 0 || p.Timestamp != m.pkts[i-1].Timestamp
		start := d.frameStart(p.Payload)
		if first {
			if key && !startOK {
				t.Errorf("keyframe before packet %d: frameStart false on its first packet", i)
			}
			d.reset()
			cur, key, sliceSeen, startOK = nil, false, false, start
		} else if start && (kind != codecH264 || sliceSeen) {
			t.Fatalf("packet %d: frameStart true inside a frame", i)
		}
		if kind == codecH264 {
			t := p.Payload[0] & 0x1f
			sliceSeen = sliceSeen || t == 1 || t == 5 || t == 28
		}
		var k bool
		var err error
		cur, k, err = d.appendPayload(cur, p.Payload)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		key = key || k
		if p.Marker {
			frames = append(frames, cur)
			keys = append(keys, key)
		}
	}
	return frames, keys
}

// pionFrames depacketizes with pion's own depacketizer, one fresh slice
// per packet, for comparison.
func pionFrames(t *testing.T, m *media, unmarshal func([]byte) ([]byte, error)) [][]byte {
	t.Helper()
	var frames [][]byte
	var cur []byte
	for i, p := range m.pkts {
		b, err := unmarshal(p.Payload)
		if err != nil {
			t.Fatalf("pion, packet %d: %v", i, err)
		}
		cur = append(cur, b...)
		if p.Marker {
			frames = append(frames, cur)
			cur = nil
		}
	}
	return frames
}

// TestDepackMatchesPion: the hand-written H.264 and AV1 depacketizers give
// the bytes pion's give, on real streams, and find every keyframe ffprobe
// finds in the source.
func TestDepackMatchesPion(t *testing.T) {
	cases := []struct {
		fixture string
		kind    codecKind
		pion    func([]byte) ([]byte, error)
	}{
		{"h264.h264", codecH264, (&codecs.H264Packet{}).Unmarshal},
		{"av1.ivf", codecAV1, (&codecs.AV1Depacketizer{}).Unmarshal},
		{"vp8.ivf", codecVP8, (&codecs.VP8Packet{}).Unmarshal},
		{"vp9.ivf", codecVP9, (&codecs.VP9Packet{}).Unmarshal},
	}
	for _, c := range cases {
		t.Run(c.fixture, func(t *testing.T) {
			m := packetize(t, c.fixture)
			got, keys := collect(t, m, c.kind)
			want := pionFrames(t, m, c.pion)
			if len(got) != len(want) {
				t.Fatalf("%d frames, pion %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("frame %d differs from pion's (%d vs %d bytes)", i, len(got[i]), len(want[i]))
				}
			}
			nk := 0
			for _, k := range keys {
				if k {
					nk++
				}
			}
			if want := keyframes(t, fixture(t, c.fixture)); nk != want || !keys[0] {
				t.Errorf("%d keyframes found, ffprobe finds %d (first is key: %v)", nk, want, keys[0])
			}
		})
	}
}

// annexBUnits splits an H.265 Annex-B stream into access units (a new one
// at a VPS, an AUD, or a slice with first_slice_segment_in_pic_flag after
// a slice), test-side.
func annexBUnits(b []byte) [][]byte {
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
	nals = append(nals, b[start:])
	var units [][]byte
	var cur []byte
	sawSlice := false
	for _, n := range nals {
		typ := (n[0] >> 1) & 0x3f
		newAU := sawSlice && (typ == 32 || typ == 35 || typ == 39 || (typ <= 31 && n[2]&0x80 != 0))
		if newAU {
			units = append(units, cur)
			cur, sawSlice = nil, false
		}
		cur = append(append(cur, 0, 0, 0, 1), n...)
		sawSlice = sawSlice || typ <= 31
	}
	return append(units, cur)
}

// TestH265Recorded: libx265 access units packetized with pion's
// H265Payloader (aggregation and fragmentation units) are recorded into
// Matroska and decode to the same pictures as the source.
func TestH265Recorded(t *testing.T) {
	requireTool(t, "ffmpeg", "ffprobe")
	src := filepath.Join(t.TempDir(), "src.hevc")
	out, err := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", lavfiVideo, "-t", "2", "-c:v", "libx265",
		"-preset", "ultrafast", "-x265-params", "keyint=15:bframes=0:log-level=error", "-f", "hevc", src).CombinedOutput()
	if err != nil {
		t.Skipf("libx265: %v: %s", err, out)
	}
	raw, err := readFile(src)
	if err != nil {
		t.Fatal(err)
	}
	units := annexBUnits(raw)
	var pay codecs.H265Payloader
	pk := rtp.NewPacketizer(1200, 100, 0x1234, &pay, rtp.NewRandomSequencer(), 90000)
	m := &media{track: bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{MimeType: "video/H265", ClockRate: 90000}}}
	for i, u := range units {
		for _, p := range pk.Packetize(u, 3000) {
			m.pkts = append(m.pkts, pkt{Packet: *p, send: time.Duration(i) * time.Second / 30})
		}
	}
	r, clk := newTestRecorder(t, Options{Format: container.MKV})
	feed(t, r, clk, []*media{m}, schedule([]*media{m}, nil), nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(r.o.Dir, files[0])
	want, got := decodedFrames(t, src, "v:0"), decodedFrames(t, path, "v:0")
	if len(want) != len(units) || !slices.Equal(hashes(got), hashes(want)) {
		t.Errorf("decoded %d pictures, source %d (%d access units)", len(got), len(want), len(units))
	}
	if err := xerror(path); err != nil {
		t.Error(err)
	}
}

// stripParamSets returns the H.264 packets without the ones that carry
// only SPS/PPS (single NAL units, or a STAP-A of them), except in the
// frames keep says, renumbered; and the SPS and PPS removed.
func stripParamSets(t *testing.T, m *media, keep func(frame int) bool) (*media, [][]byte) {
	t.Helper()
	out := &media{track: m.track}
	var sets [][]byte
	frame := -1
	seq := m.pkts[0].SequenceNumber
	for i, p := range m.pkts {
		if i == 0 || p.Timestamp != m.pkts[i-1].Timestamp {
			frame++
		}
		var nals [][]byte
		switch typ := p.Payload[0] & 0x1f; typ {
		case 7, 8:
			nals = [][]byte{p.Payload}
		case 24:
			for j := 1; j+2 <= len(p.Payload); {
				n := int(p.Payload[j])<<8 | int(p.Payload[j+1])
				nals = append(nals, p.Payload[j+2:j+2+n])
				j += 2 + n
			}
		}
		only := len(nals) > 0
		for _, n := range nals {
			only = only && (n[0]&0x1f == 7 || n[0]&0x1f == 8)
		}
		if only && !keep(frame) {
			if frame == 0 {
				for _, n := range nals {
					sets = append(sets, append([]byte(nil), n...))
				}
			}
			continue
		}
		q := p
		q.SequenceNumber = seq
		seq++
		out.pkts = append(out.pkts, q)
	}
	if len(out.pkts) == len(m.pkts) {
		t.Fatal("no parameter set packet found to strip")
	}
	return out, sets
}

// TestH264ParameterSetsOutOfBand: a sender that puts SPS/PPS only in its
// first keyframe, or only in the SDP (sprop-parameter-sets): every
// segment still starts with them (the container needs them) and decodes.
func TestH264ParameterSetsOutOfBand(t *testing.T) {
	src := packetize(t, "h264.h264")
	wantFrames := decodedFrames(t, fixture(t, "h264.h264"), "v:0")

	record := func(m *media, o Options) []string {
		r, clk := newTestRecorder(t, o)
		feed(t, r, clk, []*media{m}, schedule([]*media{m}, nil), nil)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		files := recordings(t, r.o.Dir)
		slices.SortFunc(files, func(a, b string) int { return strings.Compare(seqKey(a), seqKey(b)) })
		var got []string
		for _, f := range files {
			p := filepath.Join(r.o.Dir, f)
			if err := xerror(p); err != nil {
				t.Error(err)
			}
			got = append(got, hashes(decodedFrames(t, p, "v:0"))...)
		}
		if !slices.Equal(got, hashes(wantFrames)) {
			t.Errorf("%d files, %d pictures decoded, source %d", len(files), len(got), len(wantFrames))
		}
		return files
	}

	firstOnly, _ := stripParamSets(t, src, func(f int) bool { return f == 0 })
	if files := record(firstOnly, Options{SegmentDuration: time.Second, Template: "s"}); len(files) != 4 {
		t.Errorf("files %v, want 4 segments", files)
	}

	none, sets := stripParamSets(t, src, func(int) bool { return false })
	var b64 []string
	for _, s := range sets {
		b64 = append(b64, base64.StdEncoding.EncodeToString(s))
	}
	none.track.Codec.Fmtp = "packetization-mode=1;sprop-parameter-sets=" + strings.Join(b64, ",")
	record(none, Options{})
}
