package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/supervise"
)

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// publishStates are the states of publish.Stream, for the enum.
var publishStates = []string{publish.StateStarting, publish.StateLive, publish.StateRetrying,
	publish.StateFailed, publish.StateEnded, publish.StateStopped}

func streamCollector(streams func() []publish.Status) prometheus.Collector {
	return NewSnapshotCollector(streams, []string{"stream"},
		func(s publish.Status) []string { return []string{s.Name} },
		Metric[publish.Status]{
			Name: "rtgate_publish_state", Help: "1 for the published stream's current state, 0 for the others.",
			States: publishStates, State: func(s publish.Status) string { return s.State },
		},
		Metric[publish.Status]{
			Name: "rtgate_publish_retries_total", Help: "Failed publish attempts (Realtime sessions) of the stream.",
			Type: counter, Value: func(s publish.Status) float64 { return float64(s.Retries) },
		},
	)
}

// publishTrack is one row of the track collector: a track and its stream.
type publishTrack struct {
	stream string
	publish.TrackStatus
}

func trackCollector(streams func() []publish.Status) prometheus.Collector {
	rows := func() []publishTrack {
		var out []publishTrack
		for _, s := range streams() {
			for _, t := range s.Tracks {
				out = append(out, publishTrack{s.Name, t})
			}
		}
		return out
	}
	c := func(name, help string, v func(publish.TrackStatus) uint64) Metric[publishTrack] {
		return Metric[publishTrack]{Name: name, Help: help, Type: counter,
			Value: func(t publishTrack) float64 { return float64(v(t.TrackStatus)) }}
	}
	return NewSnapshotCollector(rows, []string{"stream", "track", "kind"},
		func(t publishTrack) []string { return []string{t.stream, t.Name, t.Kind} },
		c("rtgate_publish_packets_total", "RTP packets written to the published track.",
			func(t publish.TrackStatus) uint64 { return t.Packets }),
		c("rtgate_publish_bytes_total", "RTP bytes (headers included) written to the published track.",
			func(t publish.TrackStatus) uint64 { return t.Bytes }),
		c("rtgate_publish_write_errors_total", "Packets the published track failed to send.",
			func(t publish.TrackStatus) uint64 { return t.WriteErrors }),
		c("rtgate_publish_keyframe_requests_total", "Keyframe requests (PLI/FIR) received from the SFU for the track.",
			func(t publish.TrackStatus) uint64 { return t.KeyframeRequests }),
		c("rtgate_publish_keyframe_requests_refused_total", "Keyframe requests the source could not honour (files).",
			func(t publish.TrackStatus) uint64 { return t.KeyframesRefused }),
		c("rtgate_publish_keyframe_requests_coalesced_total", "Keyframe requests folded into one already sent to the source.",
			func(t publish.TrackStatus) uint64 { return t.KeyframesCoalesced }),
		c("rtgate_publish_nacks_received_total", "NACK messages the SFU sent about the published track.",
			func(t publish.TrackStatus) uint64 { return t.NACKs }),
		c("rtgate_publish_nacked_packets_total", "Packets of the published track the SFU's NACKs asked for.",
			func(t publish.TrackStatus) uint64 { return t.NACKedPackets }),
		c("rtgate_publish_retransmitted_packets_total", "Packets of the published track resent for NACKs (RTX when negotiated).",
			func(t publish.TrackStatus) uint64 { return t.Retransmitted }),
		c("rtgate_publish_packets_lost_total", "Packets of the published track the SFU reported lost (reception reports).",
			func(t publish.TrackStatus) uint64 { return t.Lost }),
		Metric[publishTrack]{
			Name: "rtgate_publish_rtt_seconds", Help: "Round-trip time to the SFU from its latest reception report of the track.",
			Type: gauge, Value: func(t publishTrack) float64 { return t.RTTMs / 1000 },
		},
		Metric[publishTrack]{
			Name: "rtgate_publish_jitter_seconds", Help: "Interarrival jitter of the published track as the SFU reported it.",
			Type: gauge, Value: func(t publishTrack) float64 { return t.JitterMs / 1000 },
		},
		Metric[publishTrack]{
			Name: "rtgate_publish_bitrate_bits_per_second", Help: "Bitrate of the published track over the last second.",
			Type: gauge, Value: func(t publishTrack) float64 { return float64(t.Bitrate) },
		},
		Metric[publishTrack]{
			Name: "rtgate_publish_track_info", Help: "Always 1; the codec label is the published track's MIME type.",
			Type: gauge, Value: func(publishTrack) float64 { return 1 },
			ExtraLabels: []string{"codec"}, ExtraValues: func(t publishTrack) []string { return []string{t.Codec} },
		},
	)
}

