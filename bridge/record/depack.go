package record

import (
	"encoding/base64"
	"errors"
	"strings"

	"github.com/pion/rtp/codecs"
)

// codecKind is a codec this package can depacketize.
type codecKind uint8

const (
	codecNone codecKind = iota
	codecVP8
	codecVP9
	codecAV1
	codecH264
	codecH265
	codecOpus
)

func kindOf(mime string) codecKind {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	case "video/av1":
		return codecAV1
	case "video/h264":
		return codecH264
	case "video/h265", "video/hevc":
		return codecH265
	case "audio/opus":
		return codecOpus
	}
	return codecNone
}

// Depacketizing errors (package-level so that reporting one allocates
// nothing).
var (
	errEmpty        = errors.New("empty payload")
	errShortPayload = errors.New("payload shorter than its headers")
	errFragment     = errors.New("continuation of a fragment whose start was lost")
	errNALType      = errors.New("unsupported NAL unit packetization (STAP-B, MTAP, FU-B or PACI)")
	errOBU          = errors.New("malformed AV1 OBU element")
)

var startCode = []byte{0, 0, 0, 1}

// depack turns RTP payloads, in sequence order, into frames in the form
// container.Frame wants: VP8/VP9 frames as sent, H.264/H.265 Annex-B
// access units, AV1 temporal units of OBUs with size fields, Opus packets.
//
// VP8, VP9 and Opus use pion's depacketizers, which return a slice of the
// payload and allocate nothing. (VP9Packet, reused across packets, keeps
// appending to its PDiff/PGTID/PGU slices, pion/rtp v1.10.6; they are reset
// here before each packet.) H.264, H.265 and AV1 are written by hand: pion's
// H264Packet allocates 1-2 times per packet (a fresh slice per NAL unit and
// per FU-A), H265Depacketizer 2 and AV1Depacketizer 2-3 (measured with
// testing.AllocsPerRun on v1.10.6), and all three return a new slice that
// would be copied again into the frame. Here every byte goes straight from
// the payload into the frame buffer.
type depack struct {
	kind codecKind
	vp8  codecs.VP8Packet
	vp9  codecs.VP9Packet
	opus codecs.OpusPacket
	fu   bool   // H.264/H.265: inside a fragmented NAL unit
	obu  []byte // AV1: an OBU element fragmented across packets
	inOB bool   // AV1: obu holds the start of a fragment

	// H.264/H.265 parameter sets: the NAL unit types of the frame so far,
	// and the latest VPS, SPS and PPS seen in-band or given in the SDP.
	nals          uint64
	vps, sps, pps []byte
}

// reset starts a frame: it forgets a fragment in progress (after a loss)
// and the NAL unit types seen.
func (d *depack) reset() {
	d.fu, d.inOB = false, false
	d.obu = d.obu[:0]
	d.nals = 0
}

// nal notes a whole NAL unit (without start code) of a frame: its type,
// and a copy if it is a parameter set.
func (d *depack) nal(n []byte) {
	if len(n) == 0 {
		return
	}
	var t byte
	switch d.kind {
	case codecH264:
		t = n[0] & 0x1f
		switch t {
		case 7:
			d.sps = append(d.sps[:0], n...)
		case 8:
			d.pps = append(d.pps[:0], n...)
		}
	case codecH265:
		t = (n[0] >> 1) & 0x3f
		switch t {
		case 32:
			d.vps = append(d.vps[:0], n...)
		case 33:
			d.sps = append(d.sps[:0], n...)
		case 34:
			d.pps = append(d.pps[:0], n...)
		}
	}
	d.nals |= 1 << t
}

