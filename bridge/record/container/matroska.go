package container

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
)

// Matroska/WebM layout, written live:
//
//	EBML header
//	Segment (size unknown until Close)
//	  Void      reserved for the SeekHead written by Close
//	  Info      TimecodeScale 1 ms, apps, Void reserved for Duration
//	  Tracks
//	  Cluster   size unknown while it is the last one, patched when the
//	  Cluster   next one starts; a new one at every video keyframe and
//	  ...       at least every second
//	  Cues      written by Close
//
// ebml-go marshals the header, the Cues and the SeekHead. Its BlockWriter
// is not used: it writes the header at once (H.264/AV1 need the first
// keyframe first), runs a goroutine and a channel send per frame, allocates
// per block (reflection) and only finds Cues/Duration with a fixed
// reservation at the front. SimpleBlocks and Cluster headers are a few
// bytes each and are written by hand into a reused buffer, one write(2) per
// frame: nothing is buffered in user space, so a kill loses at most the
// frame being written. Measured here (bench_test.go, VP8+Opus frames):
// ebml-go's BlockWriter 3.6-4.3 us, 1.8 KB and 21 allocations per block;
// this writer 60-110 ns and 0 allocations per frame.

// EBML IDs written by hand.
var (
	idCluster     = []byte{0x1f, 0x43, 0xb6, 0x75}
	idInfo        = []byte{0x15, 0x49, 0xa9, 0x66}
	idTracks      = []byte{0x16, 0x54, 0xae, 0x6b}
	idCues        = []byte{0x1c, 0x53, 0xbb, 0x6b}
	unknownSize8  = []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	durationHead  = []byte{0x44, 0x89, 0x88} // Duration, 8-byte float
	seekVoidBytes = 100                      // Void payload reserved for the SeekHead (3 entries need 65 bytes)
)

const (
	ebmlVoid        = 0xec
	ebmlTimecode    = 0xe7
	ebmlSimpleBlock = 0xa3
	ebmlBlockGroup  = 0xa0
	clusterHeadLen  = 12 // ID + 8-byte size
	maxClusterSpan  = 1000
	durationVoidLen = 11 // the Duration element: 2-byte ID, size, 8-byte float
)

type mkvHeader struct {
	EBML    webm.EBMLHeader `ebml:"EBML"`
	Segment mkvSegmentHead  `ebml:"Segment,size=unknown"`
}

type mkvSegmentHead struct {
	Void   []byte      `ebml:"Void"`
	Info   mkvInfo     `ebml:"Info"`
	Tracks webm.Tracks `ebml:"Tracks"`
}

type mkvInfo struct {
	TimecodeScale uint64 `ebml:"TimecodeScale"`
	MuxingApp     string `ebml:"MuxingApp"`
	WritingApp    string `ebml:"WritingApp"`
	Void          []byte `ebml:"Void"`
}

// mkvLayout is where Close (or Repair) patches the header.
type mkvLayout struct {
	segSizePos   int64 // the Segment's 8-byte size field
	segDataStart int64
	seekPos      int64 // the reserved space for the SeekHead
	seekLen      int
	durPos       int64 // the 11 bytes reserved for Duration
	infoPos      int64
	tracksPos    int64
}

type mkvCue struct {
	time, track, pos uint64 // pos relative to the Segment's data
}

type mkvTrack struct {
	codec      codec
	number     byte // 1-based
	video      bool
	last, prev int64 // ms of the last two blocks (-1: none)
}

// durationOf returns a track's end: the last block plus the interval
// before it.
func (t *mkvTrack) end() int64 {
	if t.last < 0 {
		return 0
	}
	if t.prev < 0 {
		return t.last
	}
	return t.last + (t.last - t.prev)
}

func (t *mkvTrack) add(ms int64) {
	if ms != t.last {
		t.prev, t.last = t.last, ms
	}
}

type matroska struct {
	out      *output
	format   Format
	tracks   []mkvTrack
	hasVideo bool
	channels []uint16
	layout   mkvLayout
	cues     []mkvCue

	inCluster     bool
	clusterPos    int64
	clusterTC     int64
	clusterBlocks int

	buf, scratch []byte
}

func newMatroska(out *output, f Format, ts []trackState) *matroska {
	m := &matroska{out: out, format: f}
	for i, t := range ts {
		m.tracks = append(m.tracks, mkvTrack{codec: t.codec, number: byte(i + 1), video: t.codec.video(), last: -1, prev: -1})
		m.hasVideo = m.hasVideo || t.codec.video()
		m.channels = append(m.channels, t.Codec.Channels)
	}
	return m
}

var mkvCodecIDs = map[codec]string{
	codecVP8: "V_VP8", codecVP9: "V_VP9", codecAV1: "V_AV1",
	codecH264: "V_MPEG4/ISO/AVC", codecH265: "V_MPEGH/ISO/HEVC", codecOpus: "A_OPUS",
}

