package peer

// rtgate's NACK responder, written by hand.
//
// Why not pion's: every RTP packet rtgate sends (the embedded SFU's fan-out to
// each subscriber, the gateway's publishing) passes the NACK responder, and
// pion's (interceptor v0.1.51, pkg/nack) copies each one through
// rtpbuffer.PacketFactoryCopy.NewPacket: a new RetainablePacket per packet
// plus header and payload buffers from sync.Pools that are emptied at every
// GC, 1-2 allocations per packet as measured by gateway/sfu's BenchmarkFanOut.
// rtgate's own forwarding path allocates nothing, so that was all the garbage
// the media path made. This responder keeps, per stream, a ring of slots
// allocated once at bind time; a sent packet is marshalled into its slot and
// nothing is allocated per packet.
//
// Behaviour follows pion's responder (pkg/nack/responder_interceptor.go,
// internal/rtpbuffer) so that nothing else changes:
//   - a local stream is buffered when its RTCP feedback has a plain "nack"
//     (Parameter ""), as pion's streamSupportNack decides;
//   - only packets on the stream's own SSRC are buffered; others pass through;
//   - the buffer keeps the last size sequence numbers below the newest one
//     sent; older, newer-than-newest and skipped sequence numbers are not
//     resent, and a repeat of the newest sequence number is not buffered;
//   - with RTX negotiated (SSRCRetransmission and PayloadTypeRetransmission
//     both non-zero) a NACKed packet goes out as RFC 4588 RTX: RTX SSRC and
//     payload type, a sequence number from a counter of the RTX stream's own
//     (random start), the original sequence number as the first two payload
//     bytes, padding removed (also the old style, counted in the payload's
//     last byte); without RTX the original packet is resent unchanged;
//   - one packet is not resent twice within the stream's RTT + 5 ms, the RTT
//     being averaged from the reception reports of RRs and SRs as pion does;
//   - UnbindLocalStream and Close drop the buffers; writes afterwards pass
//     through.
//
// Differences, on purpose:
//   - retransmissions are written synchronously on the goroutine that reads
//     the RTCP carrying the NACK, not on a new goroutine per NACK: it keeps
//     resends of one stream in order and allocates nothing; a write is a
//     UDP send and does not block for long;
//   - a packet numbered size or more behind the newest restarts the buffer:
//     the sender began a new numbering (a replaced track, a rebased
//     source). pion stores it, evicting a newer packet from its slot, and
//     then repairs nothing until the new numbers catch up with the old
//     newest, which can take 32k packets. (A packet reordered by more than
//     the buffer before it reached the sender would also restart it: then
//     the packets before it cannot be repaired, as they mostly could not be
//     in time anyway.)
//   - pion numbers RTX packets from one counter per PeerConnection and
//     takes a number for every packet it buffers, so its RTX streams have
//     gaps; here each RTX stream counts the retransmissions it sends;
//   - pion fails the media write of a packet whose payload exceeds 1460
//     bytes; here a packet that does not fit a slot (1500 bytes of header and
//     payload) is sent but not buffered;
//   - pion's rate limit on retransmissions needs a target bitrate from its
//     congestion controller (internal cc.TargetBitrateKey), and pion's
//     pacers want its internal ResendKey attribute; rtgate registers neither,
//     so pion's responder never limits here either.
//
// Memory: size x 1500 bytes per stream with NACK (1.5 MiB at the default
// 1024), allocated on the stream's first packet; pion's responder holds
// about as much once its buffer is full (a 1460-byte pooled buffer per
// packet).
//
// A sender that keeps what it sent anyway (the embedded SFU keeps each
// published packet once for all its subscribers) hands the responder a
// SentHistory with ShareHistory: the stream is then not buffered at all
// (no ring, no copy per packet; its writes pass straight down the chain),
// and a NACK is answered from that history, with the same RTX, once-per-RTT
// and ordering behaviour.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

const (
	defaultNACKResponderSize = 1024
	// nackSlotSize bounds header plus payload of a buffered packet: a
	// packet that came off an Ethernet path, with room for the header
	// extensions rtgate rewrites.
	nackSlotSize = 1500
	// rtxOSNSize is the original sequence number RTX puts before the payload.
	rtxOSNSize = 2
)

