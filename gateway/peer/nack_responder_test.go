package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// wireWriter stands for the SRTP writer at the end of the chain: it keeps
// every packet as the bytes that would be encrypted.
type wireWriter struct {
	mu   sync.Mutex
	pkts [][]byte
	fail bool
}

func (w *wireWriter) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return 0, errors.New("closed")
	}
	// As srtp does, into a buffer of at least 1492 bytes: MarshalPacketTo
	// writes past the packet when Padding is set without PaddingSize.
	b := make([]byte, max(rtp.PacketMarshalSize(h, payload), 1492)) //lint:ignore SA1019 what pion/srtp v3 calls
	n, err := rtp.MarshalPacketTo(b, h, payload)                    //lint:ignore SA1019 what pion/srtp v3 calls
	if err != nil {
		return 0, err
	}
	w.pkts = append(w.pkts, b[:n])
	return n, nil
}

// take returns and forgets what was written since the last take.
func (w *wireWriter) take() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pkts
	w.pkts = nil
	return p
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

const (
	testSSRC  = 0x11223344
	testRTX   = 0x55667788
	testPT    = 96
	testRTXPT = 97
)

type responderRig struct {
	t      *testing.T
	r      *nackResponder
	info   *interceptor.StreamInfo
	wire   *wireWriter
	write  interceptor.RTPWriter
	clock  *fakeClock
	rtcpIn chan []byte
	rtcp   interceptor.RTCPReader
}

// newRig binds one video stream (with RTX unless rtx is false) to a fresh
// responder of the given size.
func newRig(t *testing.T, size uint16, rtx bool) *responderRig {
	t.Helper()
	f, err := newNACKResponderFactory(size, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	f.now = clock.now
	i, err := f.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	g := &responderRig{t: t, r: i.(*nackResponder), wire: &wireWriter{}, clock: clock, rtcpIn: make(chan []byte, 16)}
	g.info = &interceptor.StreamInfo{SSRC: testSSRC, PayloadType: testPT, MimeType: "video/VP8", ClockRate: 90000,
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "goog-remb"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}}
	if rtx {
		g.info.SSRCRetransmission, g.info.PayloadTypeRetransmission = testRTX, testRTXPT
	}
	g.write = g.r.BindLocalStream(g.info, g.wire)
	g.rtcp = g.r.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		p, ok := <-g.rtcpIn
		if !ok {
			return 0, nil, io.EOF
		}
		return copy(b, p), a, nil
	}))
	t.Cleanup(func() { _ = g.r.Close() })
	return g
}

func (g *responderRig) stream() *nackStream { return g.r.stream(testSSRC) }

// packet is the test's packet seq: payload 4 bytes of the sequence number
// then a filler, a mid extension.
func packet(seq uint16, payloadLen int) *rtp.Packet {
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: testPT, SequenceNumber: seq,
		Timestamp: 90000 + uint32(seq)*3000, SSRC: testSSRC, Marker: seq%3 == 0}}
	if err := p.Header.SetExtension(1, []byte("0")); err != nil {
		panic(err)
	}
	p.Payload = make([]byte, payloadLen)
	binary.BigEndian.PutUint32(p.Payload, uint32(seq))
	for i := 4; i < payloadLen; i++ {
		p.Payload[i] = byte(i)
	}
	return p
}

func (g *responderRig) send(p *rtp.Packet) {
	g.t.Helper()
	if _, err := g.write.Write(&p.Header, p.Payload, nil); err != nil {
		g.t.Fatal(err)
	}
}

func (g *responderRig) sendRange(from, to uint16) {
	g.t.Helper()
	for s := from; ; s++ {
		g.send(packet(s, 200))
		if s == to {
			return
		}
	}
}

