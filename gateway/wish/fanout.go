package wish

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
)

// fanout is the bridge.Sink of a relay WHEP stream: rtgate pulls the
// stream once, and each pulled track becomes a fanTrack, one TrackLocal
// bound to the PeerConnection of every viewer.
type fanout struct {
	stream     string
	kfInterval time.Duration
	// onCodecChange runs when a kind's codec changed: viewers negotiated
	// the old one and cannot follow. It must not block.
	onCodecChange func()

	mu     sync.Mutex
	byKind map[string]*fanTrack
	wake   chan struct{} // closed and replaced when a track comes or goes

	slots atomic.Pointer[[]*fanTrack] // by AddTrack index; copy on write
}

func newFanout(stream string, kfInterval time.Duration, onCodecChange func()) *fanout {
	f := &fanout{stream: stream, kfInterval: kfInterval, onCodecChange: onCodecChange,
		byKind: map[string]*fanTrack{}, wake: make(chan struct{})}
	f.slots.Store(&[]*fanTrack{})
	return f
}

// AddTrack starts (or resumes, when the kind's codec is unchanged) the
// fanTrack of the track's kind.
func (f *fanout) AddTrack(t bridge.SinkTrack) (int, error) {
	f.mu.Lock()
	ft := f.byKind[t.Kind]
	changed := false
	if ft == nil || !sameCodecs(ft.codec, t.Codec) {
		changed = ft != nil
		ft = newFanTrack(f.stream, t.Kind, t.Codec, f.kfInterval)
		f.byKind[t.Kind] = ft
	}
	ft.resume(t.RequestKeyframe)
	old := *f.slots.Load()
	slots := make([]*fanTrack, len(old), len(old)+1)
	copy(slots, old)
	slots = append(slots, ft)
	f.slots.Store(&slots)
	f.notify()
	f.mu.Unlock()
	if changed && f.onCodecChange != nil {
		f.onCodecChange()
	}
	return len(slots) - 1, nil
}

// WriteRTP hands a packet to its fanTrack: no lock, no allocation.
func (f *fanout) WriteRTP(track int, pkt *rtp.Packet) error {
	if slots := *f.slots.Load(); track >= 0 && track < len(slots) {
		slots[track].write(pkt)
	}
	return nil
}

// WriteSenderReport is not needed: each viewer's PeerConnection sends its
// own sender reports for what it sends.
func (f *fanout) WriteSenderReport(int, uint64, uint32) {}

// RemoveTrack marks the track's upstream gone; its viewers stay bound and
// resume when the pull adds the kind again.
func (f *fanout) RemoveTrack(track int) {
	if slots := *f.slots.Load(); track >= 0 && track < len(slots) {
		slots[track].pause()
		f.mu.Lock()
		f.notify()
		f.mu.Unlock()
	}
}

// Close does nothing: viewers own their PeerConnections.
func (f *fanout) Close() error { return nil }

func (f *fanout) notify() {
	close(f.wake)
	f.wake = make(chan struct{})
}

// waitTracks waits until want tracks are live or ctx ends, and returns the
// live ones.
func (f *fanout) waitTracks(ctx context.Context, want int) []*fanTrack {
	for {
		f.mu.Lock()
		var live []*fanTrack
		for _, k := range []string{bridge.KindVideo, bridge.KindAudio} {
			if ft := f.byKind[k]; ft != nil && ft.live.Load() {
				live = append(live, ft)
			}
		}
		wake := f.wake
		f.mu.Unlock()
		if len(live) >= want && want > 0 {
			return live
		}
		select {
		case <-ctx.Done():
			return live
		case <-wake:
		}
	}
}

// fanTrack is one track of a relay WHEP stream as a TrackLocal: bound to
// every viewer, it writes each packet to each binding with the binding's
// SSRC and payload type, the way the SFU's forwarding does.
type fanTrack struct {
	id, streamID string
	kind         webrtc.RTPCodecType
	codec        bridge.Codec
	pk           bridge.PayloadKind // how to see a keyframe in the payload

	binds  atomic.Pointer[[]*fanBinding] // copy on write
	bindMu sync.Mutex

	live     atomic.Bool
	keyframe atomic.Pointer[func()] // the upstream's keyframe request
	kf       peer.KeyframeLimiter   // the requests sent upstream
	lastPLI  atomic.Int64           // Unix ns of the last request sent upstream
	lastAsk  atomic.Int64           // Unix ns of the last request of a viewer
	lastKF   atomic.Int64           // Unix ns of the last keyframe written to the viewers
	packets  atomic.Uint64

	// The cold start (see hold): cold until the first viewer is served;
	// heldKF is the Unix ns of the keyframe held, 0 for none.
	cold   atomic.Bool
	heldKF atomic.Int64
	held   heldPackets // the writer's

	// Used by the one goroutine that writes (the pull's reader).
	hdr  rtp.Header // scratch: a header passed to a writer escapes, so it lives here
	cont rebase
}