// ResentAttribute is the interceptor attribute under which the NACK
// responder reports, on the RTCP read that carried NACKs, how many packets
// it resent for them (an int), so that the sender reading its RTCP can
// count retransmissions (see ReadFeedback).
const ResentAttribute = resentKey(0)

type resentKey int

// SentHistory is what a sender kept of the packets it sent on one stream.
type SentHistory interface {
	// SentPacket writes packet seq of the stream, as it was sent: its
	// header marshalled into hdr and its payload (without padding) copied
	// into payload, both nackSlotSize (1500) bytes long. It returns their
	// sizes and the header's padding size, or ok false when it does not
	// hold the packet (any more). Calls for one stream do not overlap.
	SentPacket(seq uint16, hdr, payload []byte) (hl, pl int, pad uint8, ok bool)
}

// shared maps a sender's id to the history it shares, until the NACK
// responder that binds the sender's stream takes it over.
var shared struct {
	sync.Mutex
	m map[string]SentHistory
}

// ShareHistory makes the NACK responder answer the stream that the sender
// with this id binds next from h, instead of buffering the stream itself.
// id is the sender's webrtc.TrackLocalContext.ID(): call ShareHistory from
// TrackLocal.Bind, which pion calls before it binds the stream to the
// interceptors. The responder takes the registration over when it binds
// the stream; UnshareHistory (from Unbind) drops one that no stream took.
func ShareHistory(id string, h SentHistory) {
	shared.Lock()
	defer shared.Unlock()
	if shared.m == nil {
		shared.m = map[string]SentHistory{}
	}
	shared.m[id] = h
}

// UnshareHistory drops a registration of h that no stream took over.
func UnshareHistory(id string, h SentHistory) {
	shared.Lock()
	defer shared.Unlock()
	if shared.m[id] == h {
		delete(shared.m, id)
	}
}

// claimHistory takes over the history shared for sender id, if any.
func claimHistory(id string) SentHistory {
	shared.Lock()
	defer shared.Unlock()
	h := shared.m[id]
	if h != nil {
		delete(shared.m, id)
	}
	return h
}

// nackResponderFactory makes a nackResponder for each PeerConnection.
type nackResponderFactory struct {
	size uint16
	log  logging.LeveledLogger
	now  func() time.Time
}

// newNACKResponderFactory returns the factory of rtgate's NACK responder,
// buffering size packets per stream (a power of two; 0 means 1024).
func newNACKResponderFactory(size uint16, lf logging.LoggerFactory) (*nackResponderFactory, error) {
	if size == 0 {
		size = defaultNACKResponderSize
	}
	if size&(size-1) != 0 {
		return nil, fmt.Errorf("NACK responder size %d is not a power of two", size)
	}
	if lf == nil {
		lf = NewLoggerFactory(nil)
	}
	return &nackResponderFactory{size: size, log: lf.NewLogger("nack_responder"), now: time.Now}, nil
}

// NewInterceptor implements interceptor.Factory.
func (f *nackResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{size: f.size, log: f.log, now: f.now, streams: map[uint32]*nackStream{}}, nil
}

// nackResponder buffers what a PeerConnection sends and resends what the
// other side NACKs.
type nackResponder struct {
	interceptor.NoOp
	size uint16
	log  logging.LeveledLogger
	now  func() time.Time

	mu      sync.RWMutex
	streams map[uint32]*nackStream // by media SSRC
}

// nackSlot describes the packet in one slot of a stream's ring.
type nackSlot struct {
	lastResend time.Time // zero until resent
	n          uint16    // header + payload bytes; 0: empty
	hdr        uint16    // header bytes
	seq        uint16
	pad        uint8 // Header.PaddingSize, which the marshalled header lacks
}