// feed passes RTCP packets through the bound reader, as a sender's Read does.
func (g *responderRig) feed(pkts ...rtcp.Packet) {
	g.t.Helper()
	raw, err := rtcp.Marshal(pkts)
	if err != nil {
		g.t.Fatal(err)
	}
	g.rtcpIn <- raw
	buf := make([]byte, 1500)
	if _, _, err := g.rtcp.Read(buf, nil); err != nil {
		g.t.Fatal(err)
	}
}

func nackOf(seqs ...uint16) *rtcp.TransportLayerNack {
	return &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: testSSRC, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}
}

// nack feeds a NACK for seqs and returns what was resent.
func (g *responderRig) nack(seqs ...uint16) [][]byte {
	g.t.Helper()
	g.wire.take()
	g.feed(nackOf(seqs...))
	return g.wire.take()
}

func marshal(t *testing.T, p *rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parse unmarshals a packet from the wire.
func parse(t *testing.T, b []byte) *rtp.Packet {
	t.Helper()
	p := &rtp.Packet{}
	if err := p.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNACKResponderRTXByteExact(t *testing.T) {
	g := newRig(t, 64, true)
	// No extension here, so the expected bytes can be written out by hand.
	p := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: testPT, SequenceNumber: 0x1234,
		Timestamp: 0xa0b0c0d0, SSRC: testSSRC}, Payload: []byte{0xde, 0xad, 0xbe, 0xef, 0x01}}
	g.send(p)
	g.stream().rtxSeq = 0x0700
	got := g.nack(0x1234)
	want := []byte{
		0x80, 0x80 | testRTXPT, 0x07, 0x00, // V=2, M, PT 97, RTX sequence 0x0700
		0xa0, 0xb0, 0xc0, 0xd0, // timestamp unchanged
		0x55, 0x66, 0x77, 0x88, // RTX SSRC
		0x12, 0x34, // OSN
		0xde, 0xad, 0xbe, 0xef, 0x01,
	}
	if len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("RTX packet\n got %x\nwant %x", got, want)
	}
}

func TestNACKResponderRTX(t *testing.T) {
	g := newRig(t, 64, true)
	g.sendRange(100, 140)
	g.stream().rtxSeq = 0xfffe // the RTX counter wraps too
	got := g.nack(102, 105, 139)
	got = append(got, g.nack(140)...)
	wantOSN := []uint16{102, 105, 139, 140}
	if len(got) != len(wantOSN) {
		t.Fatalf("%d retransmissions, want %d", len(got), len(wantOSN))
	}
	for i, b := range got {
		osn := wantOSN[i]
		orig := packet(osn, 200)
		want := *orig
		want.SSRC, want.PayloadType, want.SequenceNumber = testRTX, testRTXPT, 0xfffe+uint16(i)
		want.Payload = binary.BigEndian.AppendUint16(nil, osn)
		want.Payload = append(want.Payload, orig.Payload...)
		if w := marshal(t, &want); !bytes.Equal(b, w) {
			t.Errorf("retransmission %d of %d\n got %x\nwant %x", i, osn, b, w)
		}
	}
}

func TestNACKResponderPlainResend(t *testing.T) {
	g := newRig(t, 64, false)
	g.sendRange(10, 20)
	padded := packet(21, 100)
	padded.Header.Padding, padded.Header.PaddingSize = true, 7
	g.send(padded)
	got := g.nack(12, 21)
	if len(got) != 2 {
		t.Fatalf("%d retransmissions, want 2", len(got))
	}
	if w := marshal(t, packet(12, 200)); !bytes.Equal(got[0], w) {
		t.Errorf("resend of 12\n got %x\nwant %x", got[0], w)
	}
	if w := marshal(t, padded); !bytes.Equal(got[1], w) {
		t.Errorf("resend of padded 21\n got %x\nwant %x", got[1], w)
	}
}

