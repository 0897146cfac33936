package metrics_test

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rtgate/rtgate/gateway/metrics"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// scrape GETs the handler over real HTTP and parses the text format.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series is a family's series by their label set ("k=v,k=v" sorted).
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no family %s in the scrape", name)
	}
	out := map[string]float64{}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(ls)
		var v float64
		switch {
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Histogram != nil:
			v = float64(m.Histogram.GetSampleCount())
		default:
			t.Fatalf("%s: unexpected metric type", name)
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}

func wantSeries(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, want map[string]float64) {
	t.Helper()
	if f := fams[name]; f != nil && f.GetType() != typ {
		t.Errorf("%s is a %s, want %s", name, f.GetType(), typ)
	}
	got := series(t, fams, name)
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s{%s} missing; have %v", name, k, got)
			continue
		}
		if g != v {
			t.Errorf("%s{%s} = %v, want %v", name, k, g, v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s has %d series, want %d: %v", name, len(got), len(want), got)
	}
}

// snapshots is what the fake pipelines report; the test changes it between
// scrapes.
type snapshots struct {
	mu         sync.Mutex
	streams    []publish.Status
	pipelines  []supervise.Status
	pulls      []metrics.PullTrack
	recordings []metrics.Recording
	sessions   map[string]int
}

func (s *snapshots) options() metrics.Options {
	lock := func() func() { s.mu.Lock(); return s.mu.Unlock }
	return metrics.Options{
		Streams:    func() []publish.Status { defer lock()(); return s.streams },
		Pipelines:  func() []supervise.Status { defer lock()(); return s.pipelines },
		Pulls:      func() []metrics.PullTrack { defer lock()(); return s.pulls },
		Recordings: func() []metrics.Recording { defer lock()(); return s.recordings },
		Sessions:   func() map[string]int { defer lock()(); return s.sessions },
		Version:    "1.2.3", Commit: "abc",
	}
}

