// Package publish turns bridge sources into published tracks on a Realtime
// SFU. A Stream is the long-lived object: its name, its track names, its
// sequence and timestamp continuity, its counters. Realtime sessions are
// replaceable attempts under it: on ICE failure, session expiry or an SFU
// that went away, the stream publishes again under the same track names,
// with backoff, while its sources keep running.
//
// The media path never waits on signalling: each source's goroutine writes
// to a TrackLocal (sendTrack) that lives as long as the stream and is bound
// to whichever PeerConnection is current (to none while retrying).
package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// States of a stream.
const (
	StateStarting = "starting" // first publish attempt under way
	StateLive     = "live"     // published, the PeerConnection is connected
	StateRetrying = "retrying" // an attempt failed; waiting to publish again
	StateFailed   = "failed"   // a source failed for good; not retried
	StateEnded    = "ended"    // every source ended (a file without loop)
	StateStopped  = "stopped"  // Run returned after its context ended
)

// Options configure a Stream.
type Options struct {
	// Name is the stream's name; track names default to <Name>-video and
	// <Name>-audio.
	Name string
	// Sources produce the stream's tracks; at most one video and one audio
	// track in all.
	Sources []bridge.Source
	// VideoTrack and AudioTrack override the track names.
	VideoTrack, AudioTrack string
	// Client talks to the SFU; API builds the PeerConnections.
	Client *realtime.Client
	API    *peer.API
	// MinBackoff and MaxBackoff bound the wait between publish attempts
	// (500 ms and 10 s): the first retry comes within 1 s.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout bounds an attempt's wait for connected (10 s).
	ConnectTimeout time.Duration
	// DisconnectGrace is how long a disconnected PeerConnection may take to
	// recover before the attempt is abandoned (3 s).
	DisconnectGrace time.Duration
	// KeyframeInterval coalesces keyframe requests to a source (500 ms).
	KeyframeInterval time.Duration
	// Linger is how long a source that reads a socket may wait to gather
	// more packets into one batch when they arrive fast (bridge.Batch;
	// rtpudp waits only at rates that bring two packets or more in that
	// time): 0 means DefaultLinger, negative never.
	Linger time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultLinger is Options.Linger's default: at 20,000 packets/s a batch
// of about 5 packets for at most 0.25 ms more latency, within the target
// of 1 ms per hop. rtpudp makes its reads about that far apart (plus the
// sleep's slack) while the rate lasts.
const DefaultLinger = 250 * time.Microsecond

// Stream publishes its sources' tracks and keeps them published.
type Stream struct {
	opts   Options
	log    *slog.Logger
	tracks []*track

	mu        sync.Mutex
	state     string
	lastErr   string
	sessionID string
	retries   int
	since     time.Time
}

// track is one published track: a source track, its name on the SFU, the
// TrackLocal it is written to and its continuity.
type track struct {
	name     string
	kind     string
	codec    bridge.Codec
	src      bridge.Source
	srcTrack int
	local    *sendTrack
	cont     continuity

	packets, bytes atomic.Uint64
	writeErrors    atomic.Uint64
	kfRequested    atomic.Uint64 // keyframe requests from the SFU
	kfRefused      atomic.Uint64 // ... the source could not honour (files)
	kfCoalesced    atomic.Uint64 // ... folded into one already sent or pending
	kf             peer.KeyframeLimiter
	bitrate        atomic.Uint64 // bits/s over the last second
	rate           rateMeter
	feedback       peer.Feedback // what the SFU reports about the track (NACKs, RRs)
}

// New checks the sources' tracks and makes the stream's tracks.
func New(o Options) (*Stream, error) {
	if o.Name == "" {
		return nil, errors.New("publish: a stream needs a name")
	}
	if o.Client == nil || o.API == nil {
		return nil, fmt.Errorf("publish %s: a Realtime client and a peer API are required", o.Name)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinBackoff, 500*time.Millisecond)
	def(&o.MaxBackoff, 10*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.DisconnectGrace, 3*time.Second)
	def(&o.KeyframeInterval, 500*time.Millisecond)
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Stream{opts: o, log: o.Logger.With("stream", o.Name), state: StateStarting, since: time.Now()}
	names := map[string]string{bridge.KindVideo: o.VideoTrack, bridge.KindAudio: o.AudioTrack}
	seen := map[string]bool{}
	for _, src := range o.Sources {
		for i, t := range src.Tracks() {
			if seen[t.Kind] {
				return nil, fmt.Errorf("publish %s: more than one %s track; a stream has at most one of each", o.Name, t.Kind)
			}
			seen[t.Kind] = true
			name := names[t.Kind]
			if name == "" {
				name = o.Name + "-" + t.Kind
			}
			local, err := newSendTrack(capability(t.Codec), name, o.Name)
			if err != nil {
				return nil, fmt.Errorf("publish %s: track %s: %w", o.Name, name, err)
			}
			s.tracks = append(s.tracks, &track{name: name, kind: t.Kind, codec: t.Codec, src: src, srcTrack: i,
				local: local, cont: continuity{clock: t.Codec.ClockRate}, kf: peer.KeyframeLimiter{Interval: o.KeyframeInterval}})
		}
	}
	if len(s.tracks) == 0 {
		return nil, fmt.Errorf("publish %s: the sources have no tracks", o.Name)
	}
	return s, nil
}

// capability is the pion codec of a source track; H.264 without fmtp gets
// packetization mode 1, constrained baseline (what encoders send by default
// and every browser decodes).
func capability(c bridge.Codec) webrtc.RTPCodecCapability {
	fmtp := c.Fmtp
	if strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) && !strings.Contains(fmtp, "packetization-mode") {
		fmtp = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
	}
	ch := c.Channels
	if strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
		ch = 2 // WebRTC's Opus is always signalled as 2 channels
	}
	return webrtc.RTPCodecCapability{MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: ch, SDPFmtpLine: fmtp}
}

