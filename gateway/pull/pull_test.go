package pull_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

func TestNewValidates(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	api := rtctest.PeerAPI(t)
	base := pull.Options{Name: "x", Client: e.Client, API: api, Sink: newRecSink()}
	cases := []struct {
		name string
		mod  func(o *pull.Options)
		want string
	}{
		{"nothing to pull", func(o *pull.Options) {}, "exactly one of Refs, Session and Stream (0 given)"},
		{"two modes", func(o *pull.Options) { o.Session = "s"; o.Refs = []pull.Ref{{"s", "t"}} }, "(2 given)"},
		{"no sink", func(o *pull.Options) { o.Session = "s"; o.Sink = nil }, "a sink is required"},
		{"no client", func(o *pull.Options) { o.Session = "s"; o.Client = nil }, "a Realtime client and a peer API"},
		{"empty ref", func(o *pull.Options) { o.Refs = []pull.Ref{{"s", ""}} }, "Refs[0] needs a session and a track name"},
		{"duplicate ref", func(o *pull.Options) { o.Refs = []pull.Ref{{"s", "t"}, {"s", "t"}} }, "Refs[1] (s/t) is given twice"},
		{"filter on refs", func(o *pull.Options) { o.Refs = []pull.Ref{{"s", "t"}}; o.Tracks = []string{"t"} }, "Tracks filters Session and Stream"},
		{"negative", func(o *pull.Options) { o.Session = "s"; o.NotFoundTimeout = -1 }, "NotFoundTimeout is negative"},
		{"backoff order", func(o *pull.Options) { o.Session = "s"; o.MinBackoff = time.Minute }, "MinBackoff (1m0s) exceeds MaxBackoff"},
	}
	for _, c := range cases {
		o := base
		c.mod(&o)
		_, err := pull.New(o)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "pull x: ") {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestPullRefs pulls a video and an audio track by (session, track): the
// sink gets both with their codecs and names, every payload intact, and
// sender reports; its keyframe request reaches the publisher as a PLI,
// coalesced; an unpublished track leaves the sink while the other goes on;
// stopping closes the tracks on the SFU and removes the rest.
func TestPullRefs(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"cam", webrtc.RTPCodecTypeVideo}, pubTrack{"mic", webrtc.RTPCodecTypeAudio})
	sink := newRecSink()
	p, stop := runPull(t, pull.Options{Name: "rec", Client: e.Client, API: rtctest.PeerAPI(t), Sink: sink,
		Refs: []pull.Ref{{pub.sid, "cam"}, {pub.sid, "mic"}}})
	st := waitPullState(t, p, pull.StateLive, 10*time.Second)
	waitFor(t, "both tracks in the sink", 10*time.Second, func() bool { return sink.addCount() == 2 })
	v, a := sink.index("cam"), sink.index("mic")
	vt, at := sink.snapshot(v).st, sink.snapshot(a).st
	if vt.Kind != bridge.KindVideo || vt.Codec.MimeType != webrtc.MimeTypeVP8 || vt.Codec.ClockRate != 90000 ||
		vt.Session != pub.sid || vt.RequestKeyframe == nil {
		t.Fatalf("video track %+v", vt)
	}
	if at.Kind != bridge.KindAudio || at.Codec.MimeType != webrtc.MimeTypeOpus || at.Codec.ClockRate != 48000 ||
		at.Codec.Channels != 2 || at.RequestKeyframe != nil {
		t.Fatalf("audio track %+v", at)
	}
	checkPayloads(t, sink, v, "cam")
	checkPayloads(t, sink, a, "mic")
	waitFor(t, "sender reports of both tracks", 10*time.Second, func() bool {
		return sink.snapshot(v).srs > 0 && sink.snapshot(a).srs > 0
	})

	// A keyframe request from the sink reaches the publisher; a second one
	// right after is coalesced.
	before := pub.peer.PLIs.Load()
	vt.RequestKeyframe()
	vt.RequestKeyframe()
	waitFor(t, "the publisher's PLI", 5*time.Second, func() bool { return pub.peer.PLIs.Load() > before })
	st = p.Status()
	var vs, as pull.TrackStatus
	for _, ts := range st.Tracks {
		switch ts.Name {
		case "cam":
			vs = ts
		case "mic":
			as = ts
		}
	}
	if vs.PLIs != 1 || vs.PLIsCoalesced != 1 || vs.State != pull.TrackPulling || vs.SinkIndex != v ||
		vs.Session != pub.sid || vs.Codec != webrtc.MimeTypeVP8 || vs.Kind != bridge.KindVideo || vs.Packets < 20 || vs.Bytes == 0 {
		t.Fatalf("video status %+v", vs)
	}
	if as.Packets < 20 || as.Lost != 0 || as.SinkIndex != a {
		t.Fatalf("audio status %+v", as)
	}
	sub := st.SessionID
	if sub == "" {
		t.Fatal("no subscriber session in the status")
	}

	// The publisher unpublishes the video: it leaves the sink; audio goes on.
	pub.unpublish("cam")
	waitFor(t, "the video track to leave the sink", 10*time.Second, func() bool { return sink.isRemoved(v) })
	n := sink.snapshot(a).packets
	waitFor(t, "audio to go on", 5*time.Second, func() bool { return sink.snapshot(a).packets > n+20 })
	if st := p.Status(); len(st.Tracks) != 1 || st.EndedTracks != 1 || st.State != pull.StateLive {
		t.Fatalf("after unpublishing the video: %+v", st)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !sink.isRemoved(a) || p.Status().State != pull.StateStopped {
		t.Fatalf("after stop: removed %v, status %+v", sink.isRemoved(a), p.Status())
	}
	// The subscriber session pulls nothing any more: its tracks were
	// closed, or the SFU already ended it (its PeerConnection closed).
	res, err := e.Client.Session(rtctest.Ctx(t), sub)
	if realtime.StatusOf(err) == http.StatusGone {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range res.Tracks {
		if tr.Status == rtapi.StatusActive {
			t.Errorf("after stop, the subscriber session still pulls %+v", tr)
		}
	}
}

// TestPullSession pulls a whole session: the track it has, then one
// published after the pull started, into new sink indexes; when the
// publisher's session ends, both leave the sink and the pull ends.
func TestPullSession(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"a", webrtc.RTPCodecTypeVideo})
	sink := newRecSink()
	p, stop := runPull(t, pull.Options{Name: "call", Client: e.Client, API: rtctest.PeerAPI(t), Sink: sink, Session: pub.sid})
	waitFor(t, "track a", 10*time.Second, func() bool { return sink.index("a") >= 0 })
	ia := sink.index("a")
	checkPayloads(t, sink, ia, "a")

	pub.publish("b", webrtc.RTPCodecTypeAudio)
	waitFor(t, "track b, published after the pull started", 10*time.Second, func() bool { return sink.index("b") >= 0 })
	ib := sink.index("b")
	if ib == ia || sink.snapshot(ib).st.Kind != bridge.KindAudio || sink.snapshot(ib).st.Session != pub.sid {
		t.Fatalf("track b: index %d, %+v", ib, sink.snapshot(ib).st)
	}
	checkPayloads(t, sink, ib, "b")
	n := sink.snapshot(ia).packets
	waitFor(t, "track a to go on", 5*time.Second, func() bool { return sink.snapshot(ia).packets > n+20 })
	if st := p.Status(); st.State != pull.StateLive || len(st.Tracks) != 2 || st.Retries != 0 {
		t.Fatalf("status %+v", st)
	}

	// The publisher leaves: its session ends on the SFU.
	_ = pub.peer.PC.Close()
	waitPullState(t, p, pull.StateEnded, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("an ended session is not an error: %v", err)
	}
	if !sink.isRemoved(ia) || !sink.isRemoved(ib) {
		t.Fatal("tracks of the ended session are still in the sink")
	}
	if st := p.Status(); !strings.Contains(st.LastError, pub.sid) || st.EndedTracks != 2 {
		t.Fatalf("ended status %+v", st)
	}
}

