package container

import "fmt"

// vp8Size reads the picture size of a VP8 keyframe (RFC 6386 9.1): a 3-byte
// frame tag, the start code 9d 01 2a, then 14-bit width and height.
func vp8Size(f []byte) (w, h int, err error) {
	if len(f) < 10 || f[0]&1 != 0 {
		return 0, 0, fmt.Errorf("VP8 frame is not a keyframe: %w", ErrNeedKeyframe)
	}
	if f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0, 0, fmt.Errorf("VP8 keyframe without start code: %w", ErrNeedKeyframe)
	}
	w = int(f[6]) | int(f[7]&0x3f)<<8
	h = int(f[8]) | int(f[9]&0x3f)<<8
	return w, h, nil
}

// vp9Info is what a VP9 keyframe's uncompressed header says about the
// stream (VP9 bitstream spec 6.2).
type vp9Info struct {
	profile, bitDepth, ssX, ssY, fullRange int
	width, height                          int
}

// parseVP9Keyframe reads the uncompressed header of a VP9 keyframe. It
// fails for an inter frame; a superframe's first frame is read.
func parseVP9Keyframe(f []byte) (vp9Info, error) {
	r := &bitReader{b: f}
	if r.u(2) != 2 {
		return vp9Info{}, fmt.Errorf("VP9 frame marker missing")
	}
	lo, hi := int(r.u(1)), int(r.u(1))
	v := vp9Info{profile: hi<<1 | lo, bitDepth: 8, ssX: 1, ssY: 1}
	if v.profile == 3 {
		r.skip(1)
	}
	if r.flag() { // show_existing_frame
		return vp9Info{}, fmt.Errorf("VP9 frame is not a keyframe: %w", ErrNeedKeyframe)
	}
	if r.u(1) != 0 { // frame_type: 0 = KEY_FRAME
		return vp9Info{}, fmt.Errorf("VP9 frame is not a keyframe: %w", ErrNeedKeyframe)
	}
	r.skip(2) // show_frame, error_resilient_mode
	if r.u(24) != 0x498342 {
		return vp9Info{}, fmt.Errorf("VP9 keyframe without sync code")
	}
	if v.profile >= 2 {
		v.bitDepth = 10 + 2*int(r.u(1))
	}
	cs := r.u(3)
	if cs != 7 { // not CS_RGB
		v.fullRange = int(r.u(1))
		if v.profile == 1 || v.profile == 3 {
			v.ssX, v.ssY = int(r.u(1)), int(r.u(1))
			r.skip(1)
		}
	} else {
		v.fullRange, v.ssX, v.ssY = 1, 0, 0
		if v.profile == 1 || v.profile == 3 {
			r.skip(1)
		}
	}
	v.width, v.height = int(r.u(16))+1, int(r.u(16))+1
	if r.err != nil {
		return vp9Info{}, fmt.Errorf("VP9 keyframe header: %w", r.err)
	}
	return v, nil
}

// vpcC builds the VP9 codec configuration box payload (VP Codec ISO Media
// File Format Binding, version 1) for MP4.
func vpcC(v vp9Info) []byte {
	chroma := 1 // 4:2:0 colocated with luma (0 would be "vertical")
	switch {
	case v.ssX == 1 && v.ssY == 0:
		chroma = 2
	case v.ssX == 0 && v.ssY == 0:
		chroma = 3
	}
	return []byte{
		1, 0, 0, 0, // version 1, flags
		byte(v.profile), 0, // level 0: not given
		byte(v.bitDepth<<4 | chroma<<1 | v.fullRange),
		2, 2, 2, // colour primaries, transfer, matrix: unspecified
		0, 0, // no codec initialization data
	}
}