// paramSets returns the frame with the cached parameter sets in front
// when it is an H.264/H.265 keyframe that lacks them (a sender that puts
// them only in the SDP or only at the start of the stream): the
// container needs them at the start of every file. scratch is a buffer
// to build into; the caller swaps it with the frame's.
func (d *depack) paramSets(frame, scratch []byte) (out []byte, built bool) {
	var need [][]byte
	switch d.kind {
	case codecH264:
		if d.nals&(1<<7) != 0 && d.nals&(1<<8) != 0 {
			return frame, false
		}
		need = [][]byte{d.sps, d.pps}
	case codecH265:
		if d.nals&(1<<32) != 0 && d.nals&(1<<33) != 0 && d.nals&(1<<34) != 0 {
			return frame, false
		}
		need = [][]byte{d.vps, d.sps, d.pps}
	default:
		return frame, false
	}
	for _, ps := range need {
		if len(ps) == 0 {
			return frame, false // nothing to add: the container will say
		}
	}
	out = scratch[:0]
	for _, ps := range need {
		out = append(append(out, startCode...), ps...)
	}
	return append(out, frame...), true
}

// appendPayload depacketizes one payload onto frame. key reports that the
// payload shows the frame is a keyframe.
func (d *depack) appendPayload(frame, payload []byte) (out []byte, key bool, err error) {
	if len(payload) == 0 {
		return frame, false, errEmpty
	}
	switch d.kind {
	case codecVP8:
		b, err := d.vp8.Unmarshal(payload)
		if err != nil {
			return frame, false, err
		}
		// The P bit of the VP8 payload header is 0 on a keyframe; it is in
		// the first byte of the first partition (S=1, PID=0).
		key = d.vp8.S == 1 && d.vp8.PID == 0 && len(b) > 0 && b[0]&1 == 0
		return append(frame, b...), key, nil
	case codecVP9:
		d.vp9.PDiff, d.vp9.PGTID, d.vp9.PGU = d.vp9.PDiff[:0], d.vp9.PGTID[:0], d.vp9.PGU[:0]
		b, err := d.vp9.Unmarshal(payload)
		if err != nil {
			return frame, false, err
		}
		key = d.vp9.B && !d.vp9.P && (!d.vp9.L || d.vp9.SID == 0)
		return append(frame, b...), key, nil
	case codecOpus:
		b, err := d.opus.Unmarshal(payload)
		return append(frame, b...), true, err
	case codecH264:
		return d.h264(frame, payload)
	case codecH265:
		return d.h265(frame, payload)
	case codecAV1:
		return d.av1(frame, payload)
	}
	return frame, false, errEmpty
}

// frameStart reports whether payload is verifiably the first packet of a
// frame, which tells a frame that follows a loss whole or not. It may say
// no for a first packet that carries no proof (an AV1 inter frame): such
// a frame after a loss is dropped, as it would be while waiting for a
// keyframe anyway. Keyframes always carry the proof.
func (d *depack) frameStart(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch d.kind {
	case codecVP8:
		return p[0]&0x10 != 0 && p[0]&0x07 == 0 // S=1, PID=0
	case codecVP9:
		if p[0]&0x08 == 0 { // B
			return false
		}
		if p[0]&0x20 == 0 { // no layer indices
			return true
		}
		// The spatial layer id follows the picture id.
		i := 1
		if p[0]&0x80 != 0 {
			if len(p) < 2 {
				return false
			}
			i++
			if p[1]&0x80 != 0 {
				i++
			}
		}
		return len(p) > i && (p[i]>>1)&0x07 == 0
	case codecOpus:
		return true
	case codecH264:
		switch t := p[0] & 0x1f; {
		case t >= 1 && t <= 23:
			return h264AUStart(p[0], p[1:])
		case t == 24: // STAP-A: the first aggregated NAL unit
			return len(p) > 3 && h264AUStart(p[3], p[4:])
		case t == 28: // FU-A with S
			return len(p) > 2 && p[1]&0x80 != 0 && h264AUStart(p[1]&0x1f, p[2:])
		}
		return false
	case codecH265:
		if len(p) < 3 {
			return false
		}
		switch t := (p[0] >> 1) & 0x3f; t {
		case 48: // AP: first NAL unit after the 2-byte size
			return len(p) > 6 && h265AUStart((p[4]>>1)&0x3f, p[6:])
		case 49: // FU with S
			return p[2]&0x80 != 0 && h265AUStart(p[2]&0x3f, p[3:])
		case 50:
			return false
		default:
			return h265AUStart(t, p[2:])
		}
	case codecAV1:
		if p[0]&0x80 != 0 { // Z: continues a fragment
			return false
		}
		if p[0]&0x08 != 0 { // N: a new coded video sequence
			return true
		}
		i := 1
		if (p[0]>>4)&3 != 1 { // the first element has a length field
			_, n := leb128(p[1:])
			if n == 0 {
				return false
			}
			i += n
		}
		if len(p) <= i {
			return false
		}
		// A sequence header or temporal delimiter; a frame (header) OBU
		// may be the second frame of a temporal unit.
		switch (p[i] >> 3) & 0x0f {
		case 1, 2:
			return true
		}
	}
	return false
}

