package rtpudp

import (
	"net/netip"
	"time"

	"github.com/pion/rtcp"

	"github.com/rtgate/rtgate/bridge"
)

// handleRTCP reads one RTCP compound packet: sender reports update the
// track of their SSRC, and any report from a track's sender records the
// address its RTCP comes from. RTCP is rare (about one per second), so
// pion's allocating Unmarshal is fine here.
func (s *Source) handleRTCP(p *port, b []byte, from netip.AddrPort) {
	p.ctr.rtcpPackets.Add(1)
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		p.ctr.badRTCP.Add(1)
		return
	}
	now := time.Now()
	for _, pk := range pkts {
		switch pk := pk.(type) {
		case *rtcp.SenderReport:
			sr := srInfo{ssrc: pk.SSRC, ntp: pk.NTPTime, rtp: pk.RTPTime, at: now, from: from, ok: true}
			if t := s.rtcpTrack(p, pk.SSRC, from); t != nil {
				t.setSR(sr)
				continue
			}
			// Maybe RTP of this SSRC has not been read yet (it arrives on
			// another socket): keep it for the track that will have it,
			// then look again in case that track took the SSRC meanwhile.
			p.keepPending(sr)
			if t := s.rtcpTrack(p, pk.SSRC, from); t != nil {
				if sr, ok := p.takePending(pk.SSRC); ok {
					t.setSR(sr)
				}
				continue
			}
			p.ctr.unmatchedRTCP.Add(1)
		case *rtcp.ReceiverReport:
			// A sender that also receives sends RRs: still its address.
			s.rtcpTrack(p, pk.SSRC, from)
		}
	}
}

// rtcpTrack finds the track whose RTCP arrives on p and whose sender has
// the given SSRC, and records from as that sender's RTCP address. Before
// any sender of it is known, a port serving the RTCP of a single track
// attributes reports to that track.
func (s *Source) rtcpTrack(p *port, ssrc uint32, from netip.AddrPort) *track {
	want := 1<<32 | uint64(ssrc)
	var t *track
	for _, i := range p.rtcpTracks {
		if s.tracks[i].ctr.ssrc.Load() == want {
			t = &s.tracks[i]
			break
		}
	}
	if t == nil && len(p.rtcpTracks) == 1 {
		t = &s.tracks[p.rtcpTracks[0]]
	}
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sender.haveSSRC && t.sender.ssrc != ssrc {
		return nil // another sender's, or an old one's
	}
	t.sender.ssrc, t.sender.haveSSRC = ssrc, true
	t.sender.rtcpFrom = from
	return t
}

func (t *track) setSR(sr srInfo) {
	t.ctr.senderReports.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sender.sr = sr
}

// LastSenderReport returns the NTP time and RTP timestamp of the last RTCP
// sender report of a track's current sender, and when it arrived. ok is
// false until one arrived (and again after the sender changed).
func (s *Source) LastSenderReport(track int) (ntp uint64, rtpTS uint32, at time.Time, ok bool) {
	if track < 0 || track >= len(s.tracks) {
		return 0, 0, time.Time{}, false
	}
	t := &s.tracks[track]
	t.mu.Lock()
	defer t.mu.Unlock()
	sr := t.sender.sr
	return sr.ntp, sr.rtp, sr.at, sr.ok
}

// SenderAddrs returns where a track's sender sends RTP and RTCP from, as
// far as known (zero values otherwise).
func (s *Source) SenderAddrs(track int) (rtpFrom, rtcpFrom netip.AddrPort) {
	if track < 0 || track >= len(s.tracks) {
		return netip.AddrPort{}, netip.AddrPort{}
	}
	t := &s.tracks[track]
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sender.rtpFrom, t.sender.rtcpFrom
}

// RequestKeyframe sends the sender of a video track an RTCP compound
// packet (empty receiver report, SDES CNAME, PLI, FIR) asking for a
// keyframe: to the address its RTCP comes from if any arrived, else to its
// RTP source address with port+1 (the same port with rtcp-mux). It
// returns false for an audio track, when no sender is known yet, or when
// the write failed (counted in PLIErrors). It does not block: one UDP
// write from the track's RTCP socket. Callers rate-limit.
func (s *Source) RequestKeyframe(track int) bool {
	if track < 0 || track >= len(s.tracks) {
		return false
	}
	t := &s.tracks[track]
	if t.spec.Kind != bridge.KindVideo {
		return false
	}
	t.mu.Lock()
	sd := &t.sender
	if !sd.haveSSRC {
		t.mu.Unlock()
		return false
	}
	media, dst := sd.ssrc, sd.rtcpFrom
	if !dst.IsValid() && sd.rtpFrom.IsValid() {
		port := sd.rtpFrom.Port()
		if !t.spec.RTCPMux {
			port++ // 65535 wraps to 0, caught below
		}
		dst = netip.AddrPortFrom(sd.rtpFrom.Addr(), port)
	}
	sd.firSeq++
	seq := sd.firSeq
	t.mu.Unlock()
	if !dst.IsValid() || dst.Port() == 0 {
		return false
	}

	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: s.ssrc},
		rtcp.NewCNAMESourceDescription(s.ssrc, s.cname),
		&rtcp.PictureLossIndication{SenderSSRC: s.ssrc, MediaSSRC: media},
		&rtcp.FullIntraRequest{SenderSSRC: s.ssrc, FIR: []rtcp.FIREntry{{SSRC: media, SequenceNumber: seq}}},
	})
	if err == nil {
		_, err = t.rtcpPort.conn.WriteToUDPAddrPort(b, dst)
	}
	if err != nil {
		t.ctr.pliErrors.Add(1)
		return false
	}
	t.ctr.plisSent.Add(1)
	return true
}

// srInfo is what is kept of a sender report.
type srInfo struct {
	ssrc uint32
	ntp  uint64
	rtp  uint32
	at   time.Time
	from netip.AddrPort
	ok   bool
}

// maxPending bounds the unmatched sender reports a port remembers.
const maxPending = 4

// keepPending keeps a sender report whose SSRC no track had yet.
func (p *port) keepPending(sr srInfo) {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	for i := range p.pending {
		if !p.pending[i].ok || p.pending[i].ssrc == sr.ssrc {
			p.pending[i] = sr
			return
		}
	}
	p.pending[p.pendingNext%maxPending] = sr
	p.pendingNext++
}

func (p *port) takePending(ssrc uint32) (srInfo, bool) {
	p.pendingMu.Lock()
	defer p.pendingMu.Unlock()
	for i := range p.pending {
		if sr := p.pending[i]; sr.ok && sr.ssrc == ssrc {
			p.pending[i] = srInfo{}
			return sr, true
		}
	}
	return srInfo{}, false
}
