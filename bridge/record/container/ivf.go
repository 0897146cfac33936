package container

import (
	"encoding/binary"
	"time"
)

// IVF, written by hand (pion's ivfwriter rounds PTS to milliseconds and
// defaults to 640x480): 32-byte header, then per frame a 12-byte header
// (size, PTS) and the frame. The time base is 1/90000, the RTP clock of
// VP8, VP9 and AV1, so PTS are exact.
//
// Header bytes 24..27 are "number of frames" in libvpx's description, but
// ffmpeg reads them as the stream duration in time-base units (and its own
// IVF muxer writes that): with 1/90000 a frame count reads as a duration of
// microseconds. Close and Repair therefore write the duration (end of the
// last frame, in 1/90000 s) there, which ffprobe reports; a live file has 0
// there, which ffmpeg takes as "unknown".

const (
	ivfHeaderLen      = 32
	ivfFrameHeaderLen = 12
	ivfTimebase       = 90000
)

var ivfFourCC = map[codec]string{codecVP8: "VP80", codecVP9: "VP90", codecAV1: "AV01"}

type ivf struct {
	out        *output
	codec      codec
	last, prev int64 // ticks of the last two frames (-1: none)
	buf        []byte
}

func newIVF(out *output, c codec) *ivf { return &ivf{out: out, codec: c, last: -1, prev: -1} }

func (v *ivf) header(cfg []trackConfig) error {
	h := make([]byte, 0, ivfHeaderLen)
	h = append(h, "DKIF"...)
	h = binary.LittleEndian.AppendUint16(h, 0)
	h = binary.LittleEndian.AppendUint16(h, ivfHeaderLen)
	h = append(h, ivfFourCC[v.codec]...)
	h = binary.LittleEndian.AppendUint16(h, uint16(cfg[0].width))
	h = binary.LittleEndian.AppendUint16(h, uint16(cfg[0].height))
	h = binary.LittleEndian.AppendUint32(h, ivfTimebase)
	h = binary.LittleEndian.AppendUint32(h, 1)
	h = binary.LittleEndian.AppendUint64(h, 0)
	return v.out.write(h)
}

// av1TD is a temporal delimiter OBU: IVF AV1 temporal units start with one.
var av1TD = []byte{0x12, 0x00}

func (v *ivf) frame(f *Frame) error {
	t := ticks(f.PTS, ivfTimebase)
	n := len(f.Data)
	td := v.codec == codecAV1 && !av1StartsWithTD(f.Data)
	if td {
		n += len(av1TD)
	}
	b := binary.LittleEndian.AppendUint32(v.buf[:0], uint32(n))
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	if td {
		b = append(b, av1TD...)
	}
	b = append(b, f.Data...)
	v.buf = b
	if err := v.out.write(b); err != nil {
		return err
	}
	if t != v.last {
		v.prev, v.last = v.last, t
	}
	return nil
}

func (v *ivf) flush() error { return nil }

func (v *ivf) finish() error { return patchIVFLength(v.out, ivfEnd(v.last, v.prev)) }

func ivfEnd(last, prev int64) int64 {
	switch {
	case last < 0:
		return 0
	case prev < 0:
		return last + ivfTimebase/30 // one frame: assume 30 fps
	}
	return last + (last - prev)
}

func patchIVFLength(o *output, end int64) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(min(end, 1<<32-1)))
	return o.writeAt(b[:], 24)
}

func ivfDuration(end int64) time.Duration {
	return time.Duration(end) * time.Second / ivfTimebase
}
