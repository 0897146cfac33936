package rtpudp

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/rtgate/rtgate/bridge"
)

// The Sender is the other half of this package's job, RTP out: a
// bridge.Sink that forwards pulled tracks to ffmpeg, GStreamer, VLC or a
// hardware decoder as plain RTP/UDP (no SRTP, no ICE), with an SDP file
// that describes it.

var _ bridge.Sink = (*Sender)(nil)

const (
	// defaultSRInterval is the gap between RTCP sender reports.
	defaultSRInterval = time.Second
	// srIdle stops sender reports of a slot that sent nothing for this
	// long (its track is paused: a publisher restarting).
	srIdle = 5 * time.Second
	// Input jumps that make a slot rebase even with an unchanged SSRC:
	// sequence numbers more than maxSeqGap ahead or maxSeqBack behind
	// the highest seen, or a timestamp more than maxTSSkew away from where
	// the wall clock says it should be.
	maxSeqGap  = 3000
	maxSeqBack = 1000
	maxTSSkew  = 10 * time.Second
)

// ErrUnknownTrack is returned by WriteRTP for an index AddTrack did not
// return or RemoveTrack removed.
var ErrUnknownTrack = errors.New("rtp out: unknown or removed track")

// SenderOptions configure a Sender.
type SenderOptions struct {
	// SDPFile, if set, is where the session description of the forward is
	// written (replaced atomically whenever a track's codec is first
	// announced or changes): give it to ffmpeg (-protocol_whitelist
	// file,udp,rtp -i FILE), GStreamer (filesrc ! sdpdemux) or VLC.
	SDPFile string
	// Name goes into the SDP's s= line and the RTCP CNAME; "rtgate" if
	// empty.
	Name string
	// SRInterval is the gap between RTCP sender reports (1 s).
	SRInterval time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Sender forwards pulled tracks as RTP over UDP: at most one video and one
// audio track at a time, each to its own port pair (see ParseOutURL). It
// rewrites only SSRC and payload type (to what its SDP says), strips
// header extensions (their ids belong to the WebRTC negotiation), and
// rebases sequence numbers and timestamps when the input jumps (a new
// input SSRC, a track re-added after a publisher restart, a large jump in
// sequence numbers or timestamps): a receiver sees one continuous stream
// for the Sender's lifetime, with a gap in wall time, not a reset.
//
// It sends RTCP sender reports every SRInterval (NTP time from the last
// upstream sender report when WriteSenderReport gave one, else the wall
// clock) and an RTCP BYE on Close, and listens on each kind's RTCP socket
// for PLI/FIR from the receiver, which it passes to the track's
// RequestKeyframe. ffmpeg sends its RTCP there with -sdp_flags
// rtcp_to_source; other receivers to RTCPAddr.
//
// AddTrack, RemoveTrack and Close may be called from any goroutine;
// WriteRTP and WriteSenderReport of one track from one goroutine at a time.
type Sender struct {
	spec  *OutSpec
	opts  SenderOptions
	log   *slog.Logger
	epoch time.Time // base of the monotonic nanoseconds the hot path stores
	cname string
	slots []*outSlot // by kind: video first; only the kinds the URL forwards

	tracks atomic.Pointer[[]*outTrack] // copy on write, by index

	mu      sync.Mutex // AddTrack, RemoveTrack, Close, the SDP
	sessID  uint64
	version uint64
	sdp     []byte
	closed  bool

	done chan struct{}
	wg   sync.WaitGroup
}

// outTrack is one index handed out by AddTrack.
type outTrack struct {
	slot    *outSlot
	pt      uint8
	clock   uint32
	removed atomic.Bool
}

// outSlot is the outgoing stream of one kind: its sockets, SSRC and
// continuity. It outlives the tracks written to it.
type outSlot struct {
	kind          string
	dst, rtcpDst  netip.AddrPort
	rtpC, rtcpC   *net.UDPConn
	rtcpLocal     netip.AddrPort
	ssrc          uint32
	clock         atomic.Uint32
	keyframe      atomic.Pointer[func()] // the current track's RequestKeyframe
	resyncPending atomic.Bool            // a new track: rebase its first packet

	// Guarded by Sender.mu.
	track     *outTrack // the track writing now
	codec     bridge.Codec
	announced bool

	// Used by the goroutine writing the slot's current track only.
	w writer

	// Shared with the RTCP goroutines.
	lastTS    atomic.Uint32
	lastAt    atomic.Int64 // monotonic ns since epoch of the newest packet
	tsOffset  atomic.Uint32
	gen       atomic.Uint32 // input generation: bumped on each rebase
	srMu      sync.Mutex
	upstream  upstreamSR // guarded by srMu
	recvStats atomic.Pointer[ReceiverStats]

	packets, octets, bytes atomic.Uint64
	resyncs, writeErrors   atomic.Uint64
	srsSent, srErrors      atomic.Uint64
	kfRequests             atomic.Uint64 // PLI/FIR from the receiver
	kfUnserved             atomic.Uint64 // ... with no track to pass them to
	rtcpIn, badRTCP        atomic.Uint64
}

// upstreamSR is the last sender report of the input, in input time.
type upstreamSR struct {
	ntp uint64
	rtp uint32
	at  int64 // monotonic ns since epoch when it was given
	gen uint32
	ok  bool
}

// writer is a slot's per-packet state: the reused packet and buffer and
// the continuity arithmetic. No locks: one writer at a time.
type writer struct {
	out     rtp.Packet
	buf     []byte
	started bool
	inSSRC  uint32
	hiSeq   uint16 // highest input sequence number (of the current input)
	hiTS    uint32 // its input timestamp
	hiAt    int64  // when it arrived
	seqOff  uint16
	tsOff   uint32
	outSeq  uint16 // output sequence number of the highest packet
	outTS   uint32 // its output timestamp
	outAt   int64
}

// NewSender parses raw (see ParseOutURL) and opens the Sender's sockets.
func NewSender(raw string, o SenderOptions) (*Sender, error) {
	sp, err := ParseOutURL(raw)
	if err != nil {
		return nil, err
	}
	return NewSenderSpec(sp, o)
}

// NewSenderSpec opens a Sender for a parsed OutSpec: its sockets are bound
// when it returns.
func NewSenderSpec(sp *OutSpec, o SenderOptions) (_ *Sender, err error) {
	if o.SRInterval <= 0 {
		o.SRInterval = defaultSRInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	name := sp.URL
	if name == "" {
		name = netip.AddrPortFrom(sp.Host, sp.Video.RTP|sp.Audio.RTP).String()
	}
	s := &Sender{
		spec: sp, opts: o, log: o.Logger.With("rtp_out", name), epoch: time.Now(),
		sessID: rand.Uint64() >> 1, done: make(chan struct{}),
	}
	s.cname = "rtgate"
	if o.Name != "" {
		s.cname = "rtgate-" + o.Name
	}
	empty := []*outTrack{}
	s.tracks.Store(&empty)
	defer func() {
		if err != nil {
			s.closeSockets()
		}
	}()
	for _, kind := range []string{bridge.KindVideo, bridge.KindAudio} {
		ports := sp.ports(kind)
		if ports.RTP == 0 {
			continue
		}
		sl := &outSlot{
			kind:    kind,
			dst:     netip.AddrPortFrom(sp.Host, ports.RTP),
			rtcpDst: netip.AddrPortFrom(sp.Host, ports.RTCP),
			ssrc:    rand.Uint32() | 1,
		}
		sl.w.buf = make([]byte, maxDatagram)
		s.slots = append(s.slots, sl)
		if sl.rtpC, err = s.listen(); err != nil {
			return nil, fmt.Errorf("rtp out %s: %s RTP socket: %w", name, kind, err)
		}
		if sl.rtcpC, err = s.listen(); err != nil {
			return nil, fmt.Errorf("rtp out %s: %s RTCP socket: %w", name, kind, err)
		}
		sl.rtcpLocal = sl.rtcpC.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	if len(s.slots) == 0 {
		return nil, fmt.Errorf("rtp out %s: no media to forward", name)
	}
	for _, sl := range s.slots {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.listenRTCP(sl)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.reportLoop()
	}()
	return s, nil
}

// listen binds a UDP socket on the spec's local address, port chosen by
// the system, with the multicast TTL set.
func (s *Sender) listen() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.spec.Bind, 0)))
	if err != nil {
		return nil, err
	}
	if s.spec.Host.IsMulticast() && s.spec.TTL > 0 {
		if s.spec.Host.Is4() {
			err = ipv4.NewPacketConn(c).SetMulticastTTL(s.spec.TTL)
		} else {
			err = ipv6.NewPacketConn(c).SetMulticastHopLimit(s.spec.TTL)
		}
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("set multicast ttl %d: %w", s.spec.TTL, err)
		}
	}
	return c, nil
}