type fanBinding struct {
	id    string
	ssrc  uint32
	pt    uint8
	w     webrtc.TrackLocalWriter
	tl    atomic.Pointer[viewerTimeline] // the viewer's, once it is known
	flush atomic.Bool                    // give it the held packets first
}

func newFanTrack(stream, kind string, c bridge.Codec, kfInterval time.Duration) *fanTrack {
	k := webrtc.RTPCodecTypeVideo
	if kind == bridge.KindAudio {
		k = webrtc.RTPCodecTypeAudio
	}
	ft := &fanTrack{id: stream + "-" + kind, streamID: stream, kind: k, codec: c,
		cont: rebase{clock: c.ClockRate}, pk: bridge.PayloadKindOf(c.MimeType)}
	// An ask deferred by the window goes only if no keyframe came
	// meanwhile: that one reached every viewer that was asking (they were
	// connected when they asked).
	ft.kf = peer.KeyframeLimiter{Interval: kfInterval, Wanted: func() bool { return ft.lastKF.Load() < ft.lastAsk.Load() }}
	ft.binds.Store(&[]*fanBinding{})
	ft.cold.Store(ft.pk != bridge.PayloadOther)
	return ft
}

// resume attaches a (new) upstream: the next packet is rebased onto the
// last one sent, so viewers see one stream.
func (ft *fanTrack) resume(keyframe func()) {
	if keyframe != nil {
		ft.keyframe.Store(&keyframe)
	} else {
		ft.keyframe.Store(nil)
	}
	ft.cont.restart()
	ft.live.Store(true)
}

func (ft *fanTrack) pause() {
	ft.live.Store(false)
	ft.keyframe.Store(nil)
}

// write forwards one packet to every viewer.
func (ft *fanTrack) write(pkt *rtp.Packet) {
	h := &ft.hdr
	*h = pkt.Header
	now := time.Now().UnixNano()
	ft.cont.apply(h, now)
	kf := ft.pk != bridge.PayloadOther && ft.pk.KeyframeStart(pkt.Payload)
	if kf {
		ft.lastKF.Store(now)
	}
	// Header extension ids belong to the pull's negotiation, not the
	// viewers'.
	h.Extension = false
	h.Extensions = nil
	ft.packets.Add(1)
	flushed := false
	for _, b := range *ft.binds.Load() {
		if b.flush.Load() {
			ft.flushTo(b, now)
			flushed = true
		}
		h.SSRC = b.ssrc
		h.PayloadType = b.pt
		_, _ = b.w.WriteRTP(h, pkt.Payload)
		if tl := b.tl.Load(); tl != nil {
			tl.packet(kf, now)
		}
	}
	if flushed {
		ft.cold.Store(false) // served: from now on, keyframes are asked for
		ft.heldKF.Store(0)
		ft.held = heldPackets{}
	} else if ft.cold.Load() {
		ft.hold(h, pkt.Payload, kf, now)
	}
}

// The cold start of a relay stream: the first viewer's POST starts
// rtgate's pull of the stream; when the pull's session connects, the SFU
// asks the publisher for a keyframe for it, and that keyframe reaches the
// fan-out 30 to 100 ms before the viewer is connected. Asking again costs
// the publisher a second keyframe and the viewer hundreds of ms: a
// browser's encoder ignores a request less than 300 ms after the last one
// (libwebrtc), and the SFU's budget may hold it back. So until its first
// viewer is served, a video fanTrack holds the packets from the last
// keyframe on, and gives them to the first viewer that connects before it
// goes on live: that viewer starts a few frames (tens of ms) behind, as a
// jitter buffer would have it. It is no cache of the stream: nothing is
// held once a viewer was served, nor kept older than holdAge.
const (
	holdAge   = 400 * time.Millisecond // older: ask for a new keyframe instead
	holdBytes = 256 << 10
	holdPkts  = 256
)

