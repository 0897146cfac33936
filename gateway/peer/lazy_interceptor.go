package peer

import (
	"sync"

	"github.com/pion/interceptor"
)

// recvOnly wraps the factory of an interceptor that works only for
// streams the PeerConnection receives (pion's NACK generator, receiver
// reports, TWCC feedback): the interceptor's RTCP writer, which starts
// its goroutine and ticker, is bound at the first received stream instead
// of when the PeerConnection is made. Most of rtgate's PeerConnections
// only send (a publish stream toward the SFU, each SFU subscriber): there
// those goroutines never did anything but tick. This relies on what the
// three do with BindRTCPWriter: start their loop and return the writer
// unchanged (pion/interceptor v0.1: nack.GeneratorInterceptor,
// report.ReceiverInterceptor, twcc.SenderInterceptor), so that the chain
// sees the same writer either way; TestRecvOnlyInterceptors checks it.
type recvOnly struct{ interceptor.Factory }

func (f recvOnly) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := f.Factory.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &lazyRecv{Interceptor: i}, nil
}

// lazyRecv is one PeerConnection's recvOnly interceptor.
type lazyRecv struct {
	interceptor.Interceptor

	mu     sync.Mutex
	writer interceptor.RTCPWriter // bound to the inner interceptor at the first remote stream
	bound  bool
}

// BindRTCPWriter keeps the writer for the first remote stream.
func (l *lazyRecv) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	l.writer = w
	l.mu.Unlock()
	return w
}

// BindRemoteStream starts the inner interceptor (its RTCP writer) at the
// first received stream, then binds the stream.
func (l *lazyRecv) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	l.mu.Lock()
	if !l.bound && l.writer != nil {
		l.bound = true
		_ = l.Interceptor.BindRTCPWriter(l.writer)
	}
	l.mu.Unlock()
	return l.Interceptor.BindRemoteStream(info, r)
}
