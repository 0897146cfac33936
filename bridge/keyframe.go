package bridge

import "strings"

// Written by hand: pion's depacketizers would copy the payload to answer
// this, and it runs for every packet of a relayed video track.

// PayloadKind says how to find a keyframe's first packet in a codec's RTP
// payload. The relay WHEP fan-out (gateway/wish) needs to know when a
// keyframe passes: a viewer is waiting for one from the moment it connects,
// and a request already answered by a keyframe must not hold back the next
// viewer's; the bench harness times a viewer's first keyframe.
type PayloadKind uint8

const (
	PayloadOther PayloadKind = iota // audio, or a codec not looked into
	PayloadVP8
	PayloadVP9
	PayloadH264
	PayloadH265
	PayloadAV1
)

// PayloadKindOf returns the PayloadKind of a MIME type (video/VP8).
func PayloadKindOf(mime string) PayloadKind {
	_, name, _ := strings.Cut(mime, "/")
	switch strings.ToUpper(name) {
	case "VP8":
		return PayloadVP8
	case "VP9":
		return PayloadVP9
	case "H264":
		return PayloadH264
	case "H265":
		return PayloadH265
	case "AV1":
		return PayloadAV1
	}
	return PayloadOther
}

// KeyframeStart reports whether p is the first packet of a keyframe (an
// IDR access unit, for H.264 and H.265: or of the parameter sets that
// come before it). It reads a few bytes of the payload descriptor: pion's
// depacketizers would copy the payload, and this runs for every packet.
func (k PayloadKind) KeyframeStart(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	switch k {
	case PayloadVP8:
		// RFC 7741 4.2: X R N S R PID, then the optional extension bytes,
		// then the VP8 payload header whose lowest bit is P (0: keyframe).
		if p[0]&0x10 == 0 || p[0]&0x07 != 0 {
			return false // not the start of partition 0 of a frame
		}
		i := 1
		if p[0]&0x80 != 0 {
			if len(p) < 2 {
				return false
			}
			x := p[1]
			i = 2
			if x&0x80 != 0 { // I: picture id, 7 or 15 bits
				if len(p) <= i {
					return false
				}
				if p[i]&0x80 != 0 {
					i++
				}
				i++
			}
			if x&0x40 != 0 { // L: TL0PICIDX
				i++
			}
			if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
				i++
			}
		}
		return len(p) > i && p[i]&0x01 == 0
	case PayloadVP9:
		// RFC 9628 4.2: I P L F B E V Z; B starts a frame, P says it is
		// predicted from another picture.
		return p[0]&0x08 != 0 && p[0]&0x40 == 0
	case PayloadH264:
		switch t := p[0] & 0x1f; t {
		case 5, 7: // IDR slice, SPS
			return true
		case 24: // STAP-A: 16-bit sizes, then the NAL units
			for i := 1; i+2 < len(p); {
				n := int(p[i])<<8 | int(p[i+1])
				if t := p[i+2] & 0x1f; t == 5 || t == 7 {
					return true
				}
				i += 2 + n
			}
		case 28: // FU-A: the start of a fragmented IDR slice
			return len(p) > 1 && p[1]&0x80 != 0 && p[1]&0x1f == 5
		}
	case PayloadH265:
		if len(p) < 3 {
			return false
		}
		switch t := p[0] >> 1 & 0x3f; {
		case t >= 16 && t <= 21, t == 32, t == 33: // IRAP slice, VPS, SPS
			return true
		case t == 49: // FU: the start of a fragmented IRAP slice
			ft := p[2] & 0x3f
			return p[2]&0x80 != 0 && ft >= 16 && ft <= 21
		case t == 48: // AP: the first aggregated unit
			return len(p) > 4 && (p[4]>>1&0x3f >= 16 && p[4]>>1&0x3f <= 21 || p[4]>>1&0x3f == 32 || p[4]>>1&0x3f == 33)
		}
	case PayloadAV1:
		// The aggregation header's N bit: the first packet of a coded
		// video sequence, which starts with a keyframe. Z: continues an
		// OBU of the previous packet.
		return p[0]&0x08 != 0 && p[0]&0x80 == 0
	}
	return false
}
