package sfu

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// pubTrack is a track published by one session: the receiving side of the
// fan-out. It exists from the moment its mid is seen (first packet or
// tracks/new, whichever comes first); it is in the registry while it has a
// name and is not closed.
type pubTrack struct {
	sess *session
	mid  string
	kind webrtc.RTPCodecType

	name atomic.Pointer[string] // nil until tracks/new names it

	// Set once, before ready is closed, by the first packet (OnTrack).
	remote   *webrtc.TrackRemote
	receiver *webrtc.RTPReceiver
	codec    webrtc.RTPCodecParameters
	extIDs   map[string]uint8 // publisher's negotiated header extension URI -> id
	ready    chan struct{}
	readyOne sync.Once

	closed    chan struct{}
	closeOnce sync.Once
	announced time.Time // when tracks/new named it (for idle collection)

	// The media path: read by the forwarding goroutine without locks.
	subs       atomic.Pointer[[]*binding]
	subsMu     sync.Mutex // serializes changes to subs (copy on write)
	lastPacket atomic.Int64
	packets    atomic.Uint64
	bytes      atomic.Uint64

	// Keyframe requests toward the publisher, coalesced (see requestKeyframe).
	kfInterval time.Duration
	lastPLI    atomic.Int64
	kfDue      atomic.Int64 // Unix ns: the token bucket's theoretical arrival time (GCRA)
	pliPending atomic.Bool
	plisSent   atomic.Uint64
}

func newPubTrack(s *session, mid string, kind webrtc.RTPCodecType) *pubTrack {
	p := &pubTrack{
		sess: s, mid: mid, kind: kind,
		ready: make(chan struct{}), closed: make(chan struct{}),
		kfInterval: s.sfu.opts.KeyframeInterval,
	}
	p.subs.Store(&[]*binding{})
	return p
}

func (p *pubTrack) trackName() string {
	if n := p.name.Load(); n != nil {
		return *n
	}
	return ""
}

func (p *pubTrack) isReady() bool {
	select {
	case <-p.ready:
		return true
	default:
		return false
	}
}

func (p *pubTrack) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// attach records the remote track on its first packet and starts the
// forwarding loop.
func (p *pubTrack) attach(remote *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	p.readyOne.Do(func() {
		p.remote = remote
		p.receiver = receiver
		p.codec = remote.Codec()
		p.extIDs = map[string]uint8{}
		for _, e := range receiver.GetParameters().HeaderExtensions {
			p.extIDs[e.URI] = uint8(e.ID)
		}
		p.lastPacket.Store(time.Now().UnixNano())
		close(p.ready)
		p.sess.sfu.goFunc(p.forward)
		p.sess.sfu.goFunc(p.drainRTCP)
	})
}

// forward is the fan-out hot path: one goroutine per published track reads
// into a reused buffer and packet, and writes to every binding. No locks, no
// allocation per packet.
func (p *pubTrack) forward() {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := p.remote.Read(buf)
		if err != nil {
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		p.lastPacket.Store(time.Now().UnixNano())
		p.packets.Add(1)
		p.bytes.Add(uint64(n))
		if p.isClosed() {
			continue // unpublished: keep reading so the receiver drains
		}
		p.fanOut(&pkt)
	}
}

// fanOut writes one packet to every subscriber.
func (p *pubTrack) fanOut(pkt *rtp.Packet) {
	for _, b := range *p.subs.Load() {
		b.write(pkt)
	}
}

// drainRTCP reads the receiver's RTCP so the interceptors see the
// publisher's sender reports.
func (p *pubTrack) drainRTCP() {
	buf := make([]byte, 1500)
	for {
		if _, _, err := p.receiver.Read(buf); err != nil {
			return
		}
	}
}

func (p *pubTrack) addBinding(b *binding) {
	p.subsMu.Lock()
	defer p.subsMu.Unlock()
	old := *p.subs.Load()
	next := make([]*binding, 0, len(old)+1)
	next = append(append(next, old...), b)
	p.subs.Store(&next)
}