// nackStream is one local stream's ring of recently sent packets.
//
// Concurrency: the media goroutine writes (store) while RTCP goroutines
// resend. mu guards the ring and is held only to copy one packet in (media
// path) or out (RTCP path), never across a write down the chain, so the media
// path waits at most for one copy of at most 1500 bytes, and only while a
// resend is copying out. (A lock-free ring would need racy byte copies with
// sequence checks around them, which Go's memory model and the race detector
// do not allow; an uncontended mutex costs about 20 ns.)
type nackStream struct {
	ssrc    uint32
	rtxSSRC uint32 // 0: resend the original packets
	rtxPT   uint8
	mask    uint16
	writer  interceptor.RTPWriter
	ext     SentHistory // set: resend from the sender's history, buffer nothing

	mu      sync.Mutex
	unbound bool
	buf     []byte     // len(slots) x nackSlotSize; made on the first packet, so an idle stream costs nothing
	slots   []nackSlot // index: sequence number & mask
	highest uint16     // newest sequence number sent
	started bool
	rtt     time.Duration // mean of samples RTTs, kept as pion's responder does
	samples int64

	// Resend state, used only under resendMu (one resend at a time per
	// stream, which also keeps RTX sequence numbers in order).
	resendMu sync.Mutex
	rtxSeq   uint16
	rs       *resendScratch // made on the first NACK: a stream never NACKed costs 3 KiB less
}

// resendScratch is where a stream's resends are put together.
type resendScratch struct {
	hdrBuf  [nackSlotSize]byte              // the header, marshalled
	scratch [rtxOSNSize + nackSlotSize]byte // OSN room | payload
	hdr     rtp.Header
	attrs   interceptor.Attributes
	resent  []resentMark // ext streams only: by sequence number & mask
}

// resentMark is when packet seq of an ext stream was last resent.
type resentMark struct {
	at  time.Time
	seq uint16
}

// supportsNACK mirrors pion's streamSupportNack.
func supportsNACK(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// BindLocalStream buffers the stream's packets if it negotiated NACK.
func (r *nackResponder) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	ext := claimHistory(info.ID)
	if !supportsNACK(info) {
		return writer
	}
	s := &nackStream{
		ext:    ext,
		ssrc:   info.SSRC,
		mask:   r.size - 1,
		writer: writer,
		rtxSeq: uint16(rand.Uint32()), // RFC 4588: a random first sequence number
	}
	if info.SSRCRetransmission != 0 && info.PayloadTypeRetransmission != 0 {
		s.rtxSSRC, s.rtxPT = info.SSRCRetransmission, info.PayloadTypeRetransmission
	}
	r.mu.Lock()
	r.streams[info.SSRC] = s
	r.mu.Unlock()
	if ext != nil {
		return writer // nothing to keep: the sender keeps it
	}
	return interceptor.RTPWriterFunc(s.write)
}

// UnbindLocalStream drops the stream's buffer.
func (r *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	r.mu.Lock()
	s := r.streams[info.SSRC]
	delete(r.streams, info.SSRC)
	r.mu.Unlock()
	if s != nil {
		s.release()
	}
}

// Close drops every stream's buffer.
func (r *nackResponder) Close() error {
	r.mu.Lock()
	streams := r.streams
	r.streams = map[uint32]*nackStream{}
	r.mu.Unlock()
	for _, s := range streams {
		s.release()
	}
	return nil
}

// BindRTCPReader resends what NACKs ask for and follows the RTT from
// reception reports.
func (r *nackResponder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if attr == nil {
			attr = make(interceptor.Attributes)
		}
		pkts, err := attr.GetRTCPPackets(b[:n])
		if err != nil {
			return 0, nil, err
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				if sent := r.resend(p); sent > 0 {
					resent, _ := attr[ResentAttribute].(int)
					attr[ResentAttribute] = resent + sent
				}
			case *rtcp.ReceiverReport:
				r.updateRTT(p.Reports)
			case *rtcp.SenderReport:
				r.updateRTT(p.Reports)
			}
		}
		return n, attr, nil
	})
}

func (r *nackResponder) stream(ssrc uint32) *nackStream {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.streams[ssrc]
}

