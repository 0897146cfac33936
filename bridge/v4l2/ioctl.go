package v4l2

import "unsafe"

// Linux ioctl request encoding (asm-generic/ioctl.h, used by x86, arm and
// arm64): nr in bits 0-7, type in 8-15, size in 16-29, direction in 30-31.
// The sizes come from the Go structs, so the numbers are right for the
// architecture being built (v4l2_format and v4l2_buffer differ in size
// between 64-bit and 32-bit ARM).
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

func ioc(dir, typ, nr, size uintptr) uint32 {
	return uint32(dir<<30 | size<<16 | typ<<8 | nr)
}

func ior(nr, size uintptr) uint32  { return ioc(iocRead, 'V', nr, size) }
func iow(nr, size uintptr) uint32  { return ioc(iocWrite, 'V', nr, size) }
func iowr(nr, size uintptr) uint32 { return ioc(iocRead|iocWrite, 'V', nr, size) }

// VIDIOC_* request numbers for this architecture.
var (
	VIDIOC_QUERYCAP            = ior(0, unsafe.Sizeof(Capability{}))
	VIDIOC_ENUM_FMT            = iowr(2, unsafe.Sizeof(FmtDesc{}))
	VIDIOC_G_FMT               = iowr(4, unsafe.Sizeof(Format{}))
	VIDIOC_S_FMT               = iowr(5, unsafe.Sizeof(Format{}))
	VIDIOC_REQBUFS             = iowr(8, unsafe.Sizeof(RequestBuffers{}))
	VIDIOC_QUERYBUF            = iowr(9, unsafe.Sizeof(Buffer{}))
	VIDIOC_QBUF                = iowr(15, unsafe.Sizeof(Buffer{}))
	VIDIOC_DQBUF               = iowr(17, unsafe.Sizeof(Buffer{}))
	VIDIOC_STREAMON            = iow(18, unsafe.Sizeof(int32(0)))
	VIDIOC_STREAMOFF           = iow(19, unsafe.Sizeof(int32(0)))
	VIDIOC_G_PARM              = iowr(21, unsafe.Sizeof(StreamParm{}))
	VIDIOC_S_PARM              = iowr(22, unsafe.Sizeof(StreamParm{}))
	VIDIOC_G_CTRL              = iowr(27, unsafe.Sizeof(Control{}))
	VIDIOC_S_CTRL              = iowr(28, unsafe.Sizeof(Control{}))
	VIDIOC_QUERYCTRL           = iowr(36, unsafe.Sizeof(QueryCtrl{}))
	VIDIOC_ENUM_FRAMESIZES     = iowr(74, unsafe.Sizeof(FrmSizeEnum{}))
	VIDIOC_ENUM_FRAMEINTERVALS = iowr(75, unsafe.Sizeof(FrmIvalEnum{}))
)
