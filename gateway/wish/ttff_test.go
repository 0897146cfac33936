package wish

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/internal/rtctest"
)

// TestRelayViewerKeyframeOnConnect: a relay WHEP viewer of a stream nobody
// watches starts rtgate's pull of it; the pull's session connects first,
// and the SFU asks the publisher for a keyframe for it, which reaches
// rtgate before the viewer can receive it. The viewer's own keyframe
// request must then reach the publisher once the viewer is connected, and
// promptly: not at Bind (before the viewer's transport is up, so that the
// keyframe is lost) and not held back by the SFU's window (500 ms here, as
// the daemon's) that the pull's request opened. Before that fix it came
// about 450 ms after the viewer connected.
func TestRelayViewerKeyframeOnConnect(t *testing.T) {
	o := rtctest.FastOptions()
	o.KeyframeInterval = 500 * time.Millisecond
	e := newTestEnvSFU(t, o)
	e.reg.mu.Lock()
	e.reg.m["kf"] = NewStream(StreamOptions{Name: "kf", WHIPMode: ModeProxy, WHEPMode: ModeRelay})
	e.reg.mu.Unlock()

	// The publisher: pion over WHIP (proxy: its media goes to the SFU).
	pub := rtctest.NewPeer(t)
	video, _ := pub.SendTrack(webrtc.RTPCodecTypeVideo, "v")
	defer video.Halt()
	resp, body := e.do(t, "POST", "/whip/kf", typeSDP, pub.Offer().SDP)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /whip/kf = %d %s", resp.StatusCode, body)
	}
	if err := pub.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
	pub.WaitConnected()
	video.Start()
	time.Sleep(time.Second) // past the window of any request so far

	// When each keyframe request reaches the publisher.
	var mu sync.Mutex
	var plis []time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		seen := pub.PLIs.Load()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if n := pub.PLIs.Load(); n != seen {
				mu.Lock()
				for range n - seen {
					plis = append(plis, time.Now())
				}
				mu.Unlock()
				seen = n
			}
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	// The viewer: pion over WHEP.
	view := rtctest.NewPeer(t)
	var connected time.Time
	var cmu sync.Mutex
	view.PC.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			cmu.Lock()
			connected = time.Now()
			cmu.Unlock()
		}
	})
	if _, err := view.PC.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	posted := time.Now()
	resp, body = e.do(t, "POST", "/whep/kf", typeSDP, view.Offer().SDP)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /whep/kf = %d %s", resp.StatusCode, body)
	}
	if err := view.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
	view.WaitConnected()
	view.NextTrack().Expect(t, "v", 5)
	loc := resp.Header.Get("Location")
	v, ok := e.h.lookup(loc[strings.LastIndex(loc, "/")+1:]).(*whepRelay)
	if !ok {
		t.Fatalf("no relay viewer at %s", loc)
	}
	time.Sleep(700 * time.Millisecond) // past the windows: every request has gone

	cmu.Lock()
	tc := connected
	cmu.Unlock()
	mu.Lock()
	got := append([]time.Time(nil), plis...)
	mu.Unlock()
	var rel []time.Duration
	for _, p := range got {
		rel = append(rel, p.Sub(tc).Round(time.Millisecond))
	}
	t.Logf("the viewer connected %v after its POST; keyframe requests at the publisher, relative to that: %v",
		tc.Sub(posted).Round(time.Millisecond), rel)
	// The first request is the pull's, from when its session connected,
	// before the viewer was even answered. The second is the viewer's:
	// rtgate sees the connection at about the time the client does; on a
	// loaded machine give it 200 ms, well inside the 500 ms window.
	if len(got) < 2 || got[1].Sub(tc) > 200*time.Millisecond {
		t.Errorf("the viewer's keyframe request did not reach the publisher within 200 ms after it connected: %v", rel)
	}
	// rtgate asked once the viewer's DTLS was up, not at Bind.
	if asked, up := v.tl.kfRequest.Load(), v.tl.dtls.Load(); asked == 0 || up == 0 || asked < up {
		t.Errorf("rtgate asked for the viewer's keyframe at %v, its DTLS was up at %v: want after",
			time.Duration(asked-v.tl.post.UnixNano()), time.Duration(up-v.tl.post.UnixNano()))
	}
	if len(got) > 3 {
		t.Errorf("%d keyframe requests for one viewer: want the pull's and the viewer's (and at most one more)", len(got))
	}
}
