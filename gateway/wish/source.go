package wish

import (
	"context"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
)

// Source is the media of a relay WHIP stream's publishers as a
// bridge.Source: its tracks are the codecs negotiated with the first
// publisher, and every later publisher is held to them, so one
// publish.Stream (and its continuity) outlives publishers that reconnect
// or replace each other.
//
// The publisher's PeerConnection belongs to its WHIP resource; the Source
// only reads the remote tracks of the one attached now.
type Source struct {
	tracks []bridge.Track
	kf     []peer.KeyframeLimiter // by track: the keyframe requests to the publisher

	mu   sync.Mutex
	cur  *feed
	wake chan struct{} // closed and replaced on every change of cur or its tracks
}

// feed is one publisher's PeerConnection as the Source sees it: the remote
// track of each of the Source's tracks, once its first packet arrived.
type feed struct {
	pc      *webrtc.PeerConnection
	remotes []*webrtc.TrackRemote // by track index; guarded by Source.mu
}

// NewSource makes a Source with the given tracks (at most one audio and one
// video).
func NewSource(tracks []bridge.Track) *Source {
	s := &Source{tracks: tracks, kf: make([]peer.KeyframeLimiter, len(tracks)), wake: make(chan struct{})}
	for i := range s.kf {
		s.kf[i].Interval, s.kf[i].Burst = keyframeInterval, 2
	}
	return s
}

// Tracks returns the tracks negotiated with the first publisher.
func (s *Source) Tracks() []bridge.Track { return s.tracks }

// newFeed makes the feed of a publisher's PeerConnection.
func (s *Source) newFeed(pc *webrtc.PeerConnection) *feed {
	return &feed{pc: pc, remotes: make([]*webrtc.TrackRemote, len(s.tracks))}
}

// attach makes f the publisher whose packets Run forwards; the previous
// one's tracks are no longer read.
func (s *Source) attach(f *feed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = f
	s.notify()
}

// detach stops forwarding f, if it is attached.
func (s *Source) detach(f *feed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == f {
		s.cur = nil
		s.notify()
	}
}

// setRemote records the remote track of track i of f (pion's OnTrack).
func (s *Source) setRemote(f *feed, i int, remote *webrtc.TrackRemote) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.remotes[i] = remote
	if s.cur == f {
		s.notify()
	}
}

// notify wakes every waiter; s.mu is held.
func (s *Source) notify() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// remote returns the current remote track of track i other than prev, or
// nil and a channel closed when that may have changed.
func (s *Source) remote(i int, prev *webrtc.TrackRemote) (*webrtc.TrackRemote, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.remotes[i] != nil && s.cur.remotes[i] != prev {
		return s.cur.remotes[i], nil
	}
	return nil, s.wake
}

// Run forwards the packets of the attached publisher's tracks until ctx is
// done, following publishers as they are attached and detached. It
// returns nil, after its last call of fn.
func (s *Source) Run(ctx context.Context, fn bridge.PacketFunc) error {
	var wg sync.WaitGroup
	for i := range s.tracks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runTrack(ctx, i, fn)
		}()
	}
	// A blocked Read ends through a deadline in the past: the remote
	// tracks belong to the publisher's PeerConnection, not to Run.
	stop := context.AfterFunc(ctx, s.interrupt)
	wg.Wait()
	stop()
	return nil
}

// interrupt unblocks the reads of Run when its context ends.
func (s *Source) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		for _, r := range s.cur.remotes {
			if r != nil {
				_ = r.SetReadDeadline(time.Now())
			}
		}
	}
	s.notify()
}

// runTrack forwards one track: it reads into a reused buffer and unmarshals
// into a reused packet, so the hot path does not allocate.
func (s *Source) runTrack(ctx context.Context, i int, fn bridge.PacketFunc) {
	r := trackReader{buf: make([]byte, 1500), fn: fn, track: i}
	var prev *webrtc.TrackRemote
	for ctx.Err() == nil {
		remote, wait := s.remote(i, prev)
		if remote == nil {
			select {
			case <-ctx.Done():
				return
			case <-wait:
			}
			continue
		}
		prev = remote
		if ctx.Err() != nil {
			return
		}
		for {
			n, _, err := remote.Read(r.buf)
			if err != nil {
				break // the publisher went away, or ctx ended (deadline)
			}
			r.handle(n)
		}
	}
}

// trackReader turns the bytes of one read into a call of fn.
type trackReader struct {
	buf   []byte
	pkt   rtp.Packet
	fn    bridge.PacketFunc
	track int
}

func (r *trackReader) handle(n int) {
	if err := r.pkt.Unmarshal(r.buf[:n]); err != nil {
		return
	}
	r.fn(r.track, &r.pkt)
}

// RequestKeyframe sends a PLI to the attached publisher for a video track,
// within the track's budget (peer.KeyframeLimiter, two in a row): at once, or once when a token is
// due. It returns false when there is no publisher yet (or the track is
// audio). The publish.Stream of the source leaves the coalescing to it
// (newRelayIngest).
func (s *Source) RequestKeyframe(track int) bool {
	if track < 0 || track >= len(s.tracks) || s.tracks[track].Kind != bridge.KindVideo {
		return false
	}
	if s.remoteOf(track) == nil {
		return false
	}
	s.kf[track].Request(func() {
		// The publisher attached when the request goes (it may have
		// changed while a deferred one waited).
		s.mu.Lock()
		f := s.cur
		s.mu.Unlock()
		if f == nil {
			return
		}
		if remote := s.remoteOf(track); remote != nil {
			_ = f.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(remote.SSRC())}})
		}
	})
	return true
}

// remoteOf returns the attached publisher's remote track of track i.
func (s *Source) remoteOf(i int) *webrtc.TrackRemote {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil
	}
	return s.cur.remotes[i]
}

// Close does nothing: the publishers' PeerConnections belong to their
// resources.
func (s *Source) Close() error { return nil }

// sameTracks reports whether a new publisher's tracks can continue a
// Source's: the same kinds with interchangeable codecs, in the same order.
func sameTracks(a []bridge.Track, b []bridge.Track) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || !sameCodecs(a[i].Codec, b[i].Codec) {
			return false
		}
	}
	return true
}

func sameCodecs(a, b bridge.Codec) bool {
	kind, name, _ := cutMime(a.MimeType)
	return sameCodec(kind, codecDesc{name: name, clock: a.ClockRate, fmtp: a.Fmtp}, b)
}

func cutMime(m string) (kind, name string, ok bool) {
	for i := 0; i < len(m); i++ {
		if m[i] == '/' {
			return m[:i], m[i+1:], true
		}
	}
	return "", m, false
}