// Run publishes until ctx is done; it returns nil then, after closing the
// tracks on the SFU. It returns an error when every source ended or one
// failed for good.
func (s *Stream) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srcDone := make(chan error, 1)
	var wg sync.WaitGroup
	srcs := s.sources()
	remaining := atomic.Int32{}
	remaining.Store(int32(len(srcs)))
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.runSource(ctx, src)
			if remaining.Add(-1) == 0 || (err != nil && !errors.Is(err, errEnded)) {
				select {
				case srcDone <- err:
				default:
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.meter(ctx)
	}()
	err := s.publishLoop(ctx, srcDone)
	cancel()
	wg.Wait()
	return err
}

var errEnded = errors.New("source ended")

// endLinger is how long a stream whose sources ended keeps its tracks
// before closing them.
const endLinger = 300 * time.Millisecond

func (s *Stream) sources() []bridge.Source {
	var out []bridge.Source
	seen := map[bridge.Source]bool{}
	for _, t := range s.tracks {
		if !seen[t.src] {
			seen[t.src] = true
			out = append(out, t.src)
		}
	}
	return out
}

// runSource runs one source, writing its packets to the stream's tracks,
// and restarts it with backoff when it fails. A source that ends (a file
// without loop) ends here.
func (s *Stream) runSource(ctx context.Context, src bridge.Source) error {
	byIndex := map[int]*track{}
	for _, t := range s.tracks {
		if t.src == src {
			byIndex[t.srcTrack] = t
		}
	}
	// One slice lookup per packet, no map on the hot path.
	n := 0
	for i := range byIndex {
		n = max(n, i+1)
	}
	idx := make([]*track, n)
	for i, t := range byIndex {
		idx[i] = t
	}
	write := func(i int, pkt *rtp.Packet) {
		if i < 0 || i >= len(idx) || idx[i] == nil {
			return
		}
		t := idx[i]
		t.cont.apply(pkt, time.Now().UnixNano())
		t.packets.Add(1)
		t.bytes.Add(uint64(pkt.MarshalSize()))
		if err := t.local.WriteRTP(pkt); err != nil {
			t.writeErrors.Add(1)
		}
	}
	// A source that reads in batches (rtpudp: one recvmmsg) announces
	// them: the packets of one batch leave the API's port with one
	// sendmmsg instead of one sendto each.
	runCtx := bridge.WithBatch(ctx, bridge.Batch{Begin: s.opts.API.Cork, End: s.opts.API.Flush,
		Linger: max(s.opts.Linger, 0)})
	backoff := s.opts.MinBackoff
	for {
		start := time.Now()
		err := src.Run(runCtx, write)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, io.EOF) {
			s.log.Info("source ended")
			return errEnded
		}
		if err == nil {
			err = errors.New("source stopped")
		}
		s.log.Warn("source failed; restarting", "err", err, "in", backoff)
		s.setError(err)
		for _, t := range idx {
			if t != nil {
				// Safe: Run has returned, so no packet is being written.
				t.cont.restart()
			}
		}
		if time.Since(start) > 30*time.Second {
			backoff = s.opts.MinBackoff
		}
		if !sleep(ctx, jitter(backoff)) {
			return nil
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}

// publishLoop makes publish attempts until ctx is done or the sources end.
func (s *Stream) publishLoop(ctx context.Context, srcDone <-chan error) error {
	backoff := s.opts.MinBackoff
	for {
		wasLive, err := s.attempt(ctx, srcDone)
		if ctx.Err() != nil {
			s.setState(StateStopped, "")
			return nil
		}
		var se *sourceEnd
		if errors.As(err, &se) {
			if se.err == nil || errors.Is(se.err, errEnded) {
				s.setState(StateEnded, "")
				return nil
			}
			s.setState(StateFailed, se.err.Error())
			return se.err
		}
		if wasLive {
			backoff = s.opts.MinBackoff
		}
		wait := jitter(backoff)
		s.mu.Lock()
		s.retries++
		s.mu.Unlock()
		s.setState(StateRetrying, err.Error())
		s.log.Warn("publish attempt failed; retrying", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			s.setState(StateStopped, "")
			return nil
		case e := <-srcDone:
			if e == nil || errors.Is(e, errEnded) {
				s.setState(StateEnded, "")
				return nil
			}
			s.setState(StateFailed, e.Error())
			return e
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
	}
}

type sourceEnd struct{ err error }

func (e *sourceEnd) Error() string { return fmt.Sprintf("sources ended: %v", e.err) }

// attempt is one Realtime session: publish, stay live until the
// PeerConnection fails or ctx ends, then clean up.
func (s *Stream) attempt(ctx context.Context, srcDone <-chan error) (wasLive bool, err error) {
	pc, err := s.opts.API.NewPeerConnection()
	if err != nil {
		return false, fmt.Errorf("new peer connection: %w", err)
	}
	state := make(chan webrtc.PeerConnectionState, 16)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		select {
		case state <- st:
		default:
		}
	})
	var sessionID string
	var mids []string
	defer func() {
		s.closeOnSFU(sessionID, mids)
		_ = pc.Close()
	}()

	tracks := make([]rtapi.TrackObject, 0, len(s.tracks))
	var senders []*webrtc.RTPSender
	for _, t := range s.tracks {
		tr, err := pc.AddTransceiverFromTrack(t.local, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return false, fmt.Errorf("add track %s: %w", t.name, err)
		}
		senders = append(senders, tr.Sender())
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return false, fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return false, fmt.Errorf("set local offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	for i, t := range s.tracks {
		mid := pc.GetTransceivers()[i].Mid()
		mids = append(mids, mid)
		tracks = append(tracks, rtapi.TrackObject{Location: rtapi.LocationLocal, Mid: mid, TrackName: t.name})
	}

	ns, err := s.opts.Client.NewSession(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sessions/new: %w", err)
	}
	sessionID = ns.SessionID
	ld := pc.LocalDescription()
	res, err := s.opts.Client.AddTracks(ctx, sessionID, rtapi.TracksRequest{
		SessionDescription: &rtapi.SessionDescription{Type: "offer", SDP: ld.SDP}, Tracks: tracks})
	if err != nil {
		return false, fmt.Errorf("tracks/new: %w", err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		return false, fmt.Errorf("tracks/new: %w", err)
	}
	if res.SessionDescription == nil {
		return false, errors.New("tracks/new: the SFU sent no answer")
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SessionDescription.SDP}); err != nil {
		return false, fmt.Errorf("apply the SFU's answer: %w", err)
	}
	for i, snd := range senders {
		t := s.tracks[i]
		var ssrc uint32
		if enc := snd.GetParameters().Encodings; len(enc) > 0 {
			ssrc = uint32(enc[0].SSRC)
		}
		go peer.ReadFeedback(snd, ssrc, &t.feedback, func() { s.requestKeyframe(t) }) // ends with the PeerConnection
	}

	connectBy := time.NewTimer(s.opts.ConnectTimeout)
	defer connectBy.Stop()
	var grace <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return wasLive, ctx.Err()
		case e := <-srcDone:
			if e == nil || errors.Is(e, errEnded) {
				// The last packets are still on their way through the SFU
				// (and may need a retransmission): let them land before
				// the tracks close, or subscribers lose the file's end.
				select {
				case <-time.After(endLinger):
				case <-ctx.Done():
				}
			}
			return wasLive, &sourceEnd{e}
		case <-connectBy.C:
			if !wasLive {
				return false, fmt.Errorf("not connected to the SFU within %s", s.opts.ConnectTimeout)
			}
		case <-grace:
			return wasLive, fmt.Errorf("connection to the SFU lost for %s", s.opts.DisconnectGrace)
		case st := <-state:
			switch st {
			case webrtc.PeerConnectionStateConnected:
				grace = nil
				if !wasLive {
					wasLive = true
					s.mu.Lock()
					s.sessionID = sessionID
					s.mu.Unlock()
					s.setState(StateLive, "")
					s.log.Info("live", "session", sessionID, "tracks", s.trackNames())
					for _, t := range s.tracks {
						s.requestKeyframe(t) // subscribers start on a keyframe
					}
				}
			case webrtc.PeerConnectionStateDisconnected:
				grace = time.After(s.opts.DisconnectGrace)
			case webrtc.PeerConnectionStateFailed:
				return wasLive, errors.New("ICE/DTLS failed")
			case webrtc.PeerConnectionStateClosed:
				return wasLive, errors.New("the SFU closed the connection")
			}
		}
	}
}

