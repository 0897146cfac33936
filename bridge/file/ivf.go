package file

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pion/rtp/codecs/av1/obu"
)

// IVF layout (https://wiki.multimedia.cx/index.php/IVF): a 32-byte file
// header ("DKIF", version, header size, FourCC, width, height, timebase
// denominator and numerator, frame count), then frames, each a 12-byte
// header (payload size, 64-bit PTS in the timebase) and the payload.
//
// This is a small reader of our own rather than pion's ivfreader because
// ivfreader allocates a new slice for every frame, sized by the untrusted
// 32-bit size field: a corrupt header makes it allocate up to 4 GiB before
// noticing the file is short. Here the size is checked against what is
// left of the file first, and one buffer is reused for every frame.
const (
	ivfFileHeaderSize  = 32
	ivfFrameHeaderSize = 12
	ivfMaxFrame        = 64 << 20 // no VP8/VP9/AV1 frame is anywhere near this
	// ivfMaxGap bounds the PTS step between frames. A bigger step is taken
	// for corruption rather than a pause: followed, it would silence the
	// track for as long as the corrupt PTS says (hours, years).
	ivfMaxGap      = 60 * videoClockRate
	videoClockRate = 90000
)

// IVF FourCCs.
const (
	fourccVP8 = "VP80"
	fourccVP9 = "VP90"
	fourccAV1 = "AV01"
)

type ivfReader struct {
	r         io.ReadSeeker
	br        *bufio.Reader
	size      int64 // file size
	dataStart int64 // offset of the first frame header
	off       int64 // offset of the next frame header

	fourcc        string
	width, height uint16
	tbNum, tbDen  uint64 // a PTS unit is tbNum/tbDen seconds

	buf [ivfFrameHeaderSize]byte
	fb  []byte // reused frame buffer

	frames  int
	pts0    uint64 // PTS of the first frame: the file's time 0
	lastTS  int64
	lastDur int64 // duration of the last frame: the last positive PTS step
}

