package publish_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// numbered is a bridge.Source that sends numbered packets (the payload
// carries its tag and index, as rtctest's sources do) every 10 ms and
// counts the keyframe requests it gets.
type numbered struct {
	codec     bridge.Codec
	tag       string
	ssrc      uint32
	seq       uint16
	n         uint32
	keyframes atomic.Int64
}

func video(tag string) *numbered {
	return &numbered{tag: tag, ssrc: 0x1111, codec: bridge.Codec{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, PayloadType: 96}}
}

func audio(tag string) *numbered {
	return &numbered{tag: tag, ssrc: 0x2222, codec: bridge.Codec{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, PayloadType: 111}}
}

func (s *numbered) Tracks() []bridge.Track {
	return []bridge.Track{{Kind: s.codec.Kind(), Codec: s.codec}}
}

func (s *numbered) Run(ctx context.Context, fn bridge.PacketFunc) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var pkt rtp.Packet
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			pkt.Header = rtp.Header{Version: 2, PayloadType: s.codec.PayloadType, SequenceNumber: s.seq,
				Timestamp: s.n * 3000, SSRC: s.ssrc, Marker: true}
			pkt.Payload = rtctest.PayloadFor(s.tag, s.n)
			fn(0, &pkt)
			s.seq++
			s.n++
		}
	}
}

func (s *numbered) RequestKeyframe(int) bool { s.keyframes.Add(1); return true }
func (s *numbered) Close() error             { return nil }

func runStream(t *testing.T, o publish.Options) *publish.Stream {
	t.Helper()
	if o.Logger == nil {
		o.MinBackoff, o.MaxBackoff = 200*time.Millisecond, time.Second
	}
	st, err := publish.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("stream did not stop within 10 s")
		}
	})
	return st
}

func waitState(t *testing.T, st *publish.Stream, want string, within time.Duration) publish.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := st.Status()
		if s.State == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream state %q (last error %q), want %q within %s", s.State, s.LastError, want, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pull subscribes a new peer to the stream's tracks of the given session.
func pull(t *testing.T, c *realtime.Client, sid string, names ...string) *rtctest.Peer {
	t.Helper()
	p, _, _ := rtctest.Pull(t, c, sid, names...)
	return p
}

func TestPublishAndPull(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	v, a := video("v"), audio("a")
	st := runStream(t, publish.Options{Name: "cam", Sources: []bridge.Source{v, a}, Client: e.Client, API: rtctest.PeerAPI(t)})
	s := waitState(t, st, publish.StateLive, 10*time.Second)
	if s.SessionID == "" || len(s.Tracks) != 2 || s.Tracks[0].Name != "cam-video" || s.Tracks[1].Name != "cam-audio" {
		t.Fatalf("status: %+v", s)
	}
	sub := pull(t, e.Client, s.SessionID, "cam-video", "cam-audio")
	got := map[string]*rtctest.Sink{}
	for range 2 {
		k := sub.NextTrack()
		got[k.Track.Kind().String()] = k
	}
	got["video"].Expect(t, "v", 50)
	got["audio"].Expect(t, "a", 50)

	// A subscriber's PLI reaches the source as a keyframe request.
	before := v.keyframes.Load()
	time.Sleep(600 * time.Millisecond) // past the coalescing window
	sub.SendPLI(got["video"].Track.SSRC())
	deadline := time.Now().Add(5 * time.Second)
	for v.keyframes.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("a subscriber's PLI did not reach the source")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a.keyframes.Load() != 0 {
		t.Error("keyframe requests went to the audio source")
	}
	s = st.Status()
	if s.Tracks[0].Packets < 50 || s.Tracks[0].Bytes == 0 || s.Tracks[0].Codec != webrtc.MimeTypeVP8 {
		t.Errorf("video track counters: %+v", s.Tracks[0])
	}
}

// TestRepublishAfterSFURestart stops the SFU while the source keeps sending
// and starts a new one on the same address: the stream is live again within
// 3 s under the same track names, and its sequence numbers carry on.
func TestRepublishAfterSFURestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	serve := func(ln net.Listener) (*sfu.SFU, *http.Server) {
		f := rtctest.NewSFU(t, rtctest.FastOptions())
		srv := &http.Server{Handler: f.Handler()}
		go func() { _ = srv.Serve(ln) }()
		return f, srv
	}
	f1, srv1 := serve(ln)
	c := rtctest.Client(t, "http://"+addr)
	v := video("v")
	st := runStream(t, publish.Options{Name: "cam", Sources: []bridge.Source{v}, Client: c, API: rtctest.PeerAPI(t)})
	s1 := waitState(t, st, publish.StateLive, 10*time.Second)
	sink := pull(t, c, s1.SessionID, "cam-video").NextTrack()
	before := sink.Expect(t, "v", 20)
	lastSeq := before[len(before)-1].SequenceNumber

	_ = srv1.Close()
	_ = f1.Close()
	waitState(t, st, publish.StateRetrying, 5*time.Second)
	time.Sleep(time.Second) // the SFU is away for a while

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f2, srv2 := serve(ln2)
	t.Cleanup(func() { _ = srv2.Close(); _ = f2.Close() })
	back := time.Now()
	s2 := waitState(t, st, publish.StateLive, 5*time.Second)
	if d := time.Since(back); d > 3*time.Second {
		t.Fatalf("live again %v after the SFU came back, want within 3 s", d)
	}
	if s2.SessionID == s1.SessionID || s2.Retries < 1 {
		t.Fatalf("after the restart: %+v", s2)
	}
	after := pull(t, c, s2.SessionID, "cam-video").NextTrack().Expect(t, "v", 20)
	first := after[0].SequenceNumber
	// Sequence numbers go on from where they were (the packets sent while no
	// SFU was there account for the gap); no reset.
	gap := int(first - lastSeq)
	sentMeanwhile := int(binary.BigEndian.Uint32(after[0].Payload) - binary.BigEndian.Uint32(before[len(before)-1].Payload))
	if gap != sentMeanwhile {
		t.Fatalf("sequence number went from %d to %d across the restart (%d packets sent meanwhile): not continuous", lastSeq, first, sentMeanwhile)
	}
}