// resend writes every packet nack asks for that is still buffered and
// returns how many it wrote.
func (r *nackResponder) resend(nack *rtcp.TransportLayerNack) (sent int) {
	s := r.stream(nack.MediaSSRC)
	if s == nil {
		return 0
	}
	now := r.now()
	s.resendMu.Lock()
	defer s.resendMu.Unlock()
	if s.rs == nil {
		s.rs = &resendScratch{attrs: interceptor.Attributes{}}
		if s.ext != nil {
			s.rs.resent = make([]resentMark, int(s.mask)+1)
		}
	}
	for _, p := range nack.Nacks {
		if r.resendOne(s, p.PacketID, now) {
			sent++
		}
		for i := range uint16(16) {
			if p.LostPackets&(1<<i) != 0 && r.resendOne(s, p.PacketID+i+1, now) {
				sent++
			}
		}
	}
	return sent
}

// updateRTT averages the round trip time of the streams reports are about,
// as pion's responder does.
func (r *nackResponder) updateRTT(reports []rtcp.ReceptionReport) {
	now := ntpShort(r.now())
	for _, rep := range reports {
		s := r.stream(rep.SSRC)
		rtt := now - rep.LastSenderReport - rep.Delay
		if s == nil || rep.LastSenderReport == 0 || rtt >= 1<<31 {
			continue
		}
		s.mu.Lock()
		s.samples++
		s.rtt += (time.Duration(rtt)*time.Second/(1<<16) - s.rtt) / time.Duration(s.samples)
		s.mu.Unlock()
	}
}

// ntpShort is t in the middle 32 bits of the NTP format (16.16 seconds), as
// LSR and DLSR in reception reports.
func ntpShort(t time.Time) uint32 {
	secs := uint64(t.Unix()) + 2208988800 // NTP counts from 1900
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return uint32((secs<<32 | frac) >> 16)
}

// write is the stream's RTPWriter: buffer, then pass down the chain.
func (s *nackStream) write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if h.SSRC == s.ssrc {
		s.store(h, payload)
	}
	return s.writer.Write(h, payload, a)
}

// store copies a packet into its slot. It allocates nothing.
func (s *nackStream) store(h *rtp.Header, payload []byte) {
	hl := h.MarshalSize()
	total := hl + len(payload)
	seq := h.SequenceNumber

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unbound {
		return
	}
	size := s.mask + 1
	if s.buf == nil { // the first packet: the ring is made once, here
		s.buf = make([]byte, int(size)*nackSlotSize)
		s.slots = make([]nackSlot, size)
	}
	if s.started {
		switch d := seq - s.highest; {
		case d == 0:
			return // pion keeps the first copy of the newest packet
		case d < 1<<15: // newer: forget the sequence numbers skipped
			if d-1 >= size {
				s.clearSlots()
			} else {
				for q := s.highest + 1; q != seq; q++ {
					s.slots[q&s.mask].n = 0
				}
			}
			s.highest = seq
		case s.highest-seq >= size: // far behind: the sender restarted its numbering
			s.clearSlots()
			s.highest = seq
		}
	} else {
		s.started = true
		s.highest = seq
	}

	sl := &s.slots[seq&s.mask]
	sl.n = 0
	if total > nackSlotSize {
		return // sent, but not resendable
	}
	off := int(seq&s.mask) * nackSlotSize
	b := s.buf[off : off+nackSlotSize]
	if _, err := h.MarshalTo(b); err != nil {
		return
	}
	copy(b[hl:], payload)
	*sl = nackSlot{n: uint16(total), hdr: uint16(hl), seq: seq, pad: h.PaddingSize}
}

func (s *nackStream) clearSlots() {
	for i := range s.slots {
		s.slots[i].n = 0
	}
}

func (s *nackStream) release() {
	s.mu.Lock()
	s.buf, s.slots, s.started, s.unbound = nil, nil, false, true
	s.mu.Unlock()
}

