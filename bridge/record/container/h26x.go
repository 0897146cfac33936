package container

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// H.264 and H.265 arrive as Annex-B access units (start codes); Matroska
// and MP4 store them as 4-byte length-prefixed NAL units with the parameter
// sets also in the track header (avcC, hvcC). The in-band parameter sets
// are kept in the samples as well: harmless, and they carry a mid-stream
// change of resolution to the decoder.

// nextNAL returns the NAL unit that starts at or after pos in an Annex-B
// stream (without its start code and trailing zero bytes) and the position
// to continue from; nal is nil at the end.
func nextNAL(b []byte, pos int) (nal []byte, next int) {
	i := bytes.Index(b[pos:], startCode)
	if i < 0 {
		if pos == 0 && len(b) > 0 {
			// No start code at all: take the whole buffer as one NAL unit
			// (a lenient reading of a single-NAL access unit).
			return b, len(b)
		}
		return nil, len(b)
	}
	start := pos + i + 3
	// The NAL unit ends at the next start code (00 00 01, possibly with a
	// leading zero byte) or at the end; trailing zero bytes are dropped.
	j := bytes.Index(b[start:], startCode)
	end := len(b)
	next = len(b)
	if j >= 0 {
		end = start + j
		next = end
	}
	for end > start && b[end-1] == 0 {
		end--
	}
	return b[start:end], next
}

var startCode = []byte{0, 0, 1}

// annexBToLengthPrefixed appends the NAL units of an Annex-B access unit to
// dst, each preceded by its 4-byte big-endian length.
func annexBToLengthPrefixed(dst, au []byte) []byte {
	for pos := 0; pos < len(au); {
		nal, next := nextNAL(au, pos)
		pos = next
		if len(nal) == 0 {
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(nal)))
		dst = append(dst, nal...)
	}
	return dst
}

// trackConfig is what a container header needs from a video track's first
// keyframe.
type trackConfig struct {
	width, height int
	priv          []byte // avcC, hvcC, av1C or vpcC payload (nil when the codec has none)
	vp9           vp9Info
}

// h264Config builds avcC from the SPS and PPS in a keyframe.
func h264Config(au []byte) (trackConfig, error) {
	var sps, pps []byte
	for pos := 0; pos < len(au); {
		nal, next := nextNAL(au, pos)
		pos = next
		if len(nal) == 0 {
			continue
		}
		switch nal[0] & 0x1f {
		case 7:
			if sps == nil {
				sps = nal
			}
		case 8:
			if pps == nil {
				pps = nal
			}
		}
	}
	if sps == nil || pps == nil {
		return trackConfig{}, fmt.Errorf("H.264 keyframe without SPS and PPS in-band: %w", ErrNeedKeyframe)
	}
	info, err := parseH264SPS(sps)
	if err != nil {
		return trackConfig{}, fmt.Errorf("H.264 SPS: %w", err)
	}
	// AVCDecoderConfigurationRecord, ISO/IEC 14496-15 5.3.3.1.
	c := []byte{1, sps[1], sps[2], sps[3], 0xfc | 3, 0xe0 | 1}
	c = binary.BigEndian.AppendUint16(c, uint16(len(sps)))
	c = append(c, sps...)
	c = append(c, 1)
	c = binary.BigEndian.AppendUint16(c, uint16(len(pps)))
	c = append(c, pps...)
	switch sps[1] {
	case 100, 110, 122, 144:
		// High profiles carry chroma format and bit depths too.
		c = append(c, 0xfc|byte(info.chromaFormat), 0xf8|byte(info.bitDepthLuma-8), 0xf8|byte(info.bitDepthChroma-8), 0)
	}
	return trackConfig{width: info.width, height: info.height, priv: c}, nil
}

type spsInfo struct {
	width, height                int
	chromaFormat                 int
	bitDepthLuma, bitDepthChroma int
	maxSubLayersMinus1           int
	temporalIDNesting            bool
}

// parseH264SPS reads the fields of an H.264 SPS (ITU-T H.264 7.3.2.1.1) up
// to the frame cropping: the picture size and the chroma format.
func parseH264SPS(nal []byte) (spsInfo, error) {
	if len(nal) < 4 {
		return spsInfo{}, errShort
	}
	r := &bitReader{b: unescapeRBSP(nal[1:])}
	profile := r.u(8)
	r.skip(16) // constraint flags, level
	r.ue()     // seq_parameter_set_id
	info := spsInfo{chromaFormat: 1, bitDepthLuma: 8, bitDepthChroma: 8}
	separate := false
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		info.chromaFormat = int(r.ue())
		if info.chromaFormat == 3 {
			separate = r.flag()
		}
		info.bitDepthLuma = int(r.ue()) + 8
		info.bitDepthChroma = int(r.ue()) + 8
		r.skip(1)     // qpprime_y_zero_transform_bypass_flag
		if r.flag() { // seq_scaling_matrix_present_flag
			n := 8
			if info.chromaFormat == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if !r.flag() {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				last, next := int64(8), int64(8)
				for j := 0; j < size && r.err == nil; j++ {
					if next != 0 {
						next = (last + r.se() + 256) % 256
					}
					if next != 0 {
						last = next
					}
				}
			}
		}
	}
	r.ue() // log2_max_frame_num_minus4
	switch r.ue() {
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.skip(1)
		r.se()
		r.se()
		n := r.ue()
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.se()
		}
	}
	r.ue()    // max_num_ref_frames
	r.skip(1) // gaps_in_frame_num_value_allowed_flag
	wMbs := int(r.ue()) + 1
	hMapUnits := int(r.ue()) + 1
	frameMbsOnly := r.flag()
	if !frameMbsOnly {
		r.skip(1)
	}
	r.skip(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb int
	if r.flag() {
		cl, cr, ct, cb = int(r.ue()), int(r.ue()), int(r.ue()), int(r.ue())
	}
	if r.err != nil {
		return spsInfo{}, r.err
	}
	fm := 2
	if frameMbsOnly {
		fm = 1
	}
	cropX, cropY := 1, fm
	if !separate && info.chromaFormat != 0 {
		subW, subH := 1, 1
		if info.chromaFormat == 1 || info.chromaFormat == 2 {
			subW = 2
		}
		if info.chromaFormat == 1 {
			subH = 2
		}
		cropX, cropY = subW, subH*fm
	}
	info.width = wMbs*16 - cropX*(cl+cr)
	info.height = fm*hMapUnits*16 - cropY*(ct+cb)
	if info.width <= 0 || info.height <= 0 {
		return spsInfo{}, fmt.Errorf("H.264 SPS: picture size %dx%d", info.width, info.height)
	}
	return info, nil
}