// h264AUStart: a NAL unit of type hdr&0x1f that can begin what is left
// of an access unit after a loss: AUD, SPS, PPS, SEI (they all precede
// the first slice), or the first slice of the picture (first_mb_in_slice
// 0: its exp-Golomb code is the single bit 1). A lost AUD or parameter
// set before it does not matter: parameter sets are cached and put back
// in front of keyframes (depack.paramSets).
func h264AUStart(hdr byte, rest []byte) bool {
	switch hdr & 0x1f {
	case 6, 7, 8, 9:
		return true
	case 1, 5:
		return len(rest) > 0 && rest[0]&0x80 != 0
	}
	return false
}

// h265AUStart: VPS, SPS, PPS, AUD, prefix SEI, or a slice segment with
// first_slice_segment_in_pic_flag (as for H.264).
func h265AUStart(t byte, rest []byte) bool {
	switch {
	case t >= 32 && t <= 35, t == 39:
		return true
	case t <= 31:
		return len(rest) > 0 && rest[0]&0x80 != 0
	}
	return false
}

// h264 depacketizes RFC 6184 packetization modes 0 and 1 (single NAL
// unit, STAP-A, FU-A) to Annex-B; key is an IDR slice.
func (d *depack) h264(frame, p []byte) ([]byte, bool, error) {
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		d.fu = false
		d.nal(p)
		return append(append(frame, startCode...), p...), t == 5, nil
	case t == 24:
		d.fu = false
		key := false
		for i := 1; i < len(p); {
			if i+2 > len(p) {
				return frame, false, errShortPayload
			}
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return frame, false, errShortPayload
			}
			key = key || p[i]&0x1f == 5
			d.nal(p[i : i+n])
			frame = append(append(frame, startCode...), p[i:i+n]...)
			i += n
		}
		return frame, key, nil
	case t == 28:
		if len(p) < 3 {
			return frame, false, errShortPayload
		}
		fu := p[1]
		if fu&0x80 != 0 { // start
			frame = append(append(frame, startCode...), p[0]&0xe0|fu&0x1f)
			d.nals |= 1 << (fu & 0x1f) // a fragmented parameter set is not cached
			d.fu = true
		} else if !d.fu {
			return frame, false, errFragment
		}
		if fu&0x40 != 0 { // end
			d.fu = false
		}
		return append(frame, p[2:]...), fu&0x1f == 5, nil
	}
	return frame, false, errNALType
}

// h265 depacketizes RFC 7798 single NAL units, APs and FUs (without DONL)
// to Annex-B; key is an IRAP picture.
func (d *depack) h265(frame, p []byte) ([]byte, bool, error) {
	if len(p) < 3 {
		return frame, false, errShortPayload
	}
	irap := func(t byte) bool { return t >= 16 && t <= 21 }
	switch t := (p[0] >> 1) & 0x3f; t {
	case 48:
		d.fu = false
		key := false
		for i := 2; i < len(p); {
			if i+2 > len(p) {
				return frame, false, errShortPayload
			}
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n < 2 || i+n > len(p) {
				return frame, false, errShortPayload
			}
			key = key || irap((p[i]>>1)&0x3f)
			d.nal(p[i : i+n])
			frame = append(append(frame, startCode...), p[i:i+n]...)
			i += n
		}
		return frame, key, nil
	case 49:
		fu := p[2]
		ft := fu & 0x3f
		if fu&0x80 != 0 {
			frame = append(append(frame, startCode...), p[0]&0x81|ft<<1, p[1])
			d.nals |= 1 << ft
			d.fu = true
		} else if !d.fu {
			return frame, false, errFragment
		}
		if fu&0x40 != 0 {
			d.fu = false
		}
		return append(frame, p[3:]...), irap(ft), nil
	case 50:
		return frame, false, errNALType
	default:
		d.fu = false
		d.nal(p)
		return append(append(frame, startCode...), p...), irap(t), nil
	}
}

