package pull

import "time"

// Status is a pull's state for the API and metrics.
type Status struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
	// SessionID is the subscriber session pulling now ("" between
	// attempts).
	SessionID string `json:"sessionId,omitempty"`
	Retries   int    `json:"retries"`
	// Tracks are the tracks not ended; EndedTracks counts those that
	// ended (unpublished) and left the sink.
	Tracks      []TrackStatus `json:"tracks"`
	EndedTracks int           `json:"endedTracks,omitempty"`
}

// TrackStatus is one pulled track's state and counters. The counters
// cover the Pull's lifetime, across re-pulls; Packets and Bytes count each
// packet once (duplicates dropped).
type TrackStatus struct {
	Name      string `json:"name"`
	Session   string `json:"session,omitempty"` // the publisher session it is pulled from
	State     string `json:"state"`
	LastError string `json:"lastError,omitempty"`
	Kind      string `json:"kind,omitempty"`
	Codec     string `json:"codec,omitempty"`
	SinkIndex int    `json:"sinkIndex"` // -1 while not in the sink
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
	// Lost counts packets never received (after NACK/RTX repair), as RFC
	// 3550 counts them: the highest sequence number's advance minus the
	// packets received.
	Lost uint64 `json:"lost"`
	// Repaired counts packets received as RTX retransmissions (answers to
	// NACKs); Duplicates the packets dropped because they had arrived
	// already (retransmissions of repaired packets).
	Repaired   uint64 `json:"repaired"`
	Duplicates uint64 `json:"duplicates"`
	// PLIs counts keyframe requests sent upstream; PLIsCoalesced those
	// folded into one sent less than KeyframeInterval before;
	// PLIsDropped those that could not be sent (not receiving).
	PLIs          uint64 `json:"plis"`
	PLIsCoalesced uint64 `json:"plisCoalesced"`
	PLIsDropped   uint64 `json:"plisDropped"`
	// NACKs counts NACK messages sent upstream (pion's generator);
	// JitterMs is the latest interarrival jitter.
	NACKs       uint64  `json:"nacks"`
	JitterMs    float64 `json:"jitterMs"`
	BadPackets  uint64  `json:"badPackets"`
	WriteErrors uint64  `json:"writeErrors"` // the sink's WriteRTP failed
	// Repulls counts pulls after the first (new subscriber sessions,
	// publisher restarts).
	Repulls uint64 `json:"repulls"`
}

// Status returns the pull's state and counters; the counters are read
// from atomics without stopping the media path.
func (p *Pull) Status() Status {
	p.mu.Lock()
	st := Status{Name: p.opts.Name, State: p.state, Since: p.since, LastError: p.lastErr, SessionID: p.subSession,
		Retries: p.retries, EndedTracks: p.endedCount}
	type snap struct {
		t  *track
		ts TrackStatus
	}
	snaps := make([]snap, 0, len(p.order))
	for _, t := range p.order {
		ts := TrackStatus{Name: t.name, Session: t.session, State: t.state, LastError: t.lastErr, SinkIndex: t.index,
			NACKs: t.nacksDone + t.nacksCur, JitterMs: float64(t.jitter) / float64(time.Millisecond)}
		if t.codec.MimeType != "" {
			ts.Kind, ts.Codec = t.codec.Kind(), t.codec.MimeType
		}
		snaps = append(snaps, snap{t, ts})
	}
	p.mu.Unlock()
	for _, s := range snaps {
		t, ts := s.t, s.ts
		ts.Packets, ts.Bytes = t.packets.Load(), t.bytes.Load()
		if exp := t.expected.Load(); exp > ts.Packets {
			ts.Lost = exp - ts.Packets
		}
		ts.Repaired, ts.Duplicates = t.repaired.Load(), t.duplicates.Load()
		ts.PLIs, ts.PLIsCoalesced, ts.PLIsDropped = t.plis.Load(), t.plisCoalesced.Load(), t.plisDropped.Load()
		ts.BadPackets, ts.WriteErrors = t.badPackets.Load(), t.writeErrors.Load()
		if n := t.binds.Load(); n > 1 {
			ts.Repulls = n - 1
		}
		st.Tracks = append(st.Tracks, ts)
	}
	return st
}
