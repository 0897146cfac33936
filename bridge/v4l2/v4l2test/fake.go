// Package v4l2test is a fake V4L2 H.264 camera below the v4l2 package's
// ioctl boundary (v4l2.Device), for tests of v4l2 and of packages that use
// it. It serves given access units, one per dequeued buffer, looping, with
// driver timestamps on the monotonic clock advancing by exactly the frame
// interval, and scriptable faults.
package v4l2test

import (
	"bytes"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rtgate/rtgate/bridge/v4l2"
)

// Camera is the fake camera: the hardware behind every Device that Open
// returns. Configure it before the first Open, or through its methods
// while a test runs.
type Camera struct {
	mu sync.Mutex

	aus      [][]byte
	width    uint32
	height   uint32
	interval time.Duration
	fps      uint32
	idr      []bool // aus[i] has an IDR slice

	// Scriptable behaviour, guarded by mu.
	realtime     bool            // pace frames at the interval (else always due)
	openErr      error           // Open fails with it (EBUSY)
	reqbufsErr   error           // REQBUFS fails with it
	fmtOverride  *v4l2.PixFormat // S_FMT answers with this
	extraFormats []uint32        // formats offered besides H264 (ENUM_FMT)
	failAt       int64           // DQBUF of this frame number (0-based, global) fails with failErr
	failErr      error
	stallAt      int64 // from this frame number on, nothing becomes ready
	eagainEvery  int   // every n-th DQBUF after a ready Wait returns EAGAIN
	controls     map[uint32]bool
	notCapture   bool

	// Records.
	served   int64 // frames dequeued, across opens
	opens    int
	setCtrls []v4l2.Control
	parm     v4l2.Fract
	eagains  int
	open     int // devices currently open
}

// NewCamera returns a camera serving aus (Annex-B access units) at
// width x height and fps. It has the FORCE_KEY_FRAME and H264_I_PERIOD
// controls; frames are served as fast as they are dequeued unless
// SetRealtime(true).
func NewCamera(aus [][]byte, width, height, fps int) *Camera {
	idr := make([]bool, len(aus))
	for i, au := range aus {
		idr[i] = IsIDR(au)
	}
	return &Camera{
		idr: idr, aus: aus, width: uint32(width), height: uint32(height),
		interval: time.Second / time.Duration(fps), fps: uint32(fps),
		failAt: -1, stallAt: -1,
		controls: map[uint32]bool{v4l2.CIDMPEGVideoForceKeyFrame: true, v4l2.CIDMPEGVideoH264IPeriod: true},
	}
}

// SetRealtime paces frames at the frame interval: DQBUF before a frame is
// due returns EAGAIN and Wait sleeps until it is due.
func (c *Camera) SetRealtime(on bool) { c.mu.Lock(); c.realtime = on; c.mu.Unlock() }

// FailOpen makes Open fail with err (e.g. syscall.EBUSY); nil clears it.
func (c *Camera) FailOpen(err error) { c.mu.Lock(); c.openErr = err; c.mu.Unlock() }

// FailReqBufs makes REQBUFS fail with err (e.g. syscall.EBUSY).
func (c *Camera) FailReqBufs(err error) { c.mu.Lock(); c.reqbufsErr = err; c.mu.Unlock() }

// OverrideFormat makes S_FMT answer with this pixel format and size
// instead of the requested one, as a driver does that cannot do it.
func (c *Camera) OverrideFormat(pixfmt uint32, width, height uint32) {
	c.mu.Lock()
	c.fmtOverride = &v4l2.PixFormat{PixelFormat: pixfmt, Width: width, Height: height}
	c.mu.Unlock()
}

// OfferFormats adds pixel formats that ENUM_FMT lists besides H.264.
func (c *Camera) OfferFormats(f ...uint32) { c.mu.Lock(); c.extraFormats = f; c.mu.Unlock() }