// TestPullSessionFilter pulls only the named tracks of a session.
func TestPullSessionFilter(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"a", webrtc.RTPCodecTypeVideo}, pubTrack{"b", webrtc.RTPCodecTypeVideo})
	sink := newRecSink()
	p, _ := runPull(t, pull.Options{Client: e.Client, API: rtctest.PeerAPI(t), Sink: sink, Session: pub.sid, Tracks: []string{"b"}})
	waitFor(t, "track b", 10*time.Second, func() bool { return sink.index("b") >= 0 })
	checkPayloads(t, sink, sink.index("b"), "b")
	if sink.addCount() != 1 || len(p.Status().Tracks) != 1 {
		t.Fatalf("pulled %d tracks, want only b", sink.addCount())
	}
}

// TestPullNotFoundRetried pulls a track its publisher has not published
// yet: not_found_track_error is retried until the track is there.
func TestPullNotFoundRetried(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"cam", webrtc.RTPCodecTypeVideo})
	sink := newRecSink()
	p, _ := runPull(t, pull.Options{Client: e.Client, API: rtctest.PeerAPI(t), Sink: sink,
		Refs: []pull.Ref{{pub.sid, "late"}}, NotFoundTimeout: 20 * time.Second})
	waitFor(t, "not_found_track_error in the status", 10*time.Second, func() bool {
		st := p.Status()
		return st.State == pull.StateWaiting && len(st.Tracks) == 1 && strings.Contains(st.Tracks[0].LastError, rtapi.CodeNotFoundTrack)
	})
	time.Sleep(time.Second) // the publisher takes its time
	pub.publish("late", webrtc.RTPCodecTypeVideo)
	waitFor(t, "the late track", 10*time.Second, func() bool { return sink.index("late") >= 0 })
	checkPayloads(t, sink, sink.index("late"), "late")
	if st := waitPullState(t, p, pull.StateLive, 5*time.Second); st.Tracks[0].LastError != "" || st.Retries != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestPullNotFoundTimeout: a track that never appears fails the pull after