func pipelineCollector(pipelines func() []supervise.Status) prometheus.Collector {
	states := make([]string, len(supervise.States))
	for i, s := range supervise.States {
		states[i] = string(s)
	}
	return NewSnapshotCollector(pipelines, []string{"type", "name"},
		func(s supervise.Status) []string { return []string{s.Kind, s.Name} },
		Metric[supervise.Status]{
			Name: "rtgate_pipeline_state", Help: "1 for the supervised pipeline's current state, 0 for the others.",
			States: states, State: func(s supervise.Status) string { return string(s.State) },
		},
		Metric[supervise.Status]{
			Name: "rtgate_pipeline_restarts_total", Help: "Restarts of the supervised pipeline after a failure.",
			Type: counter, Value: func(s supervise.Status) float64 { return float64(s.Retries) },
		},
	)
}

func pullCollector(pulls func() []PullTrack) prometheus.Collector {
	c := func(name, help string, v func(PullTrack) uint64) Metric[PullTrack] {
		return Metric[PullTrack]{Name: name, Help: help, Type: counter,
			Value: func(p PullTrack) float64 { return float64(v(p)) }}
	}
	return NewSnapshotCollector(pulls, []string{"name", "track", "kind"},
		func(p PullTrack) []string { return []string{p.Name, p.Track, p.Kind} },
		c("rtgate_pull_packets_total", "RTP packets received on the pulled track.",
			func(p PullTrack) uint64 { return p.Packets }),
		c("rtgate_pull_bytes_total", "RTP bytes received on the pulled track.",
			func(p PullTrack) uint64 { return p.Bytes }),
		c("rtgate_pull_packets_lost_total", "Packets of the pulled track lost and not repaired.",
			func(p PullTrack) uint64 { return p.Lost }),
		c("rtgate_pull_nacks_total", "NACKs sent upstream for the pulled track.",
			func(p PullTrack) uint64 { return p.NACKs }),
		c("rtgate_pull_plis_total", "PLIs sent upstream for the pulled track.",
			func(p PullTrack) uint64 { return p.PLIs }),
		Metric[PullTrack]{Name: "rtgate_pull_jitter_seconds", Help: "Latest interarrival jitter of the pulled track.",
			Type: gauge, Value: func(p PullTrack) float64 { return p.Jitter.Seconds() }},
	)
}

// sessionCount is one kind of session and how many are open.
type sessionCount struct {
	kind string
	n    int
}

func sessionCollector(sessions func() map[string]int) prometheus.Collector {
	rows := func() []sessionCount {
		var out []sessionCount
		for k, n := range sessions() {
			out = append(out, sessionCount{k, n})
		}
		return out
	}
	return NewSnapshotCollector(rows, []string{"kind"},
		func(c sessionCount) []string { return []string{c.kind} },
		Metric[sessionCount]{Name: "rtgate_sessions", Type: gauge,
			Help:  `Open sessions by kind: "whip" publishers, "whep" viewers, and with the embedded SFU its "sfu" sessions and "sfu_subscriptions" (subscribers of published tracks).`,
			Value: func(c sessionCount) float64 { return float64(c.n) }},
	)
}

func recordingCollector(recs func() []Recording) prometheus.Collector {
	c := func(name, help string, v func(Recording) uint64) Metric[Recording] {
		return Metric[Recording]{Name: name, Help: help, Type: counter,
			Value: func(r Recording) float64 { return float64(v(r)) }}
	}
	return NewSnapshotCollector(recs, []string{"name", "track"},
		func(r Recording) []string { return []string{r.Name, r.Track} },
		c("rtgate_recording_bytes_total", "Bytes the recording wrote to disk.",
			func(r Recording) uint64 { return r.Bytes }),
		c("rtgate_recording_segments_total", "Segment files the recording opened.",
			func(r Recording) uint64 { return r.Segments }),
		c("rtgate_recording_errors_total", "Write errors of the recording.",
			func(r Recording) uint64 { return r.Errors }),
	)
}
