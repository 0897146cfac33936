package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// Test-side writers, to build files with exactly the structure a test
// wants (and fuzz seeds).

// oggStream is one logical stream to write.
type oggStream struct {
	serial  uint32
	packets [][]byte
}

// buildOgg writes the streams' packets into pages of at most maxSegs
// lacing values, so packets span pages as the limit makes them; each
// stream's first packet gets a page of its own (BOS), as does the second
// (Opus puts OpusTags on its own pages). Pages of the streams alternate.
func buildOgg(maxSegs int, streams ...oggStream) []byte {
	type page struct {
		flags byte
		segs  []byte
		body  []byte
	}
	var pages [][]page
	for _, s := range streams {
		var ps []page
		cur := page{flags: oggFlagBOS}
		flush := func(continued bool) {
			ps = append(ps, cur)
			cur = page{}
			if continued {
				cur.flags = oggFlagContinued
			}
		}
		for i, p := range s.packets {
			laces := make([]byte, 0, len(p)/255+1)
			for n := len(p); ; n -= 255 {
				if n < 255 {
					laces = append(laces, byte(n))
					break
				}
				laces = append(laces, 255)
			}
			rest := p
			for j, l := range laces {
				if len(cur.segs) == maxSegs {
					flush(j > 0) // mid-packet: the next page continues it
				}
				cur.segs = append(cur.segs, l)
				cur.body = append(cur.body, rest[:l]...)
				rest = rest[l:]
			}
			if i <= 1 {
				flush(false)
			}
		}
		if len(cur.segs) > 0 || cur.flags != 0 {
			ps = append(ps, cur)
		}
		ps[len(ps)-1].flags |= oggFlagEOS
		pages = append(pages, ps)
	}
	var out []byte
	seqs := make([]uint32, len(streams))
	for round := 0; ; round++ {
		wrote := false
		for si, ps := range pages {
			if round >= len(ps) {
				continue
			}
			p := ps[round]
			h := make([]byte, oggPageHeaderSize, oggPageHeaderSize+len(p.segs)+len(p.body))
			copy(h, "OggS")
			h[5] = p.flags
			binary.LittleEndian.PutUint32(h[14:], streams[si].serial)
			binary.LittleEndian.PutUint32(h[18:], seqs[si])
			seqs[si]++
			h[26] = byte(len(p.segs))
			h = append(h, p.segs...)
			h = append(h, p.body...)
			binary.LittleEndian.PutUint32(h[22:], oggCRC(0, h))
			out = append(out, h...)
			wrote = true
		}
		if !wrote {
			return out
		}
	}
}

func opusHeadPacket(channels byte, preSkip uint16) []byte {
	h := []byte("OpusHead\x01")
	h = append(h, channels)
	h = binary.LittleEndian.AppendUint16(h, preSkip)
	h = binary.LittleEndian.AppendUint32(h, 48000)
	return append(h, 0, 0, 0) // gain, mapping family 0
}

// opusPacket returns a packet of n bytes whose TOC says 20 ms of CELT.
func opusPacket(n int, fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, n)
	p[0] = 31<<3 | 0 // config 31: CELT FB 20 ms, code 0: one frame
	return p
}

func buildIVF(fourcc string, tbNum, tbDen uint32, frames [][]byte, pts []uint64) []byte {
	h := make([]byte, 32)
	copy(h, "DKIF")
	binary.LittleEndian.PutUint16(h[6:], 32)
	copy(h[8:], fourcc)
	binary.LittleEndian.PutUint16(h[12:], 320)
	binary.LittleEndian.PutUint16(h[14:], 240)
	binary.LittleEndian.PutUint32(h[16:], tbDen)
	binary.LittleEndian.PutUint32(h[20:], tbNum)
	binary.LittleEndian.PutUint32(h[24:], uint32(len(frames)))
	for i, f := range frames {
		h = binary.LittleEndian.AppendUint32(h, uint32(len(f)))
		h = binary.LittleEndian.AppendUint64(h, pts[i])
		h = append(h, f...)
	}
	return h
}

