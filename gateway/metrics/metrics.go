// Package metrics exposes rtgate's Prometheus metrics on /metrics: Realtime
// API calls (an instrumented http.RoundTripper), per stream and per track
// counters that the pipelines already keep, read from their status
// snapshots at scrape time, supervised pipelines' states and restarts,
// config reloads, and the Go runtime and process collectors.
//
// Every rtgate series is named rtgate_...; the runtime and process
// collectors keep their standard go_... and process_... names so that
// stock dashboards and alerts work. Nothing here runs per packet: the
// pipelines count in atomics and this package reads them once per scrape.
package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// Options say where the metrics come from. Each func is called once per
// scrape, concurrently with the pipelines, and must be cheap; a nil func
// leaves its families out.
type Options struct {
	// Streams returns every published stream's status (publish.Stream.Status).
	Streams func() []publish.Status
	// Pipelines returns every supervised pipeline's status
	// (supervise.Group.Statuses).
	Pipelines func() []supervise.Status
	// Pulls returns every pulled track's counters.
	Pulls func() []PullTrack
	// Recordings returns every recorded track's counters.
	Recordings func() []Recording
	// Sessions returns how many sessions of each kind are open, by kind
	// (rtgate_sessions{kind}).
	Sessions func() map[string]int
	// Version and Commit label rtgate_build_info.
	Version, Commit string
}

// PullTrack is what the metrics read of one track rtgate pulls from the SFU
// (for a recording, a forward or WHEP viewers); the puller's status
// converts to it.
type PullTrack struct {
	// Name is the pull's name (its pipeline), Track the pulled track's
	// name, Kind "audio" or "video".
	Name, Track, Kind string
	// Counters since the pull started.
	Packets, Bytes uint64
	Lost           uint64 // packets lost (cumulative, from sequence gaps not repaired)
	NACKs          uint64 // NACKs sent upstream
	PLIs           uint64 // PLIs sent upstream
	// Latest estimate. (No round trip time: a receive-only
	// PeerConnection sends no sender reports to measure it from; the
	// published tracks have it, rtgate_publish_rtt_seconds.)
	Jitter time.Duration
}

// Recording is what the metrics read of one recorded track; the recorder's
// status converts to it.
type Recording struct {
	// Name is the recording's name (its pipeline), Track the track's name.
	Name, Track string
	// Counters since the recording started.
	Bytes    uint64 // written to disk
	Segments uint64 // segment files opened
	Errors   uint64 // write errors
}

// Metrics is rtgate's registry of metrics.
type Metrics struct {
	reg     *prometheus.Registry
	rt      *realtimeMetrics
	reloads *prometheus.CounterVec
	lastOK  prometheus.Gauge
}

// Results of a config reload (label "result" of rtgate_config_reloads_total).
const (
	ReloadOK     = "ok"
	ReloadFailed = "failed"
)

// New returns the metrics of o on a registry of their own (not the
// process-global one: tests and embedded uses get independent registries).
func New(o Options) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rt:  newRealtimeMetrics(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtgate_config_reloads_total",
			Help: `Configuration reloads (SIGHUP) by result: "ok" (applied) or "failed" (rejected; nothing changed).`,
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rtgate_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last configuration load that was applied (the start, then each good reload).",
		}),
	}
	// Both results exist from the start, so that increase() sees the first one.
	m.reloads.WithLabelValues(ReloadOK)
	m.reloads.WithLabelValues(ReloadFailed)
	m.lastOK.SetToCurrentTime()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "rtgate_build_info",
		Help:        "Always 1; labels say what was built.",
		ConstLabels: prometheus.Labels{"version": o.Version, "commit": o.Commit, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.rt.requests, m.rt.latency, m.reloads, m.lastOK, build,
	)
	if o.Streams != nil {
		m.reg.MustRegister(streamCollector(o.Streams), trackCollector(o.Streams))
	}
	if o.Pipelines != nil {
		m.reg.MustRegister(pipelineCollector(o.Pipelines))
	}
	if o.Pulls != nil {
		m.reg.MustRegister(pullCollector(o.Pulls))
	}
	if o.Recordings != nil {
		m.reg.MustRegister(recordingCollector(o.Recordings))
	}
	if o.Sessions != nil {
		m.reg.MustRegister(sessionCollector(o.Sessions))
	}
	return m
}

// Handler serves the metrics in the Prometheus text format. A collector
// that fails one scrape leaves its series out of that scrape; the others
// are served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Register adds another collector (for instance a SnapshotCollector of a
// new kind of pipeline) to the registry.
func (m *Metrics) Register(c prometheus.Collector) error {
	return m.reg.Register(c)
}

// Registry returns the registry, for Gather in tests and for embedding.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ConfigReloaded counts a config reload: ok when err is nil, failed
// otherwise.
func (m *Metrics) ConfigReloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues(ReloadFailed).Inc()
		return
	}
	m.reloads.WithLabelValues(ReloadOK).Inc()
	m.lastOK.SetToCurrentTime()
}