// h265Config builds hvcC from the VPS, SPS and PPS in a keyframe.
func h265Config(au []byte) (trackConfig, error) {
	var vps, sps, pps []byte
	for pos := 0; pos < len(au); {
		nal, next := nextNAL(au, pos)
		pos = next
		if len(nal) < 2 {
			continue
		}
		switch (nal[0] >> 1) & 0x3f {
		case 32:
			if vps == nil {
				vps = nal
			}
		case 33:
			if sps == nil {
				sps = nal
			}
		case 34:
			if pps == nil {
				pps = nal
			}
		}
	}
	if vps == nil || sps == nil || pps == nil {
		return trackConfig{}, fmt.Errorf("H.265 keyframe without VPS, SPS and PPS in-band: %w", ErrNeedKeyframe)
	}
	rbsp := unescapeRBSP(sps[2:])
	info, err := parseH265SPS(rbsp)
	if err != nil {
		return trackConfig{}, fmt.Errorf("H.265 SPS: %w", err)
	}
	// HEVCDecoderConfigurationRecord, ISO/IEC 14496-15 8.3.3.1. Bytes 1..12
	// of the SPS RBSP are general_profile_tier_level as hvcC wants it.
	c := []byte{1}
	c = append(c, rbsp[1:13]...)
	c = append(c, 0xf0, 0x00, 0xfc, 0xfc|byte(info.chromaFormat),
		0xf8|byte(info.bitDepthLuma-8), 0xf8|byte(info.bitDepthChroma-8), 0, 0)
	nesting := byte(0)
	if info.temporalIDNesting {
		nesting = 1
	}
	c = append(c, byte(info.maxSubLayersMinus1+1)<<3|nesting<<2|3, 3)
	for _, n := range [][]byte{vps, sps, pps} {
		c = append(c, 0x80|(n[0]>>1)&0x3f)
		c = binary.BigEndian.AppendUint16(c, 1)
		c = binary.BigEndian.AppendUint16(c, uint16(len(n)))
		c = append(c, n...)
	}
	return trackConfig{width: info.width, height: info.height, priv: c}, nil
}

// parseH265SPS reads an H.265 SPS RBSP (after the 2-byte NAL header, ITU-T
// H.265 7.3.2.2) up to the bit depths.
func parseH265SPS(rbsp []byte) (spsInfo, error) {
	if len(rbsp) < 14 {
		return spsInfo{}, errShort
	}
	r := &bitReader{b: rbsp}
	r.skip(4) // sps_video_parameter_set_id
	info := spsInfo{maxSubLayersMinus1: int(r.u(3))}
	info.temporalIDNesting = r.flag()
	r.skip(96) // general profile_tier_level
	msl := info.maxSubLayersMinus1
	var profilePresent, levelPresent [8]bool
	for i := 0; i < msl; i++ {
		profilePresent[i] = r.flag()
		levelPresent[i] = r.flag()
	}
	if msl > 0 {
		r.skip(2 * (8 - msl))
	}
	for i := 0; i < msl; i++ {
		if profilePresent[i] {
			r.skip(88)
		}
		if levelPresent[i] {
			r.skip(8)
		}
	}
	r.ue() // sps_seq_parameter_set_id
	info.chromaFormat = int(r.ue())
	separate := false
	if info.chromaFormat == 3 {
		separate = r.flag()
	}
	w, h := int(r.ue()), int(r.ue())
	var cl, cr, ct, cb int
	if r.flag() {
		cl, cr, ct, cb = int(r.ue()), int(r.ue()), int(r.ue()), int(r.ue())
	}
	info.bitDepthLuma = int(r.ue()) + 8
	info.bitDepthChroma = int(r.ue()) + 8
	if r.err != nil {
		return spsInfo{}, r.err
	}
	subW, subH := 1, 1
	if !separate && (info.chromaFormat == 1 || info.chromaFormat == 2) {
		subW = 2
	}
	if !separate && info.chromaFormat == 1 {
		subH = 2
	}
	info.width = w - subW*(cl+cr)
	info.height = h - subH*(ct+cb)
	if info.width <= 0 || info.height <= 0 || info.bitDepthLuma > 16 || info.bitDepthChroma > 16 {
		return spsInfo{}, fmt.Errorf("H.265 SPS: picture size %dx%d", info.width, info.height)
	}
	return info, nil
}
