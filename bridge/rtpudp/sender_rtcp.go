package rtpudp

import (
	"errors"
	"net"
	"time"

	"github.com/pion/rtcp"
)

// reportLoop sends each active stream's RTCP sender report every
// SRInterval until Close.
func (s *Sender) reportLoop() {
	t := time.NewTicker(s.opts.SRInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			for _, sl := range s.slots {
				if sl.packets.Load() == 0 || time.Duration(int64(now.Sub(s.epoch))-sl.lastAt.Load()) > srIdle {
					continue // nothing sent yet, or paused
				}
				s.sendSR(sl, now)
			}
		}
	}
}

// senderReport is the slot's sender report for the wall-clock instant now:
// extrapolated from the input's last sender report when there is one for
// the current input (so both kinds of one publisher share its NTP clock),
// else from the wall clock and the newest packet's timestamp.
func (s *Sender) senderReport(sl *outSlot, now time.Time) *rtcp.SenderReport {
	mono := int64(now.Sub(s.epoch))
	clock := sl.clock.Load()
	sl.srMu.Lock()
	up := sl.upstream
	sl.srMu.Unlock()
	sr := &rtcp.SenderReport{SSRC: sl.ssrc, PacketCount: uint32(sl.packets.Load()), OctetCount: uint32(sl.octets.Load())}
	if up.ok && up.gen == sl.gen.Load() && mono >= up.at {
		d := mono - up.at
		sr.NTPTime = up.ntp + ntpDuration(d)
		sr.RTPTime = up.rtp + sl.tsOffset.Load() + ticksOrZero(d, clock)
	} else {
		sr.NTPTime = ntpTime(now)
		sr.RTPTime = sl.lastTS.Load() + ticksOrZero(mono-sl.lastAt.Load(), clock)
	}
	return sr
}

func (s *Sender) sendSR(sl *outSlot, now time.Time) {
	b, err := rtcp.Marshal([]rtcp.Packet{s.senderReport(sl, now), rtcp.NewCNAMESourceDescription(sl.ssrc, s.cname)})
	if err == nil {
		_, err = sl.rtcpC.WriteToUDPAddrPort(b, sl.rtcpDst)
	}
	if err != nil {
		sl.srErrors.Add(1)
		return
	}
	sl.srsSent.Add(1)
}

// sendBye ends a stream for its receiver (ffmpeg ends its input when every
// stream said BYE).
func (s *Sender) sendBye(sl *outSlot, now time.Time) {
	b, err := rtcp.Marshal([]rtcp.Packet{s.senderReport(sl, now), &rtcp.Goodbye{Sources: []uint32{sl.ssrc}}})
	if err == nil {
		_, _ = sl.rtcpC.WriteToUDPAddrPort(b, sl.rtcpDst)
	}
}

// listenRTCP reads what the receiver sends to a stream's RTCP socket until
// Close: PLI and FIR become a keyframe request to the current track's
// publisher (the puller rate-limits them), receiver reports become stats.
// RTCP is rare, so pion's allocating Unmarshal is fine here.
func (s *Sender) listenRTCP(sl *outSlot) {
	buf := make([]byte, 1500)
	for {
		n, _, err := sl.rtcpC.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		sl.rtcpIn.Add(1)
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			sl.badRTCP.Add(1)
			continue
		}
		wantKeyframe := false
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication:
				wantKeyframe = wantKeyframe || p.MediaSSRC == sl.ssrc || p.MediaSSRC == 0
			case *rtcp.FullIntraRequest:
				for _, e := range p.FIR {
					wantKeyframe = wantKeyframe || e.SSRC == sl.ssrc
				}
			case *rtcp.ReceiverReport:
				sl.noteReports(p.Reports)
			case *rtcp.SenderReport:
				sl.noteReports(p.Reports)
			}
		}
		if wantKeyframe {
			sl.kfRequests.Add(1)
			if f := sl.keyframe.Load(); f != nil {
				(*f)()
			} else {
				sl.kfUnserved.Add(1)
			}
		}
	}
}

func (sl *outSlot) noteReports(reports []rtcp.ReceptionReport) {
	for _, r := range reports {
		if r.SSRC == sl.ssrc {
			sl.recvStats.Store(&ReceiverStats{FractionLost: float64(r.FractionLost) / 256,
				TotalLost: r.TotalLost, Jitter: r.Jitter, At: time.Now()})
		}
	}
}

// ntpEpochOffset is the seconds from 1900 (NTP) to 1970 (Unix).
const ntpEpochOffset = 2208988800

// ntpTime is t in RFC 3550's 64-bit NTP format.
func ntpTime(t time.Time) uint64 {
	return uint64(t.Unix()+ntpEpochOffset)<<32 | uint64(t.Nanosecond())<<32/1_000_000_000
}

// ntpDuration is d (ns) in NTP units (2^-32 s).
func ntpDuration(d int64) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(d/1_000_000_000)<<32 | uint64(d%1_000_000_000)<<32/1_000_000_000
}

// ticksOrZero is ticks without the minimum of one.
func ticksOrZero(d int64, clock uint32) uint32 {
	if d <= 0 {
		return 0
	}
	return ticks(d, clock)
}