// Packets of every size the lacing distinguishes (0 mod 255 needs a
// terminating 0 lacing value), spanning pages, next to a second stream.
func TestOggLacing(t *testing.T) {
	sizes := []int{1, 254, 255, 256, 510, 3000, 20000, 765, 100, 60000, 2}
	packets := [][]byte{opusHeadPacket(2, 312), []byte("OpusTags\x00\x00\x00\x00\x00\x00\x00\x00")}
	for i, n := range sizes {
		packets = append(packets, opusPacket(n, byte(i+1)))
	}
	other := oggStream{serial: 7, packets: [][]byte{[]byte("\x80theora-ish"), bytes.Repeat([]byte{9}, 5000), {1, 2, 3}}}
	for _, maxSegs := range []int{1, 2, 7, 255} {
		data := buildOgg(maxSegs, other, oggStream{serial: 42, packets: packets})
		d, err := newOggReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("maxSegs %d: %v", maxSegs, err)
		}
		if d.head.preSkip != 312 || d.head.channels != 2 || d.serial != 42 {
			t.Fatalf("head %+v serial %d", d.head, d.serial)
		}
		for pass := range 2 {
			for i, n := range sizes {
				f, err := d.next()
				if err != nil {
					t.Fatalf("maxSegs %d pass %d packet %d: %v", maxSegs, pass, i, err)
				}
				if !bytes.Equal(f.data, packets[i+2]) {
					t.Fatalf("maxSegs %d packet %d: %d bytes, want %d", maxSegs, i, len(f.data), n)
				}
				if f.ts != int64(i*960) || f.dur != 960 {
					t.Fatalf("packet %d: ts %d dur %d", i, f.ts, f.dur)
				}
			}
			if _, err := d.next(); err != io.EOF {
				t.Fatalf("maxSegs %d: after the last packet: %v", maxSegs, err)
			}
			if d.end() != int64(len(sizes)*960) {
				t.Fatalf("end %d", d.end())
			}
			if err := d.rewind(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Broken variants.
	good := buildOgg(3, oggStream{serial: 1, packets: packets})
	flip := append([]byte(nil), good...)
	flip[len(flip)-3] ^= 1
	noEOS := buildOgg(3, oggStream{serial: 1, packets: packets})
	// Clear EOS on the last page and fix its CRC.
	last := bytes.LastIndex(noEOS, []byte("OggS"))
	noEOS[last+5] &^= oggFlagEOS
	binary.LittleEndian.PutUint32(noEOS[last+22:], 0)
	binary.LittleEndian.PutUint32(noEOS[last+22:], oggCRC(0, noEOS[last:]))
	badTOC := buildOgg(255, oggStream{serial: 1, packets: [][]byte{packets[0], packets[1], {0x03, 0x00}}})
	for name, data := range map[string][]byte{"crc": flip, "no EOS": noEOS, "bad TOC": badTOC, "cut": good[:len(good)-10]} {
		d, err := newOggReader(bytes.NewReader(data), int64(len(data)))
		for err == nil {
			_, err = d.next()
		}
		var fe *FormatError
		if err == io.EOF || !errors.As(err, &fe) {
			t.Errorf("%s: %v, want a FormatError", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}

func TestOpusPacketSamples(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want int
	}{
		{[]byte{0 << 3}, 480},         // SILK NB 10 ms
		{[]byte{3 << 3}, 2880},        // SILK NB 60 ms
		{[]byte{13<<3 | 1, 0}, 1920},  // hybrid 20 ms, two frames
		{[]byte{16<<3 | 2, 0}, 240},   // CELT 2.5 ms, two frames
		{[]byte{19<<3 | 3, 6}, 5760},  // CELT 20 ms x 6 = 120 ms
		{[]byte{16<<3 | 3, 48}, 5760}, // CELT 2.5 ms x 48
		{[]byte{11<<3 | 3, 2}, 5760},  // SILK 60 ms x 2
	} {
		if got, err := opusPacketSamples(tc.p); err != nil || got != tc.want {
			t.Errorf("% x: %d, %v; want %d", tc.p, got, err, tc.want)
		}
	}
	for _, p := range [][]byte{nil, {19<<3 | 3}, {19<<3 | 3, 0}, {19<<3 | 3, 7}, {11<<3 | 3, 3}} {
		if _, err := opusPacketSamples(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("% x: %v, want ErrMalformed", p, err)
		}
	}
}

// The VUI frame rate parser, on SPSs of a few encoder settings.
func TestSPSFrameRate(t *testing.T) {
	needFFmpeg(t)
	for _, tc := range []struct {
		args []string
		want FrameRate
	}{
		{[]string{"-r", "25", "-profile:v", "high"}, FrameRate{25, 1}},
		{[]string{"-r", "30000/1001", "-profile:v", "main"}, FrameRate{30000, 1001}},
		{[]string{"-r", "60", "-profile:v", "high444", "-pix_fmt", "yuv444p"}, FrameRate{60, 1}},
	} {
		p := t.TempDir() + "/x.h264"
		args := append([]string{"-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1"}, tc.args...)
		args = append(args, "-c:v", "libx264", "-f", "h264", p)
		if out, err := execFFmpeg(args...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		data, _ := os.ReadFile(p)
		d, err := newAnnexBReader(bytes.NewReader(data), FrameRate{})
		if err != nil {
			t.Fatal(err)
		}
		if d.rate != tc.want {
			t.Errorf("%v: fps %v, want %v", tc.args, d.rate, tc.want)
		}
		// The URL wins over the SPS.
		if d, _ := newAnnexBReader(bytes.NewReader(data), FrameRate{10, 1}); d.rate != (FrameRate{10, 1}) {
			t.Errorf("fps option overridden: %v", d.rate)
		}
	}
}

// drain reads every frame three times (rewinding in between) and
// packetizes it. It must never panic; every pass must see the same number
// of frames, and passes 2 and 3 the same bytes (pass 1 can differ: the
// H.264 parameter set cache starts out with only the first SPS and PPS,
// later passes start with the latest of each).
func drain(t *testing.T, d demuxer, pl rtp.Payloader) {
	var prev, cur [][]byte
	for pass := range 3 {
		prev, cur = cur, nil
		for i := 0; i < 5000; i++ {
			f, err := d.next()
			if err != nil {
				break
			}
			if f.ts < 0 || f.dur < 0 {
				t.Fatalf("frame %d: ts %d dur %d", i, f.ts, f.dur)
			}
			cur = append(cur, append([]byte(nil), f.data...))
			pl.Payload(100, f.data)
		}
		if pass > 0 && len(cur) != len(prev) {
			t.Fatalf("pass %d: %d frames, pass %d: %d", pass+1, len(cur), pass, len(prev))
		}
		if pass == 2 {
			for i := range cur {
				if !bytes.Equal(cur[i], prev[i]) {
					t.Fatalf("frame %d differs between passes 2 and 3", i)
				}
			}
		}
		if err := d.rewind(); err != nil {
			t.Fatal(err)
		}
	}
}

func addFileSeed(f *testing.F, name string, limit int) {
	if _, err := os.Stat(fixtureDir); err != nil {
		return
	}
	defer func() { recover() }() // fixture may skip (no ffmpeg): seeds are optional
	tb := &seedTB{TB: f}
	p := fixture(tb, name)
	if data, err := os.ReadFile(p); err == nil {
		f.Add(data[:min(len(data), limit)])
	}
}

// seedTB turns Skip/Fatal into a panic addFileSeed recovers from.
type seedTB struct{ testing.TB }

func (s *seedTB) Skipf(string, ...any) { panic("skip") }
func (s *seedTB) Fatal(...any)         { panic("fatal") }
func (s *seedTB) Fatalf(string, ...any) {
	panic("fatal")
}

func FuzzIVF(f *testing.F) {
	vp8Key := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0x00}
	vp9Key := []byte{0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xf0, 0x0e, 0xf6, 0x00, 0x00}
	av1TU := []byte{0x12, 0x00, 0x0a, 0x03, 0x00, 0x00, 0x00, 0x32, 0x02, 0x10, 0x00}
	f.Add(buildIVF("VP80", 1, 30, [][]byte{vp8Key, vp8Key[:3]}, []uint64{0, 1}))
	f.Add(buildIVF("VP90", 1, 90000, [][]byte{vp9Key, {0x86, 0, 0, 0}}, []uint64{0, 3000}))
	f.Add(buildIVF("AV01", 1, 30, [][]byte{av1TU, av1TU}, []uint64{5, 6}))
	f.Add(buildIVF("AV01", 1, 30, [][]byte{{0x12, 0x80}}, []uint64{0}))
	addFileSeed(f, "vp9.ivf", 6000)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := newIVFReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		var pl rtp.Payloader
		switch d.fourcc {
		case fourccVP8:
			pl = &codecs.VP8Payloader{EnablePictureID: true}
		case fourccVP9:
			pl = &codecs.VP9Payloader{}
		default:
			pl = &codecs.AV1Payloader{}
		}
		drain(t, d, pl)
	})
}

func FuzzOgg(f *testing.F) {
	head := opusHeadPacket(2, 312)
	tags := []byte("OpusTags\x00\x00\x00\x00\x00\x00\x00\x00")
	f.Add(buildOgg(255, oggStream{serial: 1, packets: [][]byte{head, tags, opusPacket(10, 1), opusPacket(300, 2)}}))
	f.Add(buildOgg(2, oggStream{serial: 1, packets: [][]byte{head, tags, opusPacket(600, 1), {0x0b, 0x02}, opusPacket(255, 3)}}))
	f.Add(buildOgg(4, oggStream{serial: 9, packets: [][]byte{[]byte("\x01vorbis"), {1}}},
		oggStream{serial: 1, packets: [][]byte{head, tags, opusPacket(700, 1)}}))
	addFileSeed(f, "opus-20ms.ogg", 1500)
	f.Fuzz(func(t *testing.T, data []byte) {
		// As given (mostly CRC errors), then with the CRCs made right so
		// that mutations reach the lacing and packet logic.
		for _, b := range [][]byte{data, fixOggCRCs(data)} {
			d, err := newOggReader(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				continue
			}
			drain(t, d, &codecs.OpusPayloader{})
		}
	})
}

// fixOggCRCs returns a copy of data with the CRC of every page that can
// be found by walking the page headers from the start recomputed.
func fixOggCRCs(data []byte) []byte {
	b := append([]byte(nil), data...)
	for off := 0; off+oggPageHeaderSize <= len(b) && string(b[off:off+4]) == "OggS"; {
		nseg := int(b[off+26])
		if off+oggPageHeaderSize+nseg > len(b) {
			break
		}
		total := oggPageHeaderSize + nseg
		for _, l := range b[off+oggPageHeaderSize : off+oggPageHeaderSize+nseg] {
			total += int(l)
		}
		if off+total > len(b) {
			break
		}
		binary.LittleEndian.PutUint32(b[off+22:], 0)
		binary.LittleEndian.PutUint32(b[off+22:], oggCRC(0, b[off:off+total]))
		off += total
	}
	return b
}

func FuzzAnnexB(f *testing.F) {
	sps := []byte{0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x03, 0xc5, 0x0a, 0xa8}
	pps := []byte{0x68, 0xce, 0x0f, 0xc8}
	idr := []byte{0x65, 0x88, 0x84, 0x00, 0x33, 0xff}
	slice := []byte{0x41, 0x9a, 0x22, 0x01}
	sc := []byte{0, 0, 0, 1}
	join := func(nals ...[]byte) []byte {
		var b []byte
		for _, n := range nals {
			b = append(append(b, sc...), n...)
		}
		return b
	}
	f.Add(join(sps, pps, idr, slice, slice, idr))
	f.Add(join([]byte{0x09, 0xf0}, sps, pps, []byte{0x06, 0x05, 0x01, 0x80}, idr, []byte{0x09, 0xf0}, slice))
	f.Add(append([]byte{0, 0, 1}, join(sps, pps, idr, sps, idr[:3])...))
	// Found by fuzzing: the PPS refers to an SPS only seen later in the
	// file, so a loop's second pass inserts it and its first cannot.
	f.Add([]byte("\x00\x00\x01'000000\x00\x00\x01(\xce\x00\x00\x01%2\x84\x00\x00\x01'000\x84"))
	addFileSeed(f, "h264.h264", 20000)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := newAnnexBReader(bytes.NewReader(data), FrameRate{})
		if err != nil {
			return
		}
		drain(t, d, &codecs.H264Payloader{DisableStapA: true})
	})
}

