package file

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
)

// H.264 Annex-B byte stream: NAL units separated by start codes
// (00 00 01, or 00 00 00 01), no container, no timestamps.
//
// NAL units are split here rather than with pion's h264reader, which hands
// out one NAL unit per call with a fresh allocation each time and leaves
// grouping them into access units (a picture and its parameter sets) to
// the caller. This reader reuses one read buffer and one access unit
// buffer, groups NAL units into access units, and times access unit n at
// n * 90000 / fps.
const (
	annexbChunk   = 64 << 10
	annexbMaxNAL  = 32 << 20 // larger than any real coded picture
	annexbPrescan = 16 << 20 // bytes Open reads looking for the first SPS and PPS
)

var startCode = []byte{0, 0, 1}

// nalReader splits an Annex-B stream into NAL units.
type nalReader struct {
	r        io.Reader
	buf      []byte
	pos, end int   // unread data is buf[pos:end]; after the first start code pos is just past one
	base     int64 // file offset of buf[0]
	eof      bool
	started  bool

	cur    []byte // the last NAL unit returned
	curOff int64
	unread bool
}

func (n *nalReader) reset(r io.Reader) {
	if n.buf == nil {
		n.buf = make([]byte, 4*annexbChunk)
	}
	n.r, n.pos, n.end, n.base, n.eof, n.started = r, 0, 0, 0, false, false
	n.cur, n.curOff, n.unread = nil, 0, false
}

// fill moves the unread data to the front of the buffer, grows it if it
// is full, and reads more.
func (n *nalReader) fill() error {
	if n.pos > 0 {
		copy(n.buf, n.buf[n.pos:n.end])
		n.base += int64(n.pos)
		n.end -= n.pos
		n.pos = 0
	}
	if n.end == len(n.buf) {
		if n.end >= annexbMaxNAL {
			return unsupported(n.base, "H.264 NAL unit", "larger than %d bytes", annexbMaxNAL)
		}
		nb := make([]byte, min(2*len(n.buf), annexbMaxNAL+annexbChunk))
		copy(nb, n.buf[:n.end])
		n.buf = nb
	}
	m, err := n.r.Read(n.buf[n.end:min(len(n.buf), n.end+annexbChunk)])
	n.end += m
	if err == io.EOF {
		n.eof = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("offset %d: read H.264 stream: %w", n.base+int64(n.end), err)
	}
	return nil
}

// unreadLast makes the next call to next return the same NAL unit again.
func (n *nalReader) unreadLast() { n.unread = true }

// next returns the next NAL unit (without start code and trailing zero
// bytes) and its file offset, or io.EOF. The slice is valid until the
// next call.
func (n *nalReader) next() ([]byte, int64, error) {
	if n.unread {
		n.unread = false
		return n.cur, n.curOff, nil
	}
	if !n.started {
		zeros := 0
		for {
			if n.pos == n.end {
				if n.eof {
					return nil, 0, io.EOF // empty, or only zero bytes
				}
				if err := n.fill(); err != nil {
					return nil, 0, err
				}
				continue
			}
			c := n.buf[n.pos]
			if c == 0 {
				zeros++
				n.pos++
				continue
			}
			if c == 1 && zeros >= 2 {
				n.pos++
				break
			}
			return nil, 0, malformed(n.base+int64(n.pos), "H.264 Annex-B stream", "byte %#02x where a start code 00 00 01 was expected", c)
		}
		n.started = true
	}
	for {
		if n.pos == n.end && n.eof {
			return nil, 0, io.EOF
		}
		from := n.pos
		for {
			if i := bytes.Index(n.buf[from:n.end], startCode); i >= 0 {
				i += from
				nal, off := n.buf[n.pos:i], n.base+int64(n.pos)
				n.pos = i + len(startCode)
				if nal = trimZeros(nal); len(nal) > 0 {
					n.cur, n.curOff = nal, off
					return nal, off, nil
				}
				break // nothing between two start codes
			}
			if n.eof {
				nal, off := n.buf[n.pos:n.end], n.base+int64(n.pos)
				n.pos = n.end
				if nal = trimZeros(nal); len(nal) > 0 {
					n.cur, n.curOff = nal, off
					return nal, off, nil
				}
				return nil, 0, io.EOF
			}
			// Search again from where a start code could begin.
			rel := max(0, n.end-2-n.pos)
			if err := n.fill(); err != nil {
				return nil, 0, err
			}
			from = n.pos + rel
		}
	}
}

