package wish

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
)

// fakeLocalCtx is what pion gives a TrackLocal's Bind: the fan-out's unit
// tests bind without a PeerConnection.
type fakeLocalCtx struct {
	id   string
	ssrc webrtc.SSRC
	w    webrtc.TrackLocalWriter
}

func (c fakeLocalCtx) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96}}
}
func (c fakeLocalCtx) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c fakeLocalCtx) SSRC() webrtc.SSRC                                      { return c.ssrc }
func (c fakeLocalCtx) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c fakeLocalCtx) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c fakeLocalCtx) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c fakeLocalCtx) ID() string                                             { return c.id }
func (c fakeLocalCtx) RTCPReader() interceptor.RTCPReader                     { return nil }

// countWriter counts what a binding writes.
type countWriter struct{ n int }

func (w *countWriter) WriteRTP(*rtp.Header, []byte) (int, error) { w.n++; return 0, nil }
func (w *countWriter) Write(b []byte) (int, error)               { w.n++; return len(b), nil }

// upstream records the fan-out's keyframe requests.
type upstream struct {
	mu    sync.Mutex
	times []time.Time
}

func (u *upstream) request() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.times = append(u.times, time.Now())
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.times)
}

var (
	vp8Key   = []byte{0x10, 0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a} // S=1 PID 0; frame tag P=0
	vp8Delta = []byte{0x10, 0x51, 0x01, 0x00}                   // P=1
)

// TestFanTrackKeyframeRequests: binding a viewer asks nothing upstream
// (its transport is not up); the first ask goes at once; an ask inside
// the window goes at its end, unless a keyframe passed meanwhile, which
// answered it.
func TestFanTrackKeyframeRequests(t *testing.T) {
	const window = 150 * time.Millisecond
	ft := newFanTrack("s", bridge.KindVideo, bridge.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, window)
	var up upstream
	ft.resume(up.request)
	w := &countWriter{}
	if _, err := ft.Bind(fakeLocalCtx{id: "v1", ssrc: 1, w: w}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(window + 50*time.Millisecond)
	if n := up.count(); n != 0 {
		t.Fatalf("Bind sent %d keyframe requests upstream, want none before the viewer is connected", n)
	}

	// The viewer connected: asked at once.
	ft.requestKeyframe()
	if n := up.count(); n != 1 {
		t.Fatalf("%d requests after the first ask, want 1 at once", n)
	}
	// A PLI inside the window, then the keyframe: nothing more goes.
	ft.requestKeyframe()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 5, SequenceNumber: 1}, Payload: vp8Key}
	ft.write(pkt)
	time.Sleep(window + 50*time.Millisecond)
	if n := up.count(); n != 1 {
		t.Fatalf("%d requests: an ask answered by a keyframe inside the window went upstream", n)
	}

	// Outside the window: at once again. A PLI inside it with only delta
	// frames after it goes at the window's end.
	ft.requestKeyframe()
	if n := up.count(); n != 2 {
		t.Fatalf("%d requests, want a second at once after the window", n)
	}
	ft.requestKeyframe()
	pkt.Payload = vp8Delta
	ft.write(pkt)
	deadline := time.Now().Add(5 * time.Second)
	for up.count() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	up.mu.Lock()
	times := append([]time.Time(nil), up.times...)
	up.mu.Unlock()
	if len(times) != 3 {
		t.Fatalf("%d requests, want the unanswered ask sent at the window's end", len(times))
	}
	if gap := times[2].Sub(times[1]); gap < window-10*time.Millisecond {
		t.Errorf("the deferred request went %v after the previous one, want about the window (%v)", gap, window)
	}
	if w.n != 2 {
		t.Errorf("the viewer got %d packets, want 2", w.n)
	}
}

