package peer

import (
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
	buf := make([]byte, 1500)
	for {
		n, _, err := r.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				onRequest()
			}
		}
	}
}
