package v4l2

import "unsafe"

// Kernel structures of videodev2.h, laid out as the kernel lays them out.
// Two layouts differ between 64-bit (amd64, arm64) and 32-bit ARM, and
// both are expressed without build tags:
//
//   - v4l2_format's fmt union holds struct v4l2_window, which has pointers,
//     so the union is pointer-aligned: at offset 8 on 64-bit (after 4
//     bytes of padding), at 4 on 32-bit. A zero-length [0]uintptr field
//     gives the Go struct the same alignment.
//   - v4l2_buffer holds a struct timeval (two C longs: 16 bytes on 64-bit,
//     8 on 32-bit ARM) and the m union (offset/userptr/planes/fd: as wide as
//     a pointer). Timeval uses Go int (as wide as a C long on Linux) and
//     the union is a uintptr.
//
// layout_test.go checks sizes and offsets against the kernel's values for
// amd64, arm64 and arm.

// Capability is struct v4l2_capability (VIDIOC_QUERYCAP).
type Capability struct {
	Driver       [16]byte
	Card         [32]byte
	BusInfo      [32]byte
	Version      uint32
	Capabilities uint32
	DeviceCaps   uint32
	Reserved     [3]uint32
}

// Caps returns the capabilities of the opened device node: DeviceCaps if
// the driver fills it (V4L2_CAP_DEVICE_CAPS), else Capabilities.
func (c *Capability) Caps() uint32 {
	if c.Capabilities&CapDeviceCaps != 0 {
		return c.DeviceCaps
	}
	return c.Capabilities
}

// FmtDesc is struct v4l2_fmtdesc (VIDIOC_ENUM_FMT).
type FmtDesc struct {
	Index       uint32
	Type        uint32
	Flags       uint32
	Description [32]byte
	PixelFormat uint32
	MbusCode    uint32
	Reserved    [3]uint32
}

// FrmSizeEnum is struct v4l2_frmsizeenum (VIDIOC_ENUM_FRAMESIZES). The
// union holds either a discrete size (Union[0], Union[1]) or a stepwise
// range (min_width, max_width, step_width, min_height, max_height,
// step_height).
type FrmSizeEnum struct {
	Index       uint32
	PixelFormat uint32
	Type        uint32
	Union       [6]uint32
	Reserved    [2]uint32
}

// Fract is struct v4l2_fract.
type Fract struct {
	Numerator   uint32
	Denominator uint32
}

// FrmIvalEnum is struct v4l2_frmivalenum (VIDIOC_ENUM_FRAMEINTERVALS). The
// union holds either a discrete interval (Union[0]) or a stepwise range
// (min, max, step).
type FrmIvalEnum struct {
	Index       uint32
	PixelFormat uint32
	Width       uint32
	Height      uint32
	Type        uint32
	Union       [3]Fract
	Reserved    [2]uint32
}

// PixFormat is struct v4l2_pix_format.
type PixFormat struct {
	Width        uint32
	Height       uint32
	PixelFormat  uint32
	Field        uint32
	BytesPerLine uint32
	SizeImage    uint32
	Colorspace   uint32
	Priv         uint32
	Flags        uint32
	YcbcrEnc     uint32
	Quantization uint32
	XferFunc     uint32
}

// Format is struct v4l2_format (VIDIOC_G_FMT, VIDIOC_S_FMT) with the pix
// member of its 200-byte fmt union.
type Format struct {
	Type uint32
	_    [0]uintptr // the union is pointer-aligned (struct v4l2_window)
	Pix  PixFormat
	_    [200 - unsafe.Sizeof(PixFormat{})]byte
}

// CaptureParm is struct v4l2_captureparm.
type CaptureParm struct {
	Capability   uint32
	CaptureMode  uint32
	TimePerFrame Fract
	ExtendedMode uint32
	ReadBuffers  uint32
	Reserved     [4]uint32
}

// StreamParm is struct v4l2_streamparm (VIDIOC_G_PARM, VIDIOC_S_PARM) with
// the capture member of its 200-byte parm union.
type StreamParm struct {
	Type    uint32
	Capture CaptureParm
	_       [200 - unsafe.Sizeof(CaptureParm{})]byte
}

// RequestBuffers is struct v4l2_requestbuffers (VIDIOC_REQBUFS).
type RequestBuffers struct {
	Count        uint32
	Type         uint32
	Memory       uint32
	Capabilities uint32
	Flags        uint8
	Reserved     [3]uint8
}

