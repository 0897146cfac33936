package container

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// RepairResult says what Repair did.
type RepairResult struct {
	// AlreadyFinal: the file was finalized (by Close or an earlier Repair)
	// and was left unchanged.
	AlreadyFinal bool
	// Truncated is the number of bytes cut from the end: a partial block,
	// page, frame or fragment, or a partial finalization.
	Truncated int64
	// Size is the file's size afterwards.
	Size int64
	// Duration is the media duration the file now declares (for an
	// already final file, the one found in it).
	Duration time.Duration
}

// repairPlan is what a format's scan of a file found.
type repairPlan struct {
	final    bool  // finalized already
	end      int64 // keep the bytes before end
	duration time.Duration
	finalize func(o *output) error
}

// Repair makes a file left by a killed writer as good as a finalized one:
// it cuts a partial trailing cluster, page, frame or fragment and writes
// what Close would (durations, cues, IVF length, Ogg EOS, mfra). A file
// that is already final is left unchanged. It handles files this package
// wrote (it relies on their layout: the reserved spaces in the header);
// a file without a complete header is not repairable (ErrNotRepairable).
func Repair(path string, f Format) (RepairResult, error) {
	if _, ok := allowed[f]; !ok {
		return RepairResult{}, fmt.Errorf("repair %s: container format %q: %w", path, string(f), ErrUnsupported)
	}
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return RepairResult{}, fmt.Errorf("repair %s: %w", path, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return RepairResult{}, fmt.Errorf("repair %s: %w", path, err)
	}
	r := &fileReader{f: fh, size: st.Size()}
	var plan repairPlan
	switch f {
	case WebM, MKV:
		plan, err = scanMatroska(r)
	case Ogg:
		plan, err = scanOgg(r)
	case IVF:
		plan, err = scanIVF(r)
	case MP4:
		plan, err = scanMP4(r)
	}
	if err != nil {
		return RepairResult{}, fmt.Errorf("repair %s as %s: %w", path, f, err)
	}
	res := RepairResult{Size: r.size, Duration: plan.duration}
	if plan.final && plan.end == r.size {
		res.AlreadyFinal = true
		return res, nil
	}
	if plan.end < r.size {
		if err := fh.Truncate(plan.end); err != nil {
			return RepairResult{}, fmt.Errorf("repair %s: truncate to %d: %w", path, plan.end, err)
		}
		res.Truncated = r.size - plan.end
	}
	if _, err := fh.Seek(plan.end, io.SeekStart); err != nil {
		return RepairResult{}, fmt.Errorf("repair %s: %w", path, err)
	}
	o := newOutput(fh)
	o.pos = plan.end
	if err := plan.finalize(o); err != nil {
		return RepairResult{}, fmt.Errorf("repair %s: finalize: %w", path, err)
	}
	if err := fh.Sync(); err != nil {
		return RepairResult{}, fmt.Errorf("repair %s: sync: %w", path, err)
	}
	res.Size = o.pos
	return res, nil
}

// fileReader reads small pieces of a file through a 64 KiB window.
type fileReader struct {
	f      *os.File
	size   int64
	win    []byte
	winOff int64
}

// at returns n bytes at off, or false when the file ends before.
func (r *fileReader) at(off int64, n int) ([]byte, bool) {
	if off < 0 || off+int64(n) > r.size {
		return nil, false
	}
	if off >= r.winOff && off+int64(n) <= r.winOff+int64(len(r.win)) {
		return r.win[off-r.winOff : off-r.winOff+int64(n)], true
	}
	size := max(n, 64<<10)
	size = int(min(int64(size), r.size-off))
	if cap(r.win) < size {
		r.win = make([]byte, size)
	}
	r.win = r.win[:size]
	if _, err := r.f.ReadAt(r.win, off); err != nil && !errors.Is(err, io.EOF) {
		r.win = r.win[:0]
		return nil, false
	}
	r.winOff = off
	return r.win[:n], true
}

// ---- Matroska ----

