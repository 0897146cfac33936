package file

import (
	"math/bits"
	"time"
)

// frame is one unit of media as the container holds it: a video frame
// (IVF), an access unit (H.264) or an Opus packet (Ogg).
type frame struct {
	data []byte // valid until the next call to next or rewind
	ts   int64  // RTP clock units from the start of the file, never decreasing
	dur  int64  // duration in clock units: exact where the container says, else the previous frame's
	off  int64  // byte offset of the frame in the file, for errors
}

// demuxer reads the frames of one file. Implementations reuse their
// buffers: a frame's data is only valid until the next call.
type demuxer interface {
	// next returns the next frame, or io.EOF at the clean end of the file.
	next() (frame, error)
	// rewind positions the demuxer at the first frame again.
	rewind() error
	// end is the stream position just after the last frame returned (its
	// ts plus its duration): the file's duration once next returned io.EOF.
	end() int64
}

// mulDiv returns a*b/c (floor) and false if the result does not fit in
// an int64 (or c is 0).
func mulDiv(a, b, c uint64) (int64, bool) {
	if c == 0 {
		return 0, false
	}
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return 0, false
	}
	q, _ := bits.Div64(hi, lo, c)
	if q > 1<<62 {
		return 0, false
	}
	return int64(q), true
}

// clockToDuration converts n units of a clock running at rate Hz into a
// time.Duration without overflowing for long streams.
func clockToDuration(n int64, rate int64) time.Duration {
	sec := n / rate
	rem := n % rate
	return time.Duration(sec)*time.Second + time.Duration(rem*int64(time.Second)/rate)
}

// durationToClock converts d into units of a clock running at rate Hz.
func durationToClock(d time.Duration, rate int64) int64 {
	sec := int64(d / time.Second)
	rem := int64(d % time.Second)
	return sec*rate + rem*rate/int64(time.Second)
}
