package publish

import (
	"context"
	"time"
)

// Status is a stream's state for the API (GET /api/streams).
type Status struct {
	Name      string        `json:"name"`
	State     string        `json:"state"`
	Since     time.Time     `json:"since"`
	LastError string        `json:"lastError,omitempty"`
	SessionID string        `json:"sessionId,omitempty"`
	Retries   int           `json:"retries"`
	Tracks    []TrackStatus `json:"tracks"`
}

// TrackStatus is one published track's counters.
type TrackStatus struct {
	Name               string `json:"name"`
	Kind               string `json:"kind"`
	Codec              string `json:"codec"`
	Packets            uint64 `json:"packets"`
	Bytes              uint64 `json:"bytes"`
	Bitrate            uint64 `json:"bitrate"` // bits/s over the last second
	WriteErrors        uint64 `json:"writeErrors"`
	KeyframeRequests   uint64 `json:"keyframeRequests"`
	KeyframesRefused   uint64 `json:"keyframesRefused"` // the source cannot make one (files)
	KeyframesCoalesced uint64 `json:"keyframesCoalesced"`
	// What the SFU reported about the track: NACK messages and the
	// packets they asked for, the packets resent for them (RTX), packets
	// lost (cumulative, from reception reports), and the latest jitter
	// and round trip time (RTT 0: not measured yet).
	NACKs         uint64  `json:"nacks"`
	NACKedPackets uint64  `json:"nackedPackets"`
	Retransmitted uint64  `json:"retransmitted"`
	Lost          uint64  `json:"lost"`
	JitterMs      float64 `json:"jitterMs"`
	RTTMs         float64 `json:"rttMs"`
	// Files only: where playback is, the file's length and loops done.
	Position float64 `json:"position,omitempty"` // seconds
	Duration float64 `json:"duration,omitempty"` // seconds
	Loops    int     `json:"loops,omitempty"`
}

// progresser is a source that knows where it is (a file).
type progresser interface {
	Progress() (pos, dur time.Duration, loops int)
}

// Status returns the stream's current state and counters.
func (s *Stream) Status() Status {
	s.mu.Lock()
	st := Status{Name: s.opts.Name, State: s.state, Since: s.since, LastError: s.lastErr,
		SessionID: s.sessionID, Retries: s.retries}
	s.mu.Unlock()
	for _, t := range s.tracks {
		ts := TrackStatus{
			Name: t.name, Kind: t.kind, Codec: t.codec.MimeType,
			Packets: t.packets.Load(), Bytes: t.bytes.Load(), Bitrate: t.bitrate.Load(),
			WriteErrors: t.writeErrors.Load(), KeyframeRequests: t.kfRequested.Load(),
			KeyframesRefused: t.kfRefused.Load(), KeyframesCoalesced: t.kfCoalesced.Load(),
		}
		fb := t.feedback.Stats()
		ts.NACKs, ts.NACKedPackets, ts.Retransmitted, ts.Lost = fb.NACKs, fb.NACKedPackets, fb.Retransmitted, fb.Lost
		ts.RTTMs = float64(fb.RTT) / float64(time.Millisecond)
		if t.codec.ClockRate > 0 {
			ts.JitterMs = float64(fb.Jitter) * 1000 / float64(t.codec.ClockRate)
		}
		if p, ok := t.src.(progresser); ok {
			pos, dur, loops := p.Progress()
			ts.Position, ts.Duration, ts.Loops = pos.Seconds(), dur.Seconds(), loops
		}
		st.Tracks = append(st.Tracks, ts)
	}
	return st
}

// rateMeter turns a byte counter into a bitrate once a second.
type rateMeter struct {
	lastBytes uint64
	lastAt    time.Time
}

func (s *Stream) meter(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, t := range s.tracks {
				b := t.bytes.Load()
				if !t.rate.lastAt.IsZero() {
					if d := now.Sub(t.rate.lastAt).Seconds(); d > 0 {
						t.bitrate.Store(uint64(float64(b-t.rate.lastBytes) * 8 / d))
					}
				}
				t.rate.lastBytes, t.rate.lastAt = b, now
			}
		}
	}
}