func TestNACKResponderRTXRemovesPadding(t *testing.T) {
	g := newRig(t, 64, true)
	padded := packet(1, 100)
	padded.Header.Padding, padded.Header.PaddingSize = true, 7
	g.send(padded)
	// The old style: padding inside the payload, its length in the last byte.
	inline := packet(2, 100)
	inline.Header.Padding = true
	inline.Payload = append(inline.Payload, 0, 0, 3)
	g.send(inline)
	bad := packet(3, 4)
	bad.Header.Padding = true
	bad.Payload[3] = 200 // more padding than payload: not resent
	g.send(bad)
	g.stream().rtxSeq = 50
	got := g.nack(1, 2, 3)
	if len(got) != 2 {
		t.Fatalf("%d retransmissions, want 2", len(got))
	}
	for i, b := range got {
		p := parse(t, b)
		if p.Padding || p.PaddingSize != 0 {
			t.Errorf("retransmission %d keeps padding", i)
		}
		if want := append(binary.BigEndian.AppendUint16(nil, uint16(i+1)), packet(uint16(i+1), 100).Payload...); !bytes.Equal(p.Payload, want) {
			t.Errorf("retransmission %d payload\n got %x\nwant %x", i, p.Payload, want)
		}
		if p.SequenceNumber != 50+uint16(i) {
			t.Errorf("retransmission %d: RTX sequence %d, want %d", i, p.SequenceNumber, 50+i)
		}
	}
}

func TestNACKResponderWindow(t *testing.T) {
	g := newRig(t, 16, true)
	g.sendRange(0, 40)
	// Buffered: 25..40. 24 is too old, 41 not sent yet.
	osns := func(pkts [][]byte) []uint16 {
		var s []uint16
		for _, b := range pkts {
			s = append(s, binary.BigEndian.Uint16(parse(t, b).Payload))
		}
		return s
	}
	if got := osns(g.nack(3, 24, 41, 1000)); len(got) != 0 {
		t.Errorf("resent %v, want nothing", got)
	}
	if got := osns(g.nack(25, 40)); fmt.Sprint(got) != "[25 40]" {
		t.Errorf("resent %v, want [25 40]", got)
	}
	// Skipped sequence numbers are not resent, not even from an old slot.
	g.send(packet(45, 200))
	if got := osns(g.nack(29, 41, 42, 43, 44, 45)); fmt.Sprint(got) != "[45]" {
		t.Errorf("resent %v, want [45]", got)
	}
	// A repeat of the newest packet does not replace it.
	dup := packet(45, 10)
	g.send(dup)
	g.clock.advance(time.Second)
	if got := g.nack(45); len(got) != 1 || len(parse(t, got[0]).Payload) != 202 {
		t.Errorf("repeat of the newest packet replaced it")
	}
	// A late packet inside the window is kept.
	g.send(packet(44, 200))
	g.clock.advance(time.Second)
	if got := osns(g.nack(44, 45)); fmt.Sprint(got) != "[44 45]" {
		t.Errorf("resent %v, want [44 45]", got)
	}
	// A jump of more than the window forgets everything before it.
	g.send(packet(45+100, 200))
	if got := osns(g.nack(44, 45, 144, 145)); fmt.Sprint(got) != "[145]" {
		t.Errorf("resent %v, want [145]", got)
	}
}

func TestNACKResponderWraparound(t *testing.T) {
	g := newRig(t, 16, false)
	g.sendRange(65530, 5)
	got := g.nack(65534, 65535, 0, 1, 5)
	var seqs []uint16
	for _, b := range got {
		seqs = append(seqs, parse(t, b).SequenceNumber)
	}
	if fmt.Sprint(seqs) != "[65534 65535 0 1 5]" {
		t.Errorf("resent %v", seqs)
	}
	for i, b := range got {
		if w := marshal(t, packet(seqs[i], 200)); !bytes.Equal(b, w) {
			t.Errorf("resend of %d differs", seqs[i])
		}
	}
	// Past the wrap, the window is still 16 packets: 65525 is too old.
	if got := g.nack(65525, 65526); len(got) != 0 {
		t.Errorf("resent %d packets from before the window", len(got))
	}
}

