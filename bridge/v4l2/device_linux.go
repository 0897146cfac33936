package v4l2

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OpenDevice opens a V4L2 device node read-write and non-blocking (DQBUF
// returns EAGAIN instead of blocking; Wait polls).
func OpenDevice(path string) (Device, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &device{fd: fd}, nil
}

type device struct{ fd int }

func (d *device) ioctl(req uint32, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(d.fd), uintptr(req), uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

func (d *device) QueryCap(c *Capability) error { return d.ioctl(VIDIOC_QUERYCAP, unsafe.Pointer(c)) }
func (d *device) EnumFmt(f *FmtDesc) error     { return d.ioctl(VIDIOC_ENUM_FMT, unsafe.Pointer(f)) }
func (d *device) EnumFrameSizes(f *FrmSizeEnum) error {
	return d.ioctl(VIDIOC_ENUM_FRAMESIZES, unsafe.Pointer(f))
}
func (d *device) EnumFrameIntervals(f *FrmIvalEnum) error {
	return d.ioctl(VIDIOC_ENUM_FRAMEINTERVALS, unsafe.Pointer(f))
}
func (d *device) GetFormat(f *Format) error       { return d.ioctl(VIDIOC_G_FMT, unsafe.Pointer(f)) }
func (d *device) SetFormat(f *Format) error       { return d.ioctl(VIDIOC_S_FMT, unsafe.Pointer(f)) }
func (d *device) SetParm(p *StreamParm) error     { return d.ioctl(VIDIOC_S_PARM, unsafe.Pointer(p)) }
func (d *device) ReqBufs(r *RequestBuffers) error { return d.ioctl(VIDIOC_REQBUFS, unsafe.Pointer(r)) }
func (d *device) QueryBuf(b *Buffer) error        { return d.ioctl(VIDIOC_QUERYBUF, unsafe.Pointer(b)) }
func (d *device) QBuf(b *Buffer) error            { return d.ioctl(VIDIOC_QBUF, unsafe.Pointer(b)) }
func (d *device) DQBuf(b *Buffer) error           { return d.ioctl(VIDIOC_DQBUF, unsafe.Pointer(b)) }
func (d *device) QueryCtrl(q *QueryCtrl) error    { return d.ioctl(VIDIOC_QUERYCTRL, unsafe.Pointer(q)) }
func (d *device) SetCtrl(c *Control) error        { return d.ioctl(VIDIOC_S_CTRL, unsafe.Pointer(c)) }
func (d *device) StreamOn(bufType uint32) error {
	t := int32(bufType)
	return d.ioctl(VIDIOC_STREAMON, unsafe.Pointer(&t))
}
func (d *device) StreamOff(bufType uint32) error {
	t := int32(bufType)
	return d.ioctl(VIDIOC_STREAMOFF, unsafe.Pointer(&t))
}

func (d *device) Mmap(offset uint32, length int) ([]byte, error) {
	return unix.Mmap(d.fd, int64(offset), length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func (d *device) Munmap(b []byte) error { return unix.Munmap(b) }

func (d *device) Wait(timeout time.Duration) (bool, error) {
	fds := [1]unix.PollFd{{Fd: int32(d.fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline).Milliseconds())
		if ms < 0 {
			ms = 0
		}
		n, err := unix.Poll(fds[:], ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			return false, nil
		}
		// POLLIN, or POLLERR/POLLHUP: DQBUF then says what happened
		// (a frame, EAGAIN, ENODEV after an unplug, EIO).
		return true, nil
	}
}

func (d *device) Close() error {
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}