// FailAt makes the DQBUF that would serve frame n (counted over all opens
// from 0) fail with err (ENODEV, EIO), once.
func (c *Camera) FailAt(n int64, err error) { c.mu.Lock(); c.failAt, c.failErr = n, err; c.mu.Unlock() }

// StallAt makes frames from number n on never become ready (Wait times
// out) until StallAt(-1).
func (c *Camera) StallAt(n int64) { c.mu.Lock(); c.stallAt = n; c.mu.Unlock() }

// EAGAINEvery makes every n-th DQBUF return EAGAIN although Wait said
// ready (a spurious wakeup); 0 turns it off.
func (c *Camera) EAGAINEvery(n int) { c.mu.Lock(); c.eagainEvery = n; c.mu.Unlock() }

// SetControl adds or removes a control (QUERYCTRL answers EINVAL for a
// missing one).
func (c *Camera) SetControl(id uint32, present bool) {
	c.mu.Lock()
	c.controls[id] = present
	c.mu.Unlock()
}

// SetNotCapture makes QUERYCAP report a device that cannot capture video.
func (c *Camera) SetNotCapture(on bool) { c.mu.Lock(); c.notCapture = on; c.mu.Unlock() }

// Served returns the number of frames dequeued over all opens.
func (c *Camera) Served() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.served }

// Opens returns how many times Open succeeded.
func (c *Camera) Opens() int { c.mu.Lock(); defer c.mu.Unlock(); return c.opens }

// OpenDevices returns how many devices are open (not yet closed).
func (c *Camera) OpenDevices() int { c.mu.Lock(); defer c.mu.Unlock(); return c.open }

// EAGAINs returns how many DQBUFs returned EAGAIN.
func (c *Camera) EAGAINs() int { c.mu.Lock(); defer c.mu.Unlock(); return c.eagains }

// SetCtrls returns the S_CTRL calls made.
func (c *Camera) SetCtrls() []v4l2.Control {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]v4l2.Control(nil), c.setCtrls...)
}

// TimePerFrame returns the frame interval last set with S_PARM.
func (c *Camera) TimePerFrame() v4l2.Fract { c.mu.Lock(); defer c.mu.Unlock(); return c.parm }

// Interval is the driver timestamp step between frames.
func (c *Camera) Interval() time.Duration { return c.interval }

// Open is a v4l2.Opener.
func (c *Camera) Open(path string) (v4l2.Device, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.openErr != nil {
		return nil, c.openErr
	}
	c.opens++
	c.open++
	return &device{cam: c}, nil
}

type device struct {
	cam       *Camera
	closed    bool
	bufs      [][]byte
	queued    []uint32
	streaming bool
	start     time.Time // when streaming started (pacing)
	base      int64     // monotonic ns of the first frame of this stream
	n         int64     // frames served on this stream
	dqbufs    int
	pix       v4l2.PixFormat
}

var _ v4l2.Device = (*device)(nil)

func (d *device) lock() (*Camera, error) {
	d.cam.mu.Lock()
	if d.closed {
		d.cam.mu.Unlock()
		return nil, syscall.EBADF
	}
	return d.cam, nil
}

func copyStr(dst []byte, s string) { copy(dst[:len(dst)-1], s) }

func (d *device) QueryCap(cp *v4l2.Capability) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	*cp = v4l2.Capability{Version: 0x060800}
	copyStr(cp.Driver[:], "v4l2test")
	copyStr(cp.Card[:], "Fake H.264 Camera")
	copyStr(cp.BusInfo[:], "platform:v4l2test")
	cp.DeviceCaps = v4l2.CapVideoCapture | v4l2.CapStreaming
	if c.notCapture {
		cp.DeviceCaps = v4l2.CapStreaming
	}
	cp.Capabilities = cp.DeviceCaps | v4l2.CapDeviceCaps
	return nil
}

func (c *Camera) formats() []uint32 { return append([]uint32{v4l2.PixFmtH264}, c.extraFormats...) }