// TestSnapshotSeries checks that every snapshot field becomes the series
// with the right name, labels, type and value, that values follow the
// snapshot from one scrape to the next, and that a gone stream's series go
// with it.
func TestSnapshotSeries(t *testing.T) {
	s := &snapshots{
		streams: []publish.Status{
			{Name: "cam1", State: publish.StateLive, Retries: 3, Tracks: []publish.TrackStatus{
				{Name: "cam1-video", Kind: "video", Codec: "video/VP8", Packets: 1000, Bytes: 900000, Bitrate: 2_000_000,
					WriteErrors: 2, KeyframeRequests: 7, KeyframesRefused: 1, KeyframesCoalesced: 4,
					NACKs: 5, NACKedPackets: 9, Retransmitted: 8, Lost: 1, RTTMs: 25, JitterMs: 1.5},
				{Name: "cam1-audio", Kind: "audio", Codec: "audio/opus", Packets: 500, Bytes: 60000, Bitrate: 64000},
			}},
			{Name: "file2", State: publish.StateRetrying, Retries: 1, Tracks: []publish.TrackStatus{
				{Name: "f-video", Kind: "video", Codec: "video/H264", Packets: 10, Bytes: 10000},
			}},
		},
		pipelines: []supervise.Status{
			{Name: "cam1", Kind: "stream", State: supervise.StateLive, Retries: 2},
			{Name: "rec1", Kind: "recording", State: supervise.StateFailed, Retries: 9},
		},
		pulls: []metrics.PullTrack{{Name: "rec1", Track: "cam1-video", Kind: "video", Packets: 990, Bytes: 890000,
			Lost: 10, NACKs: 12, PLIs: 3, Jitter: 1500 * time.Microsecond}},
		recordings: []metrics.Recording{{Name: "rec1", Track: "cam1-video", Bytes: 123456, Segments: 4, Errors: 1}},
		sessions:   map[string]int{"whip": 1, "whep": 3, "sfu": 5},
	}
	m := metrics.New(s.options())
	fams := scrape(t, m.Handler())

	C, G := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	v := "kind=video,stream=cam1,track=cam1-video"
	a := "kind=audio,stream=cam1,track=cam1-audio"
	f := "kind=video,stream=file2,track=f-video"
	wantSeries(t, fams, "rtgate_publish_packets_total", C, map[string]float64{v: 1000, a: 500, f: 10})
	wantSeries(t, fams, "rtgate_publish_bytes_total", C, map[string]float64{v: 900000, a: 60000, f: 10000})
	wantSeries(t, fams, "rtgate_publish_bitrate_bits_per_second", G, map[string]float64{v: 2e6, a: 64000, f: 0})
	wantSeries(t, fams, "rtgate_publish_write_errors_total", C, map[string]float64{v: 2, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_keyframe_requests_total", C, map[string]float64{v: 7, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_keyframe_requests_refused_total", C, map[string]float64{v: 1, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_keyframe_requests_coalesced_total", C, map[string]float64{v: 4, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_nacks_received_total", C, map[string]float64{v: 5, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_nacked_packets_total", C, map[string]float64{v: 9, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_retransmitted_packets_total", C, map[string]float64{v: 8, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_packets_lost_total", C, map[string]float64{v: 1, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_rtt_seconds", G, map[string]float64{v: 0.025, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_jitter_seconds", G, map[string]float64{v: 0.0015, a: 0, f: 0})
	wantSeries(t, fams, "rtgate_publish_track_info", G, map[string]float64{
		"codec=video/VP8," + v: 1, "codec=audio/opus," + a: 1, "codec=video/H264," + f: 1})
	wantSeries(t, fams, "rtgate_publish_retries_total", C, map[string]float64{"stream=cam1": 3, "stream=file2": 1})
	states := map[string]float64{}
	for _, st := range []string{"starting", "live", "retrying", "failed", "ended", "stopped"} {
		states["state="+st+",stream=cam1"] = b2f(st == "live")
		states["state="+st+",stream=file2"] = b2f(st == "retrying")
	}
	wantSeries(t, fams, "rtgate_publish_state", G, states)

	pstates := map[string]float64{}
	for _, st := range supervise.States {
		pstates["name=cam1,state="+string(st)+",type=stream"] = b2f(st == supervise.StateLive)
		pstates["name=rec1,state="+string(st)+",type=recording"] = b2f(st == supervise.StateFailed)
	}
	wantSeries(t, fams, "rtgate_pipeline_state", G, pstates)
	wantSeries(t, fams, "rtgate_pipeline_restarts_total", C, map[string]float64{"name=cam1,type=stream": 2, "name=rec1,type=recording": 9})

	pl := "kind=video,name=rec1,track=cam1-video"
	wantSeries(t, fams, "rtgate_pull_packets_total", C, map[string]float64{pl: 990})
	wantSeries(t, fams, "rtgate_pull_bytes_total", C, map[string]float64{pl: 890000})
	wantSeries(t, fams, "rtgate_pull_packets_lost_total", C, map[string]float64{pl: 10})
	wantSeries(t, fams, "rtgate_pull_nacks_total", C, map[string]float64{pl: 12})
	wantSeries(t, fams, "rtgate_pull_plis_total", C, map[string]float64{pl: 3})
	wantSeries(t, fams, "rtgate_pull_jitter_seconds", G, map[string]float64{pl: 0.0015})

	wantSeries(t, fams, "rtgate_sessions", G, map[string]float64{"kind=whip": 1, "kind=whep": 3, "kind=sfu": 5})

	rl := "name=rec1,track=cam1-video"
	wantSeries(t, fams, "rtgate_recording_bytes_total", C, map[string]float64{rl: 123456})
	wantSeries(t, fams, "rtgate_recording_segments_total", C, map[string]float64{rl: 4})
	wantSeries(t, fams, "rtgate_recording_errors_total", C, map[string]float64{rl: 1})

	wantSeries(t, fams, "rtgate_config_reloads_total", C, map[string]float64{"result=ok": 0, "result=failed": 0})
	bi := series(t, fams, "rtgate_build_info")
	if len(bi) != 1 {
		t.Errorf("rtgate_build_info: %v", bi)
	}
	for k := range bi {
		if !strings.Contains(k, "commit=abc") || !strings.Contains(k, "version=1.2.3") || !strings.Contains(k, "goversion=go") {
			t.Errorf("rtgate_build_info labels %q", k)
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "go_memstats_heap_alloc_bytes"} {
		if g := series(t, fams, name)[""]; g <= 0 {
			t.Errorf("%s = %v, want > 0", name, g)
		}
	}
	for name := range fams {
		if !strings.HasPrefix(name, "rtgate_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("family %s is not rtgate_, go_ or process_", name)
		}
	}

	// The next scrape reads the next snapshot: counters moved, a stream
	// went away and took its series with it, a reload was counted.
	s.mu.Lock()
	s.streams = s.streams[:1]
	s.streams[0].Tracks = []publish.TrackStatus{{Name: "cam1-video", Kind: "video", Codec: "video/VP8", Packets: 1500}}
	s.mu.Unlock()
	m.ConfigReloaded(nil)
	m.ConfigReloaded(errors.New("bad file"))
	m.ConfigReloaded(errors.New("bad file"))
	fams = scrape(t, m.Handler())
	wantSeries(t, fams, "rtgate_publish_packets_total", C, map[string]float64{v: 1500})
	wantSeries(t, fams, "rtgate_publish_retries_total", C, map[string]float64{"stream=cam1": 3})
	wantSeries(t, fams, "rtgate_config_reloads_total", C, map[string]float64{"result=ok": 1, "result=failed": 2})
	if ts := series(t, fams, "rtgate_config_last_reload_success_timestamp_seconds")[""]; math.Abs(ts-float64(time.Now().Unix())) > 60 {
		t.Errorf("last reload timestamp %v, want about now", ts)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestOptionalSources checks that a nil source leaves its families out and
// that a collector registered later is scraped.
func TestOptionalSources(t *testing.T) {
	m := metrics.New(metrics.Options{})
	type row struct{ name string }
	c := metrics.NewSnapshotCollector(func() []row { return []row{{"s1"}, {"s2"}} }, []string{"session"},
		func(r row) []string { return []string{r.name} },
		metrics.Metric[row]{Name: "rtgate_test_sessions_up", Help: "test", Type: prometheus.GaugeValue, Value: func(row) float64 { return 1 }})
	if err := m.Register(c); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m.Handler())
	for _, name := range []string{"rtgate_publish_packets_total", "rtgate_pull_packets_total", "rtgate_recording_bytes_total", "rtgate_pipeline_state"} {
		if fams[name] != nil {
			t.Errorf("%s is there without its source", name)
		}
	}
	wantSeries(t, fams, "rtgate_test_sessions_up", dto.MetricType_GAUGE, map[string]float64{"session=s1": 1, "session=s2": 1})
}

// BenchmarkScrape measures one scrape of 200 streams of 2 tracks: the
// whole cost of the per-track metrics, paid per scrape, not per packet.
func BenchmarkScrape(b *testing.B) {
	var sts []publish.Status
	for i := range 200 {
		name := fmt.Sprint("s", i)
		sts = append(sts, publish.Status{Name: name, State: publish.StateLive, Tracks: []publish.TrackStatus{
			{Name: name + "-video", Kind: "video", Codec: "video/VP8", Packets: uint64(i)},
			{Name: name + "-audio", Kind: "audio", Codec: "audio/opus", Packets: uint64(i)},
		}})
	}
	m := metrics.New(metrics.Options{Streams: func() []publish.Status { return sts }})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