// heldPackets are the packets held since a keyframe, rebased, their
// payloads copied into one buffer.
type heldPackets struct {
	hdr []rtp.Header
	pay [][]byte // slices of buf
	buf []byte
	out rtp.Header // scratch for writing (a header passed to a writer escapes)
}

// hold keeps a packet of the cold start (the writer's goroutine).
func (ft *fanTrack) hold(h *rtp.Header, payload []byte, kf bool, now int64) {
	hp := &ft.held
	// A keyframe start begins a new hold, unless it belongs to the frame
	// being held: H.264/H.265 send the parameter sets (SPS, PPS, VPS) and
	// then the IDR, often fragmented, all with the frame's timestamp, and
	// each counts as a keyframe start; the viewer needs all of them.
	if kf && (len(hp.hdr) == 0 || hp.hdr[0].Timestamp != h.Timestamp || ft.heldKF.Load() == 0) {
		if hp.buf == nil {
			// Once per cold start of a stream, not per packet.
			hp.hdr, hp.pay, hp.buf = make([]rtp.Header, 0, holdPkts), make([][]byte, 0, holdPkts), make([]byte, 0, holdBytes)
		}
		hp.hdr, hp.pay, hp.buf = hp.hdr[:0], hp.pay[:0], hp.buf[:0]
		ft.heldKF.Store(now)
	}
	at := ft.heldKF.Load()
	if at == 0 {
		return
	}
	if now-at > int64(holdAge) || len(hp.hdr) == holdPkts || len(hp.buf)+len(payload) > holdBytes {
		ft.heldKF.Store(0) // too old or too big: the next keyframe starts again
		return
	}
	off := len(hp.buf)
	hp.buf = append(hp.buf, payload...)
	hp.hdr = append(hp.hdr, *h)
	hp.hdr[len(hp.hdr)-1].CSRC = nil // shares the reader's slice, which the next packet overwrites
	hp.pay = append(hp.pay, hp.buf[off:len(hp.buf):len(hp.buf)])
}

// flushTo writes the held packets to a viewer that has just connected,
// or, when none are held any more, asks for a keyframe (the writer's
// goroutine).
func (ft *fanTrack) flushTo(b *fanBinding, now int64) {
	b.flush.Store(false)
	hp := &ft.held
	if ft.heldKF.Load() == 0 || len(hp.hdr) == 0 {
		ft.requestKeyframe()
		return
	}
	tl := b.tl.Load()
	for i := range hp.hdr {
		hp.out = hp.hdr[i]
		hp.out.SSRC = b.ssrc
		hp.out.PayloadType = b.pt
		_, _ = b.w.WriteRTP(&hp.out, hp.pay[i])
		if tl != nil {
			tl.packet(i == 0, now)
		}
	}
}

// join gives a viewer that has just connected its first keyframe: the one
// held since the cold start if it is there (see hold), else a request.
func (ft *fanTrack) join(ssrc uint32) {
	if ft.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	if ft.cold.Load() && ft.heldKF.Load() != 0 {
		for _, b := range *ft.binds.Load() {
			if b.ssrc == ssrc {
				b.flush.Store(true) // the writer gives it the held packets
				return
			}
		}
	}
	ft.requestKeyframe()
}

// requestKeyframe asks the upstream for a keyframe for viewers that can
// receive one now: one that has just connected, or one that sent a PLI.
// At most one request per keyframe interval goes upstream. An ask inside the
// window is remembered: at the window's end a request goes upstream,
// unless a keyframe has passed since the last ask, which then reached
// every viewer that was asking (they were connected when they asked). So
// a viewer that joins just after another gets its keyframe promptly, and
// no keyframe is asked for that nobody waits for.
func (ft *fanTrack) requestKeyframe() {
	if ft.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	ft.lastAsk.Store(time.Now().UnixNano())
	ft.sendKeyframeRequest()
}

func (ft *fanTrack) sendKeyframeRequest() {
	ft.kf.Request(ft.sendPLI)
}

// sendPLI sends the request upstream (the limiter calls it).
func (ft *fanTrack) sendPLI() {
	now := time.Now().UnixNano()
	ft.lastPLI.Store(now)
	if kf := ft.keyframe.Load(); kf != nil {
		(*kf)()
		for _, b := range *ft.binds.Load() {
			if tl := b.tl.Load(); tl != nil {
				tl.upstream(now)
			}
		}
	}
}