func (d *device) EnumFmt(f *v4l2.FmtDesc) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	fs := c.formats()
	if f.Type != v4l2.BufTypeVideoCapture || int(f.Index) >= len(fs) {
		return syscall.EINVAL
	}
	f.PixelFormat = fs[f.Index]
	f.Flags = 1 // V4L2_FMT_FLAG_COMPRESSED
	copyStr(f.Description[:], v4l2.FourCCString(f.PixelFormat))
	if f.PixelFormat == v4l2.PixFmtH264 {
		copyStr(f.Description[:], "H.264")
	}
	return nil
}

func (d *device) EnumFrameSizes(f *v4l2.FrmSizeEnum) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if f.Index != 0 || !contains(c.formats(), f.PixelFormat) {
		return syscall.EINVAL
	}
	f.Type = v4l2.FrmSizeTypeDiscrete
	f.Union[0], f.Union[1] = c.width, c.height
	return nil
}

func (d *device) EnumFrameIntervals(f *v4l2.FrmIvalEnum) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if f.Index != 0 || !contains(c.formats(), f.PixelFormat) || f.Width != c.width || f.Height != c.height {
		return syscall.EINVAL
	}
	f.Type = v4l2.FrmIvalTypeDiscrete
	f.Union[0] = v4l2.Fract{Numerator: 1, Denominator: c.fps}
	return nil
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (d *device) GetFormat(f *v4l2.Format) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if f.Type != v4l2.BufTypeVideoCapture {
		return syscall.EINVAL
	}
	if d.pix.Width == 0 {
		d.pix = v4l2.PixFormat{Width: c.width, Height: c.height, PixelFormat: v4l2.PixFmtH264, Field: v4l2.FieldNone}
	}
	f.Pix = d.pix
	return nil
}

func (d *device) SetFormat(f *v4l2.Format) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if f.Type != v4l2.BufTypeVideoCapture {
		return syscall.EINVAL
	}
	if d.bufs != nil {
		return syscall.EBUSY
	}
	// Like a driver: adjust to what the hardware can do.
	p := v4l2.PixFormat{Width: c.width, Height: c.height, PixelFormat: v4l2.PixFmtH264, Field: v4l2.FieldNone}
	if o := c.fmtOverride; o != nil {
		p.PixelFormat, p.Width, p.Height = o.PixelFormat, o.Width, o.Height
	}
	p.SizeImage = uint32(c.maxAU() + 4096)
	d.pix = p
	f.Pix = p
	return nil
}

func (c *Camera) maxAU() int {
	m := 0
	for _, au := range c.aus {
		m = max(m, len(au))
	}
	return m
}

func (d *device) SetParm(p *v4l2.StreamParm) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if p.Type != v4l2.BufTypeVideoCapture {
		return syscall.EINVAL
	}
	c.parm = p.Capture.TimePerFrame
	// The camera runs at its one rate whatever was asked.
	p.Capture.Capability = v4l2.CapTimePerFrame
	p.Capture.TimePerFrame = v4l2.Fract{Numerator: 1, Denominator: c.fps}
	return nil
}

func (d *device) ReqBufs(r *v4l2.RequestBuffers) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if c.reqbufsErr != nil {
		return c.reqbufsErr
	}
	if r.Type != v4l2.BufTypeVideoCapture || r.Memory != v4l2.MemoryMMAP {
		return syscall.EINVAL
	}
	if d.streaming {
		return syscall.EBUSY
	}
	d.queued = d.queued[:0]
	if r.Count == 0 {
		d.bufs = nil
		return nil
	}
	r.Count = min(r.Count, 32)
	size := int(d.pix.SizeImage)
	if size == 0 {
		size = c.maxAU() + 4096
	}
	d.bufs = make([][]byte, r.Count)
	for i := range d.bufs {
		d.bufs[i] = make([]byte, size)
	}
	return nil
}

const pageSize = 1 << 20 // fake mmap offsets: buffer i at i*pageSize