// newIVFReader reads and checks the file header of an IVF file of the
// given size.
func newIVFReader(r io.ReadSeeker, size int64) (*ivfReader, error) {
	d := &ivfReader{r: r, br: bufio.NewReaderSize(r, 64<<10), size: size}
	var h [ivfFileHeaderSize]byte
	if size < ivfFileHeaderSize {
		return nil, truncated(0, "IVF file header", "want %d bytes, file has %d", ivfFileHeaderSize, size)
	}
	if _, err := io.ReadFull(d.br, h[:]); err != nil {
		return nil, readError(0, "IVF file header", err)
	}
	if string(h[0:4]) != "DKIF" {
		return nil, malformed(0, "IVF file header", "signature %q, want \"DKIF\"", h[0:4])
	}
	if v := binary.LittleEndian.Uint16(h[4:6]); v != 0 {
		return nil, unsupported(4, "IVF file header", "version %d, want 0", v)
	}
	hs := int64(binary.LittleEndian.Uint16(h[6:8]))
	if hs < ivfFileHeaderSize {
		return nil, malformed(6, "IVF file header", "header size %d, want at least %d", hs, ivfFileHeaderSize)
	}
	if hs > size {
		return nil, truncated(6, "IVF file header", "header size %d, file has %d bytes", hs, size)
	}
	d.fourcc = string(h[8:12])
	switch d.fourcc {
	case fourccVP8, fourccVP9, fourccAV1:
	default:
		return nil, unsupported(8, "IVF file header", "codec FourCC %q, want VP80, VP90 or AV01", h[8:12])
	}
	d.width = binary.LittleEndian.Uint16(h[12:14])
	d.height = binary.LittleEndian.Uint16(h[14:16])
	d.tbDen = uint64(binary.LittleEndian.Uint32(h[16:20]))
	d.tbNum = uint64(binary.LittleEndian.Uint32(h[20:24]))
	if d.tbNum == 0 || d.tbDen == 0 {
		return nil, malformed(16, "IVF file header", "timebase %d/%d", d.tbNum, d.tbDen)
	}
	d.dataStart = hs
	if err := d.rewind(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *ivfReader) rewind() error {
	if _, err := d.r.Seek(d.dataStart, io.SeekStart); err != nil {
		return fmt.Errorf("seek to first IVF frame: %w", err)
	}
	d.br.Reset(d.r)
	d.off = d.dataStart
	d.frames, d.pts0, d.lastTS, d.lastDur = 0, 0, 0, 0
	return nil
}

// tick is one timebase unit in 90 kHz units, at least 1.
func (d *ivfReader) tick() int64 {
	t, ok := mulDiv(d.tbNum, videoClockRate, d.tbDen)
	if !ok || t < 1 {
		return 1
	}
	return t
}

func (d *ivfReader) next() (frame, error) {
	const what = "IVF frame"
	off := d.off
	left := d.size - off
	if left == 0 {
		return frame{}, io.EOF
	}
	if left < ivfFrameHeaderSize {
		return frame{}, truncated(off, what+" header", "want %d bytes, file has %d left", ivfFrameHeaderSize, left)
	}
	if _, err := io.ReadFull(d.br, d.buf[:]); err != nil {
		return frame{}, readError(off, what+" header", err)
	}
	n := int64(binary.LittleEndian.Uint32(d.buf[0:4]))
	pts := binary.LittleEndian.Uint64(d.buf[4:12])
	if n > left-ivfFrameHeaderSize {
		return frame{}, truncated(off, what, "header says %d bytes, file has %d left", n, left-ivfFrameHeaderSize)
	}
	if n > ivfMaxFrame {
		return frame{}, unsupported(off, what, "%d bytes, limit %d", n, ivfMaxFrame)
	}
	if int64(cap(d.fb)) < n {
		d.fb = make([]byte, n, n+n/4)
	}
	d.fb = d.fb[:n]
	if _, err := io.ReadFull(d.br, d.fb); err != nil {
		return frame{}, readError(off+ivfFrameHeaderSize, what, err)
	}
	d.off = off + ivfFrameHeaderSize + n

	var ts int64
	if d.frames == 0 {
		d.pts0 = pts
	} else {
		if pts < d.pts0 {
			return frame{}, malformed(off+4, what+" header", "PTS %d before the first frame's %d", pts, d.pts0)
		}
		var ok bool
		if ts, ok = mulDiv(pts-d.pts0, d.tbNum*videoClockRate, d.tbDen); !ok {
			return frame{}, malformed(off+4, what+" header", "PTS %d out of range", pts)
		}
		if ts < d.lastTS {
			return frame{}, malformed(off+4, what+" header", "PTS %d goes backwards", pts)
		}
		step := ts - d.lastTS
		if step > ivfMaxGap {
			return frame{}, malformed(off+4, what+" header", "PTS %d is %.1f s after the previous frame's (limit %d s)",
				pts, float64(step)/videoClockRate, ivfMaxGap/videoClockRate)
		}
		if step > 0 {
			d.lastDur = step
		}
	}
	if d.fourcc == fourccAV1 {
		if err := checkAV1TemporalUnit(d.fb); err != nil {
			return frame{}, &FormatError{Offset: off + ivfFrameHeaderSize, What: "AV1 temporal unit", Err: err}
		}
	}
	d.frames++
	d.lastTS = ts
	dur := d.lastDur
	if dur == 0 {
		dur = d.tick()
	}
	return frame{data: d.fb, ts: ts, dur: dur, off: off}, nil
}

func (d *ivfReader) end() int64 {
	if d.frames == 0 {
		return 0
	}
	dur := d.lastDur
	if dur == 0 {
		dur = d.tick()
	}
	return d.lastTS + dur
}

// checkAV1TemporalUnit walks the OBUs of a temporal unit in the low
// overhead bitstream format IVF uses and checks that every header parses
// and every size stays inside the unit. pion's AV1Payloader stops quietly
// at the first OBU it cannot parse, which would forward a truncated frame.
func checkAV1TemporalUnit(tu []byte) error {
	for pos := 0; pos < len(tu); {
		h, err := obu.ParseOBUHeader(tu[pos:])
		if err != nil {
			return fmt.Errorf("%w: OBU header at byte %d: %w", ErrMalformed, pos, err)
		}
		pos += h.Size()
		size := len(tu) - pos
		if h.HasSizeField {
			v, n, ok := readLEB128(tu[pos:])
			if !ok {
				return fmt.Errorf("%w: OBU size at byte %d", ErrMalformed, pos)
			}
			pos += n
			if v > uint64(len(tu)-pos) {
				return fmt.Errorf("%w: OBU at byte %d claims %d bytes, %d left", ErrMalformed, pos, v, len(tu)-pos)
			}
			size = int(v)
		}
		pos += size
	}
	return nil
}

// readLEB128 decodes an AV1 leb128 value of at most 8 bytes (the
// specification's limit, which also keeps pion's own decoder exact).
func readLEB128(b []byte) (v uint64, n int, ok bool) {
	for i := 0; i < 8 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, v <= 1<<32-1
		}
	}
	return 0, 0, false
}

// readError turns a read failure into a FormatError: an early end of file
// (the file shrank under us) is truncation, anything else is I/O.
func readError(off int64, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated(off, what, "file ends early")
	}
	return fmt.Errorf("offset %d: read %s: %w", off, what, err)
}