// ebmlElem reads an element header at off: its ID (with marker bits), the
// data size (-1 unknown), the header length and the size field length.
func (r *fileReader) ebmlElem(off int64) (id uint32, size int64, hdr, sizeLen int, ok bool) {
	b, ok := r.at(off, 1)
	if !ok {
		return
	}
	idLen := 1
	for idLen <= 4 && b[0]&(0x80>>uint(idLen-1)) == 0 {
		idLen++
	}
	if idLen > 4 {
		return 0, 0, 0, 0, false
	}
	if b, ok = r.at(off, idLen); !ok {
		return
	}
	for _, c := range b {
		id = id<<8 | uint32(c)
	}
	s, ok := r.at(off+int64(idLen), 1)
	if !ok {
		return
	}
	sizeLen = 1
	for sizeLen <= 8 && s[0]&(0x80>>uint(sizeLen-1)) == 0 {
		sizeLen++
	}
	if sizeLen > 8 {
		return 0, 0, 0, 0, false
	}
	if s, ok = r.at(off+int64(idLen), sizeLen); !ok {
		return
	}
	v := uint64(s[0] & (0xff >> uint(sizeLen)))
	allOnes := v == uint64(0xff>>uint(sizeLen))
	for _, c := range s[1:] {
		v = v<<8 | uint64(c)
		allOnes = allOnes && c == 0xff
	}
	size = int64(v)
	if allOnes {
		size = -1
	}
	return id, size, idLen + sizeLen, sizeLen, true
}

const (
	eidEBML        = 0x1a45dfa3
	eidSegment     = 0x18538067
	eidSeekHead    = 0x114d9b74
	eidInfo        = 0x1549a966
	eidTracks      = 0x1654ae6b
	eidCluster     = 0x1f43b675
	eidCues        = 0x1c53bb6b
	eidVoid        = 0xec
	eidDuration    = 0x4489
	eidTrackEntry  = 0xae
	eidTrackNumber = 0xd7
	eidTrackType   = 0x83
	eidBlock       = 0xa1
)