func (d *device) QueryBuf(b *v4l2.Buffer) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if int(b.Index) >= len(d.bufs) {
		return syscall.EINVAL
	}
	b.Length = uint32(len(d.bufs[b.Index]))
	b.SetOffset(b.Index * pageSize)
	b.Flags = v4l2.BufFlagMapped | v4l2.BufFlagTimestampMonotonic
	return nil
}

func (d *device) Mmap(offset uint32, length int) ([]byte, error) {
	c, err := d.lock()
	if err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	i := int(offset / pageSize)
	if offset%pageSize != 0 || i >= len(d.bufs) || length > len(d.bufs[i]) {
		return nil, syscall.EINVAL
	}
	return d.bufs[i][:length], nil
}

func (d *device) Munmap([]byte) error { return nil }

func (d *device) QBuf(b *v4l2.Buffer) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if int(b.Index) >= len(d.bufs) || b.Memory != v4l2.MemoryMMAP {
		return syscall.EINVAL
	}
	for _, q := range d.queued {
		if q == b.Index {
			return syscall.EINVAL
		}
	}
	d.queued = append(d.queued, b.Index)
	return nil
}

// due reports whether the next frame can be dequeued now, and if not how
// long until it can (-1: never, a stall).
func (d *device) due(c *Camera) (bool, time.Duration) {
	if c.stallAt >= 0 && c.served >= c.stallAt {
		return false, -1
	}
	if len(d.queued) == 0 {
		return false, -1
	}
	if !c.realtime {
		return true, 0
	}
	wait := time.Until(d.start.Add(time.Duration(d.n) * c.interval))
	return wait <= 0, wait
}

func (d *device) Wait(timeout time.Duration) (bool, error) {
	c, err := d.lock()
	if err != nil {
		return false, err
	}
	if !d.streaming {
		c.mu.Unlock()
		return false, syscall.EINVAL
	}
	ok, wait := d.due(c)
	spurious := c.eagainEvery > 0
	c.mu.Unlock()
	if ok || spurious {
		return true, nil
	}
	if wait < 0 || wait > timeout {
		time.Sleep(timeout)
		return false, nil
	}
	time.Sleep(wait)
	return true, nil
}

func (d *device) DQBuf(b *v4l2.Buffer) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if !d.streaming {
		return syscall.EINVAL
	}
	if c.failAt >= 0 && c.served == c.failAt {
		c.failAt = -1
		return c.failErr
	}
	d.dqbufs++
	if c.eagainEvery > 0 && d.dqbufs%c.eagainEvery == 0 {
		c.eagains++
		return syscall.EAGAIN
	}
	if ok, _ := d.due(c); !ok {
		c.eagains++
		return syscall.EAGAIN
	}
	i := d.queued[0]
	d.queued = d.queued[1:]
	k := c.served % int64(len(c.aus))
	au := c.aus[k]
	buf := d.bufs[i]
	if len(au) > len(buf) {
		return syscall.EIO
	}
	copy(buf, au)
	ts := d.base + d.n*int64(c.interval)
	*b = v4l2.Buffer{
		Index:     i,
		Type:      v4l2.BufTypeVideoCapture,
		BytesUsed: uint32(len(au)),
		Flags:     v4l2.BufFlagMapped | v4l2.BufFlagDone | v4l2.BufFlagTimestampMonotonic,
		Field:     v4l2.FieldNone,
		Timestamp: v4l2.Timeval{Sec: int(ts / 1e9), Usec: int(ts % 1e9 / 1e3)},
		Sequence:  uint32(d.n),
		Memory:    v4l2.MemoryMMAP,
		Length:    uint32(len(buf)),
	}
	b.SetOffset(i * pageSize)
	if c.idr[k] {
		b.Flags |= v4l2.BufFlagKeyframe
	}
	d.n++
	c.served++
	return nil
}