func (p *pubTrack) removeBinding(b *binding) {
	p.subsMu.Lock()
	defer p.subsMu.Unlock()
	old := *p.subs.Load()
	next := make([]*binding, 0, len(old))
	for _, x := range old {
		if x != b {
			next = append(next, x)
		}
	}
	p.subs.Store(&next)
}

func (p *pubTrack) subscribers() int { return len(*p.subs.Load()) }

// close unpublishes the track: subscribers stop receiving from it.
func (p *pubTrack) close() {
	p.closeOnce.Do(func() { close(p.closed) })
}

// requestKeyframe asks the publisher for a keyframe. Requests are coalesced:
// one PLI per kfInterval goes upstream, on average; a request beyond that
// schedules one when it is due, so a subscriber that joins just after
// another still gets its keyframe promptly. Keyframes are a scarce resource.
//
// After a quiet spell two PLIs may go in a row (a token bucket of two,
// refilled one per kfInterval): a subscriber that connects just after
// another one's keyframe was sent would otherwise wait the whole window.
// That is what a relay WHEP viewer did (gateway/wish): rtgate's pull
// connects, and its keyframe comes before the viewer rtgate serves from it
// is connected; the viewer's own request then came 30 to 100 ms later and
// waited about 450 ms.
func (p *pubTrack) requestKeyframe() {
	if p.kind != webrtc.RTPCodecTypeVideo || !p.isReady() || p.isClosed() {
		return
	}
	now := time.Now().UnixNano()
	due := p.kfDue.Load()
	next := max(due, now) + int64(p.kfInterval)
	wait := time.Duration(next - 2*int64(p.kfInterval) - now)
	if wait <= 0 {
		if p.kfDue.CompareAndSwap(due, next) {
			p.lastPLI.Store(now)
			p.plisSent.Add(1)
			_ = p.sess.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(p.remote.SSRC())}})
		}
		return
	}
	if p.pliPending.CompareAndSwap(false, true) {
		time.AfterFunc(wait, func() {
			p.pliPending.Store(false)
			p.requestKeyframe()
		})
	}
}

// forwardedExtensions are the header extensions the SFU carries from a
// publisher to a subscriber, remapped to the subscriber's ids. Transport-wide
// ones (mid, rid, transport-cc, abs-send-time) belong to one PeerConnection
// and are dropped: a publisher's mid reaching a browser makes it drop every
// packet.
var forwardedExtensions = []string{
	"urn:ietf:params:rtp-hdrext:ssrc-audio-level",
	"urn:3gpp:video-orientation",
}

// fwdTrack is the TrackLocal the SFU puts on a subscriber's sender. It is
// bound once (one PeerConnection); its binding is what the publisher's
// forwarding loop writes to.
type fwdTrack struct {
	pub      *pubTrack
	id       string
	streamID string
	sub      *subscription
	subSess  *session // the subscriber's session

	mu      sync.Mutex
	binding *binding
}

func (f *fwdTrack) ID() string                { return f.id }
func (f *fwdTrack) RID() string               { return "" }
func (f *fwdTrack) StreamID() string          { return f.streamID }
func (f *fwdTrack) Kind() webrtc.RTPCodecType { return f.pub.kind }

