package v4l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
)

// Defaults.
const (
	DefaultMTU          = 1200 // RTP payload budget in bytes
	DefaultPayloadType  = 102
	DefaultBuffers      = 4
	DefaultStallTimeout = 2 * time.Second
	// DefaultFmtp is the H.264 fmtp announced: the profile is not known
	// before the camera's first SPS, and cameras' encoders almost all
	// produce constrained baseline or a profile decoders of it accept.
	DefaultFmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
)

// Errors a Run or Open can return (wrapped, with the device and the
// operation); test them with errors.Is.
var (
	ErrBusy       = errors.New("device busy (another process has it open)")
	ErrStall      = errors.New("no frame from the camera (stalled)")
	ErrGone       = errors.New("device disconnected")
	ErrFormat     = errors.New("format refused")
	ErrNotCapture = errors.New("not a video capture device with streaming I/O")
	errRunning    = errors.New("already running")
)

const (
	pollSlice   = 100 * time.Millisecond // Wait granularity: how soon Run sees ctx done
	spuriousMax = 1000                   // EAGAINs in a row after "ready" before giving up
)

// Options tune a Source.
type Options struct {
	// Open opens the device node; nil means OpenDevice. Tests pass
	// v4l2test.Camera.Open.
	Open Opener
	// Logger receives warnings (a missing control, a frame rate the
	// camera adjusted); nil means slog.Default().
	Logger *slog.Logger
	// StallTimeout is how long Run waits for a frame before it returns
	// an error wrapping ErrStall; 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	MTU          int    // RTP payload budget; 0 means DefaultMTU
	PayloadType  uint8  // 0 means DefaultPayloadType
	Fmtp         string // "" means DefaultFmtp
	Buffers      int    // mmap buffers; 0 means DefaultBuffers
}

// Stats counts what a Source did.
type Stats struct {
	Frames                      uint64 // access units sent
	Packets                     uint64 // RTP packets sent
	Bytes                       uint64 // access unit bytes captured
	KeyframesForced             uint64 // FORCE_KEY_FRAME controls set
	KeyframeRequestsUnsupported uint64 // requests refused: the camera has no such control
	KeyframeRequestErrors       uint64 // FORCE_KEY_FRAME controls that failed
	ParamSetInserts             uint64 // IDR access units given the cached SPS/PPS
	CorruptBuffers              uint64 // buffers the driver flagged V4L2_BUF_FLAG_ERROR (dropped)
	SpuriousWakeups             uint64 // DQBUF returned EAGAIN after the fd was readable
	Restarts                    uint64 // Runs after the first
	LastError                   string // the last error Run returned
	// Negotiated format (after Open).
	Width, Height int
	FPS           float64 // 0 if the driver does not say
}

// Source captures H.264 from a V4L2 camera as one RTP video track. It
// implements bridge.Source.
type Source struct {
	spec  Spec
	opts  Options
	log   *slog.Logger
	track bridge.Track

	mu         sync.Mutex
	dev        Device // the open device; SetCtrl under mu
	running    bool
	closed     bool
	forceKF    bool // the device has FORCE_KEY_FRAME
	pendingKF  bool // a keyframe was asked while no device was open
	warnedKF   bool
	runs       int
	width      int
	height     int
	fps        float64
	lastErr    string
	interval90 uint32 // frame interval in 90 kHz units (continuity across restarts)

	// Capture state, used by one Run at a time.
	maps [][]byte
	buf  Buffer

	// RTP state, kept across Runs.
	ssrc     uint32
	seq      uint16
	tsBase   uint32 // RTP timestamp of t0
	t0       int64  // driver timestamp (ns) of the first frame of this Run
	lastT    int64
	lastTS   uint32
	lastWall time.Time
	sentAny  bool
	pkt      rtp.Packet
	nals     [][2]int // NAL unit ranges of the access unit being sent
	fu       []byte   // FU-A packet buffer

	// H.264 parameter set cache (the latest SPS and PPS; cameras use one
	// of each) and the reused output buffer for an IDR that lacks them.
	sps, pps, out []byte

	frames, packets, bytes, forced, unsupported, kfErrors, inserts, corrupt, spurious, restarts atomic.Uint64
}

