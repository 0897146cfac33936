package container

import (
	"errors"
	"fmt"
)

// AV1 OBU types (AV1 spec 6.2.2).
const (
	obuSequenceHeader    = 1
	obuTemporalDelimiter = 2
)

var errBadOBU = errors.New("malformed AV1 OBU")

// nextOBU splits the OBU at the start of b: its type, the whole OBU
// (header included) and its payload.
func nextOBU(b []byte) (typ byte, obu, payload []byte, err error) {
	if len(b) == 0 {
		return 0, nil, nil, errBadOBU
	}
	h := b[0]
	typ = (h >> 3) & 0x0f
	n := 1
	if h&0x04 != 0 { // extension
		n++
	}
	if n > len(b) {
		return 0, nil, nil, errBadOBU
	}
	if h&0x02 == 0 { // no size field: the OBU runs to the end
		return typ, b, b[n:], nil
	}
	var size uint64
	for i := 0; ; i++ {
		if n >= len(b) || i == 8 {
			return 0, nil, nil, errBadOBU
		}
		c := b[n]
		n++
		size |= uint64(c&0x7f) << (7 * uint(i))
		if c&0x80 == 0 {
			break
		}
	}
	if size > uint64(len(b)-n) {
		return 0, nil, nil, errBadOBU
	}
	end := n + int(size)
	return typ, b[:end], b[n:end], nil
}

// appendAV1WithoutTD appends the OBUs of a temporal unit to dst without
// temporal delimiters, which Matroska and MP4 samples must not carry.
func appendAV1WithoutTD(dst, tu []byte) ([]byte, error) {
	for len(tu) > 0 {
		typ, obu, _, err := nextOBU(tu)
		if err != nil {
			return dst, err
		}
		if typ != obuTemporalDelimiter {
			dst = append(dst, obu...)
		}
		tu = tu[len(obu):]
	}
	return dst, nil
}

// av1StartsWithTD reports whether a temporal unit begins with a temporal
// delimiter OBU (IVF files carry them; libaom writes them).
func av1StartsWithTD(tu []byte) bool {
	return len(tu) > 0 && (tu[0]>>3)&0x0f == obuTemporalDelimiter
}

// av1Config finds the sequence header in a keyframe temporal unit and
// builds av1C (AV1-ISOBMFF 2.3.3, also Matroska's CodecPrivate).
func av1Config(tu []byte) (trackConfig, error) {
	for b := tu; len(b) > 0; {
		typ, obu, payload, err := nextOBU(b)
		if err != nil {
			return trackConfig{}, fmt.Errorf("AV1 keyframe: %w", err)
		}
		b = b[len(obu):]
		if typ != obuSequenceHeader {
			continue
		}
		s, err := parseAV1SequenceHeader(payload)
		if err != nil {
			return trackConfig{}, fmt.Errorf("AV1 sequence header: %w", err)
		}
		c := []byte{
			0x81,
			s.profile<<5 | s.level0,
			s.tier0<<7 | s.highBitdepth<<6 | s.twelveBit<<5 | s.mono<<4 | s.ssX<<3 | s.ssY<<2 | s.csp,
			0,
		}
		// configOBUs: the sequence header OBU with its size field.
		if obu[0]&0x02 == 0 {
			// Give it a size field (av1C requires one).
			obu = append([]byte{obu[0] | 0x02}, append(leb128(uint64(len(payload))), payload...)...)
		}
		c = append(c, obu...)
		return trackConfig{width: s.width, height: s.height, priv: c}, nil
	}
	return trackConfig{}, fmt.Errorf("AV1 keyframe without a sequence header OBU: %w", ErrNeedKeyframe)
}

func leb128(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

type av1Seq struct {
	profile, level0, tier0                       byte
	highBitdepth, twelveBit, mono, ssX, ssY, csp byte
	width, height                                int
}

// parseAV1SequenceHeader reads sequence_header_obu (AV1 spec 5.5) as far as
// the color config: what av1C and the picture size need.
func parseAV1SequenceHeader(p []byte) (av1Seq, error) {
	r := &bitReader{b: p}
	var s av1Seq
	s.profile = byte(r.u(3))
	r.skip(1) // still_picture
	reduced := r.flag()
	if reduced {
		s.level0 = byte(r.u(5))
	} else {
		timingInfo := r.flag()
		decoderModel := false
		bufferDelayLen := 0
		if timingInfo {
			r.skip(64)    // num_units_in_display_tick, time_scale
			if r.flag() { // equal_picture_interval
				r.uvlc()
			}
			decoderModel = r.flag()
			if decoderModel {
				bufferDelayLen = int(r.u(5)) + 1
				r.skip(32 + 5 + 5)
			}
		}
		initialDisplayDelay := r.flag()
		n := int(r.u(5)) + 1
		for i := 0; i < n && r.err == nil; i++ {
			r.skip(12) // operating_point_idc
			lvl := byte(r.u(5))
			tier := byte(0)
			if lvl > 7 {
				tier = byte(r.u(1))
			}
			if i == 0 {
				s.level0, s.tier0 = lvl, tier
			}
			if decoderModel && r.flag() {
				r.skip(2*bufferDelayLen + 1)
			}
			if initialDisplayDelay && r.flag() {
				r.skip(4)
			}
		}
	}
	wBits, hBits := int(r.u(4))+1, int(r.u(4))+1
	s.width, s.height = int(r.u(wBits))+1, int(r.u(hBits))+1
	if !reduced && r.flag() { // frame_id_numbers_present_flag
		r.skip(7)
	}
	r.skip(3) // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
	orderHint := false
	if !reduced {
		r.skip(4) // interintra, masked compound, warped motion, dual filter
		orderHint = r.flag()
		if orderHint {
			r.skip(2) // jnt_comp, ref_frame_mvs
		}
		forceSCT := uint64(2)
		if !r.flag() { // seq_choose_screen_content_tools
			forceSCT = r.u(1)
		}
		if forceSCT > 0 && !r.flag() { // seq_choose_integer_mv
			r.skip(1)
		}
		if orderHint {
			r.skip(3)
		}
	}
	r.skip(3) // superres, cdef, restoration
	// color_config
	s.highBitdepth = byte(r.u(1))
	bitDepth := 8
	if s.profile == 2 && s.highBitdepth == 1 {
		s.twelveBit = byte(r.u(1))
		bitDepth = 10 + 2*int(s.twelveBit)
	} else if s.highBitdepth == 1 {
		bitDepth = 10
	}
	if s.profile != 1 {
		s.mono = byte(r.u(1))
	}
	cp, tc, mc := uint64(2), uint64(2), uint64(2)
	if r.flag() { // color_description_present_flag
		cp, tc, mc = r.u(8), r.u(8), r.u(8)
	}
	switch {
	case s.mono == 1:
		s.ssX, s.ssY = 1, 1
	case cp == 1 && tc == 13 && mc == 0:
		// sRGB: 4:4:4
	default:
		r.skip(1) // color_range
		switch s.profile {
		case 0:
			s.ssX, s.ssY = 1, 1
		case 1:
		default:
			if bitDepth == 12 {
				s.ssX = byte(r.u(1))
				if s.ssX == 1 {
					s.ssY = byte(r.u(1))
				}
			} else {
				s.ssX = 1
			}
		}
		if s.ssX == 1 && s.ssY == 1 {
			s.csp = byte(r.u(2))
		}
	}
	if r.err != nil {
		return av1Seq{}, r.err
	}
	return s, nil
}
