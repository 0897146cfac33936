package sfu_test

import (
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// publish runs the echo demo's publishing half on p: sessions/new with an
// offer, wait for connected, then tracks/new (local) with a fresh offer
// naming each transceiver's mid. It returns the sessionId.
func publish(t *testing.T, e *env, p *testPeer, names map[*webrtc.RTPTransceiver]string) string {
	t.Helper()
	c := ctx(t)
	ns, err := e.client.NewSession(c, p.offer())
	if err != nil {
		t.Fatalf("sessions/new: %v", err)
	}
	p.apply(ns.SessionDescription)
	p.waitConnected()
	var tracks []rtapi.TrackObject
	for tr, name := range names {
		tracks = append(tracks, rtapi.TrackObject{Location: rtapi.LocationLocal, Mid: tr.Mid(), TrackName: name})
	}
	res, err := e.client.AddTracks(c, ns.SessionID, rtapi.TracksRequest{SessionDescription: p.offer(), Tracks: tracks})
	if err != nil {
		t.Fatalf("tracks/new local: %v", err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		t.Fatalf("tracks/new local items: %v", err)
	}
	if res.RequiresImmediateRenegotiation {
		t.Fatal("an answer to our offer must not require renegotiation")
	}
	p.apply(res.SessionDescription)
	return ns.SessionID
}

// TestEchoFlow is the flow of Cloudflare's echo demo: publish audio and
// video, pull both back into the same session, and receive the RTP intact.
func TestEchoFlow(t *testing.T) {
	e := newEnv(t, fastOptions())
	p := newPeer(t)
	video, vt := p.sendTrack(webrtc.RTPCodecTypeVideo, "video")
	audio, at := p.sendTrack(webrtc.RTPCodecTypeAudio, "audio")
	video.start()
	audio.start()
	defer video.halt()
	defer audio.halt()
	sid := publish(t, e, p, map[*webrtc.RTPTransceiver]string{vt: "video", at: "audio"})

	c := ctx(t)
	pulled, err := e.client.PullTracks(c, sid, []rtapi.TrackObject{
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "video"},
		{Location: rtapi.LocationRemote, SessionID: sid, TrackName: "audio"},
	}, p.answerFunc)
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
	got := map[string]*sink{}
	for range 2 {
		s := p.nextTrack()
		got[s.track.Kind().String()] = s
	}
	got["video"].expect(t, "video", 50)
	got["audio"].expect(t, "audio", 50)

	st, err := e.client.Session(c, sid)
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