var _ bridge.Source = (*Source)(nil)

// Open parses a v4l2 URL (see ParseURL), opens the device, checks that it
// is a streaming capture device and negotiates H.264 at the requested
// size and rate, so that a wrong device or a refused format is an error
// here. The device stays open for the first Run.
func Open(raw string, opts Options) (*Source, error) {
	spec, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	if opts.Open == nil {
		opts.Open = OpenDevice
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.MTU <= 0 {
		opts.MTU = DefaultMTU
	}
	if opts.PayloadType == 0 {
		opts.PayloadType = DefaultPayloadType
	}
	if opts.Fmtp == "" {
		opts.Fmtp = DefaultFmtp
	}
	if opts.Buffers <= 0 {
		opts.Buffers = DefaultBuffers
	}
	s := &Source{
		spec: *spec,
		opts: opts,
		log:  opts.Logger.With("source", "v4l2", "device", spec.Device),
		track: bridge.Track{Kind: bridge.KindVideo, Codec: bridge.Codec{
			MimeType: "video/H264", ClockRate: 90000, Fmtp: opts.Fmtp, PayloadType: opts.PayloadType,
		}},
		ssrc:   rand.Uint32(),
		seq:    uint16(rand.Uint32()),
		tsBase: rand.Uint32(),
	}
	dev, err := s.openDevice()
	if err != nil {
		return nil, s.errorf("%w", err)
	}
	s.dev = dev
	return s, nil
}

func (s *Source) errorf(format string, args ...any) error {
	return fmt.Errorf("v4l2 %s: "+format, append([]any{s.spec.Device}, args...)...)
}

// Spec returns the parsed URL.
func (s *Source) Spec() Spec { return s.spec }

// Tracks implements bridge.Source: one H.264 video track.
func (s *Source) Tracks() []bridge.Track { return []bridge.Track{s.track} }

// Stats returns the counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	st := Stats{LastError: s.lastErr, Width: s.width, Height: s.height, FPS: s.fps}
	s.mu.Unlock()
	st.Frames = s.frames.Load()
	st.Packets = s.packets.Load()
	st.Bytes = s.bytes.Load()
	st.KeyframesForced = s.forced.Load()
	st.KeyframeRequestsUnsupported = s.unsupported.Load()
	st.KeyframeRequestErrors = s.kfErrors.Load()
	st.ParamSetInserts = s.inserts.Load()
	st.CorruptBuffers = s.corrupt.Load()
	st.SpuriousWakeups = s.spurious.Load()
	st.Restarts = s.restarts.Load()
	return st
}

// RequestKeyframe implements bridge.Source: it sets the camera's
// V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME control and returns true, or, if
// the camera has no such control, logs that once, counts the request and
// returns false. Between Runs the request is kept for the next one.
func (s *Source) RequestKeyframe(int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.forceKF {
		s.unsupported.Add(1)
		if !s.warnedKF {
			s.warnedKF = true
			s.log.Warn("camera has no force-keyframe control (V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME): keyframe requests are ignored; lower gop= to bound the wait")
		}
		return false
	}
	if s.dev == nil {
		s.pendingKF = true
		return true
	}
	s.forceKeyframeLocked()
	return true
}

func (s *Source) forceKeyframeLocked() {
	ctl := Control{ID: CIDMPEGVideoForceKeyFrame, Value: 1}
	if err := s.dev.SetCtrl(&ctl); err != nil {
		s.kfErrors.Add(1)
		s.log.Warn("force keyframe", "err", err)
		return
	}
	s.forced.Add(1)
}

// Close releases the device if it is open. Call it after Run returned.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.dev != nil && !s.running {
		err := s.dev.Close()
		s.dev = nil
		if err != nil {
			return s.errorf("close: %w", err)
		}
	}
	return nil
}