func (s *Sender) slot(kind string) *outSlot {
	for _, sl := range s.slots {
		if sl.kind == kind {
			return sl
		}
	}
	return nil
}

// AddTrack starts forwarding a track. It refuses a second track of a kind
// that is being forwarded, a kind the URL does not forward and a codec
// without an RTP/SDP mapping here. A track of a kind forwarded before (a
// publisher that came back) continues that kind's stream: same SSRC,
// sequence numbers and timestamps rebased onto where it left off.
func (s *Sender) AddTrack(t bridge.SinkTrack) (int, error) {
	kind := t.Kind
	if kind == "" {
		kind = t.Codec.Kind()
	}
	codec, err := outCodec(t.Codec)
	if err != nil {
		return -1, fmt.Errorf("rtp out: track %q: %w", t.Name, err)
	}
	if codec.Kind() != kind {
		return -1, fmt.Errorf("rtp out: track %q is %s but its codec %s is not", t.Name, kind, codec.MimeType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return -1, errors.New("rtp out: sender closed")
	}
	sl := s.slot(kind)
	if sl == nil {
		return -1, fmt.Errorf("rtp out: track %q: this forward carries no %s (see media= in %s)", t.Name, kind, s.spec.URL)
	}
	if sl.track != nil {
		return -1, fmt.Errorf("rtp out: track %q: a %s track is already forwarded; one video and one audio track at a time", t.Name, kind)
	}
	if !sl.announced || !sameCodec(sl.codec, codec) {
		prev, prevAnnounced := sl.codec, sl.announced
		sl.codec, sl.announced = codec, true
		if err := s.writeSDPLocked(); err != nil {
			sl.codec, sl.announced = prev, prevAnnounced
			return -1, err
		}
		if prevAnnounced {
			s.log.Warn("codec changed: receivers must reopen the SDP", "kind", kind, "from", prev.MimeType, "to", codec.MimeType)
		}
	}
	ot := &outTrack{slot: sl, pt: codec.PayloadType, clock: codec.ClockRate}
	sl.clock.Store(codec.ClockRate)
	if t.RequestKeyframe != nil {
		kf := t.RequestKeyframe
		sl.keyframe.Store(&kf)
	} else {
		sl.keyframe.Store(nil)
	}
	sl.resyncPending.Store(true)
	sl.track = ot
	old := *s.tracks.Load()
	next := make([]*outTrack, len(old), len(old)+1)
	copy(next, old)
	next = append(next, ot)
	s.tracks.Store(&next)
	return len(next) - 1, nil
}

func sameCodec(a, b bridge.Codec) bool {
	return strings.EqualFold(a.MimeType, b.MimeType) && a.ClockRate == b.ClockRate &&
		a.Channels == b.Channels && a.Fmtp == b.Fmtp && a.PayloadType == b.PayloadType
}

// RemoveTrack stops forwarding a track; its kind's stream pauses (no
// BYE: the same kind may come back and continue it).
func (s *Sender) RemoveTrack(track int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tab := *s.tracks.Load()
	if track < 0 || track >= len(tab) || tab[track] == nil {
		return
	}
	ot := tab[track]
	ot.removed.Store(true)
	if sl := ot.slot; sl.track == ot {
		sl.track = nil
		sl.keyframe.Store(nil)
	}
}

// WriteRTP forwards one packet: one UDP write, no allocation.
func (s *Sender) WriteRTP(track int, pkt *rtp.Packet) error {
	tab := *s.tracks.Load()
	if track < 0 || track >= len(tab) {
		return ErrUnknownTrack
	}
	ot := tab[track]
	if ot.removed.Load() {
		return ErrUnknownTrack
	}
	sl := ot.slot
	w := &sl.w
	seq, ts := sl.rebase(&pkt.Header, ot.clock, int64(time.Since(s.epoch)))
	o := &w.out
	o.Header = pkt.Header
	o.SequenceNumber, o.Timestamp = seq, ts
	o.SSRC, o.PayloadType = sl.ssrc, ot.pt
	o.Extension, o.Extensions = false, nil
	o.Payload, o.PaddingSize = pkt.Payload, pkt.PaddingSize
	n, err := o.MarshalTo(w.buf)
	o.Payload, o.CSRC = nil, nil // keep nothing of the caller's packet
	if err != nil {
		sl.writeErrors.Add(1)
		return err
	}
	if _, err := sl.rtpC.WriteToUDPAddrPort(w.buf[:n], sl.dst); err != nil {
		sl.writeErrors.Add(1)
		return err
	}
	sl.packets.Add(1)
	sl.octets.Add(uint64(len(pkt.Payload)))
	sl.bytes.Add(uint64(n))
	return nil
}

// rebase returns the output sequence number and timestamp of an input
// packet, re-anchoring the offsets when the input jumped: the new input
// continues at the last output sequence number + 1 and the last output
// timestamp + the wall time since (what the publisher's continuity does
// for its inputs, here for what a pull delivers).
func (sl *outSlot) rebase(h *rtp.Header, clock uint32, now int64) (uint16, uint32) {
	w := &sl.w
	pending := sl.resyncPending.Load() && sl.resyncPending.CompareAndSwap(true, false)
	newest := false
	switch {
	case !w.started:
		w.started, newest = true, true
		w.inSSRC = h.SSRC
	case pending || h.SSRC != w.inSSRC || w.jumped(h, clock, now):
		newest = true
		w.inSSRC = h.SSRC
		w.seqOff = w.outSeq + 1 - h.SequenceNumber
		w.tsOff = w.outTS + ticks(now-w.outAt, clock) - h.Timestamp
		sl.tsOffset.Store(w.tsOff)
		sl.gen.Add(1)
		sl.resyncs.Add(1)
	default:
		newest = int16(h.SequenceNumber-w.hiSeq) > 0
	}
	seq, ts := h.SequenceNumber+w.seqOff, h.Timestamp+w.tsOff
	if newest {
		w.hiSeq, w.hiTS, w.hiAt = h.SequenceNumber, h.Timestamp, now
		w.outSeq, w.outTS, w.outAt = seq, ts, now
		sl.lastTS.Store(ts)
		sl.lastAt.Store(now)
	}
	return seq, ts
}

// jumped reports an input discontinuity without an SSRC change.
func (w *writer) jumped(h *rtp.Header, clock uint32, now int64) bool {
	d := int16(h.SequenceNumber - w.hiSeq)
	if d > maxSeqGap || d < -maxSeqBack {
		return true
	}
	if d <= 0 {
		return false // late or repeated: same timeline
	}
	want := int64(ticks(now-w.hiAt, clock))
	got := int64(int32(h.Timestamp - w.hiTS))
	skew := got - want
	return skew > int64(maxTSSkew.Seconds()*float64(clock)) || skew < -int64(maxTSSkew.Seconds()*float64(clock))
}

// ticks converts a duration in ns to RTP clock ticks: at least 1 (a rebased
// input must move forward) and less than 2^31 (half the timestamp space).
func ticks(d int64, clock uint32) uint32 {
	if d <= 0 {
		return 1
	}
	t := uint64(d) / 1000 * uint64(clock) / 1_000_000
	return uint32(min(max(t, 1), 1<<31-1))
}

// WriteSenderReport records the input's sender report: the Sender's own
// reports then carry NTP times from the input's clock, so that a receiver
// can sync the audio and video of one publisher.
func (s *Sender) WriteSenderReport(track int, ntpTime uint64, rtpTime uint32) {
	tab := *s.tracks.Load()
	if track < 0 || track >= len(tab) || tab[track].removed.Load() {
		return
	}
	sl := tab[track].slot
	sl.srMu.Lock()
	sl.upstream = upstreamSR{ntp: ntpTime, rtp: rtpTime, at: int64(time.Since(s.epoch)), gen: sl.gen.Load(), ok: true}
	sl.srMu.Unlock()
}

// SDP returns the current session description (nil before the first
// track).
func (s *Sender) SDP() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.sdp...)
}