// TestFanTrackWriteNoAlloc: forwarding a packet to viewers whose
// timelines are being recorded allocates nothing.
func TestFanTrackWriteNoAlloc(t *testing.T) {
	ft := newFanTrack("s", bridge.KindVideo, bridge.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, time.Second)
	ft.resume(func() {})
	for i := range 3 {
		if _, err := ft.Bind(fakeLocalCtx{id: string(rune('a' + i)), ssrc: webrtc.SSRC(i + 1), w: &countWriter{}}); err != nil {
			t.Fatal(err)
		}
		tl := newViewerTimeline(time.Now())
		tl.ready.Store(true)
		ft.follow(uint32(i+1), tl)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 5}, Payload: vp8Delta}
	if n := testing.AllocsPerRun(200, func() {
		pkt.SequenceNumber++
		ft.write(pkt)
	}); n != 0 {
		t.Errorf("fanTrack.write: %v allocations per packet", n)
	}
	pkt.Payload = vp8Key
	ft.write(pkt)
	for _, b := range *ft.binds.Load() {
		if tl := b.tl.Load(); tl.firstRTP.Load() == 0 || tl.keyframe.Load() == 0 {
			t.Errorf("viewer %s: first packet and keyframe not recorded", b.id)
		}
	}
}

// seqWriter records what a binding writes: sequence numbers and whether
// each packet starts a keyframe.
type seqWriter struct {
	seqs []uint16
	keys []bool
}

func (w *seqWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	w.seqs = append(w.seqs, h.SequenceNumber)
	w.keys = append(w.keys, bridge.PayloadVP8.KeyframeStart(p))
	return len(p), nil
}
func (w *seqWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestFanTrackColdStartHold: until its first viewer is served, a video
// fanTrack holds the packets since the last keyframe (the one the pull's
// start asked for, which comes before the viewer is connected); the
// viewer that connects gets them, in order, before the live packets, and
// no keyframe is asked for. A later viewer is asked one for; a held
// keyframe older than holdAge is not given.
func TestFanTrackColdStartHold(t *testing.T) {
	ft := newFanTrack("s", bridge.KindVideo, bridge.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, 100*time.Millisecond)
	var up upstream
	ft.resume(up.request)
	w1 := &seqWriter{}
	if _, err := ft.Bind(fakeLocalCtx{id: "v1", ssrc: 1, w: w1}); err != nil {
		t.Fatal(err)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SSRC: 5, SequenceNumber: 100}}
	send := func(payload []byte) {
		pkt.SequenceNumber++
		pkt.Payload = payload
		ft.write(pkt)
	}
	send(vp8Delta) // before the keyframe: not held
	send(vp8Key)
	send(vp8Delta)
	send(vp8Delta)
	// Written while the viewer was not connected: pion drops those. It
	// connects now.
	w1.seqs, w1.keys = nil, nil
	ft.join(1)
	send(vp8Delta)
	want := []uint16{102, 103, 104, 105}
	if fmt.Sprint(w1.seqs) != fmt.Sprint(want) || !w1.keys[0] {
		t.Fatalf("the first viewer got %v (keyframe starts %v), want the held %v then the live one", w1.seqs, w1.keys, want[:3])
	}
	if n := up.count(); n != 0 {
		t.Errorf("%d keyframe requests upstream for a viewer served from the hold", n)
	}
	if ft.cold.Load() || ft.heldKF.Load() != 0 {
		t.Error("still holding after the first viewer was served")
	}

	// A second viewer: nothing held, a keyframe is asked for.
	w2 := &seqWriter{}
	if _, err := ft.Bind(fakeLocalCtx{id: "v2", ssrc: 2, w: w2}); err != nil {
		t.Fatal(err)
	}
	ft.join(2)
	if n := up.count(); n != 1 {
		t.Errorf("%d keyframe requests for a viewer after the cold start, want 1", n)
	}

	// A held keyframe older than holdAge is not given.
	ft = newFanTrack("s", bridge.KindVideo, bridge.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, 100*time.Millisecond)
	up = upstream{}
	ft.resume(up.request)
	w3 := &seqWriter{}
	if _, err := ft.Bind(fakeLocalCtx{id: "v3", ssrc: 3, w: w3}); err != nil {
		t.Fatal(err)
	}
	send(vp8Key)
	time.Sleep(holdAge + 50*time.Millisecond)
	send(vp8Delta) // too old now: dropped
	w3.seqs, w3.keys = nil, nil
	ft.join(3)
	send(vp8Delta)
	if len(w3.seqs) != 1 || up.count() != 1 {
		t.Errorf("after a stale hold the viewer got %v and %d requests went upstream, want the live packet and 1 request", w3.seqs, up.count())
	}
}
