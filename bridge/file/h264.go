package file

import (
	"errors"
	"fmt"
)

// H.264 syntax: just enough of the SPS, PPS and slice header to cache
// parameter sets by id, see which PPS an IDR slice uses, find access unit
// boundaries and read the VUI frame rate.

// NAL unit types (H.264 Table 7-1).
const (
	nalSlice    = 1
	nalIDR      = 5
	nalSEI      = 6
	nalSPS      = 7
	nalPPS      = 8
	nalAUD      = 9
	nalPrefix   = 14
	nalReserved = 18 // 14..18 start an access unit like SEI does
)

var errBits = errors.New("runs past the end of the NAL unit")

// rbspReader reads bits of a NAL unit's payload, dropping the emulation
// prevention bytes (00 00 03 -> 00 00).
type rbspReader struct {
	b     []byte
	i     int  // next byte
	zeros int  // zero bytes just read
	cur   byte // current byte
	n     int  // bits left in cur
}

func (r *rbspReader) bit() (uint32, error) {
	if r.n == 0 {
		if r.zeros >= 2 && r.i < len(r.b) && r.b[r.i] == 3 {
			r.i++
			r.zeros = 0
		}
		if r.i >= len(r.b) {
			return 0, errBits
		}
		r.cur = r.b[r.i]
		r.i++
		if r.cur == 0 {
			r.zeros++
		} else {
			r.zeros = 0
		}
		r.n = 8
	}
	r.n--
	return uint32(r.cur>>r.n) & 1, nil
}

func (r *rbspReader) bits(n int) (uint32, error) {
	var v uint32
	for range n {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		v = v<<1 | b
	}
	return v, nil
}

// ue reads an unsigned Exp-Golomb code.
func (r *rbspReader) ue() (uint32, error) {
	lz := 0
	for {
		b, err := r.bit()
		if err != nil {
			return 0, err
		}
		if b == 1 {
			break
		}
		lz++
		if lz > 31 {
			return 0, errors.New("Exp-Golomb code longer than 32 bits")
		}
	}
	v, err := r.bits(lz)
	if err != nil {
		return 0, err
	}
	return uint32((uint64(1)<<lz - 1) + uint64(v)), nil
}

// se reads a signed Exp-Golomb code.
func (r *rbspReader) se() (int32, error) {
	v, err := r.ue()
	if err != nil {
		return 0, err
	}
	if v&1 == 1 {
		return int32((int64(v) + 1) / 2), nil
	}
	return int32(-(int64(v) / 2)), nil
}

// sliceHeader holds the first fields of a slice header.
type sliceHeader struct {
	firstMB uint32
	ppsID   uint32
}

func parseSliceHeader(nal []byte) (sliceHeader, error) {
	r := rbspReader{b: nal[1:]}
	var h sliceHeader
	var err error
	if h.firstMB, err = r.ue(); err != nil {
		return h, fmt.Errorf("first_mb_in_slice: %w", err)
	}
	st, err := r.ue()
	if err != nil {
		return h, fmt.Errorf("slice_type: %w", err)
	}
	if st > 9 {
		return h, fmt.Errorf("slice_type %d", st)
	}
	if h.ppsID, err = r.ue(); err != nil {
		return h, fmt.Errorf("pic_parameter_set_id: %w", err)
	}
	if h.ppsID > 255 {
		return h, fmt.Errorf("pic_parameter_set_id %d", h.ppsID)
	}
	return h, nil
}

// parsePPSIDs returns a PPS's own id and the id of the SPS it refers to.
func parsePPSIDs(nal []byte) (pps, sps uint32, err error) {
	r := rbspReader{b: nal[1:]}
	if pps, err = r.ue(); err != nil {
		return 0, 0, fmt.Errorf("pic_parameter_set_id: %w", err)
	}
	if sps, err = r.ue(); err != nil {
		return 0, 0, fmt.Errorf("seq_parameter_set_id: %w", err)
	}
	if pps > 255 || sps > 31 {
		return 0, 0, fmt.Errorf("ids out of range: pps %d, sps %d", pps, sps)
	}
	return pps, sps, nil
}

// spsInfo is what an SPS tells a file player.
type spsInfo struct {
	id                     uint32
	profile, compat, level byte      // profile-level-id
	fps                    FrameRate // from the VUI timing info; zero if absent
}

// parseSPS reads an SPS's id and, with vui, on to its VUI timing info.
// Only the id part is required; if the rest does not parse, fps stays
// zero.
func parseSPS(nal []byte, vui bool) (spsInfo, error) {
	var s spsInfo
	if len(nal) < 5 {
		return s, errors.New("shorter than 5 bytes")
	}
	s.profile, s.compat, s.level = nal[1], nal[2], nal[3]
	r := rbspReader{b: nal[4:]}
	id, err := r.ue()
	if err != nil {
		return s, fmt.Errorf("seq_parameter_set_id: %w", err)
	}
	if id > 31 {
		return s, fmt.Errorf("seq_parameter_set_id %d out of range", id)
	}
	s.id = id
	if !vui {
		return s, nil
	}
	if fps, err := spsFrameRate(&r, s.profile); err == nil {
		s.fps = fps
	}
	return s, nil
}

