package container

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Fragmented MP4 (ISO/IEC 14496-12), boxes written by hand: no maintained
// Go MP4 library is reachable here (mediacommon, mp4ff and go-mp4 are
// refused by the module proxy).
//
//	ftyp
//	moov  mvhd, trak (tkhd, mdia: mdhd, hdlr, minf: vmhd/smhd, dinf, stbl
//	      with the sample entry and empty tables), mvex (free space for
//	      mehd, trex)
//	moof  mfhd, traf per track (tfhd, tfdt, trun: durations, sizes, flags)
//	mdat  the fragment's samples, track after track
//	...   a fragment at each video keyframe and at least every 500 ms
//	mfra  written by Close: tfra per track (random access points), mfro
//
// A sample's duration is the next sample's decode time minus its own, so
// each track holds back its newest sample until the next one comes (or
// Close, where it gets the previous duration). Video uses a 90 kHz time
// scale, Opus 48 kHz; samples have no composition offsets (WebRTC sends
// no B-frames). Close also writes the durations into mvhd and mehd.

const (
	mp4MaxFragment = 500 * time.Millisecond
	mp4MovieScale  = 1000
	sampleSync     = 0x02000000 // sample_depends_on = 2 (no other sample)
	sampleNonSync  = 0x01010000 // depends on others, is_non_sync_sample
	mp4FreeMehd    = 20         // free box reserved in mvex for mehd (version 1)
)

type mp4Sample struct{ size, dur, flags uint32 }

type mp4Tfra struct {
	time, moof uint64
	traf       uint8
}

type mp4Track struct {
	codec     codec
	id        uint32
	timescale uint32
	video     bool

	samples  []mp4Sample // queued for the next fragment, durations known
	data     []byte      // their data, then the held sample's
	first    int64       // decode time of samples[0]
	firstPTS time.Duration

	held                bool
	heldTicks, heldSize int64
	heldPTS             time.Duration
	heldKey             bool
	heldOpus            uint32 // Opus packet duration in samples
	lastDur             uint32

	end  int64 // decode time after the last sample in the file
	tfra []mp4Tfra
}

type mp4Layout struct {
	mvhdPos, mehdPos int64
}

type mp4 struct {
	out      *output
	tracks   []mp4Track
	channels []uint16
	layout   mp4Layout
	seq      uint32
	buf      []byte
	scratch  []byte
	dataOffs []int // positions of trun data_offset fields in buf
}

func newMP4(out *output, ts []trackState) *mp4 {
	m := &mp4{out: out}
	for i, t := range ts {
		tr := mp4Track{codec: t.codec, id: uint32(i + 1), timescale: 90000, video: t.codec.video()}
		if !tr.video {
			tr.timescale = opusSampleRate
		}
		m.tracks = append(m.tracks, tr)
		m.channels = append(m.channels, t.Codec.Channels)
	}
	return m
}

// boxStart appends a box header with a placeholder size; boxEnd fills it.
func boxStart(b []byte, typ string) ([]byte, int) {
	return append(append(b, 0, 0, 0, 0), typ...), len(b)
}

func boxEnd(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func fullBox(b []byte, typ string, version byte, flags uint32) ([]byte, int) {
	b, s := boxStart(b, typ)
	return binary.BigEndian.AppendUint32(b, uint32(version)<<24|flags), s
}

var unityMatrix = []uint32{0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000}

func appendU32s(b []byte, v ...uint32) []byte {
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, x)
	}
	return b
}

func (m *mp4) header(cfg []trackConfig) error {
	b := make([]byte, 0, 1024)
	b, s := boxStart(b, "ftyp")
	b = append(b, "iso6"...)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = append(b, "iso6isommp41"...)
	b = boxEnd(b, s)

	b, moov := boxStart(b, "moov")
	m.layout.mvhdPos = m.out.pos + int64(len(b))
	b, s = fullBox(b, "mvhd", 0, 0)
	b = appendU32s(b, 0, 0, mp4MovieScale, 0, 0x10000)
	b = append(b, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) // volume, reserved
	b = appendU32s(b, unityMatrix...)
	b = appendU32s(b, 0, 0, 0, 0, 0, 0, uint32(len(m.tracks)+1))
	b = boxEnd(b, s)
	for i := range m.tracks {
		b = m.appendTrak(b, &m.tracks[i], cfg[i], m.channels[i])
	}
	b, mvex := boxStart(b, "mvex")
	m.layout.mehdPos = m.out.pos + int64(len(b))
	b, s = boxStart(b, "free")
	b = append(b, make([]byte, mp4FreeMehd-8)...)
	b = boxEnd(b, s)
	for _, t := range m.tracks {
		b, s = fullBox(b, "trex", 0, 0)
		b = appendU32s(b, t.id, 1, 0, 0, 0)
		b = boxEnd(b, s)
	}
	b = boxEnd(b, mvex)
	b = boxEnd(b, moov)
	return m.out.write(b)
}

