package sfu_test

import (
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"time"

	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// publish runs the echo demo's publishing half on p: sessions/new with an
// offer, wait for connected, then tracks/new (local) with a fresh offer
// naming each transceiver's mid. It returns the sessionId.
func publish(t testing.TB, e *rtctest.Env, p *rtctest.Peer, names map[*webrtc.RTPTransceiver]string) string {
	t.Helper()
	c := rtctest.Ctx(t)
	ns, err := e.Client.NewSession(c, p.Offer())
	if err != nil {
		t.Fatalf("sessions/new: %v", err)
	}
	p.Apply(ns.SessionDescription)
	p.WaitConnected()
	var tracks []rtapi.TrackObject
	for tr, name := range names {
		tracks = append(tracks, rtapi.TrackObject{Location: rtapi.LocationLocal, Mid: tr.Mid(), TrackName: name})
	}
	res, err := e.Client.AddTracks(c, ns.SessionID, rtapi.TracksRequest{SessionDescription: p.Offer(), Tracks: tracks})
	if err != nil {
		t.Fatalf("tracks/new local: %v", err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		t.Fatalf("tracks/new local items: %v", err)
	}
	if res.RequiresImmediateRenegotiation {
		t.Fatal("an answer to our offer must not require renegotiation")
	}
	p.Apply(res.SessionDescription)
	return ns.SessionID
}

// TestEchoFlow is the flow of Cloudflare's echo demo: publish audio and
// video, pull both back into the same session, and receive the RTP intact.
func TestEchoFlow(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	p := rtctest.NewPeer(t)
	video, vt := p.SendTrack(webrtc.RTPCodecTypeVideo, "video")
	audio, at := p.SendTrack(webrtc.RTPCodecTypeAudio, "audio")
	video.Start()
	audio.Start()
	defer video.Halt()
	defer audio.Halt()
	sid := publish(t, e, p, map[*webrtc.RTPTransceiver]string{vt: "video", at: "audio"})

	c := rtctest.Ctx(t)
	pulled, err := e.Client.PullTracks(c, sid, []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "video"},
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "audio"},
	}, p.AnswerFunc)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if err := realtime.ItemErrors(pulled); err != nil {
		t.Fatalf("pull items: %v", err)
	}
	for _, tr := range pulled {
		if tr.Mid == "" {
			t.Fatalf("pulled track %q has no mid", tr.TrackName)
		}
	}
	got := map[string]*rtctest.Sink{}
	for range 2 {
		s := p.NextTrack()
		got[s.Track.Kind().String()] = s
	}
	got["video"].Expect(t, "video", 50)
	got["audio"].Expect(t, "audio", 50)

	st, err := e.Client.Session(c, sid)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tracks) != 4 {
		t.Fatalf("GET session lists %d tracks, want 4 (2 local, 2 remote): %+v", len(st.Tracks), st.Tracks)
	}
	for _, tr := range st.Tracks {
		if tr.Status != rtapi.StatusActive {
			t.Errorf("track %+v is not active", tr)
		}
	}
}

// publisherOf starts a peer publishing one video track per name.
func publisherOf(t testing.TB, e *rtctest.Env, names ...string) (string, *rtctest.Peer, map[string]*rtctest.Source, map[string]string) {
	t.Helper()
	p := rtctest.NewPeer(t)
	srcs := map[string]*rtctest.Source{}
	trs := map[*webrtc.RTPTransceiver]string{}
	for _, n := range names {
		s, tr := p.SendTrack(webrtc.RTPCodecTypeVideo, n)
		s.Start()
		t.Cleanup(s.Halt)
		srcs[n] = s
		trs[tr] = n
	}
	sid := publish(t, e, p, trs)
	mids := map[string]string{}
	for tr, n := range trs {
		mids[n] = tr.Mid()
	}
	return sid, p, srcs, mids
}

// subscriber makes a session without an offer and pulls tracks into it.
func subscriber(t testing.TB, e *rtctest.Env, sid string, names ...string) (string, *rtctest.Peer, []rtapi.TrackObject) {
	t.Helper()
	p, id, pulled := rtctest.Pull(t, e.Client, sid, names...)
	return id, p, pulled
}

func TestTwoSessions(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, a, _, _ := publisherOf(t, e, "cam")
	before := a.PLIs.Load()
	_, b, _ := subscriber(t, e, sid, "cam")
	b.NextTrack().Expect(t, "cam", 50)
	if a.PLIs.Load() == before {
		t.Error("a subscriber joined but the publisher got no keyframe request")
	}
}

