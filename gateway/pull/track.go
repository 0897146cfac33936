package pull

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
)

// track is one pulled track for the Pull's lifetime: its identity (the
// publisher session or the stream, and the track name), its sink index and
// its counters. Bindings (one per subscriber session that pulls it) come
// and go under it.
type track struct {
	p    *Pull
	key  string
	name string

	// Guarded by p.mu.
	session string // publisher session it is pulled from (or to be)
	state   string
	lastErr string
	index   int // sink index; -1 while not in the sink
	codec   bridge.Codec

	// Run's goroutine only.
	seen      bool // listed as active by its session (Refs)
	refused   bool
	nfSince   time.Time // first not_found_track_error of nfSession
	nfSession string
	retryAt   time.Time
	retryWait time.Duration

	// The binding receiving now: keyframe requests go to its
	// PeerConnection and SSRC.
	cur     atomic.Pointer[binding]
	lastPLI atomic.Int64

	packets, bytes, expected atomic.Uint64
	repaired, duplicates     atomic.Uint64
	badPackets, writeErrors  atomic.Uint64
	plis, plisCoalesced      atomic.Uint64
	plisDropped              atomic.Uint64
	binds                    atomic.Uint64

	// From pion's inbound-rtp stats (sampleStats), guarded by p.mu:
	// NACKs sent by ended bindings, by the current one, and the latest
	// jitter.
	nacksDone, nacksCur uint64
	nacksOf             *binding // whose count nacksCur is
	jitter              time.Duration
}

// binding is a track pulled on one subscriber session: its mid, the SSRC
// it arrives with, and the goroutine reading it.
type binding struct {
	t       *track
	a       *attempt
	mid     string
	session string // publisher session

	ssrc atomic.Uint32
	stop atomic.Bool
	done chan struct{} // closed when the reader returns
	sr   atomic.Pointer[senderReport]

	// Guarded by a.mu.
	started bool
	remote  *webrtc.TrackRemote

	// The reader's only.
	win       seqWindow
	loggedErr bool
}

type senderReport struct {
	ntp uint64
	rtp uint32
}

// receiveMTU is the read buffer per track: pion's receive MTU is 1460.
const receiveMTU = 1500

// maxReadErrors ends a reader after this many consecutive failed reads
// that are neither the end of the track nor its deadline.
const maxReadErrors = 100

// read is a binding's hot path: read into a reused buffer, unmarshal into a
// reused packet, drop duplicates, count, write to the sink. No allocation,
// no lock.
func (b *binding) read(remote *webrtc.TrackRemote, idx int) {
	buf := make([]byte, receiveMTU)
	var pkt rtp.Packet
	sink := b.a.p.opts.Sink
	errs := 0
	for {
		n, attr, err := remote.Read(buf)
		if b.stop.Load() {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() {
				return
			}
			if errs++; errs > maxReadErrors {
				b.a.p.log.Warn("reading track failed", "track", b.t.name, "err", err)
				return
			}
			b.t.badPackets.Add(1)
			continue
		}
		errs = 0
		// pion marks the packets it rebuilt from RTX (RFC 4588).
		_, repaired := attr[webrtc.AttributeRtxSsrc]
		b.handle(buf[:n], &pkt, repaired, sink, idx)
	}
}

// handle passes one packet to the sink.
func (b *binding) handle(raw []byte, pkt *rtp.Packet, repaired bool, sink bridge.Sink, idx int) {
	t := b.t
	if err := pkt.Unmarshal(raw); err != nil {
		t.badPackets.Add(1)
		return
	}
	// pion's NACK generator does not see packets repaired by RTX and asks
	// for them again (pion/webrtc#3063): the sink gets each packet once.
	dup, advance := b.win.add(pkt.SequenceNumber)
	if dup {
		t.duplicates.Add(1)
		return
	}
	// Expected packets as RFC 3550 counts them: how far the highest
	// sequence number moved. Lost = expected - received.
	t.expected.Add(uint64(advance))
	t.packets.Add(1)
	t.bytes.Add(uint64(len(raw)))
	if repaired {
		t.repaired.Add(1)
	}
	if sr := b.sr.Load(); sr != nil && b.sr.CompareAndSwap(sr, nil) {
		sink.WriteSenderReport(idx, sr.ntp, sr.rtp)
	}
	if err := sink.WriteRTP(idx, pkt); err != nil {
		t.writeErrors.Add(1)
		if !b.loggedErr {
			b.loggedErr = true
			b.a.p.log.Warn("sink write failed (counted from now on)", "track", t.name, "err", err)
		}
	}
}

// seqWindow remembers which of the last dupWindow sequence numbers
// arrived, to drop duplicates.
type seqWindow struct {
	bits    [dupWindow / 64]uint64
	hi      uint16
	started bool
}

// dupWindow is how far back duplicates are recognized (a power of two):
// far more than a retransmission can be late.
const dupWindow = 1024

// add records seq; dup reports it arrived before; advance is how far it
// moved the highest sequence number (1 for the first).
func (w *seqWindow) add(seq uint16) (dup bool, advance int) {
	if !w.started {
		w.started, w.hi = true, seq
		w.set(seq)
		return false, 1
	}
	d := int(int16(seq - w.hi))
	switch {
	case d > 0:
		if d >= dupWindow {
			clear(w.bits[:])
		} else {
			for s := w.hi + 1; s != seq; s++ {
				w.bits[s/64%(dupWindow/64)] &^= 1 << (s % 64) // a gap: not arrived
			}
		}
		w.hi = seq
		w.set(seq)
		return false, d
	case -d < dupWindow:
		i, m := seq/64%(dupWindow/64), uint64(1)<<(seq%64)
		if w.bits[i]&m != 0 {
			return true, 0
		}
		w.bits[i] |= m
		return false, 0
	default:
		return false, 0 // older than the window: let the sink judge
	}
}