// NotFoundTimeout, naming the track and the error code.
func TestPullNotFoundTimeout(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"cam", webrtc.RTPCodecTypeVideo})
	p, stop := runPull(t, pull.Options{Name: "r", Client: e.Client, API: rtctest.PeerAPI(t), Sink: newRecSink(),
		Refs: []pull.Ref{{pub.sid, "never"}}, NotFoundTimeout: 1500 * time.Millisecond})
	start := time.Now()
	st := waitPullState(t, p, pull.StateFailed, 10*time.Second)
	took := time.Since(start)
	err := stop()
	if err == nil || !strings.Contains(err.Error(), "track never of session "+pub.sid) ||
		!strings.Contains(err.Error(), rtapi.CodeNotFoundTrack) || st.LastError != err.Error() {
		t.Fatalf("Run: %v; status %+v", err, st)
	}
	if took < 1500*time.Millisecond {
		t.Fatalf("failed after %v, before NotFoundTimeout", took)
	}
	t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
}

// TestPullSinkRefuses: a track the sink refuses is closed and reported;
// the others go on.
func TestPullSinkRefuses(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	pub := newPublisher(t, e, pubTrack{"a", webrtc.RTPCodecTypeVideo}, pubTrack{"b", webrtc.RTPCodecTypeAudio})
	sink := newRecSink()
	sink.refuse = func(st bridge.SinkTrack) error {
		if st.Kind == bridge.KindAudio {
			return errors.New("no audio here")
		}
		return nil
	}
	p, _ := runPull(t, pull.Options{Client: e.Client, API: rtctest.PeerAPI(t), Sink: sink, Session: pub.sid})
	var bs pull.TrackStatus
	waitFor(t, "track b refused", 10*time.Second, func() bool {
		for _, ts := range p.Status().Tracks {
			if ts.Name == "b" {
				bs = ts
			}
		}
		return bs.State == pull.TrackRefused
	})
	if !strings.Contains(bs.LastError, "no audio here") || bs.SinkIndex != -1 {
		t.Fatalf("refused track %+v", bs)
	}
	waitFor(t, "track a", 10*time.Second, func() bool { return sink.index("a") >= 0 })
	checkPayloads(t, sink, sink.index("a"), "a")
	if sink.addCount() != 1 {
		t.Fatalf("%d tracks added", sink.addCount())
	}
	// b is not pulled again, while a goes on for a second (several polls).
	ia := sink.index("a")
	n := sink.snapshot(ia).packets
	waitFor(t, "a second more of track a", 10*time.Second, func() bool { return sink.snapshot(ia).packets > n+100 })
	for _, ts := range p.Status().Tracks {
		if ts.Name == "b" && (ts.State != pull.TrackRefused || ts.Repulls != 0) {
			t.Fatalf("refused track pulled again: %+v", ts)
		}
	}
}
