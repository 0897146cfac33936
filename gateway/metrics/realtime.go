package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint labels of Realtime API calls: a fixed set, so that session ids
// never become label values.
const (
	EndpointSessionsNew  = "sessions_new"
	EndpointTracksNew    = "tracks_new"
	EndpointRenegotiate  = "renegotiate"
	EndpointTracksClose  = "tracks_close"
	EndpointTracksUpdate = "tracks_update"
	EndpointSessionGet   = "session_get"
	EndpointOther        = "other"
)

// latencyBuckets cover a loopback embedded SFU (~1 ms) up to the client's
// 30 s timeout.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

type realtimeMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newRealtimeMetrics() *realtimeMetrics {
	return &realtimeMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rtgate_realtime_requests_total",
			Help: "HTTP requests to the Realtime SFU API, each attempt of a retried call counted, " +
				`by endpoint, method and status code ("error": no response).`,
		}, []string{"endpoint", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rtgate_realtime_request_duration_seconds",
			Help:    "Time from sending a Realtime SFU API request to its response headers, by endpoint and method.",
			Buckets: latencyBuckets,
		}, []string{"endpoint", "method"}),
	}
}

// RealtimeTransport returns an http.RoundTripper that sends requests with
// next (nil: http.DefaultTransport) and counts and times them as Realtime
// API calls. Put it in the Realtime client's HTTPClient:
//
//	&http.Client{Timeout: 30 * time.Second, Transport: m.RealtimeTransport(nil)}
//
// Written by hand because promhttp's round-tripper instrumenters take their
// labels from the status code, the method and the context, not from the
// request URL, and the endpoint must come from the URL.
func (m *Metrics) RealtimeTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &instrumented{next: next, m: m.rt}
}

type instrumented struct {
	next http.RoundTripper
	m    *realtimeMetrics
}

func (t *instrumented) RoundTrip(r *http.Request) (*http.Response, error) {
	endpoint, method := Endpoint(r.Method, r.URL.EscapedPath()), methodLabel(r.Method)
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.m.latency.WithLabelValues(endpoint, method).Observe(time.Since(start).Seconds())
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(endpoint, method, status).Inc()
	return resp, err
}

// Endpoint names the Realtime API call of a request by its method and URL
// path, whatever the base URL and app id:
//
//	POST .../apps/{app}/sessions/new                 sessions_new
//	POST .../apps/{app}/sessions/{id}/tracks/new     tracks_new
//	PUT  .../apps/{app}/sessions/{id}/renegotiate    renegotiate
//	PUT  .../apps/{app}/sessions/{id}/tracks/close   tracks_close
//	PUT  .../apps/{app}/sessions/{id}/tracks/update  tracks_update
//	GET  .../apps/{app}/sessions/{id}                session_get
//
// and "other" for anything else.
func Endpoint(method, path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	// The last "sessions" that follows "apps/{app}": an app id or a base
	// path may itself be "sessions".
	i := -1
	for j := len(segs) - 1; j >= 2; j-- {
		if segs[j] == "sessions" && segs[j-2] == "apps" {
			i = j
			break
		}
	}
	if i < 0 {
		return EndpointOther
	}
	rest := segs[i+1:]
	switch {
	case len(rest) == 1 && rest[0] == "new" && method == http.MethodPost:
		return EndpointSessionsNew
	case len(rest) == 1 && rest[0] != "" && method == http.MethodGet:
		return EndpointSessionGet
	case len(rest) == 2 && rest[1] == "renegotiate" && method == http.MethodPut:
		return EndpointRenegotiate
	case len(rest) == 3 && rest[1] == "tracks":
		switch {
		case rest[2] == "new" && method == http.MethodPost:
			return EndpointTracksNew
		case rest[2] == "close" && method == http.MethodPut:
			return EndpointTracksClose
		case rest[2] == "update" && method == http.MethodPut:
			return EndpointTracksUpdate
		}
	}
	return EndpointOther
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return m
	case "":
		return http.MethodGet // net/http's meaning of an empty method
	}
	return "OTHER"
}
