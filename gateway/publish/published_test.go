package publish_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
)

// TestPublished: a stream reports no session before it is live, its live
// session and track names while live, and none again once stopped.
func TestPublished(t *testing.T) {
	e := rtctest.NewEnv(t, rtctest.FastOptions())
	st, err := publish.New(publish.Options{Name: "cam", Sources: []bridge.Source{video("v"), audio("a")},
		Client: e.Client, API: rtctest.PeerAPI(t), MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sid, tracks, ok := st.Published(); ok || sid != "" || tracks != nil {
		t.Fatalf("before Run: Published() = %q, %v, %v", sid, tracks, ok)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	s := waitState(t, st, publish.StateLive, 10*time.Second)
	sid, tracks, ok := st.Published()
	if !ok || sid != s.SessionID || sid == "" || !slices.Equal(tracks, []string{"cam-video", "cam-audio"}) {
		t.Fatalf("live: Published() = %q, %v, %v; status session %q", sid, tracks, ok, s.SessionID)
	}
	// The session it names is the one the SFU serves the tracks on.
	res, err := e.Client.Session(rtctest.Ctx(t), sid)
	if err != nil || len(res.Tracks) != 2 {
		t.Fatalf("GET the published session: %v, %+v", err, res)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not stop")
	}
	done <- nil
	if sid, _, ok := st.Published(); ok || sid != "" {
		t.Fatalf("stopped: Published() = %q, %v", sid, ok)
	}
}