// openDevice opens the device node and negotiates the format.
func (s *Source) openDevice() (Device, error) {
	dev, err := s.opts.Open(s.spec.Device)
	if err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return nil, fmt.Errorf("open: %w: %w", ErrBusy, err)
		}
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := s.negotiate(dev); err != nil {
		dev.Close()
		return nil, err
	}
	return dev, nil
}

func (s *Source) negotiate(dev Device) error {
	var c Capability
	if err := dev.QueryCap(&c); err != nil {
		return fmt.Errorf("VIDIOC_QUERYCAP: %w (not a V4L2 device?)", err)
	}
	caps := c.Caps()
	if caps&CapVideoCapture == 0 || caps&CapStreaming == 0 {
		extra := ""
		if caps&CapVideoCaptureMplane != 0 {
			extra = " (multi-planar capture is not supported)"
		}
		return fmt.Errorf("%w: driver %q, card %q, capabilities %#08x%s", ErrNotCapture, cstr(c.Driver[:]), cstr(c.Card[:]), caps, extra)
	}
	f := Format{Type: BufTypeVideoCapture}
	if err := dev.GetFormat(&f); err != nil {
		return fmt.Errorf("VIDIOC_G_FMT: %w", err)
	}
	want := f.Pix
	want.PixelFormat = PixFmtH264
	if s.spec.Width > 0 {
		want.Width, want.Height = uint32(s.spec.Width), uint32(s.spec.Height)
	}
	want.Field = FieldNone
	want.BytesPerLine, want.SizeImage = 0, 0
	f.Pix = want
	if err := dev.SetFormat(&f); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("VIDIOC_S_FMT: %w: %w", ErrBusy, err)
		}
		return fmt.Errorf("VIDIOC_S_FMT H264 %dx%d: %w; the device offers: %s", want.Width, want.Height, err, offers(dev))
	}
	if f.Pix.PixelFormat != PixFmtH264 {
		return fmt.Errorf("%w: asked for H264 %dx%d, the device gave %s %dx%d; it offers: %s", ErrFormat,
			want.Width, want.Height, FourCCString(f.Pix.PixelFormat), f.Pix.Width, f.Pix.Height, offers(dev))
	}
	if s.spec.Width > 0 && (f.Pix.Width != want.Width || f.Pix.Height != want.Height) {
		return fmt.Errorf("%w: asked for H264 %dx%d, the device gave %dx%d; it offers: %s", ErrFormat,
			want.Width, want.Height, f.Pix.Width, f.Pix.Height, offers(dev))
	}
	fps := 0.0
	if s.spec.FPS > 0 {
		p := StreamParm{Type: BufTypeVideoCapture}
		p.Capture.TimePerFrame = Fract{Numerator: 1, Denominator: uint32(s.spec.FPS)}
		if err := dev.SetParm(&p); err != nil {
			s.log.Warn("cannot set the frame rate", "fps", s.spec.FPS, "err", err)
		} else if tpf := p.Capture.TimePerFrame; tpf.Numerator > 0 && tpf.Denominator > 0 {
			fps = float64(tpf.Denominator) / float64(tpf.Numerator)
			if fps < float64(s.spec.FPS)-0.01 || fps > float64(s.spec.FPS)+0.01 {
				s.log.Warn("camera adjusted the frame rate", "asked", s.spec.FPS, "got", fps)
			}
		}
	}
	if s.spec.GOP > 0 {
		set := false
		for _, id := range []uint32{CIDMPEGVideoH264IPeriod, CIDMPEGVideoGOPSize} {
			if !hasControl(dev, id) {
				continue
			}
			if err := dev.SetCtrl(&Control{ID: id, Value: int32(s.spec.GOP)}); err != nil {
				s.log.Warn("set GOP control", "id", fmt.Sprintf("%#x", id), "gop", s.spec.GOP, "err", err)
				continue
			}
			set = true
		}
		if !set {
			s.log.Warn("camera has no GOP control: gop ignored", "gop", s.spec.GOP)
		}
	}
	force := hasControl(dev, CIDMPEGVideoForceKeyFrame)
	s.mu.Lock()
	s.width, s.height, s.fps, s.forceKF = int(f.Pix.Width), int(f.Pix.Height), fps, force
	s.interval90 = 3000
	if fps > 0 {
		s.interval90 = uint32(90000/fps + 0.5)
	}
	s.mu.Unlock()
	return nil
}