func (d *device) StreamOn(t uint32) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if t != v4l2.BufTypeVideoCapture || d.bufs == nil {
		return syscall.EINVAL
	}
	if !d.streaming {
		d.streaming, d.start, d.n = true, time.Now(), 0
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		// Driver timestamps: the monotonic clock, rounded to microseconds
		// like a timeval, then exactly one interval per frame.
		d.base = ts.Nano() / 1e3 * 1e3
	}
	return nil
}

func (d *device) StreamOff(t uint32) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if t != v4l2.BufTypeVideoCapture {
		return syscall.EINVAL
	}
	d.streaming = false
	d.queued = d.queued[:0]
	return nil
}

func (d *device) QueryCtrl(q *v4l2.QueryCtrl) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if !c.controls[q.ID] {
		return syscall.EINVAL
	}
	*q = v4l2.QueryCtrl{ID: q.ID, Type: 1, Minimum: 0, Maximum: 600, Step: 1}
	if q.ID == v4l2.CIDMPEGVideoForceKeyFrame {
		q.Type, q.Maximum = 4, 0 // V4L2_CTRL_TYPE_BUTTON
	}
	return nil
}

func (d *device) SetCtrl(ctl *v4l2.Control) error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	if !c.controls[ctl.ID] {
		return syscall.EINVAL
	}
	c.setCtrls = append(c.setCtrls, *ctl)
	return nil
}

func (d *device) Close() error {
	c, err := d.lock()
	if err != nil {
		return err
	}
	defer c.mu.Unlock()
	d.closed = true
	c.open--
	return nil
}

// SplitAccessUnits groups an Annex-B H.264 stream into access units, each
// the stream's bytes from one access unit's first start code to the next
// one's: a new access unit begins at an AUD, at an SPS, PPS or SEI after a
// slice, or at a slice with first_mb_in_slice 0 after a slice.
func SplitAccessUnits(b []byte) [][]byte {
	var aus [][]byte
	auStart, haveVCL := -1, false
	for _, n := range nalStarts(b) {
		nal := b[n.payload:]
		if len(nal) == 0 {
			continue
		}
		t := nal[0] & 0x1f
		vcl := t >= 1 && t <= 5
		starts := auStart < 0 || t == 9 ||
			(haveVCL && (t == 6 || t == 7 || t == 8 || (t >= 14 && t <= 18))) ||
			(haveVCL && vcl && len(nal) > 1 && nal[1]&0x80 != 0)
		if starts {
			if auStart >= 0 {
				aus = append(aus, b[auStart:n.start])
			}
			auStart, haveVCL = n.start, false
		}
		if vcl {
			haveVCL = true
		}
	}
	if auStart >= 0 {
		aus = append(aus, b[auStart:])
	}
	return aus
}

type nalPos struct{ start, payload int }

// nalStarts finds the start codes: where each (with a leading zero of a
// 4-byte one) begins, and where its NAL unit begins.
func nalStarts(b []byte) []nalPos {
	var out []nalPos
	i := 0
	for {
		j := bytes.Index(b[i:], []byte{0, 0, 1})
		if j < 0 {
			return out
		}
		j += i
		s := j
		if s > 0 && b[s-1] == 0 {
			s--
		}
		out = append(out, nalPos{start: s, payload: j + 3})
		i = j + 3
	}
}

// NALUnits returns the NAL units of an Annex-B buffer, without start codes
// and trailing zero bytes.
func NALUnits(b []byte) [][]byte {
	ps := nalStarts(b)
	var out [][]byte
	for k, p := range ps {
		end := len(b)
		if k+1 < len(ps) {
			end = ps[k+1].start
		}
		nal := b[p.payload:end]
		for len(nal) > 0 && nal[len(nal)-1] == 0 {
			nal = nal[:len(nal)-1]
		}
		if len(nal) > 0 {
			out = append(out, nal)
		}
	}
	return out
}

// IsIDR reports whether an access unit has an IDR slice.
func IsIDR(au []byte) bool {
	for _, n := range NALUnits(au) {
		if n[0]&0x1f == 5 {
			return true
		}
	}
	return false
}
