package pull_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// cutConn is a socket whose traffic the test can cut, both ways: a
// network outage under a publisher.
type cutConn struct {
	net.PacketConn
	cut atomic.Bool
}

func (c *cutConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

func (c *cutConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, addr)
}

// demoSources opens the committed demo files as a looping stream's
// sources.
func demoSources(t *testing.T, files ...string) []bridge.Source {
	t.Helper()
	var urls []string
	for _, f := range files {
		abs, err := filepath.Abs(filepath.Join("..", "..", "deploy", "demo", f))
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "file://"+abs+"?loop=true")
	}
	srcs, err := publish.OpenSources(urls, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = publish.CloseSources(srcs) })
	return srcs
}

// runStream publishes srcs as a stream until the test ends.
func runStream(t *testing.T, o publish.Options) *publish.Stream {
	t.Helper()
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

func waitStreamState(t *testing.T, st *publish.Stream, want string, within time.Duration) publish.Status {
	t.Helper()
	var s publish.Status
	waitFor(t, "stream state "+want, within, func() bool {
		s = st.Status()
		return s.State == want
	})
	return s
}

// TestPullStream follows a local stream published from the demo IVF file:
// when a network outage makes its publisher republish on a new session,
// the pull re-pulls from that session into the same sink index, and the
// sink never sees the track removed.
func TestPullStream(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	cut := &cutConn{}
	pubAPI, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: rtctest.LoopbackOnly,
		ICEDisconnectedTimeout: 2500 * time.Millisecond, ICEFailedTimeout: 5 * time.Second, // keepalives go every 2 s
		WrapConn: func(c net.PacketConn) net.PacketConn { cut.PacketConn = c; return cut }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pubAPI.Close() })
	st := runStream(t, publish.Options{Name: "cam", Sources: demoSources(t, "demo.ivf"), Client: e.Client, API: pubAPI,
		DisconnectGrace: 300 * time.Millisecond, MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second})
	s1 := waitStreamState(t, st, publish.StateLive, 10*time.Second)

	sink := newRecSink()
	p, _ := runPull(t, pull.Options{Name: "rec-cam", Client: e.Client, API: rtctest.PeerAPI(t), Sink: sink,
		Stream: st, StreamName: "cam"})
	waitFor(t, "the stream's video in the sink", 10*time.Second, func() bool { return sink.index("cam-video") >= 0 })
	idx := sink.index("cam-video")
	if tr := sink.snapshot(idx).st; tr.Stream != "cam" || tr.Session != s1.SessionID || tr.Codec.MimeType != webrtc.MimeTypeVP8 {
		t.Fatalf("sink track %+v", tr)
	}
	waitFor(t, "video packets", 10*time.Second, func() bool { return sink.snapshot(idx).packets > 100 })

	// An outage: the publisher loses the SFU, gives the session up and
	// publishes again on a new one once the network is back.
	cut.cut.Store(true)
	waitStreamState(t, st, publish.StateRetrying, 10*time.Second)
	cut.cut.Store(false)
	s2 := waitStreamState(t, st, publish.StateLive, 10*time.Second)
	if s2.SessionID == s1.SessionID {
		t.Fatal("the stream republished on the same session")
	}
	var ts pull.TrackStatus
	waitFor(t, "the pull to follow the new session", 10*time.Second, func() bool {
		s := p.Status()
		if len(s.Tracks) != 1 {
			return false
		}
		ts = s.Tracks[0]
		return ts.Session == s2.SessionID && ts.State == pull.TrackPulling
	})
	n := sink.snapshot(idx).packets
	waitFor(t, "packets from the new session", 10*time.Second, func() bool { return sink.snapshot(idx).packets > n+100 })
	if sink.addCount() != 1 || sink.isRemoved(idx) {
		t.Fatalf("the sink saw %d tracks added (removed: %v), want the same index throughout", sink.addCount(), sink.isRemoved(idx))
	}
	ts = p.Status().Tracks[0]
	if ts.Repulls < 1 || ts.SinkIndex != idx {
		t.Fatalf("track status %+v", ts)
	}
	t.Logf("re-pulled from %s after the publisher moved from %s: %+v", s2.SessionID, s1.SessionID, ts)
}

// TestPullAfterSFURestart stops the SFU under a stream and its pull and
// starts a new one on the same address: the pull's attempt ends, it
// retries with backoff and, once the stream is live on the new SFU,
// pulls it again into the same sink index.
func TestPullAfterSFURestart(t *testing.T) {
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
	st := runStream(t, publish.Options{Name: "cam", Sources: demoSources(t, "demo.ivf"), Client: c, API: rtctest.PeerAPI(t),
		MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second})
	s1 := waitStreamState(t, st, publish.StateLive, 10*time.Second)
	sink := newRecSink()
	p, _ := runPull(t, pull.Options{Name: "rec", Client: c, API: rtctest.PeerAPI(t), Sink: sink, Stream: st})
	waitFor(t, "video in the sink", 10*time.Second, func() bool {
		i := sink.index("cam-video")
		return i >= 0 && sink.snapshot(i).packets > 50
	})
	idx := sink.index("cam-video")

	_ = srv1.Close()
	_ = f1.Close()
	waitPullState(t, p, pull.StateRetrying, 10*time.Second)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f2, srv2 := serve(ln2)
	t.Cleanup(func() { _ = srv2.Close(); _ = f2.Close() })
	var s2 publish.Status
	waitFor(t, "the stream live on the new SFU", 10*time.Second, func() bool {
		s2 = st.Status()
		return s2.State == publish.StateLive && s2.SessionID != s1.SessionID
	})
	waitFor(t, "the pull to follow the stream onto the new SFU", 10*time.Second, func() bool {
		s := p.Status()
		return s.State == pull.StateLive && len(s.Tracks) == 1 && s.Tracks[0].Session == s2.SessionID
	})
	n := sink.snapshot(idx).packets
	waitFor(t, "packets through the new SFU", 10*time.Second, func() bool { return sink.snapshot(idx).packets > n+50 })
	if s := p.Status(); s.Retries < 1 || sink.addCount() != 1 || sink.isRemoved(idx) {
		t.Fatalf("after the restart: %+v; sink saw %d tracks added", s, sink.addCount())
	}
}
