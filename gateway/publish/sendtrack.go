package publish

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sendTrack is the TrackLocal a published track is written to, for the
// life of the stream.
//
// Why not pion's TrackLocalStaticRTP as it is: its WriteRTP copies every
// packet into one from a sync.Pool and takes a read lock for the walk over
// its bindings, on the media path of every packet. The bindings change only
// when a PeerConnection is made or closed (Bind, Unbind), so here they are
// a copy-on-write slice behind an atomic pointer, and a write neither locks
// nor copies. Bind is TrackLocalStaticRTP's, embedded: pion does not
// export its codec matching, and the rest (ID, StreamID, Kind, Codec) is
// the same.
type sendTrack struct {
	*webrtc.TrackLocalStaticRTP

	bindMu sync.Mutex // serializes Bind and Unbind
	binds  atomic.Pointer[[]sendBinding]
}

// sendBinding is one PeerConnection's sender of the track.
type sendBinding struct {
	id   string
	ssrc uint32
	pt   uint8
	w    webrtc.TrackLocalWriter
}

func newSendTrack(c webrtc.RTPCodecCapability, id, streamID string) (*sendTrack, error) {
	inner, err := webrtc.NewTrackLocalStaticRTP(c, id, streamID)
	if err != nil {
		return nil, err
	}
	t := &sendTrack{TrackLocalStaticRTP: inner}
	t.binds.Store(&[]sendBinding{})
	return t, nil
}

// Bind picks the codec as TrackLocalStaticRTP does and starts writing to
// the sender.
func (t *sendTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	codec, err := t.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return codec, err
	}
	b := sendBinding{id: ctx.ID(), ssrc: uint32(ctx.SSRC()), pt: uint8(codec.PayloadType), w: ctx.WriteStream()}
	t.bindMu.Lock()
	old := *t.binds.Load()
	next := append(append(make([]sendBinding, 0, len(old)+1), old...), b)
	t.binds.Store(&next)
	t.bindMu.Unlock()
	return codec, nil
}

// Unbind stops writing to the sender.
func (t *sendTrack) Unbind(ctx webrtc.TrackLocalContext) error {
	t.bindMu.Lock()
	old := *t.binds.Load()
	next := make([]sendBinding, 0, len(old))
	for _, b := range old {
		if b.id != ctx.ID() {
			next = append(next, b)
		}
	}
	t.binds.Store(&next)
	t.bindMu.Unlock()
	return t.TrackLocalStaticRTP.Unbind(ctx)
}

// WriteRTP writes pkt to every bound sender, with that sender's SSRC and
// payload type set in pkt's header (pkt is the caller's and is changed,
// as the stream's continuity already changes it). It is safe for
// concurrent use on distinct packets and allocates nothing. An error is
// the first sender's that failed; the others are still written.
func (t *sendTrack) WriteRTP(pkt *rtp.Packet) error {
	// As pion does: a source may have set the deprecated Packet field.
	if pkt.PaddingSize != 0 && pkt.Header.PaddingSize == 0 {
		pkt.Header.PaddingSize = pkt.PaddingSize
	}
	var err error
	for _, b := range *t.binds.Load() {
		pkt.SSRC, pkt.PayloadType = b.ssrc, b.pt
		if _, werr := b.w.WriteRTP(&pkt.Header, pkt.Payload); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}