func (w *seqWindow) set(seq uint16) { w.bits[seq/64%(dupWindow/64)] |= 1 << (seq % 64) }

// readRTCP reads the receiver's RTCP until its PeerConnection closes: the
// interceptors need it read, and the sender reports of the track's SSRC
// go to the sink (through the reader, so that all the sink's calls for a
// track come from one goroutine).
func (b *binding) readRTCP(recv *webrtc.RTPReceiver) {
	buf := make([]byte, receiveMTU)
	for {
		n, _, err := recv.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n]) // RTCP is rare: allocating is fine
		if err != nil {
			continue
		}
		for _, pk := range pkts {
			if sr, ok := pk.(*rtcp.SenderReport); ok && sr.SSRC == b.ssrc.Load() {
				b.sr.Store(&senderReport{ntp: sr.NTPTime, rtp: sr.RTPTime})
			}
		}
	}
}

// requestKeyframe is the track's SinkTrack.RequestKeyframe: a PLI to the
// SFU for the SSRC the track arrives with now, at most one per
// KeyframeInterval (keyframes are scarce; the SFU coalesces again across
// its subscribers). It never blocks on signalling.
func (t *track) requestKeyframe() {
	b := t.cur.Load()
	if b == nil {
		t.plisDropped.Add(1) // not receiving: the next pull starts with a keyframe anyway
		return
	}
	now := time.Now().UnixNano()
	last := t.lastPLI.Load()
	if now-last < int64(t.p.opts.KeyframeInterval) || !t.lastPLI.CompareAndSwap(last, now) {
		t.plisCoalesced.Add(1)
		return
	}
	err := b.a.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: b.ssrc.Load()}})
	if err != nil {
		t.plisDropped.Add(1)
		return
	}
	t.plis.Add(1)
}

// sinkCodec is the bridge form of a negotiated codec.
func sinkCodec(c webrtc.RTPCodecParameters) bridge.Codec {
	return bridge.Codec{MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: c.Channels,
		Fmtp: c.SDPFmtpLine, PayloadType: uint8(c.PayloadType)}
}

// sameStream reports whether a sink can keep writing a track's packets
// to the index it added with codec a when they now come with codec b: the
// payload type may differ between negotiations, nothing else.
func sameStream(a, b bridge.Codec) bool {
	return strings.EqualFold(a.MimeType, b.MimeType) && a.ClockRate == b.ClockRate &&
		a.Channels == b.Channels && a.Fmtp == b.Fmtp
}

// addToSink returns the track's sink index, adding it to the sink the
// first time (and again if its codec changed).
func (p *Pull) addToSink(b *binding, c webrtc.RTPCodecParameters) (int, error) {
	t := b.t
	codec := sinkCodec(c)
	p.sinkMu.Lock()
	defer p.sinkMu.Unlock()
	p.mu.Lock()
	idx, old := t.index, t.codec
	p.mu.Unlock()
	if idx >= 0 && !sameStream(old, codec) {
		p.log.Warn("codec changed: the track restarts in the sink", "track", t.name, "from", old.MimeType, "to", codec.MimeType)
		p.opts.Sink.RemoveTrack(idx)
		idx = -1
	}
	if idx < 0 {
		st := bridge.SinkTrack{Track: bridge.Track{Kind: codec.Kind(), Codec: codec}, Name: t.name, Session: b.session,
			Stream: p.opts.StreamName}
		if st.Kind == bridge.KindVideo {
			st.RequestKeyframe = t.requestKeyframe
		}
		var err error
		if idx, err = p.opts.Sink.AddTrack(st); err != nil {
			return -1, fmt.Errorf("the sink refused track %s (%s): %w", t.name, codec.MimeType, err)
		}
	}
	p.mu.Lock()
	t.index, t.codec, t.session, t.state, t.lastErr = idx, codec, b.session, TrackPulling, ""
	p.mu.Unlock()
	return idx, nil
}

// removeFromSink takes a track out of the sink; no reader of it runs.
func (p *Pull) removeFromSink(t *track) {
	p.sinkMu.Lock()
	defer p.sinkMu.Unlock()
	p.mu.Lock()
	idx := t.index
	t.index = -1
	p.mu.Unlock()
	if idx >= 0 {
		p.opts.Sink.RemoveTrack(idx)
	}
}

// trackFor returns the track of a key, making it the first time.
func (p *Pull) trackFor(key, name, session string) *track {
	if t := p.tracks[key]; t != nil {
		return t
	}
	t := &track{p: p, key: key, name: name, session: session, state: TrackWaiting, index: -1}
	p.mu.Lock()
	p.tracks[key] = t
	p.order = append(p.order, t)
	p.mu.Unlock()
	return t
}

// endTrack removes a track that was unpublished for good: out of the sink
// and the status. A track of the same name published later is a new one.
func (p *Pull) endTrack(t *track, why string) {
	p.removeFromSink(t)
	p.log.Info("track ended", "track", t.name, "session", t.session, "why", why)
	p.mu.Lock()
	defer p.mu.Unlock()
	t.state, t.lastErr = TrackEnded, why
	if p.tracks[t.key] == t {
		delete(p.tracks, t.key)
	}
	for i, x := range p.order {
		if x == t {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
	p.endedCount++
}
