package sfu

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/peer"
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
	fan        *fan // set with remote, before ready is closed
	subs       atomic.Pointer[fanSet]
	subsMu     sync.Mutex // serializes changes to subs (copy on write)
	nShards    int        // goroutines that write one packet at once
	shardMin   int        // subscribers from which they do
	lastPacket atomic.Int64
	packets    atomic.Uint64
	bytes      atomic.Uint64

	// Keyframe requests toward the publisher, coalesced (see requestKeyframe).
	kf       peer.KeyframeLimiter
	lastPLI  atomic.Int64
	plisSent atomic.Uint64
}

func newPubTrack(s *session, mid string, kind webrtc.RTPCodecType) *pubTrack {
	p := &pubTrack{
		sess: s, mid: mid, kind: kind,
		ready: make(chan struct{}), closed: make(chan struct{}),
		kf:      peer.KeyframeLimiter{Interval: s.sfu.opts.KeyframeInterval, Burst: 2},
		nShards: shards(), shardMin: s.sfu.opts.shardMin,
	}
	p.subs.Store(newFanSet(nil, p.nShards, p.shardMin))
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
		history := audioHistory
		if p.kind == webrtc.RTPCodecTypeVideo {
			history = p.sess.sfu.opts.history
		}
		p.fan = newFan(history, p.nShards)
		p.lastPacket.Store(time.Now().UnixNano())
		close(p.ready)
		p.sess.sfu.goFunc(p.forward)
		p.sess.sfu.goFunc(p.drainRTCP)
	})
}

// forward is the fan-out hot path: one goroutine per published track reads
// each packet into a pooled buffer and hands it to deliver. No locks, no
// allocation per packet (see fanout.go).
func (p *pubTrack) forward() {
	defer p.stopWorkers()
	for {
		b := p.fan.acquire()
		n, _, err := p.remote.Read(b.data[:])
		if err != nil {
			p.fan.drop(b)
			return
		}
		p.deliver(b, n)
	}
}

// deliver writes the packet read into b (n bytes) to every subscriber:
// itself when they are few, spread over the shard workers when they are
// many. Only the forwarding goroutine calls it.
func (p *pubTrack) deliver(b *pktBuf, n int) {
	if err := b.pkt.Unmarshal(b.data[:n]); err != nil {
		p.fan.drop(b)
		return
	}
	p.lastPacket.Store(time.Now().UnixNano())
	p.packets.Add(1)
	p.bytes.Add(uint64(n))
	set := p.subs.Load()
	if p.isClosed() || len(set.all) == 0 {
		// Unpublished (keep reading so the receiver drains), or nobody
		// to write to or to answer a NACK of.
		p.fan.drop(b)
		return
	}
	p.fan.keep(b)
	if !set.inline {
		p.dispatch(b, set)
		return
	}
	if p.fan.sharded {
		p.drain()
	}
	p.fanOut(set.all, &b.pkt)
}

// fanOut writes one packet to a list of bindings, in order. Every
// goroutine that fans out calls it once per packet with its own list (the
// forwarding goroutine with every binding or with shard 0, each shard
// worker with its shard), so a hook that must wrap one goroutine's burst
// of writes (cork before the loop, flush after) belongs here.
func (p *pubTrack) fanOut(list []*binding, pkt *rtp.Packet) {
	if len(list) < 2 {
		for _, b := range list {
			b.write(pkt)
		}
		return
	}
	// The subscribers share the SFU's port: their datagrams leave with one
	// sendmmsg per 16 instead of a sendto each (peer.API.Cork).
	api := p.sess.sfu.api
	api.Cork()
	for _, b := range list {
		b.write(pkt)
	}
	api.Flush()
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
	old := p.subs.Load().all
	next := make([]*binding, 0, len(old)+1)
	next = append(append(next, old...), b)
	p.subs.Store(newFanSet(next, p.nShards, p.shardMin))
}