// trimZeros drops trailing zero bytes: the first byte of a 4-byte start
// code and trailing_zero_8bits. A NAL unit never ends in a zero byte.
func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// annexbReader groups NAL units into access units and makes sure every
// IDR access unit carries the SPS and PPS it uses.
type annexbReader struct {
	r    io.ReadSeeker
	nr   nalReader
	rate FrameRate

	sps    [32][]byte  // latest SPS per id
	pps    [256][]byte // latest PPS per id
	ppsSPS [256]uint8  // the SPS id each cached PPS refers to
	first  spsInfo     // the first SPS in the file

	au       []byte // access unit being built: NAL units with 4-byte start codes
	out      []byte // the access unit with inserted parameter sets
	hasVCL   bool
	firstVCL int // offset in au of the first VCL NAL unit's start code
	firstPPS int // offset in au of the first PPS's start code, -1 if none
	spsIn    [32]bool
	ppsIn    [256]bool
	idrPPS   []uint32 // PPS ids the IDR slices of the access unit use

	n        int64        // access units returned since rewind
	inserted atomic.Int64 // IDR access units that got cached parameter sets (read by Stats)
}

// newAnnexBReader scans the start of the stream for the first SPS and PPS
// (which also gives the profile and, if the SPS has VUI timing info, the
// frame rate) and seeds the parameter set cache with them, so that even a
// first IDR without parameter sets gets them.
func newAnnexBReader(r io.ReadSeeker, fps FrameRate) (*annexbReader, error) {
	d := &annexbReader{r: r, rate: fps}
	d.nr.reset(r)
	haveSPS, havePPS := false, false
	for !(haveSPS && havePPS) {
		nal, off, err := d.nr.next()
		if err == io.EOF || (err == nil && off > annexbPrescan) {
			return nil, unsupported(0, "H.264 Annex-B stream", "no SPS and PPS in the first %d bytes: not decodable",
				d.nr.base+int64(d.nr.pos))
		}
		if err != nil {
			return nil, err
		}
		switch nal[0] & 0x1f {
		case nalSPS:
			info, err := d.cacheSPS(nal, off, !haveSPS)
			if err != nil {
				return nil, err
			}
			if !haveSPS {
				d.first, haveSPS = info, true
			}
		case nalPPS:
			if _, err := d.cachePPS(nal, off); err != nil {
				return nil, err
			}
			havePPS = true
		}
	}
	if d.rate.IsZero() {
		d.rate = d.first.fps
	}
	if d.rate.IsZero() {
		d.rate = FrameRate{Num: DefaultFPS, Den: 1}
	}
	if err := d.rewind(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *annexbReader) cacheSPS(nal []byte, off int64, vui bool) (spsInfo, error) {
	info, err := parseSPS(nal, vui)
	if err != nil {
		return info, malformed(off, "H.264 SPS", "%v", err)
	}
	d.sps[info.id] = append(d.sps[info.id][:0], nal...)
	return info, nil
}

func (d *annexbReader) cachePPS(nal []byte, off int64) (uint32, error) {
	pps, sps, err := parsePPSIDs(nal)
	if err != nil {
		return 0, malformed(off, "H.264 PPS", "%v", err)
	}
	d.pps[pps] = append(d.pps[pps][:0], nal...)
	d.ppsSPS[pps] = uint8(sps)
	return pps, nil
}

func (d *annexbReader) rewind() error {
	if _, err := d.r.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("seek to start of H.264 stream: %w", err)
	}
	d.nr.reset(d.r)
	d.n = 0
	return nil
}

// ts is the RTP timestamp offset of access unit n.
func (d *annexbReader) ts(n int64) int64 {
	t, _ := mulDiv(uint64(n), videoClockRate*uint64(d.rate.Den), uint64(d.rate.Num))
	return t
}

func (d *annexbReader) end() int64 { return d.ts(d.n) }

// startsAU reports whether a NAL unit of type t begins a new access unit
// after the NAL units gathered so far (H.264 7.4.1.2.3, simplified to the
// first_mb_in_slice test for the first VCL NAL unit of a picture).
func (d *annexbReader) startsAU(t byte, sh sliceHeader) bool {
	switch {
	case t == nalAUD:
		return true
	case !d.hasVCL:
		return false
	case t == nalSEI || t == nalSPS || t == nalPPS || (t >= nalPrefix && t <= nalReserved):
		return true
	case t >= nalSlice && t <= nalIDR:
		return sh.firstMB == 0
	}
	return false
}

