package container

import "errors"

// errShort: a bitstream header ended before the field being read.
var errShort = errors.New("header too short")

// bitReader reads big-endian bit fields and exp-Golomb codes from an RBSP
// (emulation prevention bytes already removed). Written by hand because the
// only Go library that parses SPS (bluenviron/mediacommon) is not reachable
// here, and width/height/profile need just a few dozen fields.
type bitReader struct {
	b   []byte
	pos int // in bits
	err error
}

func (r *bitReader) u(n int) uint64 {
	var v uint64
	for i := 0; i < n; i++ {
		if r.pos >= len(r.b)*8 {
			r.err = errShort
			return 0
		}
		bit := (r.b[r.pos>>3] >> (7 - uint(r.pos&7))) & 1
		v = v<<1 | uint64(bit)
		r.pos++
	}
	return v
}

func (r *bitReader) flag() bool { return r.u(1) == 1 }

func (r *bitReader) skip(n int) { r.u(n) }

// ue reads an unsigned exp-Golomb code.
func (r *bitReader) ue() uint64 {
	zeros := 0
	for r.u(1) == 0 {
		if r.err != nil || zeros > 31 {
			r.err = errShort
			return 0
		}
		zeros++
	}
	return (1<<uint(zeros) - 1) + r.u(zeros)
}

// se reads a signed exp-Golomb code.
func (r *bitReader) se() int64 {
	k := r.ue()
	if k&1 == 1 {
		return int64(k+1) / 2
	}
	return -int64(k / 2)
}

// uvlc reads AV1's variable-length unsigned code.
func (r *bitReader) uvlc() uint64 {
	zeros := 0
	for r.u(1) == 0 {
		if r.err != nil || zeros >= 32 {
			r.err = errShort
			return 0
		}
		zeros++
	}
	return r.u(zeros) + (1<<uint(zeros) - 1)
}

// unescapeRBSP removes H.264/H.265 emulation prevention bytes (00 00 03).
func unescapeRBSP(nal []byte) []byte {
	out := make([]byte, 0, len(nal))
	zeros := 0
	for _, c := range nal {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}
