package wish

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/rtgate/rtgate/bridge"
)

// TestKeyframeStartVP8 packetizes the demo file's frames as a browser
// does (pion's VP8 payloader, with and without a picture id): the first
// packet of each keyframe, and no other, is a keyframe start.
func TestKeyframeStartVP8(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "deploy", "demo", "demo.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
	for _, pid := range []bool{false, true} {
		p := &codecs.VP8Payloader{EnablePictureID: pid}
		keys, starts := 0, 0
		for i, fr := range frames {
			key := fr[0]&0x01 == 0
			if key {
				keys++
			}
			for j, pl := range p.Payload(1000, fr) {
				got := keyframeStart(payloadVP8, pl)
				if got != (key && j == 0) {
					t.Fatalf("picture id %v: frame %d (keyframe %v) packet %d: keyframe start %v", pid, i, key, j, got)
				}
				if got {
					starts++
				}
			}
		}
		if keys < 2 || starts != keys {
			t.Errorf("picture id %v: %d keyframe starts for %d keyframes", pid, starts, keys)
		}
	}
}

// TestKeyframeStartH264 packetizes an IDR access unit (SPS, PPS, IDR
// slice) and a P slice with pion's H.264 payloader, small and large: the
// STAP-A of the parameter sets and the first fragment of the IDR slice are
// keyframe starts; its other fragments and the P slice's packets are not.
func TestKeyframeStartH264(t *testing.T) {
	sps := []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xec, 0x04, 0x40}
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	annexB := func(nalus ...[]byte) []byte {
		var b []byte
		for _, n := range nalus {
			b = append(append(b, 0, 0, 0, 1), n...)
		}
		return b
	}
	slice := func(hdr byte, n int) []byte {
		s := make([]byte, n)
		s[0] = hdr
		for i := 1; i < n; i++ {
			s[i] = byte(i)
		}
		return s
	}
	for _, size := range []int{200, 3000} {
		var p codecs.H264Payloader
		idr := p.Payload(1200, annexB(sps, pps, slice(0x65, size)))
		if len(idr) == 0 || !keyframeStart(payloadH264, idr[0]) {
			t.Fatalf("IDR unit of %d bytes: first packet %x is not a keyframe start", size, idr[0][:4])
		}
		for j, pl := range idr[1:] {
			fuStart := pl[0]&0x1f == 28 && pl[1]&0x80 != 0
			if pl[0]&0x1f == 28 && keyframeStart(payloadH264, pl) != fuStart {
				t.Errorf("IDR unit of %d bytes: FU-A %d (start %v): keyframe start %v", size, j+1, fuStart, !fuStart)
			}
		}
		for j, pl := range p.Payload(1200, annexB(slice(0x41, size))) {
			if keyframeStart(payloadH264, pl) {
				t.Errorf("P slice of %d bytes: packet %d is a keyframe start", size, j)
			}
		}
	}
	if keyframeStart(payloadOther, []byte{0x10, 0}) || keyframeStart(payloadVP8, nil) {
		t.Error("no codec or no payload: a keyframe start")
	}
}

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
	w.keys = append(w.keys, keyframeStart(payloadVP8, p))
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