// removeBinding stops writes to b: when it returns, no goroutine is
// writing to b and none will, so b's last sequence number and timestamp
// are final (a switch rebases on them).
func (p *pubTrack) removeBinding(b *binding) {
	p.subsMu.Lock()
	old := p.subs.Load().all
	next := make([]*binding, 0, len(old))
	for _, x := range old {
		if x != b {
			next = append(next, x)
		}
	}
	p.subs.Store(newFanSet(next, p.nShards, p.shardMin))
	p.subsMu.Unlock()
	b.stop()
}

func (p *pubTrack) subscribers() int { return len(p.subs.Load().all) }

// close unpublishes the track: subscribers stop receiving from it.
func (p *pubTrack) close() {
	p.closeOnce.Do(func() { close(p.closed) })
}

// requestKeyframe asks the publisher for a keyframe. Requests are coalesced
// (peer.KeyframeLimiter): one PLI per keyframe interval goes upstream on average,
// and a request beyond that is sent when it is due, so a subscriber that
// joins just after another still gets its keyframe promptly. Keyframes are
// a scarce resource.
//
// After a quiet spell two PLIs may go in a row: a subscriber that connects
// just after another one's keyframe was sent would otherwise wait the
// whole window. That is what a relay WHEP viewer did (gateway/wish):
// rtgate's pull connects, and its keyframe comes before the viewer rtgate
// serves from it is connected; the viewer's own request then came 30 to
// 100 ms later and waited about 450 ms.
func (p *pubTrack) requestKeyframe() {
	if p.kind != webrtc.RTPCodecTypeVideo || !p.isReady() || p.isClosed() {
		return
	}
	p.kf.Request(p.sendPLI)
}

// sendPLI writes a PLI to the publisher (requestKeyframe's limiter calls it).
func (p *pubTrack) sendPLI() {
	if p.isClosed() {
		return
	}
	p.lastPLI.Store(time.Now().UnixNano())
	p.plisSent.Add(1)
	_ = p.sess.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(p.remote.SSRC())}})
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
		pub:    f.pub,
		shard:  -1,
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
	f.sub.bound.Store(b)
	// The subscriber's NACKs are answered from the published track's
	// history: its NACK responder keeps no copy of its own.
	peer.ShareHistory(ctx.ID(), f.sub)
	f.pub.addBinding(b)
	// A new subscriber wants a keyframe now; before its transport is up a
	// keyframe would be lost, so then the session asks when it connects.
	if f.subSess == nil || f.subSess.everConnected.Load() {
		f.pub.requestKeyframe()
	}
	return codec, nil
}

// Unbind stops forwarding to the subscriber.
func (f *fwdTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	f.mu.Lock()
	b := f.binding
	f.binding = nil
	f.mu.Unlock()
	peer.UnshareHistory(ctx.ID(), f.sub)
	if b != nil {
		f.pub.removeBinding(b)
		f.sub.bound.CompareAndSwap(b, nil)
		f.sub.remember(b)
	}
	return nil
}

// binding is one subscriber's view of a published track: the SSRC and
// payload type it negotiated, its header extension ids, and sequence number
// and timestamp offsets that keep its stream continuous across tracks/update.
// Only the goroutine of its shard calls write (see fanout.go).
type binding struct {
	ssrc   uint32
	pt     uint8
	writer webrtc.TrackLocalWriter
	extMap [][2]uint8 // publisher id -> subscriber id
	exts   []rtp.Extension
	hdr    rtp.Header // scratch: a header passed to the writer escapes, so it lives here
	sub    *subscription
	pub    *pubTrack
	shard  int // set when it joins the track's subscribers; -1 before

	state atomic.Int32 // bindingIdle, bindingWriting, bindingStopped

	seqOffset uint16
	tsOffset  uint32
	rebasing  bool   // the next packet re-anchors the offsets
	prevSeq   uint16 // last values sent before a switch
	prevTS    uint32 // last timestamp sent before a switch, plus one 20 ms step
	lastSeq   atomic.Uint32
	lastTS    atomic.Uint32
	sent      atomic.Bool
	packets   atomic.Uint64
	// For NACKs (SentPacket): the offsets and the first sequence number
	// sent, stored once with the first packet sent (offsets do not change
	// after it). firstSeq is 1<<16 | seq once set.
	offsets  atomic.Uint64 // seqOffset<<32 | tsOffset
	firstSeq atomic.Uint32
}