// A sequence number the sender skips must not be served from its slot's
// previous packet, even one with the same number 65536 packets earlier.
func TestNACKResponderSkippedAfterWrap(t *testing.T) {
	g := newRig(t, 16, false)
	p := packet(0, 20)
	for i := range 65536 + 16 {
		if s := uint16(i); s%16 != 5 || i < 16 { // 5 only in the first round
			p.SequenceNumber = s
			g.send(p)
		}
	}
	g.wire.take()
	if got := g.nack(5); len(got) != 0 { // the 5 of 65536 packets ago
		t.Errorf("resent a packet from the previous wrap")
	}
}

func TestNACKResponderRestartedNumbering(t *testing.T) {
	g := newRig(t, 16, false)
	g.sendRange(30000, 30010)
	g.sendRange(5, 8) // a new source, numbered from far behind
	got := g.nack(6, 7, 30009)
	if len(got) != 2 {
		t.Fatalf("%d resent, want 6 and 7", len(got))
	}
}

func TestNACKResponderOncePerRTT(t *testing.T) {
	g := newRig(t, 64, true)
	g.sendRange(1, 10)
	if n := len(g.nack(5)); n != 1 {
		t.Fatalf("%d resent", n)
	}
	if n := len(g.nack(5)); n != 0 {
		t.Fatalf("resent again at once")
	}
	g.clock.advance(6 * time.Millisecond) // RTT unknown: 0 + 5 ms
	if n := len(g.nack(5)); n != 1 {
		t.Fatalf("not resent after 6 ms")
	}
	// A reception report measures 100 ms: now no resend for 105 ms.
	lsr := ntpShort(g.clock.now().Add(-130 * time.Millisecond))
	g.feed(&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{
		{SSRC: testSSRC, LastSenderReport: lsr, Delay: 30 * 65536 / 1000}}})
	if rtt := g.stream().rtt; rtt < 99*time.Millisecond || rtt > 101*time.Millisecond {
		t.Fatalf("RTT %v, want 100ms", rtt)
	}
	g.clock.advance(6 * time.Millisecond)
	if n := len(g.nack(5)); n != 0 {
		t.Fatalf("resent within the RTT")
	}
	g.clock.advance(100 * time.Millisecond)
	if n := len(g.nack(5)); n != 1 {
		t.Fatalf("not resent after the RTT")
	}
	// A failed write does not count as a resend.
	g.wire.fail = true
	g.clock.advance(time.Second)
	g.nack(6)
	g.wire.fail = false
	if n := len(g.nack(6)); n != 1 {
		t.Fatalf("failed resend blocked the next one")
	}
}

func TestNACKResponderIgnores(t *testing.T) {
	g := newRig(t, 64, true)
	g.sendRange(1, 10)
	// Another SSRC through the same writer passes, unbuffered.
	other := packet(11, 200)
	other.SSRC = 999
	g.send(other)
	// A packet too big for a slot is sent, not buffered.
	g.send(packet(12, nackSlotSize))
	if got := g.wire.take(); len(got) != 12 {
		t.Fatalf("%d packets passed, want 12", len(got))
	}
	if n := len(g.nack(11, 12)); n != 0 {
		t.Errorf("resent %d packets not buffered", n)
	}
	// NACKs for other SSRCs are ignored.
	g.feed(&rtcp.TransportLayerNack{MediaSSRC: 999, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{5})})
	if n := len(g.wire.take()); n != 0 {
		t.Errorf("resent %d packets for an unknown SSRC", n)
	}

	// Streams without nack feedback are not bound.
	w := &wireWriter{}
	audio := &interceptor.StreamInfo{SSRC: 77, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack", Parameter: "pli"}}}
	aw := g.r.BindLocalStream(audio, w)
	if g.r.stream(77) != nil {
		t.Error("stream without plain nack feedback is buffered")
	}
	if _, err := aw.Write(&rtp.Header{Version: 2, SSRC: 77}, []byte{1}, nil); err != nil || len(w.take()) != 1 {
		t.Error("unbuffered stream does not pass packets")
	}
}