func (m *mp4) appendTrak(b []byte, t *mp4Track, cfg trackConfig, channels uint16) []byte {
	b, trak := boxStart(b, "trak")
	b, s := fullBox(b, "tkhd", 0, 3) // enabled, in movie
	volume := uint32(0)
	if !t.video {
		volume = 0x0100 << 16
	}
	b = appendU32s(b, 0, 0, t.id, 0, 0, 0, 0, 0, volume)
	b = appendU32s(b, unityMatrix...)
	b = appendU32s(b, uint32(cfg.width)<<16, uint32(cfg.height)<<16)
	b = boxEnd(b, s)

	b, mdia := boxStart(b, "mdia")
	b, s = fullBox(b, "mdhd", 0, 0)
	b = appendU32s(b, 0, 0, t.timescale, 0)
	b = append(b, 0x55, 0xc4, 0, 0) // language "und"
	b = boxEnd(b, s)
	b, s = fullBox(b, "hdlr", 0, 0)
	handler, name := "vide", "VideoHandler\x00"
	if !t.video {
		handler, name = "soun", "SoundHandler\x00"
	}
	b = appendU32s(b, 0)
	b = append(b, handler...)
	b = appendU32s(b, 0, 0, 0)
	b = append(b, name...)
	b = boxEnd(b, s)

	b, minf := boxStart(b, "minf")
	if t.video {
		b, s = fullBox(b, "vmhd", 0, 1)
		b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	} else {
		b, s = fullBox(b, "smhd", 0, 0)
		b = append(b, 0, 0, 0, 0)
	}
	b = boxEnd(b, s)
	b, dinf := boxStart(b, "dinf")
	b, s = fullBox(b, "dref", 0, 0)
	b = appendU32s(b, 1)
	b, u := fullBox(b, "url ", 0, 1) // media in this file
	b = boxEnd(b, u)
	b = boxEnd(b, s)
	b = boxEnd(b, dinf)

	b, stbl := boxStart(b, "stbl")
	b, s = fullBox(b, "stsd", 0, 0)
	b = appendU32s(b, 1)
	b = appendSampleEntry(b, t.codec, cfg, channels)
	b = boxEnd(b, s)
	for _, typ := range []string{"stts", "stsc", "stco"} {
		b, s = fullBox(b, typ, 0, 0)
		b = appendU32s(b, 0)
		b = boxEnd(b, s)
	}
	b, s = fullBox(b, "stsz", 0, 0)
	b = appendU32s(b, 0, 0)
	b = boxEnd(b, s)
	b = boxEnd(b, stbl)
	b = boxEnd(b, minf)
	b = boxEnd(b, mdia)
	return boxEnd(b, trak)
}

// mp4VideoEntries: sample entry and configuration box per video codec.
var mp4VideoEntries = map[codec][2]string{
	codecH264: {"avc1", "avcC"}, codecH265: {"hvc1", "hvcC"},
	codecAV1: {"av01", "av1C"}, codecVP9: {"vp09", "vpcC"},
}

