package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	dto "github.com/prometheus/client_model/go"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/metrics"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
	"github.com/rtgate/rtgate/gateway/supervise"
)

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct{ method, path, want string }{
		{"POST", "/v1/apps/app1/sessions/new", metrics.EndpointSessionsNew},
		{"POST", "/v1/apps/app1/sessions/abc123/tracks/new", metrics.EndpointTracksNew},
		{"PUT", "/v1/apps/app1/sessions/abc123/renegotiate", metrics.EndpointRenegotiate},
		{"PUT", "/v1/apps/app1/sessions/abc123/tracks/close", metrics.EndpointTracksClose},
		{"PUT", "/v1/apps/app1/sessions/abc123/tracks/update", metrics.EndpointTracksUpdate},
		{"GET", "/v1/apps/app1/sessions/abc123", metrics.EndpointSessionGet},
		// An app id or a base path named "sessions" does not confuse it.
		{"POST", "/sessions/v1/apps/sessions/sessions/new", metrics.EndpointSessionsNew},
		{"GET", "/v1/apps/sessions/sessions/x%2Fy", metrics.EndpointSessionGet},
		{"GET", "/healthz", metrics.EndpointOther},
		{"GET", "/v1/apps/app1/sessions/new/extra/parts", metrics.EndpointOther},
		{"DELETE", "/v1/apps/app1/sessions/abc123", metrics.EndpointOther},
		{"POST", "/v1/apps/app1/sessions/abc/datachannels/new", metrics.EndpointOther},
		{"GET", "/v1/apps/app1/sessions/", metrics.EndpointOther},
	} {
		if got := metrics.Endpoint(tc.method, tc.path); got != tc.want {
			t.Errorf("Endpoint(%s %s) = %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
}

// TestRealtimeTransport drives the Realtime client through the
// instrumented transport against an HTTP server that answers slowly, fails
// once with 503 (the client retries) and then goes away, and checks counts
// by endpoint, method and status, the latency histogram, and that no
// session id became a label.
func TestRealtimeTransport(t *testing.T) {
	const sid = "0123456789abcdef0123456789abcdef"
	var failNext atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if failNext.CompareAndSwap(true, false) {
			http.Error(w, `{"errorCode":"internal_error"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/sessions/new"):
			time.Sleep(60 * time.Millisecond) // shows in the latency histogram
			_, _ = io.WriteString(w, `{"sessionId":"`+sid+`"}`)
		case strings.HasSuffix(r.URL.Path, "/tracks/close"):
			_, _ = io.WriteString(w, `{"tracks":[{"mid":"0"}]}`)
		case strings.HasSuffix(r.URL.Path, "/renegotiate"):
			_, _ = io.WriteString(w, `{}`)
		default:
			_, _ = io.WriteString(w, `{"tracks":[]}`)
		}
	}))
	defer srv.Close()

	m := metrics.New(metrics.Options{})
	c, err := realtime.New(realtime.Options{BaseURL: srv.URL + "/v1", AppID: "app1", AppSecret: "s",
		HTTPClient:     &http.Client{Timeout: 10 * time.Second, Transport: m.RealtimeTransport(nil)},
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := rtctest.Ctx(t)
	if _, err := c.NewSession(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Session(ctx, sid); err != nil {
		t.Fatal(err)
	}
	failNext.Store(true)
	if _, err := c.AddTracks(ctx, sid, rtapi.TracksRequest{Tracks: []rtapi.TrackObject{{Location: rtapi.LocationRemote,
		SessionID: "other", TrackName: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Renegotiate(ctx, sid, rtapi.SessionDescription{Type: "answer", SDP: "v=0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateTracks(ctx, sid, rtapi.UpdateTracksRequest{Tracks: []rtapi.TrackObject{{Mid: "0"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CloseTracks(ctx, sid, rtapi.CloseTracksRequest{Tracks: []rtapi.CloseTrackObject{{Mid: "0"}}, Force: true}); err != nil {
		t.Fatal(err)
	}
	// A server that is gone: a transport error on every attempt.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	_ = dead.Close()
	c2, _ := realtime.New(realtime.Options{BaseURL: deadURL + "/v1", AppID: "app1", AppSecret: "s", MaxAttempts: 2,
		HTTPClient:     &http.Client{Timeout: 5 * time.Second, Transport: m.RealtimeTransport(nil)},
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: time.Millisecond})
	if _, err := c2.NewSession(ctx, nil); err == nil {
		t.Fatal("NewSession against a closed port succeeded")
	}

	fams := scrape(t, m.Handler())
	wantSeries(t, fams, "rtgate_realtime_requests_total", dto.MetricType_COUNTER, map[string]float64{
		"endpoint=sessions_new,method=POST,status=200":   1,
		"endpoint=sessions_new,method=POST,status=error": 2,
		"endpoint=session_get,method=GET,status=200":     1,
		"endpoint=tracks_new,method=POST,status=503":     1,
		"endpoint=tracks_new,method=POST,status=200":     1,
		"endpoint=renegotiate,method=PUT,status=200":     1,
		"endpoint=tracks_update,method=PUT,status=200":   1,
		"endpoint=tracks_close,method=PUT,status=200":    1,
	})
	wantSeries(t, fams, "rtgate_realtime_request_duration_seconds", dto.MetricType_HISTOGRAM, map[string]float64{
		"endpoint=sessions_new,method=POST": 3, "endpoint=session_get,method=GET": 1, "endpoint=tracks_new,method=POST": 2,
		"endpoint=renegotiate,method=PUT": 1, "endpoint=tracks_update,method=PUT": 1, "endpoint=tracks_close,method=PUT": 1,
	})
	for _, m := range fams["rtgate_realtime_request_duration_seconds"].Metric {
		if m.Label[0].GetValue() != "sessions_new" {
			continue
		}
		// Two instant transport errors and one 60 ms answer.
		if s := m.Histogram.GetSampleSum(); s < 0.06 || s > 5 {
			t.Errorf("sessions_new latency sum %v s, want >= 0.06", s)
		}
		var under50ms uint64
		for _, b := range m.Histogram.Bucket {
			if b.GetUpperBound() == 0.05 {
				under50ms = b.GetCumulativeCount()
			}
		}
		if under50ms != 2 {
			t.Errorf("sessions_new: %d requests under 50 ms, want the 2 transport errors only", under50ms)
		}
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if strings.Contains(l.GetValue(), sid) {
					t.Errorf("%s has the session id in label %s", f.GetName(), l.GetName())
				}
			}
		}
	}
}

// numbered sends numbered VP8 packets every 10 ms, as a camera would.
type numbered struct {
	seq uint16
	n   uint32
}

func (s *numbered) Tracks() []bridge.Track {
	return []bridge.Track{{Kind: bridge.KindVideo,
		Codec: bridge.Codec{MimeType: "video/VP8", ClockRate: 90000, PayloadType: 96}}}
}

func (s *numbered) Run(ctx context.Context, fn bridge.PacketFunc) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 0x1111, Marker: true}}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			pkt.SequenceNumber, pkt.Timestamp = s.seq, s.n*3000
			pkt.Payload = rtctest.PayloadFor("v", s.n)
			fn(0, pkt)
			s.seq++
			s.n++
		}
	}
}

func (s *numbered) RequestKeyframe(int) bool { return true }
func (s *numbered) Close() error             { return nil }

// TestLiveStream scrapes a real stream: a supervised publish.Stream on the
// embedded SFU over loopback, its Realtime client instrumented, a real
// pion peer pulling its track. The published packet counter in the scrape
// lies between the stream's own counts just before and just after, the
// API calls the stream and the puller made are there by endpoint, and the
// supervisor's state is live.
func TestLiveStream(t *testing.T) {
	sf := rtctest.NewSFU(t, rtctest.FastOptions())
	srv := httptest.NewServer(sf.Handler())
	t.Cleanup(func() {
		srv.Close()
		_ = sf.Close()
	})
	g := supervise.NewGroup()
	var st *publish.Stream
	m := metrics.New(metrics.Options{
		Streams:   func() []publish.Status { return []publish.Status{st.Status()} },
		Pipelines: g.Statuses,
	})
	c, err := realtime.New(realtime.Options{BaseURL: srv.URL + "/v1", AppID: "test", AppSecret: rtctest.Secret,
		HTTPClient:     &http.Client{Timeout: 10 * time.Second, Transport: m.RealtimeTransport(nil)},
		RetryBaseDelay: 10 * time.Millisecond, RetryMaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st, err = publish.New(publish.Options{Name: "cam", Sources: []bridge.Source{&numbered{}}, Client: c,
		API: rtctest.PeerAPI(t), MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	activity := func() uint64 { return st.Status().Tracks[0].Packets }
	if err := g.Add(st, supervise.Options{Name: "cam", Kind: "stream", Watchdog: 5 * time.Second, Activity: activity}); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			g.Stop()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for st.Status().State != publish.StateLive || st.Status().SessionID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("stream not live: %+v", st.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p, _, _ := rtctest.Pull(t, c, st.Status().SessionID, "cam-video")
	sink := p.NextTrack()
	for range 20 {
		select {
		case <-sink.Pkts:
		case <-time.After(10 * time.Second):
			t.Fatal("the puller got no packets")
		}
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		s, _ := g.Status("stream", "cam")
		if s.State == supervise.StateLive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor state %s, want live", s.State)
		}
		time.Sleep(20 * time.Millisecond)
	}

	before := st.Status().Tracks[0].Packets
	fams := scrape(t, m.Handler())
	after := st.Status().Tracks[0].Packets
	got := series(t, fams, "rtgate_publish_packets_total")["kind=video,stream=cam,track=cam-video"]
	if got < float64(before) || got > float64(after) || got < 20 {
		t.Errorf("rtgate_publish_packets_total = %v; the stream counted %d before and %d after the scrape", got, before, after)
	}
	if v := series(t, fams, "rtgate_publish_state")["state=live,stream=cam"]; v != 1 {
		t.Errorf("rtgate_publish_state{live} = %v", v)
	}
	if v := series(t, fams, "rtgate_pipeline_state")["name=cam,state=live,type=stream"]; v != 1 {
		t.Errorf("rtgate_pipeline_state{live} = %v", v)
	}
	reqs := series(t, fams, "rtgate_realtime_requests_total")
	// The publisher's and the puller's sessions/new, their tracks/new.
	if reqs["endpoint=sessions_new,method=POST,status=200"]+reqs["endpoint=sessions_new,method=POST,status=201"] < 2 ||
		reqs["endpoint=tracks_new,method=POST,status=200"] < 2 {
		t.Errorf("realtime requests %v; want >= 2 sessions_new and tracks_new answered OK", reqs)
	}

	// Stopping closes the tracks on the SFU through the same client.
	g.Stop()
	stopped = true
	reqs = series(t, scrape(t, m.Handler()), "rtgate_realtime_requests_total")
	if reqs["endpoint=tracks_close,method=PUT,status=200"] < 1 {
		t.Errorf("after Stop, realtime requests %v; want a tracks_close", reqs)
	}
	t.Logf("scraped %v packets (stream: %d..%d); realtime calls %v", got, before, after, reqs)
}