// av1 depacketizes the AV1 RTP payload format (aggregation header, OBU
// elements, fragments across packets) into OBUs with obu_size fields, as
// Matroska, MP4 and IVF hold them, dropping temporal delimiters and tile
// lists as the RTP spec says. key: the temporal unit carries a sequence
// header (encoders send one with each keyframe).
func (d *depack) av1(frame, p []byte) ([]byte, bool, error) {
	if len(p) < 2 {
		return frame, false, errShortPayload
	}
	z, y, w := p[0]&0x80 != 0, p[0]&0x40 != 0, int(p[0]>>4)&3
	if !z && d.inOB {
		d.inOB = false // the end of the previous fragment was lost
		d.obu = d.obu[:0]
	}
	key := false
	for i, off := 0, 1; off < len(p); i++ {
		n := len(p) - off
		if w == 0 || i < w-1 {
			v, m := leb128(p[off:])
			if m == 0 || v > uint64(len(p)-off-m) {
				return frame, key, errOBU
			}
			off += m
			n = int(v)
		}
		elem := p[off : off+n]
		off += n
		last := off >= len(p)
		cont := i == 0 && z
		if cont && !d.inOB {
			if last && y {
				return frame, key, errFragment
			}
			continue // the start of this OBU was lost; it is dropped
		}
		if last && y { // continues in the next packet
			if !cont {
				d.obu = d.obu[:0]
			}
			d.obu = append(d.obu, elem...)
			d.inOB = true
			break
		}
		obu := elem
		if cont {
			d.obu = append(d.obu, elem...)
			obu = d.obu
			d.inOB = false
		}
		var k bool
		var err error
		frame, k, err = appendOBU(frame, obu)
		if err != nil {
			return frame, key, err
		}
		key = key || k
		if cont {
			d.obu = d.obu[:0]
		}
	}
	return frame, key, nil
}

// appendOBU writes one OBU with obu_has_size_field set.
func appendOBU(frame, obu []byte) ([]byte, bool, error) {
	if len(obu) == 0 {
		return frame, false, errOBU
	}
	h := obu[0]
	typ := (h >> 3) & 0x0f
	hl := 1
	if h&0x04 != 0 {
		hl = 2
	}
	if len(obu) < hl {
		return frame, false, errOBU
	}
	body := obu[hl:]
	if h&0x02 != 0 { // already sized: keep the size it says
		v, m := leb128(body)
		if m == 0 || v > uint64(len(body)-m) {
			return frame, false, errOBU
		}
		body = body[m : m+int(v)]
	}
	if typ == 2 || typ == 8 { // temporal delimiter, tile list
		return frame, false, nil
	}
	frame = append(frame, h|0x02)
	if hl == 2 {
		frame = append(frame, obu[1])
	}
	frame = appendLeb128(frame, uint64(len(body)))
	return append(frame, body...), typ == 1, nil
}

// leb128 reads an unsigned LEB128 value; n is 0 when b holds none.
func leb128(b []byte) (v uint64, n int) {
	for i := 0; i < 8 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

func appendLeb128(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// seedParamSets takes the parameter sets an SDP fmtp line gives
// (H.264 sprop-parameter-sets, H.265 sprop-vps/sps/pps), base64 NAL units.
func (d *depack) seedParamSets(fmtp string) {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "sprop-parameter-sets", "sprop-vps", "sprop-sps", "sprop-pps":
		default:
			continue
		}
		for _, b := range strings.Split(v, ",") {
			if n, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b)); err == nil {
				d.nal(n)
			}
		}
	}
	d.nals = 0
}