func appendSampleEntry(b []byte, c codec, cfg trackConfig, channels uint16) []byte {
	if c == codecOpus {
		if channels == 0 {
			channels = 1
		}
		b, s := boxStart(b, "Opus")
		b = append(b, 0, 0, 0, 0, 0, 0, 0, 1) // reserved, data_reference_index
		b = appendU32s(b, 0, 0)
		b = binary.BigEndian.AppendUint16(b, channels)
		b = append(b, 0, 16, 0, 0, 0, 0) // sample size, pre_defined, reserved
		b = appendU32s(b, opusSampleRate<<16)
		// dOps: the OpusHead fields, big-endian, from "Encapsulation of
		// Opus in ISO Base Media File Format" 4.3.2.
		b, d := boxStart(b, "dOps")
		b = append(b, 0, byte(channels))
		b = binary.BigEndian.AppendUint16(b, opusPreSkip)
		b = appendU32s(b, opusSampleRate)
		b = append(b, 0, 0, 0)
		b = boxEnd(b, d)
		return boxEnd(b, s)
	}
	names := mp4VideoEntries[c]
	entry, box := names[0], names[1]
	b, s := boxStart(b, entry)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 1) // reserved, data_reference_index
	b = appendU32s(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(cfg.width))
	b = binary.BigEndian.AppendUint16(b, uint16(cfg.height))
	b = appendU32s(b, 0x00480000, 0x00480000, 0)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, make([]byte, 32)...) // compressorname
	b = append(b, 0x00, 0x18, 0xff, 0xff)
	// The configuration record (vpcC's includes its full-box header).
	b, d := boxStart(b, box)
	b = append(b, cfg.priv...)
	b = boxEnd(b, d)
	return boxEnd(b, s)
}

func (m *mp4) frame(f *Frame) error {
	t := &m.tracks[f.Track]
	payload := f.Data
	switch t.codec {
	case codecH264, codecH265:
		m.scratch = annexBToLengthPrefixed(m.scratch[:0], f.Data)
		payload = m.scratch
	case codecAV1:
		var err error
		m.scratch, err = appendAV1WithoutTD(m.scratch[:0], f.Data)
		if err != nil {
			return fmt.Errorf("mp4: track %d: AV1 frame at %v: %v: %w", f.Track, f.PTS, err, ErrInvalidFrame)
		}
		payload = m.scratch
	}
	if len(payload) == 0 {
		return fmt.Errorf("mp4: track %d: frame at %v has no data: %w", f.Track, f.PTS, ErrInvalidFrame)
	}
	tk := ticks(f.PTS, int64(t.timescale))
	if t.held {
		t.queueHeld(uint32(tk - t.heldTicks))
	}
	if start, ok := m.fragmentStart(); ok && ((t.video && f.Key) || f.PTS-start >= mp4MaxFragment) {
		if err := m.writeFragment(); err != nil {
			return err
		}
	}
	t.data = append(t.data, payload...)
	t.held, t.heldTicks, t.heldSize, t.heldPTS, t.heldKey = true, tk, int64(len(payload)), f.PTS, f.Key
	if !t.video {
		t.heldOpus = uint32(opusSamples(f.Data))
	}
	return nil
}

// queueHeld moves the held sample into the fragment with its duration.
func (t *mp4Track) queueHeld(dur uint32) {
	flags := uint32(sampleSync)
	if !t.heldKey {
		flags = sampleNonSync
	}
	if len(t.samples) == 0 {
		t.first, t.firstPTS = t.heldTicks, t.heldPTS
	}
	t.samples = append(t.samples, mp4Sample{size: uint32(t.heldSize), dur: dur, flags: flags})
	t.held, t.lastDur = false, dur
}

// fragmentStart returns the PTS of the earliest queued sample.
func (m *mp4) fragmentStart() (time.Duration, bool) {
	var start time.Duration
	ok := false
	for i := range m.tracks {
		t := &m.tracks[i]
		if len(t.samples) > 0 && (!ok || t.firstPTS < start) {
			start, ok = t.firstPTS, true
		}
	}
	return start, ok
}