func hasControl(dev Device, id uint32) bool {
	q := QueryCtrl{ID: id}
	if err := dev.QueryCtrl(&q); err != nil {
		return false
	}
	return q.Flags&(CtrlFlagDisabled|CtrlFlagReadOnly) == 0
}

// offers renders the formats and sizes a device lists.
func offers(dev Device) string {
	var parts []string
	for i := uint32(0); i < 64; i++ {
		fd := FmtDesc{Index: i, Type: BufTypeVideoCapture}
		if dev.EnumFmt(&fd) != nil {
			break
		}
		var sizes []string
		for j := uint32(0); j < 64; j++ {
			fs := FrmSizeEnum{Index: j, PixelFormat: fd.PixelFormat}
			if dev.EnumFrameSizes(&fs) != nil {
				break
			}
			sizes = append(sizes, frameSize(fs).String())
		}
		p := FourCCString(fd.PixelFormat)
		if len(sizes) > 0 {
			p += " " + strings.Join(sizes, ",")
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "no formats"
	}
	return strings.Join(parts, "; ")
}

// startStreaming maps the buffers, queues them all and starts streaming.
func (s *Source) startStreaming(dev Device) error {
	rb := RequestBuffers{Count: uint32(s.opts.Buffers), Type: BufTypeVideoCapture, Memory: MemoryMMAP}
	if err := dev.ReqBufs(&rb); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("VIDIOC_REQBUFS: %w: %w", ErrBusy, err)
		}
		return fmt.Errorf("VIDIOC_REQBUFS: %w", err)
	}
	if rb.Count < 2 {
		return fmt.Errorf("VIDIOC_REQBUFS: the driver gave %d buffers", rb.Count)
	}
	s.maps = s.maps[:0]
	for i := uint32(0); i < rb.Count; i++ {
		b := Buffer{Index: i, Type: BufTypeVideoCapture, Memory: MemoryMMAP}
		if err := dev.QueryBuf(&b); err != nil {
			return fmt.Errorf("VIDIOC_QUERYBUF %d: %w", i, err)
		}
		m, err := dev.Mmap(b.Offset(), int(b.Length))
		if err != nil {
			return fmt.Errorf("mmap buffer %d: %w", i, err)
		}
		s.maps = append(s.maps, m)
		if err := dev.QBuf(&b); err != nil {
			return fmt.Errorf("VIDIOC_QBUF %d: %w", i, err)
		}
	}
	if err := dev.StreamOn(BufTypeVideoCapture); err != nil {
		return fmt.Errorf("VIDIOC_STREAMON: %w", err)
	}
	return nil
}

// stopStreaming stops streaming, unmaps and frees the buffers and closes
// the device.
func (s *Source) stopStreaming(dev Device) {
	_ = dev.StreamOff(BufTypeVideoCapture)
	for _, m := range s.maps {
		_ = dev.Munmap(m)
	}
	s.maps = s.maps[:0]
	_ = dev.ReqBufs(&RequestBuffers{Type: BufTypeVideoCapture, Memory: MemoryMMAP})
	s.mu.Lock()
	s.dev = nil
	s.mu.Unlock()
	_ = dev.Close()
}

// Run implements bridge.Source. It captures until ctx is done (nil) or
// the camera fails: the device disappears (ENODEV, wraps ErrGone), an I/O
// error, or no frame for StallTimeout (ErrStall). Run may be called again
// after it returned: it reopens the device, and the RTP sequence numbers
// continue and the timestamps go on by the wall-clock time in between.
func (s *Source) Run(ctx context.Context, fn bridge.PacketFunc) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return s.errorf("%w", os.ErrClosed)
	case s.running:
		s.mu.Unlock()
		return s.errorf("%w", errRunning)
	}
	s.running = true
	dev := s.dev
	if s.runs > 0 {
		s.restarts.Add(1)
	}
	s.runs++
	s.mu.Unlock()
	err := s.run(ctx, dev, fn)
	s.mu.Lock()
	s.running = false
	if err != nil {
		err = s.errorf("%w", err)
		s.lastErr = err.Error()
	}
	s.mu.Unlock()
	return err
}

