package v4l2

import "time"

// Device is the ioctl boundary: the only thing the capture code and
// ListDevices call. Each method is one ioctl (or mmap/poll) on an open
// V4L2 device node; errors are the raw errno (a syscall.Errno such as
// EAGAIN, ENODEV, EIO, EBUSY, EINVAL), so callers can test them with
// errors.Is. The real implementation is OpenDevice; v4l2test has a fake.
//
// SetCtrl may be called concurrently with the capture methods (a keyframe
// request arrives from another goroutine); everything else is called from
// one goroutine at a time.
type Device interface {
	QueryCap(*Capability) error
	EnumFmt(*FmtDesc) error
	EnumFrameSizes(*FrmSizeEnum) error
	EnumFrameIntervals(*FrmIvalEnum) error
	GetFormat(*Format) error
	SetFormat(*Format) error
	SetParm(*StreamParm) error
	ReqBufs(*RequestBuffers) error
	QueryBuf(*Buffer) error
	// Mmap maps the buffer at offset (Buffer.Offset from QueryBuf).
	Mmap(offset uint32, length int) ([]byte, error)
	Munmap([]byte) error
	QBuf(*Buffer) error
	DQBuf(*Buffer) error
	StreamOn(bufType uint32) error
	StreamOff(bufType uint32) error
	// Wait waits up to timeout for a buffer to be ready to dequeue (the
	// fd to be readable). It returns false on timeout.
	Wait(timeout time.Duration) (bool, error)
	QueryCtrl(*QueryCtrl) error
	SetCtrl(*Control) error
	Close() error
}

// Opener opens a device node, e.g. "/dev/video0".
type Opener func(path string) (Device, error)