func (ft *fanTrack) ID() string                { return ft.id }
func (ft *fanTrack) RID() string               { return "" }
func (ft *fanTrack) StreamID() string          { return ft.streamID }
func (ft *fanTrack) Kind() webrtc.RTPCodecType { return ft.kind }

// Bind picks the track's codec among the viewer's and starts writing to
// it. It asks for no keyframe: the viewer's transport is not up yet, so one
// that came now would be lost, and would hold back the next request by a
// window here and in the SFU. The viewer asks once it is connected
// (whepRelay).
func (ft *fanTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, ok := pickCodec(ft.codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, webrtc.ErrUnsupportedCodec
	}
	b := &fanBinding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), pt: uint8(codec.PayloadType), w: ctx.WriteStream()}
	ft.bindMu.Lock()
	old := *ft.binds.Load()
	next := make([]*fanBinding, 0, len(old)+1)
	next = append(append(next, old...), b)
	ft.binds.Store(&next)
	ft.bindMu.Unlock()
	return codec, nil
}

// follow gives the viewer bound with ssrc its timeline: the writer records
// its first packet and keyframe into it. A request sent upstream since the
// viewer's POST counts as the viewer's, and a keyframe that passed since
// then, before the viewer could receive it, as lost to it.
func (ft *fanTrack) follow(ssrc uint32, tl *viewerTimeline) {
	for _, b := range *ft.binds.Load() {
		if b.ssrc == ssrc {
			tl.upstream(ft.lastPLI.Load())
			if kf := ft.lastKF.Load(); kf >= tl.post.UnixNano() {
				tl.earlyKeyframe.CompareAndSwap(0, kf)
			}
			b.tl.Store(tl)
		}
	}
}

// Unbind stops writing to a viewer.
func (ft *fanTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	ft.bindMu.Lock()
	defer ft.bindMu.Unlock()
	old := *ft.binds.Load()
	next := make([]*fanBinding, 0, len(old))
	for _, b := range old {
		if b.id != ctx.ID() {
			next = append(next, b)
		}
	}
	ft.binds.Store(&next)
	return nil
}

// pickCodec finds the track's codec among those a viewer negotiated.
func pickCodec(c bridge.Codec, cands []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	kind, _, _ := cutMime(c.MimeType)
	var fallback *webrtc.RTPCodecParameters
	for i := range cands {
		cand := cands[i]
		if !strings.EqualFold(cand.MimeType, c.MimeType) {
			continue
		}
		_, name, _ := cutMime(cand.MimeType)
		if sameCodec(kind, codecDesc{name: name, clock: cand.ClockRate, fmtp: cand.SDPFmtpLine}, c) {
			return cand, true
		}
		if fallback == nil && !strings.EqualFold(name, "H264") {
			fallback = &cands[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

// rebase keeps a fanTrack one continuous RTP stream while its upstream
// changes (a new pull after the publisher's session was replaced): a new
// upstream's sequence numbers continue at last+1 and its timestamps at
// last plus the wall time that passed. It is the arithmetic of publish's
// continuity, applied after the pull instead of before the publish.
type rebase struct {
	clock          uint32
	started, again bool
	ssrc           uint32
	seqOff         uint16
	tsOff          uint32
	lastSeq        uint16
	lastTS         uint32
	lastWall       int64
}

func (c *rebase) restart() { c.again = true }

func (c *rebase) apply(h *rtp.Header, now int64) {
	switch {
	case !c.started:
		c.started = true
		c.again = false
		c.ssrc = h.SSRC
	case c.again || h.SSRC != c.ssrc:
		c.again = false
		c.ssrc = h.SSRC
		c.seqOff = c.lastSeq + 1 - h.SequenceNumber
		elapsed := uint32(1)
		if d := now - c.lastWall; d > 0 {
			if ticks := uint64(d) * uint64(c.clock) / 1e9; ticks > 1 && ticks < 1<<31 {
				elapsed = uint32(ticks)
			}
		}
		c.tsOff = c.lastTS + elapsed - h.Timestamp
	}
	h.SequenceNumber += c.seqOff
	h.Timestamp += c.tsOff
	if c.lastWall == 0 || int16(h.SequenceNumber-c.lastSeq) > 0 {
		c.lastSeq, c.lastTS, c.lastWall = h.SequenceNumber, h.Timestamp, now
	}
}