func TestPullWithClientOffer(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "cam")
	c := rtctest.Ctx(t)
	b := rtctest.NewPeer(t)
	tr, err := b.PC.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	offer := b.Offer()
	ns, err := e.Client.NewSession(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Client.AddTracks(c, ns.SessionID, rtapi.TracksRequest{SessionDescription: offer, Tracks: []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "cam", Mid: tr.Mid()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		t.Fatal(err)
	}
	if res.RequiresImmediateRenegotiation || res.SessionDescription.Type != "answer" {
		t.Fatalf("a pull with an offer must be answered: %+v", res)
	}
	b.Apply(res.SessionDescription)
	b.NextTrack().Expect(t, "cam", 30)
}

func TestPLIForwardedAndCoalesced(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, a, _, _ := publisherOf(t, e, "cam")
	_, b, _ := subscriber(t, e, sid, "cam")
	s := b.NextTrack()
	s.Expect(t, "cam", 10)
	time.Sleep(200 * time.Millisecond) // past the join request's window
	before := a.PLIs.Load()
	for range 20 { // a burst: coalesced into one or two upstream
		b.SendPLI(s.Track.SSRC())
	}
	deadline := time.Now().Add(3 * time.Second)
	for a.PLIs.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	got := a.PLIs.Load() - before
	if got < 1 || got > 3 {
		t.Fatalf("20 PLIs from a subscriber reached the publisher as %d PLIs, want 1..3", got)
	}
}

func TestCloseNegotiated(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "cam")
	bid, b, pulled := subscriber(t, e, sid, "cam")
	s := b.NextTrack()
	s.Expect(t, "cam", 10)
	mid := pulled[0].Mid
	for _, tr := range b.PC.GetTransceivers() {
		if tr.Mid() == mid {
			if err := tr.Stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := rtctest.Ctx(t)
	res, err := e.Client.CloseTracks(c, bid, rtapi.CloseTracksRequest{
		Tracks: []rtapi.CloseTrackObject{{Mid: mid}}, SessionDescription: b.Offer(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		t.Fatal(err)
	}
	if res.SessionDescription == nil || res.SessionDescription.Type != "answer" || res.RequiresImmediateRenegotiation {
		t.Fatalf("negotiated close must answer: %+v", res)
	}
	b.Apply(res.SessionDescription)
	st, err := e.Client.Session(c, bid)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tracks) != 1 || st.Tracks[0].Status != rtapi.StatusInactive {
		t.Fatalf("closed pull should be listed inactive: %+v", st.Tracks)
	}
	// Closing it again is an item error, not a request error.
	res, err = e.Client.CloseTracks(c, bid, rtapi.CloseTracksRequest{Tracks: []rtapi.CloseTrackObject{{Mid: mid}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tracks[0].ErrorCode != rtapi.CodeCloseTrack {
		t.Fatalf("second close: %+v, want close_track_error", res.Tracks)
	}
}

func TestCloseForcedUnpublishes(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, mids := publisherOf(t, e, "cam")
	_, b, _ := subscriber(t, e, sid, "cam")
	s := b.NextTrack()
	s.Expect(t, "cam", 10)
	c := rtctest.Ctx(t)
	res, err := e.Client.CloseTracks(c, sid, rtapi.CloseTracksRequest{Tracks: []rtapi.CloseTrackObject{{Mid: mids["cam"]}}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.SessionDescription != nil || res.RequiresImmediateRenegotiation || res.Tracks[0].ErrorCode != "" {
		t.Fatalf("forced close: %+v", res)
	}
	if !s.Quiet(500 * time.Millisecond) {
		t.Fatal("the subscriber still receives a force-closed track")
	}
	st, err := e.Client.Session(c, sid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tracks[0].Status != rtapi.StatusInactive {
		t.Fatalf("force-closed track should be inactive: %+v", st.Tracks)
	}
	ns, _ := e.Client.NewSession(c, nil)
	items, err := e.Client.PullTracks(c, ns.SessionID, []rtapi.TrackObject{{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "cam"}}, rtctest.NewPeer(t).AnswerFunc)
	if err != nil {
		t.Fatal(err)
	}
	if !realtime.IsCode(realtime.ItemErrors(items), rtapi.CodeNotFoundTrack) {
		t.Fatalf("pulling a closed track: %+v, want not_found_track_error", items)
	}
}

func TestUpdateSwitchesTrackContinuously(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	sid, _, _, _ := publisherOf(t, e, "one", "two")
	bid, b, pulled := subscriber(t, e, sid, "one")
	s := b.NextTrack()
	first := s.Expect(t, "one", 30)
	c := rtctest.Ctx(t)
	res, err := e.Client.UpdateTracks(c, bid, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, Mid: pulled[0].Mid, SessionID: sid, TrackName: "two"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		t.Fatal(err)
	}
	// Packets of "one" still in flight, then only "two".
	var seqs []uint16
	for _, p := range first {
		seqs = append(seqs, p.SequenceNumber)
	}
	deadline := time.After(10 * time.Second)
	twos := 0
	for twos < 30 {
		select {
		case p := <-s.Pkts:
			tag := string(p.Payload[4:7])
			if twos > 0 && tag != "two" {
				t.Fatalf("got %q after the switch to two", tag)
			}
			if tag == "two" {
				twos++
			}
			seqs = append(seqs, p.SequenceNumber)
		case <-deadline:
			t.Fatalf("only %d packets of the new track", twos)
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("sequence jumps from %d to %d at packet %d: the switch broke continuity", seqs[i-1], seqs[i], i)
		}
	}
	st, _ := e.Client.Session(c, bid)
	active := 0
	for _, tr := range st.Tracks {
		if tr.Status == rtapi.StatusActive {
			active++
			if tr.TrackName != "two" {
				t.Errorf("active track is %q, want two", tr.TrackName)
			}
		}
	}
	if active != 1 {
		t.Errorf("%d active tracks after update, want 1: %+v", active, st.Tracks)
	}
}