func TestNACKResponderUnbindClose(t *testing.T) {
	g := newRig(t, 64, true)
	g.sendRange(1, 10)
	g.r.UnbindLocalStream(g.info)
	if n := len(g.nack(5)); n != 0 {
		t.Errorf("resent %d after unbind", n)
	}
	g.sendRange(11, 12) // still passes through
	if n := len(g.wire.take()); n != 2 {
		t.Errorf("%d packets passed after unbind, want 2", n)
	}

	h := newRig(t, 64, false)
	h.sendRange(1, 10)
	if err := h.r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.nack(5)); n != 0 {
		t.Errorf("resent %d after close", n)
	}
	h.sendRange(11, 12)
	if n := len(h.wire.take()); n != 2 {
		t.Errorf("%d packets passed after close, want 2", n)
	}
}

func TestNACKResponderSize(t *testing.T) {
	for _, s := range []uint16{3, 1000, 0xffff} {
		if _, err := newNACKResponderFactory(s, nil); err == nil {
			t.Errorf("size %d accepted", s)
		}
	}
	f, err := newNACKResponderFactory(0, nil)
	if err != nil || f.size != 1024 {
		t.Errorf("default size %d, %v", f.size, err)
	}
}

// discard is a writer at the end of the chain that costs nothing.
type discard struct{}

func (discard) Write(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
	return len(p), nil
}