// RTCPAddr returns the local address of a kind's RTCP socket, where
// receivers send PLI/FIR and receiver reports (invalid for a kind not
// forwarded).
func (s *Sender) RTCPAddr(kind string) netip.AddrPort {
	if sl := s.slot(kind); sl != nil {
		return sl.rtcpLocal
	}
	return netip.AddrPort{}
}

// writeSDPLocked renders the SDP of the announced kinds and writes it to
// SDPFile, if set.
func (s *Sender) writeSDPLocked() error {
	var media []sdpMedia
	for _, sl := range s.slots {
		if sl.announced {
			media = append(media, sdpMedia{kind: sl.kind, ports: s.spec.ports(sl.kind), codec: sl.codec})
		}
	}
	s.version++
	b, err := outSDP(s.spec, s.opts.Name, s.sessID, s.version, media)
	if err != nil {
		return fmt.Errorf("rtp out: render sdp: %w", err)
	}
	if s.opts.SDPFile != "" {
		if err := writeFileAtomic(s.opts.SDPFile, b); err != nil {
			return fmt.Errorf("rtp out: %w", err)
		}
	}
	s.sdp = b
	return nil
}

// Close sends an RTCP BYE for each stream that sent anything, closes the
// sockets and waits for the Sender's goroutines. It leaves the SDP file.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, sl := range s.slots {
		sl.track = nil
		sl.keyframe.Store(nil)
	}
	s.mu.Unlock()
	close(s.done)
	for _, sl := range s.slots {
		if sl.packets.Load() > 0 {
			s.sendBye(sl, time.Now())
		}
	}
	s.closeSockets()
	s.wg.Wait()
	return nil
}