func (m *matroska) header(cfg []trackConfig) error {
	h := mkvHeader{EBML: *webm.DefaultEBMLHeader}
	if m.format == MKV {
		h.EBML.DocType = "matroska"
	}
	h.Segment.Void = make([]byte, seekVoidBytes)
	h.Segment.Info = mkvInfo{TimecodeScale: uint64(time.Millisecond), MuxingApp: "rtgate", WritingApp: "rtgate",
		Void: make([]byte, durationVoidLen-2)}
	for i, t := range m.tracks {
		e := webm.TrackEntry{
			TrackNumber:  uint64(t.number),
			TrackUID:     uint64(t.number),
			CodecID:      mkvCodecIDs[t.codec],
			CodecPrivate: cfg[i].priv,
		}
		if t.video {
			e.TrackType = 1
			e.Video = &webm.Video{PixelWidth: uint64(cfg[i].width), PixelHeight: uint64(cfg[i].height)}
			if t.codec == codecVP9 {
				e.CodecPrivate = nil // Matroska's VP9 CodecPrivate is another format; none is fine
			}
		} else {
			ch := m.channels[i]
			e.TrackType = 2
			e.CodecPrivate = opusHead(ch)
			e.CodecDelay = uint64(time.Duration(opusPreSkip) * time.Second / opusSampleRate)
			e.SeekPreRoll = uint64(opusSeekPreRoll)
			if ch == 0 {
				ch = 1
			}
			e.Audio = &webm.Audio{SamplingFrequency: opusSampleRate, Channels: uint64(ch)}
		}
		h.Segment.Tracks.TrackEntry = append(h.Segment.Tracks.TrackEntry, e)
	}
	// ebml-go's write hooks report child positions off by one inside
	// masters with 1-byte sizes, so the layout is read back from the bytes.
	var b bytes.Buffer
	if err := ebml.Marshal(&h, &b); err != nil {
		return fmt.Errorf("marshal Matroska header: %w", err)
	}
	l, err := headerLayout(b.Bytes())
	if err != nil {
		return err
	}
	m.layout = l
	return m.out.write(b.Bytes())
}

func (m *matroska) frame(f *Frame) error {
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
			return fmt.Errorf("%s: track %d: AV1 frame at %v: %v: %w", m.format, f.Track, f.PTS, err, ErrInvalidFrame)
		}
		payload = m.scratch
	}
	if len(payload) == 0 {
		return fmt.Errorf("%s: track %d: frame at %v has no data: %w", m.format, f.Track, f.PTS, ErrInvalidFrame)
	}
	ms := int64((f.PTS + time.Millisecond/2) / time.Millisecond)
	rel := ms - m.clusterTC
	if m.inCluster && rel < math.MinInt16 {
		return fmt.Errorf("%s: track %d: frame at %v is more than 32 s behind the other tracks: %w", m.format, f.Track, f.PTS, ErrInvalidFrame)
	}
	b := m.buf[:0]
	if !m.inCluster || rel >= maxClusterSpan || (t.video && f.Key && m.clusterBlocks > 0) {
		if m.inCluster {
			if err := m.patchClusterSize(); err != nil {
				return err
			}
		}
		m.inCluster, m.clusterPos, m.clusterTC, m.clusterBlocks = true, m.out.pos, ms, 0
		rel = 0
		if f.Key && (t.video || !m.hasVideo) {
			m.cues = append(m.cues, mkvCue{time: uint64(ms), track: uint64(t.number), pos: uint64(m.clusterPos - m.layout.segDataStart)})
		}
		b = append(b, idCluster...)
		b = append(b, unknownSize8...)
		b = append(b, ebmlTimecode, 0x88)
		b = binary.BigEndian.AppendUint64(b, uint64(ms))
	}
	b = append(b, ebmlSimpleBlock)
	b = appendVint(b, uint64(4+len(payload)))
	flags := byte(0)
	if f.Key {
		flags = 0x80
	}
	b = append(b, 0x80|t.number, byte(uint16(int16(rel))>>8), byte(int16(rel)), flags)
	b = append(b, payload...)
	m.buf = b
	if err := m.out.write(b); err != nil {
		return err
	}
	m.clusterBlocks++
	t.add(ms)
	return nil
}

// patchClusterSize gives the current Cluster its real size, now that it
// is complete.
func (m *matroska) patchClusterSize() error {
	var s [8]byte
	putSize8(s[:], uint64(m.out.pos-m.clusterPos-clusterHeadLen))
	return m.out.writeAt(s[:], m.clusterPos+4)
}

func (m *matroska) flush() error { return nil }

func (m *matroska) finish() error {
	last := int64(-1)
	if m.inCluster {
		last = m.clusterPos
	}
	var end int64
	for i := range m.tracks {
		end = max(end, m.tracks[i].end())
	}
	return finalizeMatroska(m.out, &m.layout, last, m.cues, end)
}