// spsFrameRate walks the SPS (7.3.2.1.1) from after seq_parameter_set_id
// to the VUI (E.1.1) timing info.
func spsFrameRate(r *rbspReader, profile byte) (FrameRate, error) {
	skipUE := func(n int) error {
		for range n {
			if _, err := r.ue(); err != nil {
				return err
			}
		}
		return nil
	}
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma, err := r.ue()
		if err != nil {
			return FrameRate{}, err
		}
		if chroma == 3 {
			if _, err := r.bit(); err != nil { // separate_colour_plane_flag
				return FrameRate{}, err
			}
		}
		if err := skipUE(2); err != nil { // bit depths
			return FrameRate{}, err
		}
		if _, err := r.bit(); err != nil { // qpprime_y_zero_transform_bypass_flag
			return FrameRate{}, err
		}
		present, err := r.bit() // seq_scaling_matrix_present_flag
		if err != nil {
			return FrameRate{}, err
		}
		if present == 1 {
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				p, err := r.bit()
				if err != nil {
					return FrameRate{}, err
				}
				if p == 0 {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				last, next := int32(8), int32(8)
				for range size {
					if next != 0 {
						delta, err := r.se()
						if err != nil {
							return FrameRate{}, err
						}
						next = (last + delta + 256) % 256
					}
					if next != 0 {
						last = next
					}
				}
			}
		}
	}
	if err := skipUE(1); err != nil { // log2_max_frame_num_minus4
		return FrameRate{}, err
	}
	pocType, err := r.ue()
	if err != nil {
		return FrameRate{}, err
	}
	switch pocType {
	case 0:
		if err := skipUE(1); err != nil {
			return FrameRate{}, err
		}
	case 1:
		if _, err := r.bit(); err != nil {
			return FrameRate{}, err
		}
		if err := skipUE(2); err != nil { // two se(v), same length as ue(v)
			return FrameRate{}, err
		}
		n, err := r.ue()
		if err != nil || n > 255 {
			return FrameRate{}, fmt.Errorf("num_ref_frames_in_pic_order_cnt_cycle %d: %v", n, err)
		}
		if err := skipUE(int(n)); err != nil {
			return FrameRate{}, err
		}
	}
	if err := skipUE(1); err != nil { // max_num_ref_frames
		return FrameRate{}, err
	}
	if _, err := r.bit(); err != nil { // gaps_in_frame_num_value_allowed_flag
		return FrameRate{}, err
	}
	if err := skipUE(2); err != nil { // width, height
		return FrameRate{}, err
	}
	frameMBsOnly, err := r.bit()
	if err != nil {
		return FrameRate{}, err
	}
	if frameMBsOnly == 0 {
		if _, err := r.bit(); err != nil {
			return FrameRate{}, err
		}
	}
	if _, err := r.bit(); err != nil { // direct_8x8_inference_flag
		return FrameRate{}, err
	}
	if crop, err := r.bit(); err != nil {
		return FrameRate{}, err
	} else if crop == 1 {
		if err := skipUE(4); err != nil {
			return FrameRate{}, err
		}
	}
	if vui, err := r.bit(); err != nil || vui == 0 {
		return FrameRate{}, errors.New("no VUI")
	}
	if ar, err := r.bit(); err != nil {
		return FrameRate{}, err
	} else if ar == 1 {
		idc, err := r.bits(8)
		if err != nil {
			return FrameRate{}, err
		}
		if idc == 255 { // Extended_SAR
			if _, err := r.bits(32); err != nil {
				return FrameRate{}, err
			}
		}
	}
	if ov, err := r.bit(); err != nil {
		return FrameRate{}, err
	} else if ov == 1 {
		if _, err := r.bit(); err != nil {
			return FrameRate{}, err
		}
	}
	if vs, err := r.bit(); err != nil {
		return FrameRate{}, err
	} else if vs == 1 {
		if _, err := r.bits(4); err != nil { // video_format, video_full_range_flag
			return FrameRate{}, err
		}
		if cd, err := r.bit(); err != nil {
			return FrameRate{}, err
		} else if cd == 1 {
			if _, err := r.bits(24); err != nil {
				return FrameRate{}, err
			}
		}
	}
	if cl, err := r.bit(); err != nil {
		return FrameRate{}, err
	} else if cl == 1 {
		if err := skipUE(2); err != nil {
			return FrameRate{}, err
		}
	}
	if ti, err := r.bit(); err != nil || ti == 0 {
		return FrameRate{}, errors.New("no timing info")
	}
	tick, err := r.bits(32)
	if err != nil {
		return FrameRate{}, err
	}
	scale, err := r.bits(32)
	if err != nil {
		return FrameRate{}, err
	}
	if tick == 0 || scale == 0 {
		return FrameRate{}, errors.New("zero timing info")
	}
	// A tick is a field period: frames per second = time_scale / (2 * num_units_in_tick).
	fps, err := parseFrameRate(fmt.Sprintf("%d/%d", scale, 2*uint64(tick)))
	if err != nil {
		return FrameRate{}, err
	}
	return fps, nil
}
