package v4l2

import (
	"runtime"
	"testing"
	"unsafe"
)

// kernelLayout is what videodev2.h gives for one architecture: struct
// sizes and the offsets of the fields whose place depends on alignment.
type kernelLayout struct {
	sizes   map[string]uintptr
	offsets map[string]uintptr
}

var common = map[string]uintptr{
	"v4l2_capability":     104,
	"v4l2_fmtdesc":        64,
	"v4l2_frmsizeenum":    44,
	"v4l2_frmivalenum":    52,
	"v4l2_pix_format":     48,
	"v4l2_streamparm":     204,
	"v4l2_captureparm":    40,
	"v4l2_requestbuffers": 20,
	"v4l2_queryctrl":      68,
	"v4l2_control":        8,
	"v4l2_timecode":       16,
}

func with(m map[string]uintptr, extra map[string]uintptr) map[string]uintptr {
	out := map[string]uintptr{}
	for k, v := range m {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

var layout64 = kernelLayout{
	sizes: with(common, map[string]uintptr{"v4l2_format": 208, "v4l2_buffer": 88, "timeval": 16}),
	offsets: map[string]uintptr{
		"v4l2_format.fmt":             8,
		"v4l2_buffer.timestamp":       24,
		"v4l2_buffer.timecode":        40,
		"v4l2_buffer.sequence":        56,
		"v4l2_buffer.memory":          60,
		"v4l2_buffer.m":               64,
		"v4l2_buffer.length":          72,
		"v4l2_buffer.request_fd":      76,
		"v4l2_capability.version":     80,
		"v4l2_capability.device_caps": 88,
		"v4l2_fmtdesc.pixelformat":    44,
		"v4l2_frmivalenum.type":       16,
		"v4l2_queryctrl.flags":        56,
		"v4l2_streamparm.parm":        4,
	},
}

// 32-bit ARM (EABI): longs and pointers are 4 bytes, the old 32-bit
// struct timeval (the layout VIDIOC_*BUF with size 68 carries).
var layoutARM = kernelLayout{
	sizes: with(common, map[string]uintptr{"v4l2_format": 204, "v4l2_buffer": 68, "timeval": 8}),
	offsets: map[string]uintptr{
		"v4l2_format.fmt":             4,
		"v4l2_buffer.timestamp":       20,
		"v4l2_buffer.timecode":        28,
		"v4l2_buffer.sequence":        44,
		"v4l2_buffer.memory":          48,
		"v4l2_buffer.m":               52,
		"v4l2_buffer.length":          56,
		"v4l2_buffer.request_fd":      60,
		"v4l2_capability.version":     80,
		"v4l2_capability.device_caps": 88,
		"v4l2_fmtdesc.pixelformat":    44,
		"v4l2_frmivalenum.type":       16,
		"v4l2_queryctrl.flags":        56,
		"v4l2_streamparm.parm":        4,
	},
}

var kernelLayouts = map[string]kernelLayout{
	"amd64": layout64,
	"arm64": layout64,
	"arm":   layoutARM,
}

func TestLayout(t *testing.T) {
	want, ok := kernelLayouts[runtime.GOARCH]
	if !ok {
		t.Skipf("no kernel layout table for GOARCH=%s", runtime.GOARCH)
	}
	var (
		f  Format
		b  Buffer
		c  Capability
		fd FmtDesc
		fi FrmIvalEnum
		q  QueryCtrl
		sp StreamParm
	)
	got := map[string]uintptr{
		"v4l2_capability":     unsafe.Sizeof(c),
		"v4l2_fmtdesc":        unsafe.Sizeof(fd),
		"v4l2_frmsizeenum":    unsafe.Sizeof(FrmSizeEnum{}),
		"v4l2_frmivalenum":    unsafe.Sizeof(fi),
		"v4l2_pix_format":     unsafe.Sizeof(PixFormat{}),
		"v4l2_streamparm":     unsafe.Sizeof(sp),
		"v4l2_captureparm":    unsafe.Sizeof(CaptureParm{}),
		"v4l2_requestbuffers": unsafe.Sizeof(RequestBuffers{}),
		"v4l2_queryctrl":      unsafe.Sizeof(q),
		"v4l2_control":        unsafe.Sizeof(Control{}),
		"v4l2_timecode":       unsafe.Sizeof(Timecode{}),
		"v4l2_format":         unsafe.Sizeof(f),
		"v4l2_buffer":         unsafe.Sizeof(b),
		"timeval":             unsafe.Sizeof(Timeval{}),
	}
	for name, size := range want.sizes {
		if got[name] != size {
			t.Errorf("sizeof(%s) = %d, kernel has %d", name, got[name], size)
		}
	}
	gotOff := map[string]uintptr{
		"v4l2_format.fmt":             unsafe.Offsetof(f.Pix),
		"v4l2_buffer.timestamp":       unsafe.Offsetof(b.Timestamp),
		"v4l2_buffer.timecode":        unsafe.Offsetof(b.Timecode),
		"v4l2_buffer.sequence":        unsafe.Offsetof(b.Sequence),
		"v4l2_buffer.memory":          unsafe.Offsetof(b.Memory),
		"v4l2_buffer.m":               unsafe.Offsetof(b.M),
		"v4l2_buffer.length":          unsafe.Offsetof(b.Length),
		"v4l2_buffer.request_fd":      unsafe.Offsetof(b.RequestFD),
		"v4l2_capability.version":     unsafe.Offsetof(c.Version),
		"v4l2_capability.device_caps": unsafe.Offsetof(c.DeviceCaps),
		"v4l2_fmtdesc.pixelformat":    unsafe.Offsetof(fd.PixelFormat),
		"v4l2_frmivalenum.type":       unsafe.Offsetof(fi.Type),
		"v4l2_queryctrl.flags":        unsafe.Offsetof(q.Flags),
		"v4l2_streamparm.parm":        unsafe.Offsetof(sp.Capture),
	}
	for name, off := range want.offsets {
		if gotOff[name] != off {
			t.Errorf("offsetof(%s) = %d, kernel has %d", name, gotOff[name], off)
		}
	}
}

// Request numbers as the kernel headers define them, per architecture.
var kernelIoctls = map[string]map[string]uint32{
	"amd64": ioctls64,
	"arm64": ioctls64,
	"arm": {
		"VIDIOC_QUERYCAP":            0x80685600,
		"VIDIOC_ENUM_FMT":            0xc0405602,
		"VIDIOC_G_FMT":               0xc0cc5604,
		"VIDIOC_S_FMT":               0xc0cc5605,
		"VIDIOC_REQBUFS":             0xc0145608,
		"VIDIOC_QUERYBUF":            0xc0445609,
		"VIDIOC_QBUF":                0xc044560f,
		"VIDIOC_DQBUF":               0xc0445611,
		"VIDIOC_STREAMON":            0x40045612,
		"VIDIOC_STREAMOFF":           0x40045613,
		"VIDIOC_S_PARM":              0xc0cc5616,
		"VIDIOC_S_CTRL":              0xc008561c,
		"VIDIOC_QUERYCTRL":           0xc0445624,
		"VIDIOC_ENUM_FRAMESIZES":     0xc02c564a,
		"VIDIOC_ENUM_FRAMEINTERVALS": 0xc034564b,
	},
}

var ioctls64 = map[string]uint32{
	"VIDIOC_QUERYCAP":            0x80685600,
	"VIDIOC_ENUM_FMT":            0xc0405602,
	"VIDIOC_G_FMT":               0xc0d05604,
	"VIDIOC_S_FMT":               0xc0d05605,
	"VIDIOC_REQBUFS":             0xc0145608,
	"VIDIOC_QUERYBUF":            0xc0585609,
	"VIDIOC_QBUF":                0xc058560f,
	"VIDIOC_DQBUF":               0xc0585611,
	"VIDIOC_STREAMON":            0x40045612,
	"VIDIOC_STREAMOFF":           0x40045613,
	"VIDIOC_S_PARM":              0xc0cc5616,
	"VIDIOC_S_CTRL":              0xc008561c,
	"VIDIOC_QUERYCTRL":           0xc0445624,
	"VIDIOC_ENUM_FRAMESIZES":     0xc02c564a,
	"VIDIOC_ENUM_FRAMEINTERVALS": 0xc034564b,
}

func TestIoctlNumbers(t *testing.T) {
	want, ok := kernelIoctls[runtime.GOARCH]
	if !ok {
		t.Skipf("no ioctl table for GOARCH=%s", runtime.GOARCH)
	}
	got := map[string]uint32{
		"VIDIOC_QUERYCAP":            VIDIOC_QUERYCAP,
		"VIDIOC_ENUM_FMT":            VIDIOC_ENUM_FMT,
		"VIDIOC_G_FMT":               VIDIOC_G_FMT,
		"VIDIOC_S_FMT":               VIDIOC_S_FMT,
		"VIDIOC_REQBUFS":             VIDIOC_REQBUFS,
		"VIDIOC_QUERYBUF":            VIDIOC_QUERYBUF,
		"VIDIOC_QBUF":                VIDIOC_QBUF,
		"VIDIOC_DQBUF":               VIDIOC_DQBUF,
		"VIDIOC_STREAMON":            VIDIOC_STREAMON,
		"VIDIOC_STREAMOFF":           VIDIOC_STREAMOFF,
		"VIDIOC_S_PARM":              VIDIOC_S_PARM,
		"VIDIOC_S_CTRL":              VIDIOC_S_CTRL,
		"VIDIOC_QUERYCTRL":           VIDIOC_QUERYCTRL,
		"VIDIOC_ENUM_FRAMESIZES":     VIDIOC_ENUM_FRAMESIZES,
		"VIDIOC_ENUM_FRAMEINTERVALS": VIDIOC_ENUM_FRAMEINTERVALS,
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s = %#x, kernel has %#x", name, got[name], n)
		}
	}
}

func TestConstants(t *testing.T) {
	if PixFmtH264 != 0x34363248 {
		t.Errorf("V4L2_PIX_FMT_H264 = %#x", PixFmtH264)
	}
	for name, v := range map[string][2]uint32{
		"V4L2_CID_MPEG_VIDEO_GOP_SIZE":        {CIDMPEGVideoGOPSize, 0x009909cb},
		"V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME": {CIDMPEGVideoForceKeyFrame, 0x009909e5},
		"V4L2_CID_MPEG_VIDEO_H264_I_PERIOD":   {CIDMPEGVideoH264IPeriod, 0x00990a66},
	} {
		if v[0] != v[1] {
			t.Errorf("%s = %#x, want %#x", name, v[0], v[1])
		}
	}
}