func (r *fileReader) uintAt(off int64, n int) uint64 {
	b, ok := r.at(off, n)
	if !ok {
		return 0
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

func scanMatroska(r *fileReader) (repairPlan, error) {
	id, size, hdr, _, ok := r.ebmlElem(0)
	if !ok || id != eidEBML || size < 0 {
		return repairPlan{}, fmt.Errorf("no EBML header: %w", ErrNotRepairable)
	}
	segPos := int64(hdr) + size
	id, segSize, hdr, sizeLen, ok := r.ebmlElem(segPos)
	if !ok || id != eidSegment || sizeLen != 8 {
		return repairPlan{}, fmt.Errorf("no Segment with an 8-byte size after the EBML header: %w", ErrNotRepairable)
	}
	l := mkvLayout{segSizePos: segPos + 4, segDataStart: segPos + int64(hdr), seekPos: -1, durPos: -1, infoPos: -1, tracksPos: -1}
	tracks := map[uint64]*mkvTrack{}
	hasVideo := false
	var cues []mkvCue
	lastCluster := int64(-1)
	end := l.segDataStart
	p := l.segDataStart
scan:
	for p < r.size {
		id, size, hdr, sizeLen, ok := r.ebmlElem(p)
		if !ok {
			break
		}
		total := int64(hdr) + size
		if id != eidCluster && (size < 0 || p+total > r.size) {
			break
		}
		switch id {
		case eidVoid, eidSeekHead:
			if l.infoPos >= 0 {
				break scan
			}
			if l.seekPos < 0 {
				l.seekPos = p
			}
			l.seekLen = int(p + total - l.seekPos)
		case eidInfo:
			l.infoPos = p
			for q := p + int64(hdr); q < p+total; {
				cid, csize, chdr, _, ok := r.ebmlElem(q)
				if !ok || csize < 0 {
					break
				}
				if (cid == eidVoid || cid == eidDuration) && int64(chdr)+csize == durationVoidLen {
					l.durPos = q
				}
				q += int64(chdr) + csize
			}
		case eidTracks:
			l.tracksPos = p
			for q := p + int64(hdr); q < p+total; {
				cid, csize, chdr, _, ok := r.ebmlElem(q)
				if !ok || csize < 0 {
					break
				}
				if cid == eidTrackEntry {
					var num, typ uint64
					for e := q + int64(chdr); e < q+int64(chdr)+csize; {
						eid, esize, ehdr, _, ok := r.ebmlElem(e)
						if !ok || esize < 0 || esize > 8 {
							if ok && esize >= 0 {
								e += int64(ehdr) + esize
								continue
							}
							break
						}
						switch eid {
						case eidTrackNumber:
							num = r.uintAt(e+int64(ehdr), int(esize))
						case eidTrackType:
							typ = r.uintAt(e+int64(ehdr), int(esize))
						}
						e += int64(ehdr) + esize
					}
					tracks[num] = &mkvTrack{number: byte(num), video: typ == 1, last: -1, prev: -1}
					hasVideo = hasVideo || typ == 1
				}
				q += int64(chdr) + csize
			}
		case eidCluster:
			if l.tracksPos < 0 {
				break scan
			}
			c := scanCluster(r, p, hdr, size, tracks)
			if c.keep <= p {
				break scan // nothing complete in it
			}
			if c.firstOK && c.firstKey {
				if t := tracks[c.firstTrack]; t != nil && (t.video || !hasVideo) {
					cues = append(cues, mkvCue{time: c.firstTime, track: c.firstTrack, pos: uint64(p - l.segDataStart)})
				}
			}
			if sizeLen == 8 {
				lastCluster = p
			}
			end = c.keep
			if !c.complete {
				break scan
			}
			p = c.keep
			continue
		default: // Cues of an interrupted finalization, or anything else
			break scan
		}
		p += total
		end = p
	}
	if l.seekPos < 0 || l.infoPos < 0 || l.tracksPos < 0 || l.durPos < 0 || end < l.tracksPos {
		return repairPlan{}, fmt.Errorf("header incomplete or not written by this package: %w", ErrNotRepairable)
	}
	var durMs int64
	for _, t := range tracks {
		durMs = max(durMs, t.end())
	}
	plan := repairPlan{end: end, duration: time.Duration(durMs) * time.Millisecond}
	if segSize >= 0 && l.segDataStart+segSize == r.size {
		plan.final, plan.end = true, r.size
		if d, ok := r.at(l.durPos, durationVoidLen); ok && d[0] == 0x44 {
			plan.duration = time.Duration(float64frombits(d[3:]) * float64(time.Millisecond))
		}
		return plan, nil
	}
	plan.finalize = func(o *output) error { return finalizeMatroska(o, &l, lastCluster, cues, durMs) }
	return plan, nil
}

type clusterScan struct {
	keep       int64 // keep the bytes before this
	complete   bool  // the cluster ends cleanly at keep
	firstOK    bool
	firstKey   bool
	firstTrack uint64
	firstTime  uint64
}

// scanCluster walks a Cluster's children: its time code and blocks. It
// stops at the end of a sized cluster, at the next top-level element of an
// unknown-size one, or at a partial element.
func scanCluster(r *fileReader, pos int64, hdr int, size int64, tracks map[uint64]*mkvTrack) clusterScan {
	var c clusterScan
	limit := r.size
	if size >= 0 {
		limit = min(pos+int64(hdr)+size, r.size)
	}
	tc := int64(0)
	lastGood := int64(-1)
	q := pos + int64(hdr)
	block := func(at, n int64) {
		b, ok := r.at(at, 4)
		if !ok || n < 4 || b[0]&0x80 == 0 { // track numbers > 127 are not written here
			return
		}
		num := uint64(b[0] & 0x7f)
		t := int64(tc) + int64(int16(binary.BigEndian.Uint16(b[1:3])))
		if !c.firstOK {
			c.firstOK, c.firstKey, c.firstTrack, c.firstTime = true, b[3]&0x80 != 0, num, uint64(max(t, 0))
		}
		if tr := tracks[num]; tr != nil {
			tr.add(t)
		}
	}
	for q < limit {
		id, csize, chdr, _, ok := r.ebmlElem(q)
		if !ok {
			break
		}
		if size < 0 && (id == eidCluster || id == eidCues || id == eidSegment || id == eidSeekHead || id == eidInfo || id == eidTracks) {
			c.complete = true
			break
		}
		if csize < 0 || q+int64(chdr)+csize > limit {
			break
		}
		data := q + int64(chdr)
		switch id {
		case ebmlTimecode:
			tc = int64(r.uintAt(data, int(csize)))
		case ebmlSimpleBlock:
			block(data, csize)
			lastGood = data + csize
		case ebmlBlockGroup:
			for e := data; e < data+csize; {
				eid, esize, ehdr, _, ok := r.ebmlElem(e)
				if !ok || esize < 0 {
					break
				}
				if eid == eidBlock {
					block(e+int64(ehdr), esize)
				}
				e += int64(ehdr) + esize
			}
			lastGood = data + csize
		}
		q = data + csize
	}
	if q == r.size && lastGood == q {
		c.complete = true
	}
	if size >= 0 && q == pos+int64(hdr)+size && q <= r.size {
		c.complete = true
	}
	if c.complete {
		c.keep = q
		return c
	}
	c.keep = lastGood
	if lastGood < 0 {
		c.keep = pos
	}
	return c
}

func float64frombits(b []byte) float64 {
	var f float64
	_ = binary.Read(bytes.NewReader(b), binary.BigEndian, &f)
	return f
}

// ---- Ogg ----

func scanOgg(r *fileReader) (repairPlan, error) {
	type stream struct {
		lastPos int64
		eos     bool
		granule int64
	}
	streams := map[uint32]*stream{}
	var order []uint32
	p := int64(0)
	for {
		h, ok := r.at(p, oggHeaderLen)
		if !ok || string(h[:4]) != "OggS" {
			break
		}
		nsegs := int(h[26])
		flags := h[5]
		granule := int64(binary.LittleEndian.Uint64(h[6:]))
		serial := binary.LittleEndian.Uint32(h[14:])
		crc := binary.LittleEndian.Uint32(h[22:])
		segs, ok := r.at(p+oggHeaderLen, nsegs)
		if !ok {
			break
		}
		n := oggHeaderLen + nsegs
		for _, s := range segs {
			n += int(s)
		}
		page, ok := r.at(p, n)
		if !ok || oggCRC(page) != crc {
			break
		}
		s := streams[serial]
		if s == nil {
			s = &stream{}
			streams[serial] = s
			order = append(order, serial)
		}
		s.lastPos, s.eos = p, flags&oggFlagEOS != 0
		if granule >= 0 {
			s.granule = granule
		}
		p += int64(n)
	}
	if len(streams) == 0 {
		return repairPlan{}, fmt.Errorf("no Ogg page at the start: %w", ErrNotRepairable)
	}
	plan := repairPlan{end: p, final: true}
	var last []int64
	for _, serial := range order {
		s := streams[serial]
		plan.duration = max(plan.duration, time.Duration(s.granule-opusPreSkip)*time.Second/opusSampleRate)
		if !s.eos {
			plan.final = false
			last = append(last, s.lastPos)
		}
	}
	plan.finalize = func(o *output) error {
		for _, pos := range last {
			h, _ := r.at(pos, oggHeaderLen)
			n := oggHeaderLen + int(h[26])
			segs, _ := r.at(pos+oggHeaderLen, int(h[26]))
			for _, s := range segs {
				n += int(s)
			}
			page, ok := r.at(pos, n)
			if !ok {
				return fmt.Errorf("reread Ogg page at %d", pos)
			}
			if err := setOggEOS(o, append([]byte(nil), page...), pos); err != nil {
				return err
			}
		}
		return nil
	}
	return plan, nil
}

// ---- IVF ----

func scanIVF(r *fileReader) (repairPlan, error) {
	h, ok := r.at(0, ivfHeaderLen)
	if !ok || string(h[:4]) != "DKIF" {
		return repairPlan{}, fmt.Errorf("no IVF header: %w", ErrNotRepairable)
	}
	written := int64(binary.LittleEndian.Uint32(h[24:]))
	hlen := int64(binary.LittleEndian.Uint16(h[6:]))
	last, prev := int64(-1), int64(-1)
	p := max(hlen, ivfHeaderLen)
	for {
		fh, ok := r.at(p, ivfFrameHeaderLen)
		if !ok {
			break
		}
		size := int64(binary.LittleEndian.Uint32(fh))
		t := int64(binary.LittleEndian.Uint64(fh[4:]))
		if p+ivfFrameHeaderLen+size > r.size {
			break
		}
		if t != last {
			prev, last = last, t
		}
		p += ivfFrameHeaderLen + size
	}
	end := ivfEnd(last, prev)
	plan := repairPlan{end: p, final: written != 0 && written == min(end, 1<<32-1), duration: ivfDuration(end)}
	plan.finalize = func(o *output) error { return patchIVFLength(o, end) }
	return plan, nil
}

// ---- MP4 ----

// box reads a box header at off: type, total size and header length.
func (r *fileReader) box(off int64) (typ string, size int64, hdr int, ok bool) {
	b, ok := r.at(off, 8)
	if !ok {
		return
	}
	size, typ, hdr = int64(binary.BigEndian.Uint32(b)), string(b[4:8]), 8
	switch size {
	case 0:
		size = r.size - off
	case 1:
		l, ok2 := r.at(off+8, 8)
		if !ok2 {
			return "", 0, 0, false
		}
		size, hdr = int64(binary.BigEndian.Uint64(l)), 16
	}
	if size < int64(hdr) {
		return "", 0, 0, false
	}
	return typ, size, hdr, true
}

func scanMP4(r *fileReader) (repairPlan, error) {
	l := mp4Layout{mvhdPos: -1, mehdPos: -1}
	type track struct {
		timescale uint32
		end       int64
		tfra      []mp4Tfra
	}
	tracks := map[uint32]*track{}
	var ids []uint32
	p := int64(0)
	final := false
	// children calls fn for each child box of the box at [start, end).
	children := func(start, end int64, fn func(typ string, pos, size int64, hdr int)) {
		for q := start; q < end; {
			typ, size, hdr, ok := r.box(q)
			if !ok || q+size > end {
				return
			}
			fn(typ, q, size, hdr)
			q += size
		}
	}
	for p < r.size {
		typ, size, hdr, ok := r.box(p)
		if !ok || p+size > r.size {
			break
		}
		next := p + size
		switch typ {
		case "moov":
			children(p+int64(hdr), next, func(typ string, pos, size int64, hdr int) {
				switch typ {
				case "mvhd":
					l.mvhdPos = pos
				case "mvex":
					children(pos+int64(hdr), pos+size, func(typ string, pos, size int64, _ int) {
						if (typ == "free" || typ == "mehd") && size == mp4FreeMehd {
							l.mehdPos = pos
						}
					})
				case "trak":
					var id, scale uint32
					var walk func(typ string, pos, size int64, hdr int)
					walk = func(typ string, pos, size int64, hdr int) {
						switch typ {
						case "tkhd":
							id = uint32(r.uintAt(pos+20, 4))
						case "mdhd":
							scale = uint32(r.uintAt(pos+20, 4))
						case "mdia":
							children(pos+int64(hdr), pos+size, walk)
						}
					}
					children(pos+int64(hdr), pos+size, walk)
					if tracks[id] == nil {
						ids = append(ids, id)
					}
					tracks[id] = &track{timescale: scale}
				}
			})
		case "moof":
			// A fragment counts only with its whole mdat.
			mtyp, msize, _, ok := r.box(next)
			if !ok || mtyp != "mdat" || next+msize > r.size {
				break
			}
			traf := uint8(0)
			children(p+int64(hdr), next, func(typ string, pos, size int64, hdr int) {
				if typ != "traf" {
					return
				}
				traf++
				var t *track
				var base int64
				children(pos+int64(hdr), pos+size, func(typ string, pos, size int64, _ int) {
					switch typ {
					case "tfhd":
						t = tracks[uint32(r.uintAt(pos+12, 4))]
					case "tfdt":
						if r.uintAt(pos+8, 1) == 1 {
							base = int64(r.uintAt(pos+12, 8))
						} else {
							base = int64(r.uintAt(pos+12, 4))
						}
					case "trun":
						if t == nil {
							return
						}
						flags := r.uintAt(pos+9, 3)
						n := int64(r.uintAt(pos+12, 4))
						q := pos + 16
						if flags&0x1 != 0 {
							q += 4
						}
						firstFlags := uint64(0)
						if flags&0x4 != 0 {
							firstFlags = r.uintAt(q, 4)
							q += 4
						}
						end := base
						for i := int64(0); i < n && q < pos+size; i++ {
							sflags := firstFlags
							if flags&0x100 != 0 {
								end += int64(r.uintAt(q, 4))
								q += 4
							}
							if flags&0x200 != 0 {
								q += 4
							}
							if flags&0x400 != 0 {
								sflags = r.uintAt(q, 4)
								q += 4
							}
							if flags&0x800 != 0 {
								q += 4
							}
							if i == 0 && sflags&0x00010000 == 0 {
								t.tfra = append(t.tfra, mp4Tfra{time: uint64(base), moof: uint64(p), traf: traf})
							}
						}
						t.end = end
					}
				})
			})
			next += msize
		case "mfra":
			final = next == r.size
		}
		if typ == "moof" && next == p+size {
			break // incomplete fragment
		}
		p = next
	}
	if l.mvhdPos < 0 || l.mehdPos < 0 || len(tracks) == 0 {
		return repairPlan{}, fmt.Errorf("no moov written by this package: %w", ErrNotRepairable)
	}
	plan := repairPlan{end: p, final: final}
	fin := make([]mp4TrackEnd, 0, len(ids))
	for _, id := range ids {
		t := tracks[id]
		if t.timescale > 0 {
			plan.duration = max(plan.duration, time.Duration(t.end)*time.Second/time.Duration(t.timescale))
		}
		fin = append(fin, mp4TrackEnd{id: id, timescale: t.timescale, end: t.end, tfra: t.tfra})
	}
	plan.finalize = func(o *output) error { return finalizeMP4(o, l, fin) }
	return plan, nil
}