func (s *Sender) closeSockets() {
	for _, sl := range s.slots {
		if sl.rtpC != nil {
			_ = sl.rtpC.Close()
		}
		if sl.rtcpC != nil {
			_ = sl.rtcpC.Close()
		}
	}
}

// SenderStats is a snapshot of a Sender's counters, one entry per kind it
// forwards.
type SenderStats struct {
	Tracks []SenderTrackStats `json:"tracks"`
}

// SenderTrackStats are the counters of one kind's outgoing stream.
type SenderTrackStats struct {
	Kind        string `json:"kind"`
	Codec       string `json:"codec"`       // MIME type announced, "" before the first track
	Destination string `json:"destination"` // host:port of its RTP
	Active      bool   `json:"active"`      // a track is being forwarded
	SSRC        uint32 `json:"ssrc"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"` // as sent, RTP header included
	// Resyncs counts rebases of sequence numbers and timestamps (input
	// restarts and jumps).
	Resyncs       uint64 `json:"resyncs"`
	WriteErrors   uint64 `json:"writeErrors"`
	SenderReports uint64 `json:"senderReports"`
	// KeyframeRequests counts PLI/FIR from the receiver; Unserved those
	// that arrived with no track to pass them to.
	KeyframeRequests uint64 `json:"keyframeRequests"`
	Unserved         uint64 `json:"unserved"`
	RTCPIn           uint64 `json:"rtcpIn"`
	BadRTCP          uint64 `json:"badRtcp"`
	// Receiver is the receiver's last report about this stream, if any.
	Receiver *ReceiverStats `json:"receiver"`
}