// closeOnSFU closes the attempt's tracks on the SFU (forced: no SDP), so
// the names are free for the next session. Best effort: the SFU may be gone.
func (s *Stream) closeOnSFU(sessionID string, mids []string) {
	if sessionID == "" || len(mids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req := rtapi.CloseTracksRequest{Force: true}
	for _, m := range mids {
		req.Tracks = append(req.Tracks, rtapi.CloseTrackObject{Mid: m})
	}
	if _, err := s.opts.Client.CloseTracks(ctx, sessionID, req); err != nil {
		s.log.Debug("tracks/close after the attempt", "session", sessionID, "err", err)
	}
}

// requestKeyframe asks the source for a keyframe, at most once per
// KeyframeInterval per track: keyframes are scarce. A request inside the
// window is deferred to its end, not dropped (peer.KeyframeLimiter).
func (s *Stream) requestKeyframe(t *track) {
	if t.kind != bridge.KindVideo {
		return
	}
	t.kfRequested.Add(1)
	if !t.kf.Request(func() {
		if !t.src.RequestKeyframe(t.srcTrack) {
			t.kfRefused.Add(1)
		}
	}) {
		t.kfCoalesced.Add(1)
	}
}

func (s *Stream) setState(state, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != state {
		s.since = time.Now()
	}
	s.state = state
	if errText != "" {
		s.lastErr = errText
	}
	if state != StateLive {
		s.sessionID = ""
	}
}

func (s *Stream) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err.Error()
}

func (s *Stream) trackNames() []string {
	out := make([]string, len(s.tracks))
	for i, t := range s.tracks {
		out[i] = t.name
	}
	return out
}

// Name returns the stream's name.
func (s *Stream) Name() string { return s.opts.Name }

// Published returns the session the stream is live on and its track names;
// ok is false while it is not live (starting, retrying, ended). Pulls that
// follow the stream (pull.Resolver) re-pull when the session changes.
func (s *Stream) Published() (session string, tracks []string, ok bool) {
	s.mu.Lock()
	session, live := s.sessionID, s.state == StateLive
	s.mu.Unlock()
	if !live || session == "" {
		return "", nil, false
	}
	return session, s.trackNames(), true
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
