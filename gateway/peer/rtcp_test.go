package peer

import (
	"io"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// rtcpScript is an RTCPReader that returns prepared RTCP, then io.EOF.
type rtcpScript struct {
	reads [][]byte
	attrs []interceptor.Attributes
}

func (r *rtcpScript) Read(b []byte) (int, interceptor.Attributes, error) {
	if len(r.reads) == 0 {
		return 0, nil, io.EOF
	}
	n := copy(b, r.reads[0])
	a := r.attrs[0]
	r.reads, r.attrs = r.reads[1:], r.attrs[1:]
	return n, a, nil
}

func (r *rtcpScript) add(t *testing.T, a interceptor.Attributes, pkts ...rtcp.Packet) {
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	r.reads, r.attrs = append(r.reads, b), append(r.attrs, a)
}

func TestReadFeedback(t *testing.T) {
	const ssrc, other = 1111, 2222
	lsr := ntpShort(time.Now().Add(-40 * time.Millisecond))
	var r rtcpScript
	// Two NACK messages about the stream (1 + 3 packets), one about
	// another; the responder resent 3 for the read that carried them.
	r.add(t, interceptor.Attributes{ResentAttribute: 3},
		&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: 10}}},
		&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: 20, LostPackets: 0b11}}},
		&rtcp.TransportLayerNack{MediaSSRC: other, Nacks: []rtcp.NackPair{{PacketID: 5}}})
	// A report with 7 lost and a 10 ms delay since our SR, one about
	// another stream, and a PLI.
	r.add(t, nil, &rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{
		{SSRC: other, TotalLost: 100},
		{SSRC: ssrc, TotalLost: 7, Jitter: 90, LastSenderReport: lsr, Delay: 655}}},
		&rtcp.PictureLossIndication{MediaSSRC: ssrc})
	// A new session: its count starts again at 2; the total goes on.
	r.add(t, nil, &rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: ssrc, TotalLost: 2, Jitter: 45}}})

	var fb Feedback
	keyframes := 0
	ReadFeedback(&r, ssrc, &fb, func() { keyframes++ })
	st := fb.Stats()
	if st.NACKs != 2 || st.NACKedPackets != 4 || st.Retransmitted != 3 {
		t.Errorf("NACKs %d for %d packets, %d resent; want 2, 4, 3", st.NACKs, st.NACKedPackets, st.Retransmitted)
	}
	if st.Lost != 9 || st.Jitter != 45 || st.Reports != 2 || keyframes != 1 {
		t.Errorf("lost %d jitter %d reports %d keyframes %d; want 9, 45, 2, 1", st.Lost, st.Jitter, st.Reports, keyframes)
	}
	// 40 ms since the SR minus its 10 ms hold: about 30 ms.
	if st.RTT < 25*time.Millisecond || st.RTT > 200*time.Millisecond {
		t.Errorf("rtt %v, want about 30 ms", st.RTT)
	}
}
