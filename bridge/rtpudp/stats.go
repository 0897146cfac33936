package rtpudp

import "sync/atomic"

// Stats is a snapshot of a Source's counters, read without locks.
type Stats struct {
	Tracks []TrackStats
	// BadPackets counts datagrams rejected as RTP on all ports, by
	// Reason.String(); only reasons seen are present.
	BadPackets map[string]uint64
	// UnknownPayloadType counts valid RTP packets whose payload type no
	// track has (dropped).
	UnknownPayloadType uint64
	// RTCPPackets counts RTCP compound packets received; BadRTCP those
	// that did not parse; UnmatchedRTCP sender reports whose SSRC no track
	// had when they arrived (the last few are kept, and count for a track
	// whose RTP then arrives with that SSRC).
	RTCPPackets   uint64
	BadRTCP       uint64
	UnmatchedRTCP uint64
	// LastBadReason is the reason of the last rejected datagram, "" if
	// none was.
	LastBadReason string
}

// TrackStats are the counters of one track.
type TrackStats struct {
	Packets uint64 // packets delivered to the PacketFunc
	Bytes   uint64 // their size as received (RTP header included)
	// SSRC is the current sender's SSRC, valid when HaveSSRC.
	SSRC     uint32
	HaveSSRC bool
	// SSRCChanges counts changes of the sender SSRC after the first.
	SSRCChanges uint64
	// SenderAddrChanges counts changes of the RTP source address
	// (e.g. an encoder restarted with a fixed SSRC).
	SenderAddrChanges uint64
	SenderReports     uint64 // RTCP sender reports from the track's sender
	PLIsSent          uint64 // keyframe requests sent
	PLIErrors         uint64 // keyframe requests whose write failed
	// BadPackets and UnknownPayloadType are the counters of the track's
	// RTP port: a packet that fails validation cannot be attributed to a
	// track by payload type, so tracks sharing a port share these.
	BadPackets         map[string]uint64
	UnknownPayloadType uint64
}

// portCounters are the counters of one socket.
type portCounters struct {
	bad           [numReasons]atomic.Uint64
	unknownPT     atomic.Uint64
	rtcpPackets   atomic.Uint64
	badRTCP       atomic.Uint64
	unmatchedRTCP atomic.Uint64
}

func (c *portCounters) badMap(into map[string]uint64) map[string]uint64 {
	for r := Reason(1); r < numReasons; r++ {
		if n := c.bad[r].Load(); n > 0 {
			if into == nil {
				into = map[string]uint64{}
			}
			into[r.String()] += n
		}
	}
	return into
}

// trackCounters are the counters of one track.
type trackCounters struct {
	packets, bytes    atomic.Uint64
	ssrc              atomic.Uint64 // 1<<32 | SSRC once known, else 0
	ssrcChanges       atomic.Uint64
	senderAddrChanges atomic.Uint64
	senderReports     atomic.Uint64
	plisSent          atomic.Uint64
	pliErrors         atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (s *Source) Stats() Stats {
	var st Stats
	for i := range s.tracks {
		t := &s.tracks[i]
		c := &t.ctr
		ssrc := c.ssrc.Load()
		st.Tracks = append(st.Tracks, TrackStats{
			Packets:            c.packets.Load(),
			Bytes:              c.bytes.Load(),
			SSRC:               uint32(ssrc),
			HaveSSRC:           ssrc != 0,
			SSRCChanges:        c.ssrcChanges.Load(),
			SenderAddrChanges:  c.senderAddrChanges.Load(),
			SenderReports:      c.senderReports.Load(),
			PLIsSent:           c.plisSent.Load(),
			PLIErrors:          c.pliErrors.Load(),
			BadPackets:         t.rtpPort.ctr.badMap(nil),
			UnknownPayloadType: t.rtpPort.ctr.unknownPT.Load(),
		})
	}
	for _, p := range s.ports {
		st.BadPackets = p.ctr.badMap(st.BadPackets)
		st.UnknownPayloadType += p.ctr.unknownPT.Load()
		st.RTCPPackets += p.ctr.rtcpPackets.Load()
		st.BadRTCP += p.ctr.badRTCP.Load()
		st.UnmatchedRTCP += p.ctr.unmatchedRTCP.Load()
	}
	if r := Reason(s.lastBad.Load()); r != Valid {
		st.LastBadReason = r.String()
	}
	return st
}