func (s *Source) run(ctx context.Context, dev Device, fn bridge.PacketFunc) error {
	if dev == nil {
		var err error
		if dev, err = s.openDevice(); err != nil {
			return err
		}
	}
	defer s.stopStreaming(dev)
	if err := s.startStreaming(dev); err != nil {
		return err
	}
	s.mu.Lock()
	s.dev = dev
	if s.pendingKF && s.forceKF {
		s.pendingKF = false
		s.forceKeyframeLocked()
	}
	s.mu.Unlock()

	first := true
	lastFrame := time.Now()
	spurious := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		left := s.opts.StallTimeout - time.Since(lastFrame)
		if left <= 0 {
			return fmt.Errorf("%w: nothing for %v", ErrStall, s.opts.StallTimeout)
		}
		ready, err := dev.Wait(min(left, pollSlice))
		if err != nil {
			return fmt.Errorf("wait for a frame: %w", ioErr(err))
		}
		if !ready {
			continue
		}
		s.buf = Buffer{Type: BufTypeVideoCapture, Memory: MemoryMMAP}
		if err := dev.DQBuf(&s.buf); err != nil {
			if errors.Is(err, syscall.EAGAIN) {
				s.spurious.Add(1)
				if spurious++; spurious > spuriousMax {
					return fmt.Errorf("VIDIOC_DQBUF: EAGAIN %d times in a row while the device said ready", spurious)
				}
				continue
			}
			return fmt.Errorf("VIDIOC_DQBUF: %w", ioErr(err))
		}
		spurious = 0
		i := s.buf.Index
		if int(i) >= len(s.maps) || int(s.buf.BytesUsed) > len(s.maps[i]) {
			return fmt.Errorf("VIDIOC_DQBUF: buffer %d with %d bytes used is out of range", i, s.buf.BytesUsed)
		}
		if s.buf.Flags&BufFlagError != 0 {
			s.corrupt.Add(1)
		} else if s.buf.BytesUsed > 0 {
			s.send(fn, s.maps[i][:s.buf.BytesUsed], s.buf.Timestamp.Nanoseconds(), first)
			first = false
		}
		lastFrame = time.Now()
		if err := dev.QBuf(&s.buf); err != nil {
			return fmt.Errorf("VIDIOC_QBUF %d: %w", i, ioErr(err))
		}
	}
}

// ioErr marks a vanished device.
func ioErr(err error) error {
	if errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	return err
}

// send packetizes one access unit. t is the driver timestamp (ns).
func (s *Source) send(fn bridge.PacketFunc, au []byte, t int64, first bool) {
	if first {
		if s.sentAny {
			// A new Run: go on from the last timestamp by the wall-clock
			// time in between, at least one frame interval.
			gap := uint32(time.Since(s.lastWall) * 9 / 100000)
			s.tsBase = s.lastTS + max(gap, s.interval90)
		}
		s.t0, s.lastT = t, t
	}
	if t < s.lastT {
		t = s.lastT // a driver clock going backwards: repeat the time
	}
	s.lastT = t
	ts := s.tsBase + uint32(((t-s.t0)*9+50000)/100000) // ns -> 90 kHz, rounded
	au = s.withParameterSets(au)
	n := s.packetize(fn, au, ts)
	s.packets.Add(uint64(n))
	s.frames.Add(1)
	s.bytes.Add(uint64(len(au)))
	s.lastTS, s.lastWall, s.sentAny = ts, time.Now(), true
}

var startCode3 = []byte{0, 0, 1}