const (
	bindingIdle    = iota
	bindingWriting // a goroutine is in write
	bindingStopped // removed: write does nothing
)

func (b *binding) write(pkt *rtp.Packet) {
	// One atomic CAS and one store per write let removeBinding wait for a
	// write in progress without a lock on the hot path.
	if !b.state.CompareAndSwap(bindingIdle, bindingWriting) {
		return
	}
	if b.rebasing {
		b.rebasing = false
		b.seqOffset = b.prevSeq + 1 - pkt.SequenceNumber
		b.tsOffset = b.prevTS - pkt.Timestamp
	}
	h := &b.hdr
	b.rewrite(h, &pkt.Header, b.exts, b.seqOffset, b.tsOffset)
	if _, err := b.writer.WriteRTP(h, pkt.Payload); err == nil {
		if !b.sent.Load() {
			b.offsets.Store(uint64(b.seqOffset)<<32 | uint64(b.tsOffset))
			b.firstSeq.Store(1<<16 | uint32(h.SequenceNumber))
		}
		b.lastSeq.Store(uint32(h.SequenceNumber))
		b.lastTS.Store(h.Timestamp)
		b.sent.Store(true)
		b.packets.Add(1)
	}
	b.state.Store(bindingIdle)
}

// rewrite makes h the header the subscriber gets for src: its SSRC,
// payload type and extension ids, the sequence number and timestamp moved
// by the offsets. h's extensions are built in exts; their payloads, like
// the CSRCs, still point into src's packet.
func (b *binding) rewrite(h, src *rtp.Header, exts []rtp.Extension, seqOffset uint16, tsOffset uint32) {
	*h = *src
	h.SequenceNumber += seqOffset
	h.Timestamp += tsOffset
	h.SSRC = b.ssrc
	h.PayloadType = b.pt
	h.Extension = false
	h.Extensions = exts[:0]
	for _, m := range b.extMap {
		if v := src.GetExtension(m[0]); v != nil {
			_ = h.SetExtension(m[1], v)
		}
	}
}

// stop makes write do nothing from now on and waits for a write in
// progress (at most one packet to one subscriber) to end.
func (b *binding) stop() {
	for !b.state.CompareAndSwap(bindingIdle, bindingStopped) {
		if b.state.Load() == bindingStopped {
			return
		}
		runtime.Gosched()
	}
}

// sentPacket rebuilds packet seq as this binding sent it, from the
// published track's history (see subscription.SentPacket).
func (b *binding) sentPacket(seq uint16, scratch *rtp.Header, exts []rtp.Extension, hdr, payload []byte) (hl, pl int, pad uint8, ok bool) {
	fs := b.firstSeq.Load()
	if fs == 0 {
		return 0, 0, 0, false
	}
	first, last := uint16(fs), uint16(b.lastSeq.Load())
	if seq-first > last-first {
		return 0, 0, 0, false // not sent by this binding (or not yet)
	}
	offs := b.offsets.Load()
	seqOffset, tsOffset := uint16(offs>>32), uint32(offs)
	buf := b.pub.fan.lookup(seq - seqOffset)
	if buf == nil {
		return 0, 0, 0, false
	}
	defer buf.release()
	if len(buf.pkt.Payload) > len(payload) {
		return 0, 0, 0, false
	}
	b.rewrite(scratch, &buf.pkt.Header, exts, seqOffset, tsOffset)
	hl, err := scratch.MarshalTo(hdr)
	if err != nil {
		return 0, 0, 0, false
	}
	pl = copy(payload, buf.pkt.Payload)
	return hl, pl, scratch.PaddingSize, true
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