// Bind picks the publisher's codec among those the subscriber negotiated and
// starts forwarding to it.
func (f *fwdTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := matchCodec(f.pub.codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	b := &binding{
		ssrc:   uint32(ctx.SSRC()),
		pt:     uint8(codec.PayloadType),
		writer: ctx.WriteStream(),
		exts:   make([]rtp.Extension, 0, len(forwardedExtensions)),
		sub:    f.sub,
	}
	for _, uri := range forwardedExtensions {
		from, ok := f.pub.extIDs[uri]
		if !ok {
			continue
		}
		for _, e := range ctx.HeaderExtensions() {
			if e.URI == uri {
				b.extMap = append(b.extMap, [2]uint8{from, uint8(e.ID)})
			}
		}
	}
	f.sub.rebase(b)
	f.mu.Lock()
	f.binding = b
	f.mu.Unlock()
	f.pub.addBinding(b)
	// A new subscriber wants a keyframe now; before its transport is up a
	// keyframe would be lost, so then the session asks when it connects.
	if f.subSess == nil || f.subSess.everConnected.Load() {
		f.pub.requestKeyframe()
	}
	return codec, nil
}

// Unbind stops forwarding to the subscriber.
func (f *fwdTrack) Unbind(webrtc.TrackLocalContext) error {
	f.mu.Lock()
	b := f.binding
	f.binding = nil
	f.mu.Unlock()
	if b != nil {
		f.pub.removeBinding(b)
		f.sub.remember(b)
	}
	return nil
}

// binding is one subscriber's view of a published track: the SSRC and
// payload type it negotiated, its header extension ids, and sequence number
// and timestamp offsets that keep its stream continuous across tracks/update.
// Only the publisher's forwarding goroutine calls write.
type binding struct {
	ssrc   uint32
	pt     uint8
	writer webrtc.TrackLocalWriter
	extMap [][2]uint8 // publisher id -> subscriber id
	exts   []rtp.Extension
	hdr    rtp.Header // scratch: a header passed to the writer escapes, so it lives here
	sub    *subscription

	seqOffset uint16
	tsOffset  uint32
	rebasing  bool   // the next packet re-anchors the offsets
	prevSeq   uint16 // last values sent before a switch
	prevTS    uint32 // last timestamp sent before a switch, plus one 20 ms step
	lastSeq   atomic.Uint32
	lastTS    atomic.Uint32
	sent      atomic.Bool
	packets   atomic.Uint64
}

func (b *binding) write(pkt *rtp.Packet) {
	h := &b.hdr
	*h = pkt.Header // copy; the extension payloads still point into the read buffer
	if b.rebasing {
		b.rebasing = false
		b.seqOffset = b.prevSeq + 1 - h.SequenceNumber
		b.tsOffset = b.prevTS - h.Timestamp
	}
	h.SequenceNumber += b.seqOffset
	h.Timestamp += b.tsOffset
	h.SSRC = b.ssrc
	h.PayloadType = b.pt
	h.Extension = false
	h.Extensions = b.exts[:0]
	for _, m := range b.extMap {
		if v := pkt.Header.GetExtension(m[0]); v != nil {
			_ = h.SetExtension(m[1], v)
		}
	}
	if _, err := b.writer.WriteRTP(h, pkt.Payload); err != nil {
		return
	}
	b.lastSeq.Store(uint32(h.SequenceNumber))
	b.lastTS.Store(h.Timestamp)
	b.sent.Store(true)
	b.packets.Add(1)
}

// matchCodec finds the publisher's codec among a subscriber's negotiated
// codecs: same MIME type and, for H.264, the same packetization mode and
// profile (the profile-level-id's first byte pair), for VP9 the same profile.
func matchCodec(pub webrtc.RTPCodecParameters, cands []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i := range cands {
		c := cands[i]
		if !strings.EqualFold(c.MimeType, pub.MimeType) {
			continue
		}
		if c.SDPFmtpLine == pub.SDPFmtpLine {
			return c, true
		}
		switch strings.ToLower(pub.MimeType) {
		case strings.ToLower(webrtc.MimeTypeH264):
			if fmtp(c.SDPFmtpLine, "packetization-mode", "0") == fmtp(pub.SDPFmtpLine, "packetization-mode", "0") &&
				h264Profile(c.SDPFmtpLine) == h264Profile(pub.SDPFmtpLine) {
				return c, true
			}
		case strings.ToLower(webrtc.MimeTypeVP9):
			if fmtp(c.SDPFmtpLine, "profile-id", "0") == fmtp(pub.SDPFmtpLine, "profile-id", "0") {
				return c, true
			}
		default:
			if fallback == nil {
				fallback = &cands[i]
			}
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

func fmtp(line, key, def string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if ok && strings.EqualFold(k, key) {
			return strings.ToLower(v)
		}
	}
	return def
}

// h264Profile returns profile_idc and the constraint flags that matter
// (constrained baseline vs baseline), ignoring the level.
func h264Profile(line string) string {
	p := fmtp(line, "profile-level-id", "42e01f")
	if len(p) != 6 {
		return p
	}
	if p[:2] == "42" && (p[2:4] == "e0" || p[2:4] == "c0") {
		return "42e0" // constrained baseline
	}
	return p[:2]
}