// Timeval is the kernel's struct timeval: two C longs.
type Timeval struct {
	Sec  int
	Usec int
}

// Nanoseconds returns the time in nanoseconds.
func (t Timeval) Nanoseconds() int64 { return int64(t.Sec)*1e9 + int64(t.Usec)*1e3 }

// Timecode is struct v4l2_timecode.
type Timecode struct {
	Type     uint32
	Flags    uint32
	Frames   uint8
	Seconds  uint8
	Minutes  uint8
	Hours    uint8
	Userbits [4]uint8
}

// Buffer is struct v4l2_buffer (VIDIOC_QUERYBUF, VIDIOC_QBUF,
// VIDIOC_DQBUF). M is the m union; for MMAP buffers its low 32 bits are
// m.offset (see Offset).
type Buffer struct {
	Index     uint32
	Type      uint32
	BytesUsed uint32
	Flags     uint32
	Field     uint32
	Timestamp Timeval
	Timecode  Timecode
	Sequence  uint32
	Memory    uint32
	M         uintptr
	Length    uint32
	RequestFD int32 // union { reserved2; request_fd }
	Reserved  uint32
}

// Offset returns m.offset, the mmap offset of an MMAP buffer (the union's
// first 4 bytes; all supported architectures are little-endian).
func (b *Buffer) Offset() uint32 { return uint32(b.M) }

// SetOffset sets m.offset.
func (b *Buffer) SetOffset(off uint32) { b.M = uintptr(off) }

// QueryCtrl is struct v4l2_queryctrl (VIDIOC_QUERYCTRL).
type QueryCtrl struct {
	ID           uint32
	Type         uint32
	Name         [32]byte
	Minimum      int32
	Maximum      int32
	Step         int32
	DefaultValue int32
	Flags        uint32
	Reserved     [2]uint32
}

// Control is struct v4l2_control (VIDIOC_G_CTRL, VIDIOC_S_CTRL).
type Control struct {
	ID    uint32
	Value int32
}

// Constants of videodev2.h / v4l2-controls.h.
const (
	CapVideoCapture       = 0x00000001
	CapVideoCaptureMplane = 0x00001000
	CapStreaming          = 0x04000000
	CapDeviceCaps         = 0x80000000

	BufTypeVideoCapture = 1
	MemoryMMAP          = 1
	FieldNone           = 1

	FrmSizeTypeDiscrete   = 1
	FrmSizeTypeContinuous = 2
	FrmSizeTypeStepwise   = 3
	FrmIvalTypeDiscrete   = 1
	FrmIvalTypeContinuous = 2
	FrmIvalTypeStepwise   = 3

	CapTimePerFrame = 0x1000 // v4l2_captureparm.capability

	BufFlagMapped             = 0x00000001
	BufFlagQueued             = 0x00000002
	BufFlagDone               = 0x00000004
	BufFlagKeyframe           = 0x00000008
	BufFlagError              = 0x00000040
	BufFlagTimestampMask      = 0x0000e000
	BufFlagTimestampMonotonic = 0x00002000

	CtrlFlagDisabled = 0x0001
	CtrlFlagReadOnly = 0x0004
	CtrlFlagInactive = 0x0010

	// Codec control class (V4L2_CID_CODEC_BASE = V4L2_CTRL_CLASS_CODEC | 0x900).
	CIDCodecBase              = 0x00990900
	CIDMPEGVideoGOPSize       = CIDCodecBase + 203
	CIDMPEGVideoForceKeyFrame = CIDCodecBase + 229
	CIDMPEGVideoH264IPeriod   = CIDCodecBase + 358
)

// FourCC returns v4l2_fourcc(a, b, c, d).
func FourCC(a, b, c, d byte) uint32 {
	return uint32(a) | uint32(b)<<8 | uint32(c)<<16 | uint32(d)<<24
}

// PixFmtH264 is V4L2_PIX_FMT_H264: H.264 with start codes.
var PixFmtH264 = FourCC('H', '2', '6', '4')

// FourCCString renders a pixel format code as its four characters.
func FourCCString(f uint32) string {
	b := []byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '.'
		}
	}
	return string(b)
}

// cstr returns a NUL-terminated C string from a fixed array.
func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// CString returns a NUL-terminated C string field as a Go string.
func CString(b []byte) string { return cstr(b) }
