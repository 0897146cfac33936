package publish

import (
	"errors"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// fakeContext is a TrackLocalContext: one sender with its SSRC and codecs.
type fakeContext struct {
	id     string
	ssrc   webrtc.SSRC
	codecs []webrtc.RTPCodecParameters
	w      *recordingWriter
}

func (c fakeContext) CodecParameters() []webrtc.RTPCodecParameters { return c.codecs }
func (c fakeContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter {
	return nil
}
func (c fakeContext) SSRC() webrtc.SSRC                       { return c.ssrc }
func (c fakeContext) SSRCRetransmission() webrtc.SSRC         { return 0 }
func (c fakeContext) SSRCForwardErrorCorrection() webrtc.SSRC { return 0 }
func (c fakeContext) WriteStream() webrtc.TrackLocalWriter    { return c.w }
func (c fakeContext) ID() string                              { return c.id }
func (c fakeContext) RTCPReader() interceptor.RTCPReader      { return nil }

// recordingWriter keeps the SSRC, payload type and sequence number of
// every packet written, in a slice made beforehand.
type recordingWriter struct {
	got  [][3]uint32
	fail error
}

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.got = append(w.got, [3]uint32{h.SSRC, uint32(h.PayloadType), uint32(h.SequenceNumber)})
	return h.MarshalSize() + len(payload), w.fail
}
func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), w.fail }

// A write reaches every bound sender with that sender's SSRC and payload
// type, allocates nothing, and stops at Unbind; a sender without the
// codec is refused at Bind, as TrackLocalStaticRTP refuses it.
func TestSendTrack(t *testing.T) {
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	tr, err := newSendTrack(vp8, "cam-video", "cam")
	if err != nil {
		t.Fatal(err)
	}
	ctx := func(id string, ssrc webrtc.SSRC, pt webrtc.PayloadType) fakeContext {
		return fakeContext{id: id, ssrc: ssrc, w: &recordingWriter{got: make([][3]uint32, 0, 1024)},
			codecs: []webrtc.RTPCodecParameters{{RTPCodecCapability: vp8, PayloadType: pt}}}
	}
	a, b := ctx("a", 1111, 96), ctx("b", 2222, 100)
	for _, c := range []fakeContext{a, b} {
		if codec, err := tr.Bind(c); err != nil || codec.PayloadType != c.codecs[0].PayloadType {
			t.Fatalf("Bind %s: %v, %v", c.id, codec, err)
		}
	}
	h264 := fakeContext{id: "c", ssrc: 3333, w: &recordingWriter{}, codecs: []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, PayloadType: 102}}}
	if _, err := tr.Bind(h264); !errors.Is(err, webrtc.ErrUnsupportedCodec) {
		t.Fatalf("Bind without the codec: %v", err)
	}

	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 42}, Payload: make([]byte, 1000)}
	allocs := testing.AllocsPerRun(100, func() {
		pkt.SequenceNumber++
		if err := tr.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per write", allocs)
	}
	if len(a.w.got) != 101 || len(b.w.got) != 101 || len(h264.w.got) != 0 {
		t.Fatalf("writes: a %d, b %d, refused sender %d; want 101, 101, 0", len(a.w.got), len(b.w.got), len(h264.w.got))
	}
	if g := a.w.got[100]; g != [3]uint32{1111, 96, 101} {
		t.Errorf("a got %v", g)
	}
	if g := b.w.got[100]; g != [3]uint32{2222, 100, 101} {
		t.Errorf("b got %v", g)
	}

	// A failing sender does not keep the others from their packet.
	a.w.fail = errors.New("closed")
	if err := tr.WriteRTP(pkt); err == nil || len(b.w.got) != 102 {
		t.Errorf("with a failing: error %v, b has %d packets, want an error and 102", err, len(b.w.got))
	}
	a.w.fail = nil

	if err := tr.Unbind(a); err != nil {
		t.Fatal(err)
	}
	_ = tr.WriteRTP(pkt)
	if len(a.w.got) != 102 || len(b.w.got) != 103 {
		t.Errorf("after Unbind a: a %d, b %d packets, want 102, 103", len(a.w.got), len(b.w.got))
	}
	if err := tr.Unbind(a); err == nil {
		t.Error("a second Unbind of a succeeded")
	}
}