// writeFragment writes one moof and mdat with the queued samples of every
// track, in one write.
func (m *mp4) writeFragment() error {
	if _, ok := m.fragmentStart(); !ok {
		return nil
	}
	m.seq++
	moofPos := m.out.pos
	b, moof := boxStart(m.buf[:0], "moof")
	b, s := fullBox(b, "mfhd", 0, 0)
	b = appendU32s(b, m.seq)
	b = boxEnd(b, s)
	m.dataOffs = m.dataOffs[:0]
	traf := uint8(0)
	for i := range m.tracks {
		t := &m.tracks[i]
		if len(t.samples) == 0 {
			continue
		}
		traf++
		if t.samples[0].flags == sampleSync && (traf < 255) {
			t.tfra = append(t.tfra, mp4Tfra{time: uint64(t.first), moof: uint64(moofPos), traf: traf})
		}
		var tr int
		b, tr = boxStart(b, "traf")
		b, s = fullBox(b, "tfhd", 0, 0x020000) // default-base-is-moof
		b = appendU32s(b, t.id)
		b = boxEnd(b, s)
		b, s = fullBox(b, "tfdt", 1, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(t.first))
		b = boxEnd(b, s)
		b, s = fullBox(b, "trun", 0, 0x000701) // data offset, durations, sizes, flags
		b = appendU32s(b, uint32(len(t.samples)))
		m.dataOffs = append(m.dataOffs, len(b))
		b = appendU32s(b, 0)
		for _, x := range t.samples {
			b = appendU32s(b, x.dur, x.size, x.flags)
		}
		b = boxEnd(b, s)
		b = boxEnd(b, tr)
	}
	b = boxEnd(b, moof)
	mdat := len(b)
	b = append(b, 0, 0, 0, 0, 'm', 'd', 'a', 't')
	k := 0
	for i := range m.tracks {
		t := &m.tracks[i]
		if len(t.samples) == 0 {
			continue
		}
		binary.BigEndian.PutUint32(b[m.dataOffs[k]:], uint32(len(b)))
		k++
		n := len(t.data) - t.heldBytes()
		b = append(b, t.data[:n]...)
	}
	binary.BigEndian.PutUint32(b[mdat:], uint32(len(b)-mdat))
	m.buf = b
	if err := m.out.write(b); err != nil {
		return err
	}
	for i := range m.tracks {
		t := &m.tracks[i]
		if len(t.samples) == 0 {
			continue
		}
		end := t.first
		for _, x := range t.samples {
			end += int64(x.dur)
		}
		t.end = end
		n := len(t.data) - t.heldBytes()
		t.data = t.data[:copy(t.data, t.data[n:])]
		t.samples = t.samples[:0]
	}
	return nil
}

func (t *mp4Track) heldBytes() int {
	if t.held {
		return int(t.heldSize)
	}
	return 0
}

func (m *mp4) flush() error { return m.writeFragment() }

func (m *mp4) finish() error {
	for i := range m.tracks {
		t := &m.tracks[i]
		if !t.held {
			continue
		}
		d := t.lastDur
		switch {
		case !t.video && t.heldOpus > 0:
			d = t.heldOpus
		case d == 0 && t.video:
			d = t.timescale / 30
		}
		t.queueHeld(d)
	}
	if err := m.writeFragment(); err != nil {
		return err
	}
	fin := make([]mp4TrackEnd, len(m.tracks))
	for i, t := range m.tracks {
		fin[i] = mp4TrackEnd{id: t.id, timescale: t.timescale, end: t.end, tfra: t.tfra}
	}
	return finalizeMP4(m.out, m.layout, fin)
}

type mp4TrackEnd struct {
	id, timescale uint32
	end           int64
	tfra          []mp4Tfra
}

// finalizeMP4 appends the mfra (random access index) and writes the
// movie's duration into mvhd and mehd (ffprobe's duration).
func finalizeMP4(o *output, l mp4Layout, tracks []mp4TrackEnd) error {
	var dur uint64
	b, mfra := boxStart(nil, "mfra")
	for _, t := range tracks {
		if t.timescale > 0 {
			dur = max(dur, uint64((t.end*mp4MovieScale+int64(t.timescale)-1)/int64(t.timescale)))
		}
		var s int
		b, s = fullBox(b, "tfra", 1, 0)
		b = appendU32s(b, t.id, 0, uint32(len(t.tfra))) // 1-byte traf/trun/sample numbers
		for _, e := range t.tfra {
			b = binary.BigEndian.AppendUint64(b, e.time)
			b = binary.BigEndian.AppendUint64(b, e.moof)
			b = append(b, e.traf, 1, 1)
		}
		b = boxEnd(b, s)
	}
	b, s := fullBox(b, "mfro", 0, 0)
	b = appendU32s(b, uint32(len(b)-mfra+4))
	b = boxEnd(b, s)
	b = boxEnd(b, mfra)
	if err := o.write(b); err != nil {
		return err
	}
	var d [4]byte
	binary.BigEndian.PutUint32(d[:], uint32(min(dur, 1<<32-1)))
	if err := o.writeAt(d[:], l.mvhdPos+24); err != nil {
		return err
	}
	mehd, s := fullBox(nil, "mehd", 1, 0)
	mehd = binary.BigEndian.AppendUint64(mehd, dur)
	mehd = boxEnd(mehd, s)
	return o.writeAt(mehd, l.mehdPos)
}