// The point of the hand-written responder: buffering a packet allocates
// nothing.
func TestNACKResponderWriteAllocs(t *testing.T) {
	f, err := newNACKResponderFactory(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	i, _ := f.NewInterceptor("")
	info := &interceptor.StreamInfo{SSRC: testSSRC, SSRCRetransmission: testRTX, PayloadTypeRetransmission: testRTXPT,
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}}
	w := i.BindLocalStream(info, discard{})
	p := packet(0, 1100)
	if err := p.Header.SetExtension(3, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	attrs := interceptor.Attributes{}
	allocs := testing.AllocsPerRun(5000, func() {
		p.SequenceNumber++
		p.Timestamp += 3000
		if _, err := w.Write(&p.Header, p.Payload, attrs); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.2f allocations per packet, want 0", allocs)
	}
	if s := i.(*nackResponder).stream(testSSRC); s.slots[p.SequenceNumber&s.mask].seq != p.SequenceNumber {
		t.Fatal("last packet not buffered")
	}
}

// The media goroutine writes while the RTCP goroutine resends: every
// retransmission must be exactly the packet it claims to be (no torn copy).
// Run with -race.
func TestNACKResponderConcurrent(t *testing.T) {
	g := newRig(t, 128, true)
	const n = 20000
	var cur atomic.Uint32 // newest sequence number written
	done := make(chan struct{})
	go func() {
		defer close(done)
		p := packet(0, 1000)
		for s := range uint16(n) {
			p.SequenceNumber = s
			binary.BigEndian.PutUint32(p.Payload, uint32(s))
			for i := 4; i < len(p.Payload); i++ {
				p.Payload[i] = byte(s) ^ byte(i)
			}
			if _, err := g.write.Write(&p.Header, p.Payload, nil); err != nil {
				t.Error(err)
				return
			}
			cur.Store(uint32(s))
		}
	}()
	buf := make([]byte, 1500)
	nacks := 0
wait:
	for {
		select {
		case <-done:
			break wait
		default:
		}
		c := uint16(cur.Load())
		raw, _ := rtcp.Marshal([]rtcp.Packet{nackOf(c-100, c-3, c-1, c, c+1)})
		g.rtcpIn <- raw
		if _, _, err := g.rtcp.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
		g.clock.advance(10 * time.Millisecond)
		nacks++
	}
	resends := 0
	for _, b := range g.wire.take() {
		p := parse(t, b)
		if p.SSRC != testRTX {
			continue
		}
		resends++
		osn := binary.BigEndian.Uint16(p.Payload)
		pl := p.Payload[2:]
		if binary.BigEndian.Uint32(pl) != uint32(osn) {
			t.Fatalf("RTX of %d carries packet %d", osn, binary.BigEndian.Uint32(pl))
		}
		for i := 4; i < len(pl); i++ {
			if pl[i] != byte(osn)^byte(i) {
				t.Fatalf("RTX of %d: payload byte %d torn", osn, i)
			}
		}
	}
	t.Logf("%d NACKs, %d retransmissions checked", nacks, resends)
	if resends == 0 {
		t.Error("nothing was resent")
	}
}

// BenchmarkNACKResponderWrite is the cost per sent packet of the responder
// alone, rtgate's against pion's, over a writer that discards; with 100
// streams written in turn, as a fan-out does, the rings are out of cache.
func BenchmarkNACKResponderWrite(b *testing.B) {
	rt, err := newNACKResponderFactory(0, nil)
	if err != nil {
		b.Fatal(err)
	}
	pf, err := nack.NewResponderInterceptor()
	if err != nil {
		b.Fatal(err)
	}
	for _, streams := range []int{1, 100} {
		for _, c := range []struct {
			name string
			f    interceptor.Factory
		}{{"rtgate", rt}, {"pion", pf}} {
			b.Run(fmt.Sprintf("%s/streams=%d", c.name, streams), func(b *testing.B) {
				var ws []interceptor.RTPWriter
				for range streams {
					i, err := c.f.NewInterceptor("")
					if err != nil {
						b.Fatal(err)
					}
					defer i.Close()
					info := &interceptor.StreamInfo{SSRC: testSSRC, SSRCRetransmission: testRTX,
						PayloadTypeRetransmission: testRTXPT, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}}
					ws = append(ws, i.BindLocalStream(info, discard{}))
				}
				p := packet(0, 1100)
				p.Header.Extension, p.Header.Extensions = false, nil // as the SFU forwards
				b.ReportAllocs()
				b.SetBytes(int64(len(p.Payload) * streams))
				for b.Loop() {
					p.SequenceNumber++
					for _, w := range ws {
						if _, err := w.Write(&p.Header, p.Payload, nil); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/pkt")
			})
		}
	}
}

// An idle stream (bound, nothing sent yet) holds no ring: a published track
// that waits for its source costs no packet memory.
func TestNACKResponderRingMadeOnFirstPacket(t *testing.T) {
	g := newRig(t, 1024, true)
	s := g.stream()
	s.mu.Lock()
	idle := s.buf == nil && s.slots == nil
	s.mu.Unlock()
	if !idle {
		t.Fatal("a bound stream that sent nothing already holds its ring")
	}
	g.send(packet(1, 100))
	s.mu.Lock()
	made := len(s.buf) == 1024*nackSlotSize && len(s.slots) == 1024
	s.mu.Unlock()
	if !made {
		t.Fatal("the first packet did not make the ring")
	}
	if got := g.nack(1); len(got) != 1 {
		t.Fatalf("%d resends of the first packet, want 1", len(got))
	}
}

// sentLog is a SentHistory that keeps the packets a test sends, as a
// sender sharing its history with the responder would.
type sentLog struct {
	mu    sync.Mutex
	pkts  map[uint16]*rtp.Packet
	calls int
}

func (l *sentLog) add(p *rtp.Packet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pkts == nil {
		l.pkts = map[uint16]*rtp.Packet{}
	}
	l.pkts[p.SequenceNumber] = p
}

func (l *sentLog) SentPacket(seq uint16, hdr, payload []byte) (hl, pl int, pad uint8, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	p := l.pkts[seq]
	if p == nil {
		return 0, 0, 0, false
	}
	hl, err := p.Header.MarshalTo(hdr)
	if err != nil {
		return 0, 0, 0, false
	}
	return hl, copy(payload, p.Payload), p.PaddingSize, true
}

// TestNACKResponderSharedHistory: a stream whose sender shares its history
// (ShareHistory before the bind) is not buffered: its writes go straight
// down the chain, and NACKs are answered from the sender's history as
// RTX, byte for byte what the responder's own ring gives, once per RTT.
func TestNACKResponderSharedHistory(t *testing.T) {
	log := &sentLog{}
	ShareHistory("sender-1", log)
	ShareHistory("sender-never-bound", log)
	f, err := newNACKResponderFactory(64, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	f.now = clock.now
	i, _ := f.NewInterceptor("pc")
	r := i.(*nackResponder)
	defer r.Close()
	wire := &wireWriter{}
	info := &interceptor.StreamInfo{ID: "sender-1", SSRC: testSSRC, PayloadType: testPT, MimeType: "video/VP8", ClockRate: 90000,
		SSRCRetransmission: testRTX, PayloadTypeRetransmission: testRTXPT,
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}
	w := r.BindLocalStream(info, wire)
	if w != interceptor.RTPWriter(wire) {
		t.Fatal("a stream with a shared history is still wrapped: its packets would be buffered twice")
	}
	if claimHistory("sender-1") != nil {
		t.Fatal("the bind did not take the registration over")
	}
	UnshareHistory("sender-never-bound", log)
	if claimHistory("sender-never-bound") != nil {
		t.Fatal("UnshareHistory left an unclaimed registration")
	}
	for s := uint16(100); s <= 140; s++ {
		p := packet(s, 200)
		log.add(p)
		if _, err := w.Write(&p.Header, p.Payload, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := r.stream(testSSRC)
	if s.buf != nil || s.ext == nil {
		t.Fatalf("stream buffered its own packets (ring %d bytes)", len(s.buf))
	}
	s.rtxSeq = 0xfffe
	rtcpIn := make(chan []byte, 4)
	reader := r.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, <-rtcpIn), a, nil
	}))
	nack := func(seqs ...uint16) ([][]byte, int) {
		wire.take()
		raw, err := rtcp.Marshal([]rtcp.Packet{nackOf(seqs...)})
		if err != nil {
			t.Fatal(err)
		}
		rtcpIn <- raw
		_, attr, err := reader.Read(make([]byte, 1500), nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := attr[ResentAttribute].(int)
		return wire.take(), n
	}
	got, n := nack(102, 105, 139, 170) // 170 was never sent
	if n != 3 || len(got) != 3 {
		t.Fatalf("%d retransmissions (attribute %d), want 3", len(got), n)
	}
	for i, osn := range []uint16{102, 105, 139} {
		orig := packet(osn, 200)
		want := *orig
		want.SSRC, want.PayloadType, want.SequenceNumber = testRTX, testRTXPT, 0xfffe+uint16(i)
		want.Payload = binary.BigEndian.AppendUint16(nil, osn)
		want.Payload = append(want.Payload, orig.Payload...)
		if w := marshal(t, &want); !bytes.Equal(got[i], w) {
			t.Errorf("retransmission of %d\n got %x\nwant %x", osn, got[i], w)
		}
	}
	if got, _ := nack(102); len(got) != 0 {
		t.Errorf("packet resent twice within RTT + 5 ms")
	}
	clock.advance(6 * time.Millisecond)
	if got, _ := nack(102); len(got) != 1 {
		t.Errorf("%d retransmissions after RTT + 5 ms, want 1", len(got))
	}
	r.UnbindLocalStream(info)
	calls := log.calls
	if got, _ := nack(103); len(got) != 0 || log.calls != calls {
		t.Errorf("an unbound stream still resends (%d) or asks its history", len(got))
	}
}