// resendOne resends packet seq if it is buffered and was not resent within
// the last RTT + 5 ms. The caller holds s.resendMu.
func (r *nackResponder) resendOne(s *nackStream, seq uint16, now time.Time) bool {
	var hl, pl int
	var pad uint8
	var ok bool
	if s.ext != nil {
		hl, pl, pad, ok = r.loadShared(s, seq, now)
	} else {
		hl, pl, pad, ok = r.loadOwn(s, seq, now)
	}
	if !ok {
		return false
	}

	rs := s.rs
	h := &rs.hdr
	if _, err := h.Unmarshal(rs.hdrBuf[:hl]); err != nil {
		r.log.Warnf("nack: buffered packet %d of SSRC %d: %v", seq, s.ssrc, err)
		return false
	}
	h.PaddingSize = pad
	payload := rs.scratch[rtxOSNSize : rtxOSNSize+pl]

	if s.rtxSSRC != 0 {
		if h.Padding {
			if h.PaddingSize == 0 && len(payload) > 0 {
				// Padding counted in the payload (older pion/rtp users).
				pl := int(payload[len(payload)-1])
				if pl > len(payload) {
					r.log.Warnf("nack: packet %d of SSRC %d: padding longer than payload", seq, s.ssrc)
					return false
				}
				payload = payload[:len(payload)-pl]
			}
			h.Padding, h.PaddingSize = false, 0
		}
		binary.BigEndian.PutUint16(rs.scratch[:], seq)
		payload = rs.scratch[:rtxOSNSize+len(payload)]
		h.SSRC, h.PayloadType, h.SequenceNumber = s.rtxSSRC, s.rtxPT, s.rtxSeq
		s.rtxSeq++
	}

	clear(rs.attrs)
	if _, err := s.writer.Write(h, payload, rs.attrs); err != nil {
		r.log.Warnf("failed resending nacked packet: %v", err)
		return false
	}
	if s.ext != nil {
		rs.resent[seq&s.mask] = resentMark{at: now, seq: seq}
		return true
	}
	s.mu.Lock()
	if s.slots != nil && s.slots[seq&s.mask].seq == seq && s.slots[seq&s.mask].n != 0 {
		s.slots[seq&s.mask].lastResend = now
	}
	s.mu.Unlock()
	return true
}

// loadOwn copies packet seq out of the stream's own ring, unless it was
// resent within the last RTT + 5 ms: the header into s.rs.hdrBuf, the
// payload after the OSN room of s.rs.scratch. The caller holds s.resendMu.
func (r *nackResponder) loadOwn(s *nackStream, seq uint16, now time.Time) (hl, pl int, pad uint8, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.buf == nil || !s.started {
		return 0, 0, 0, false
	}
	// Newer than sent, or too old. (The sequence number check below would
	// refuse these too: a slot only holds a packet of the window.)
	if d := s.highest - seq; d >= 1<<15 || d > s.mask {
		return 0, 0, 0, false
	}
	sl := s.slots[seq&s.mask]
	if sl.n == 0 || sl.seq != seq ||
		(!sl.lastResend.IsZero() && now.Sub(sl.lastResend) < s.rtt+5*time.Millisecond) {
		return 0, 0, 0, false
	}
	off := int(seq&s.mask) * nackSlotSize
	hl, n := int(sl.hdr), int(sl.n)
	copy(s.rs.hdrBuf[:hl], s.buf[off:off+hl])
	copy(s.rs.scratch[rtxOSNSize:], s.buf[off+hl:off+n])
	return hl, n - hl, sl.pad, true
}

// loadShared asks the sender's history for packet seq, unless it was
// resent within the last RTT + 5 ms, into the same places as loadOwn. The
// caller holds s.resendMu, which also guards s.rs.resent.
func (r *nackResponder) loadShared(s *nackStream, seq uint16, now time.Time) (hl, pl int, pad uint8, ok bool) {
	rs := s.rs
	s.mu.Lock()
	rtt, unbound := s.rtt, s.unbound
	s.mu.Unlock()
	if unbound {
		return 0, 0, 0, false
	}
	if m := rs.resent[seq&s.mask]; m.seq == seq && !m.at.IsZero() && now.Sub(m.at) < rtt+5*time.Millisecond {
		return 0, 0, 0, false
	}
	hl, pl, pad, ok = s.ext.SentPacket(seq, rs.hdrBuf[:], rs.scratch[rtxOSNSize:])
	if !ok || hl <= 0 || hl > len(rs.hdrBuf) || pl < 0 || pl > nackSlotSize {
		return 0, 0, 0, false
	}
	return hl, pl, pad, true
}
