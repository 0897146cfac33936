package peer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// RTCPReader is what an RTPSender (or RTPReceiver) reads RTCP with.
type RTCPReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// DrainKeyframeRequests reads r's RTCP until it fails (its PeerConnection
// closed) and calls onRequest for each PLI or FIR in it. Every sender must
// be drained this way: pion's interceptors (NACK responder, reports) only
// see RTCP that is read.
func DrainKeyframeRequests(r RTCPReader, onRequest func()) {
	ReadFeedback(r, 0, nil, onRequest)
}

// Feedback is what the receiver of one sent stream reported about it in
// RTCP: NACKs, the packets rtgate's NACK responder resent for them, and the
// latest reception report (loss, jitter, round trip time). ReadFeedback
// fills it; anyone reads it. One Feedback may outlive PeerConnections (a
// published track that reconnects): the counters add up and Lost carries
// over a new session's restart of the cumulative count.
type Feedback struct {
	nacks, nacked, resent atomic.Uint64
	lost                  atomic.Uint64 // sessions before the current one, plus its latest report
	mu                    sync.Mutex    // lostBase, lostLast: the readers of two PeerConnections may overlap
	lostBase, lostLast    int64
	jitter                atomic.Uint32 // RTP timestamp units
	rtt                   atomic.Int64  // ns; 0: none measured yet
	reports               atomic.Uint64
}

// FeedbackStats is a snapshot of a Feedback.
type FeedbackStats struct {
	NACKs         uint64        // NACK messages received
	NACKedPackets uint64        // packets they asked for
	Retransmitted uint64        // packets resent for them
	Lost          uint64        // packets the receiver reported lost
	Jitter        uint32        // interarrival jitter, RTP timestamp units
	RTT           time.Duration // from the latest report with LSR; 0: none
	Reports       uint64        // reception reports about the stream
}

// Stats returns the counters now.
func (f *Feedback) Stats() FeedbackStats {
	return FeedbackStats{
		NACKs: f.nacks.Load(), NACKedPackets: f.nacked.Load(), Retransmitted: f.resent.Load(),
		Lost: f.lost.Load(), Jitter: f.jitter.Load(), RTT: time.Duration(f.rtt.Load()),
		Reports: f.reports.Load(),
	}
}

// report takes one reception report about the stream.
func (f *Feedback) report(rr rtcp.ReceptionReport, now time.Time) {
	f.reports.Add(1)
	// TotalLost is a 24-bit signed count since the receiver's session
	// began; a smaller count means a new session (a reconnect).
	cum := int64(rr.TotalLost)
	if cum&(1<<23) != 0 {
		cum -= 1 << 24
	}
	cum = max(cum, 0)
	f.mu.Lock()
	if cum < f.lostLast {
		f.lostBase += f.lostLast
	}
	f.lostLast = cum
	f.lost.Store(uint64(f.lostBase + cum))
	f.mu.Unlock()
	f.jitter.Store(rr.Jitter)
	// RFC 3550 6.4.1: RTT = now - LSR - DLSR, in 1/65536 s.
	if rr.LastSenderReport != 0 {
		if d := ntpShort(now) - rr.LastSenderReport - rr.Delay; d < 1<<31 {
			f.rtt.Store(int64(time.Duration(d) * time.Second / (1 << 16)))
		}
	}
}

// ReadFeedback reads r's RTCP until it fails (its PeerConnection closed):
// it calls onKeyframe (when not nil) for each PLI or FIR, and counts into
// fb (when not nil) the NACKs and reception reports about ssrc and the
// packets the NACK responder resent. Every sender must be drained this way:
// pion's interceptors (NACK responder, reports) only see RTCP that is read.
func ReadFeedback(r RTCPReader, ssrc uint32, fb *Feedback, onKeyframe func()) {
	buf := make([]byte, 1500)
	for {
		n, attr, err := r.Read(buf)
		if err != nil {
			return
		}
		if fb != nil {
			if resent, ok := attr[ResentAttribute].(int); ok {
				fb.resent.Add(uint64(resent))
			}
		}
		pkts, err := attr.GetRTCPPackets(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if onKeyframe != nil {
					onKeyframe()
				}
			case *rtcp.TransportLayerNack:
				if fb != nil && p.MediaSSRC == ssrc {
					fb.nacks.Add(1)
					for _, pair := range p.Nacks {
						fb.nacked.Add(uint64(len(pair.PacketList())))
					}
				}
			case *rtcp.ReceiverReport:
				fb.reports1(p.Reports, ssrc)
			case *rtcp.SenderReport:
				fb.reports1(p.Reports, ssrc)
			}
		}
	}
}

// reports1 takes the report about ssrc among reports, if any.
func (f *Feedback) reports1(reports []rtcp.ReceptionReport, ssrc uint32) {
	if f == nil {
		return
	}
	for _, rr := range reports {
		if rr.SSRC == ssrc {
			f.report(rr, time.Now())
		}
	}
}