func TestIVFTimestamps(t *testing.T) {
	frame := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}
	read := func(tbNum, tbDen uint32, pts ...uint64) ([]int64, int64, error) {
		frames := make([][]byte, len(pts))
		for i := range frames {
			frames[i] = frame
		}
		data := buildIVF("VP80", tbNum, tbDen, frames, pts)
		d, err := newIVFReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, 0, err
		}
		var ts []int64
		for {
			f, err := d.next()
			if err == io.EOF {
				return ts, d.end(), nil
			}
			if err != nil {
				return ts, 0, err
			}
			ts = append(ts, f.ts)
		}
	}
	// 1/30 timebase, not starting at 0, a gap: last frame's duration is
	// the last PTS step.
	ts, end, err := read(1, 30, 100, 101, 103, 104)
	if err != nil || len(ts) != 4 || ts[1] != 3000 || ts[2] != 9000 || ts[3] != 12000 || end != 15000 {
		t.Errorf("1/30: %v end %d: %v", ts, end, err)
	}
	// 1/1000 (WebM-style ms) timebase.
	ts, end, err = read(1, 1000, 0, 33, 67, 100)
	if err != nil || ts[1] != 2970 || ts[2] != 6030 || ts[3] != 9000 || end != 11970 {
		t.Errorf("1/1000: %v end %d: %v", ts, end, err)
	}
	// A single frame lasts one timebase tick.
	if _, end, err := read(1001, 30000, 7); err != nil || end != 3003 {
		t.Errorf("single frame: end %d: %v", end, err)
	}
	// Backwards, before the first, absurd jumps, huge values: errors.
	for _, pts := range [][]uint64{{5, 7, 6}, {5, 4}, {0, 30 * 61}, {0, 1 << 63}, {0, ^uint64(0)}} {
		if _, _, err := read(1, 30, pts...); !errors.Is(err, ErrMalformed) {
			t.Errorf("PTS %v: %v, want ErrMalformed", pts, err)
		}
	}
	if _, _, err := read(0, 30, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero timebase: %v", err)
	}
}