// withParameterSets caches the access unit's SPS and PPS and, if it is an
// IDR access unit without them, returns it with the cached ones inserted
// before its first slice (in a reused buffer).
func (s *Source) withParameterSets(au []byte) []byte {
	hasSPS, hasPPS, idr := false, false, false
	firstVCL := -1
	i := 0
	for {
		j := bytes.Index(au[i:], startCode3)
		if j < 0 {
			break
		}
		sc := i + j // start code position
		if sc > 0 && au[sc-1] == 0 {
			sc--
		}
		n := i + j + 3
		end := len(au)
		if k := bytes.Index(au[n:], startCode3); k >= 0 {
			end = n + k
		}
		nal := au[n:end]
		for len(nal) > 0 && nal[len(nal)-1] == 0 {
			nal = nal[:len(nal)-1]
		}
		i = end
		if len(nal) == 0 {
			if end == len(au) {
				break
			}
			continue
		}
		switch t := nal[0] & 0x1f; {
		case t == 7:
			hasSPS = true
			s.sps = append(s.sps[:0], nal...)
		case t == 8:
			hasPPS = true
			s.pps = append(s.pps[:0], nal...)
		case t >= 1 && t <= 5:
			if firstVCL < 0 {
				firstVCL = sc
			}
			if t == 5 {
				idr = true
			}
		}
		if end == len(au) {
			break
		}
	}
	if !idr || (hasSPS && hasPPS) || s.sps == nil || s.pps == nil {
		return au
	}
	s.inserts.Add(1)
	s.out = append(s.out[:0], au[:firstVCL]...)
	if !hasSPS {
		s.out = append(append(s.out, 0, 0, 0, 1), s.sps...)
	}
	if !hasPPS {
		s.out = append(append(s.out, 0, 0, 0, 1), s.pps...)
	}
	return append(s.out, au[firstVCL:]...)
}

// packetize sends an access unit as RTP (RFC 6184, packetization-mode 1)
// the way pion's H264Payloader with DisableStapA does (see bridge/file
// for why not STAP-A): each NAL unit in a single NAL unit packet if it
// fits the MTU, else in FU-A fragments; AUD and filler NAL units are
// dropped; the marker bit is on the access unit's last packet. Unlike
// pion's payloader it allocates nothing: single NAL unit payloads point
// into the mapped buffer and FU-A packets are built in one reused
// buffer (a PacketFunc's packet is only valid during the call).
func (s *Source) packetize(fn bridge.PacketFunc, au []byte, ts uint32) int {
	s.nals = s.nals[:0]
	i := 0
	for i < len(au) {
		j := bytes.Index(au[i:], startCode3)
		if j < 0 {
			break
		}
		start := i + j + 3
		end := len(au)
		if k := bytes.Index(au[start:], startCode3); k >= 0 {
			end = start + k
		}
		i = end
		for end > start && au[end-1] == 0 {
			end--
		}
		if end == start {
			continue
		}
		if t := au[start] & 0x1f; t == 9 || t == 12 {
			continue
		}
		s.nals = append(s.nals, [2]int{start, end})
	}
	mtu := s.opts.MTU
	if cap(s.fu) < mtu {
		s.fu = make([]byte, mtu)
	}
	sent := 0
	emit := func(payload []byte, last bool) {
		s.pkt.Header = rtp.Header{
			Version:        2,
			PayloadType:    s.track.Codec.PayloadType,
			SequenceNumber: s.seq,
			Timestamp:      ts,
			SSRC:           s.ssrc,
			Marker:         last,
		}
		s.pkt.Payload = payload
		fn(0, &s.pkt)
		s.seq++
		sent++
	}
	for k, r := range s.nals {
		nal := au[r[0]:r[1]]
		lastNAL := k == len(s.nals)-1
		if len(nal) <= mtu {
			emit(nal, lastNAL)
			continue
		}
		indicator := nal[0]&0xe0 | 28
		typ := nal[0] & 0x1f
		rest := nal[1:]
		first := true
		for len(rest) > 0 {
			n := min(len(rest), mtu-2)
			h := typ
			if first {
				h |= 0x80
			}
			if n == len(rest) {
				h |= 0x40
			}
			fu := append(s.fu[:0], indicator, h)
			fu = append(fu, rest[:n]...)
			rest = rest[n:]
			emit(fu, lastNAL && len(rest) == 0)
			first = false
		}
	}
	s.pkt.Payload = nil
	return sent
}