// headerLayout finds the reserved spaces in a header written at offset 0.
func headerLayout(b []byte) (mkvLayout, error) {
	r := &fileReader{size: int64(len(b)), win: b}
	_, size, hdr, _, ok := r.ebmlElem(0)
	if !ok {
		return mkvLayout{}, fmt.Errorf("header layout: no EBML header")
	}
	seg := int64(hdr) + size
	_, _, hdr, _, ok = r.ebmlElem(seg)
	if !ok {
		return mkvLayout{}, fmt.Errorf("header layout: no Segment")
	}
	l := mkvLayout{segSizePos: seg + 4, segDataStart: seg + int64(hdr), seekPos: -1, durPos: -1, infoPos: -1, tracksPos: -1}
	for p := l.segDataStart; p < r.size; {
		id, size, hdr, _, ok := r.ebmlElem(p)
		if !ok {
			break
		}
		switch id {
		case eidVoid:
			l.seekPos, l.seekLen = p, hdr+int(size)
		case eidInfo:
			l.infoPos = p
			for q := p + int64(hdr); q < p+int64(hdr)+size; {
				cid, csize, chdr, _, ok := r.ebmlElem(q)
				if !ok {
					break
				}
				if cid == eidVoid {
					l.durPos = q
				}
				q += int64(chdr) + csize
			}
		case eidTracks:
			l.tracksPos = p
		}
		p += int64(hdr) + size
	}
	if l.seekPos < 0 || l.durPos < 0 || l.infoPos < 0 || l.tracksPos < 0 {
		return mkvLayout{}, fmt.Errorf("header layout: reserved spaces not found")
	}
	return l, nil
}

// finalizeMatroska writes what a live file lacks: the last Cluster's size,
// Cues, the SeekHead, Duration and the Segment's size, in an order that
// leaves the file valid after each step (a crash in between is repaired
// again: Repair redoes all of it).
func finalizeMatroska(o *output, l *mkvLayout, lastCluster int64, cues []mkvCue, durMs int64) error {
	if lastCluster >= 0 {
		var s [8]byte
		putSize8(s[:], uint64(o.pos-lastCluster-clusterHeadLen))
		if err := o.writeAt(s[:], lastCluster+4); err != nil {
			return err
		}
	}
	seek := webm.SeekHead{Seek: []webm.Seek{
		{SeekID: idInfo, SeekPosition: uint64(l.infoPos - l.segDataStart)},
		{SeekID: idTracks, SeekPosition: uint64(l.tracksPos - l.segDataStart)},
	}}
	if len(cues) > 0 {
		var c webm.Cues
		for _, q := range cues {
			c.CuePoint = append(c.CuePoint, webm.CuePoint{CueTime: q.time, CueTrackPositions: []webm.CueTrackPosition{{
				CueTrack: q.track, CueClusterPosition: q.pos}}})
		}
		var b bytes.Buffer
		if err := ebml.Marshal(&struct {
			Cues webm.Cues `ebml:"Cues"`
		}{c}, &b); err != nil {
			return fmt.Errorf("marshal Cues: %w", err)
		}
		seek.Seek = append(seek.Seek, webm.Seek{SeekID: idCues, SeekPosition: uint64(o.pos - l.segDataStart)})
		if err := o.write(b.Bytes()); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	if err := ebml.Marshal(&struct {
		SeekHead webm.SeekHead `ebml:"SeekHead"`
	}{seek}, &b); err != nil {
		return fmt.Errorf("marshal SeekHead: %w", err)
	}
	rest := l.seekLen - b.Len()
	if rest < 0 || rest == 1 {
		return fmt.Errorf("SeekHead of %d bytes does not fit the %d reserved", b.Len(), l.seekLen)
	}
	b.Write(voidElement(rest))
	if err := o.writeAt(b.Bytes(), l.seekPos); err != nil {
		return err
	}
	d := append([]byte(nil), durationHead...)
	d = binary.BigEndian.AppendUint64(d, math.Float64bits(float64(durMs)))
	if err := o.writeAt(d, l.durPos); err != nil {
		return err
	}
	var s [8]byte
	putSize8(s[:], uint64(o.pos-l.segDataStart))
	return o.writeAt(s[:], l.segSizePos)
}

// appendVint appends an EBML variable-size integer in the fewest bytes.
func appendVint(b []byte, v uint64) []byte {
	n := 1
	for n < 8 && v >= 1<<(7*uint(n))-1 {
		n++
	}
	for i := n - 1; i >= 0; i-- {
		c := byte(v >> (8 * uint(i)))
		if i == n-1 {
			c |= 0x80 >> uint(n-1)
		}
		b = append(b, c)
	}
	return b
}

// putSize8 writes v as an 8-byte EBML size.
func putSize8(b []byte, v uint64) {
	binary.BigEndian.PutUint64(b, v)
	b[0] = 0x01
}

// voidElement returns a Void element of exactly n >= 2 bytes.
func voidElement(n int) []byte {
	if n == 0 {
		return nil
	}
	b := make([]byte, n)
	b[0] = ebmlVoid
	if n-2 < 127 {
		b[1] = 0x80 | byte(n-2)
		return b
	}
	putSize8(b[1:9], uint64(n-9))
	return b
}