func (d *annexbReader) next() (frame, error) {
	for {
		f, ok, err := d.accessUnit()
		if err != nil || ok {
			return f, err
		}
		// An access unit without a coded picture (a lone AUD, parameter
		// sets at the very end): nothing a receiver can show; dropped.
	}
}

func (d *annexbReader) accessUnit() (frame, bool, error) {
	d.au, d.hasVCL, d.firstVCL, d.firstPPS, d.idrPPS = d.au[:0], false, 0, -1, d.idrPPS[:0]
	clear(d.spsIn[:])
	clear(d.ppsIn[:])
	var auOff int64
	for {
		nal, off, err := d.nr.next()
		if err == io.EOF {
			if len(d.au) == 0 {
				return frame{}, false, io.EOF
			}
			break
		}
		if err != nil {
			return frame{}, false, err
		}
		if nal[0]&0x80 != 0 {
			return frame{}, false, malformed(off, "H.264 NAL unit", "forbidden_zero_bit set")
		}
		t := nal[0] & 0x1f
		if t == 0 || t >= 24 {
			return frame{}, false, unsupported(off, "H.264 NAL unit", "type %d: unspecified in H.264, and RTP (RFC 6184) uses it for aggregation", t)
		}
		vcl := t >= nalSlice && t <= nalIDR
		var sh sliceHeader
		if vcl {
			if sh, err = parseSliceHeader(nal); err != nil {
				return frame{}, false, malformed(off, "H.264 slice header", "%v", err)
			}
		}
		if len(d.au) > 0 && d.startsAU(t, sh) {
			d.nr.unreadLast()
			break
		}
		if len(d.au) == 0 {
			auOff = off
		}
		switch t {
		case nalSPS:
			info, err := d.cacheSPS(nal, off, false)
			if err != nil {
				return frame{}, false, err
			}
			d.spsIn[info.id] = true
		case nalPPS:
			id, err := d.cachePPS(nal, off)
			if err != nil {
				return frame{}, false, err
			}
			d.ppsIn[id] = true
			if d.firstPPS < 0 && !d.hasVCL {
				d.firstPPS = len(d.au)
			}
		case nalIDR:
			if !containsU32(d.idrPPS, sh.ppsID) {
				d.idrPPS = append(d.idrPPS, sh.ppsID)
			}
		}
		if vcl && !d.hasVCL {
			d.hasVCL, d.firstVCL = true, len(d.au)
		}
		d.au = append(d.au, 0, 0, 0, 1)
		d.au = append(d.au, nal...)
	}
	if !d.hasVCL {
		return frame{}, false, nil
	}
	data := d.withParameterSets()
	ts := d.ts(d.n)
	d.n++
	return frame{data: data, ts: ts, dur: d.ts(d.n) - ts, off: auOff}, true, nil
}

// withParameterSets returns the access unit, with the cached SPS and PPS
// inserted if it is an IDR access unit that lacks the ones its slices use
// (a decoder joining there could not start). They go before the access
// unit's own PPS if it has one (a PPS is parsed against its SPS), else
// before its first slice.
func (d *annexbReader) withParameterSets() []byte {
	var insert [8][]byte
	ins := insert[:0]
	for _, ppsID := range d.idrPPS {
		spsID := d.ppsSPS[ppsID]
		if d.pps[ppsID] == nil {
			continue // never seen: nothing to insert
		}
		if !d.spsIn[spsID] && d.sps[spsID] != nil && len(ins) < cap(ins) {
			ins = append(ins, d.sps[spsID])
			d.spsIn[spsID] = true
		}
		if !d.ppsIn[ppsID] && len(ins) < cap(ins) {
			ins = append(ins, d.pps[ppsID])
			d.ppsIn[ppsID] = true
		}
	}
	if len(ins) == 0 {
		return d.au
	}
	d.inserted.Add(1)
	at := d.firstVCL
	if d.firstPPS >= 0 {
		at = d.firstPPS
	}
	d.out = append(d.out[:0], d.au[:at]...)
	for _, nal := range ins {
		d.out = append(d.out, 0, 0, 0, 1)
		d.out = append(d.out, nal...)
	}
	d.out = append(d.out, d.au[at:]...)
	return d.out
}

func containsU32(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