// ReceiverStats is what the last RTCP receiver report said.
type ReceiverStats struct {
	FractionLost float64   `json:"fractionLost"` // since the previous report, 0..1
	TotalLost    uint32    `json:"totalLost"`
	Jitter       uint32    `json:"jitter"` // in RTP clock ticks
	At           time.Time `json:"at"`
}

// Stats returns the Sender's counters, read without blocking the media
// path.
func (s *Sender) Stats() SenderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out SenderStats
	for _, sl := range s.slots {
		st := SenderTrackStats{
			Kind: sl.kind, Destination: sl.dst.String(), Active: sl.track != nil, SSRC: sl.ssrc,
			Packets: sl.packets.Load(), Bytes: sl.bytes.Load(), Resyncs: sl.resyncs.Load(),
			WriteErrors: sl.writeErrors.Load(), SenderReports: sl.srsSent.Load(),
			KeyframeRequests: sl.kfRequests.Load(), Unserved: sl.kfUnserved.Load(),
			RTCPIn: sl.rtcpIn.Load(), BadRTCP: sl.badRTCP.Load(), Receiver: sl.recvStats.Load(),
		}
		if sl.announced {
			st.Codec = sl.codec.MimeType
		}
		out.Tracks = append(out.Tracks, st)
	}
	return out
}
