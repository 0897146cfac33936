package pull_test

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// A publish.Stream is what the daemon's registry hands a pull.
var _ pull.Resolver = (*publish.Stream)(nil)

// recSink is a bridge.Sink that records what it is told: the tracks added
// and removed, each track's packets (by the index rtctest sources write
// into payloads) and sender reports.
type recSink struct {
	mu      sync.Mutex
	added   []bridge.SinkTrack
	removed map[int]bool
	tracks  map[int]*recTrack
	refuse  func(bridge.SinkTrack) error
}

type recTrack struct {
	st      bridge.SinkTrack
	packets int
	srs     int
	seen    map[uint32]bool // payload indices (numbered sources)
	seqs    []uint16
	raw     [][]byte // payloads, when keepRaw
	keepRaw bool
}

func newRecSink() *recSink {
	return &recSink{removed: map[int]bool{}, tracks: map[int]*recTrack{}}
}

func (s *recSink) AddTrack(t bridge.SinkTrack) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse != nil {
		if err := s.refuse(t); err != nil {
			return -1, err
		}
	}
	i := len(s.added)
	s.added = append(s.added, t)
	s.tracks[i] = &recTrack{st: t, seen: map[uint32]bool{}}
	return i, nil
}

func (s *recSink) WriteRTP(i int, p *rtp.Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tr := s.tracks[i]
	if tr == nil || s.removed[i] {
		panic("WriteRTP for an unknown or removed track")
	}
	tr.packets++
	tr.seqs = append(tr.seqs, p.SequenceNumber)
	if len(p.Payload) >= 4 {
		tr.seen[binary.BigEndian.Uint32(p.Payload)] = true
	}
	if tr.keepRaw {
		tr.raw = append(tr.raw, append([]byte(nil), p.Payload...))
	}
	return nil
}

func (s *recSink) WriteSenderReport(i int, _ uint64, _ uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed[i] {
		panic("sender report for a removed track")
	}
	s.tracks[i].srs++
}

func (s *recSink) RemoveTrack(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed[i] {
		panic("track removed twice")
	}
	s.removed[i] = true
}

func (s *recSink) Close() error { return nil }

// index returns the sink index of the track named name (the last added).
func (s *recSink) index(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.added) - 1; i >= 0; i-- {
		if s.added[i].Name == name {
			return i
		}
	}
	return -1
}

// snapshot returns a copy of a track's record.
func (s *recSink) snapshot(i int) recTrack {
	s.mu.Lock()
	defer s.mu.Unlock()
	tr := s.tracks[i]
	if tr == nil {
		return recTrack{}
	}
	c := *tr
	c.seen = make(map[uint32]bool, len(tr.seen))
	for k := range tr.seen {
		c.seen[k] = true
	}
	c.seqs = append([]uint16(nil), tr.seqs...)
	c.raw = append([][]byte(nil), tr.raw...)
	return c
}

func (s *recSink) isRemoved(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removed[i]
}

func (s *recSink) addCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.added)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runPull runs a pull until the test ends (then expects Run to return
// nil) and returns a function that stops it early and returns Run's error.
func runPull(t *testing.T, o pull.Options) (*pull.Pull, func() error) {
	t.Helper()
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 100*time.Millisecond, 500*time.Millisecond
	}
	if o.PollInterval == 0 {
		o.PollInterval = 300 * time.Millisecond
	}
	p, err := pull.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	explicit := false // the test stopped it and checks the error itself
	finish := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(10 * time.Second):
				t.Error("pull did not stop within 10 s")
			}
		})
		return runErr
	}
	stop := func() error {
		explicit = true
		return finish()
	}
	t.Cleanup(func() {
		if err := finish(); err != nil && !explicit {
			t.Errorf("pull run: %v", err)
		}
	})
	return p, stop
}

// waitPullState polls the pull's state.
func waitPullState(t *testing.T, p *pull.Pull, want string, within time.Duration) pull.Status {
	t.Helper()
	var st pull.Status
	waitFor(t, "pull state "+want, within, func() bool {
		st = p.Status()
		return st.State == want
	})
	return st
}

// publisher is a real pion peer publishing numbered tracks on the SFU, the
// way an app does (sessions/new with an offer, then tracks/new).
type publisher struct {
	t    *testing.T
	e    *rtctest.Env
	peer *rtctest.Peer
	sid  string
	srcs map[string]*rtctest.Source
	mids map[string]string
}

type pubTrack struct {
	name string
	kind webrtc.RTPCodecType
}

// newPublisher publishes the given tracks (the echo demo's way: a session
// with a first offer, then tracks/new with a fresh one) and starts each
// sending packets every 10 ms, tagged with its name.
func newPublisher(t *testing.T, e *rtctest.Env, tracks ...pubTrack) *publisher {
	t.Helper()
	p := &publisher{t: t, e: e, peer: rtctest.NewPeer(t), srcs: map[string]*rtctest.Source{}, mids: map[string]string{}}
	var trs []*webrtc.RTPTransceiver
	for _, tr := range tracks {
		src, x := p.peer.SendTrack(tr.kind, tr.name)
		p.srcs[tr.name] = src
		trs = append(trs, x)
	}
	ns, err := e.Client.NewSession(rtctest.Ctx(t), p.peer.Offer())
	if err != nil {
		t.Fatalf("sessions/new: %v", err)
	}
	p.sid = ns.SessionID
	p.peer.Apply(ns.SessionDescription)
	p.peer.WaitConnected()
	names := make([]string, len(tracks))
	for i, tr := range tracks {
		names[i] = tr.name
	}
	p.announce(names, trs)
	for _, tr := range tracks {
		p.srcs[tr.name].Start()
		t.Cleanup(p.srcs[tr.name].Halt)
	}
	return p
}

// announce publishes transceivers under names with a fresh offer (which
// gives new transceivers their mids).
func (p *publisher) announce(names []string, trs []*webrtc.RTPTransceiver) {
	p.t.Helper()
	offer := p.peer.Offer()
	var items []rtapi.TrackObject
	for i, tr := range trs {
		p.mids[names[i]] = tr.Mid()
		items = append(items, rtapi.TrackObject{Location: rtapi.LocationLocal, Mid: tr.Mid(), TrackName: names[i]})
	}
	res, err := p.e.Client.AddTracks(rtctest.Ctx(p.t), p.sid, rtapi.TracksRequest{SessionDescription: offer, Tracks: items})
	if err != nil {
		p.t.Fatalf("tracks/new: %v", err)
	}
	if err := realtime.ItemErrors(res.Tracks); err != nil {
		p.t.Fatalf("tracks/new: %v", err)
	}
	p.peer.Apply(res.SessionDescription)
}

// publish adds a track to the session later and starts it sending.
func (p *publisher) publish(name string, kind webrtc.RTPCodecType) {
	p.t.Helper()
	src, tr := p.peer.SendTrack(kind, name)
	p.announce([]string{name}, []*webrtc.RTPTransceiver{tr})
	src.Start()
	p.t.Cleanup(src.Halt)
	p.srcs[name] = src
}

// unpublish closes a track on the SFU (forced) and stops its source.
func (p *publisher) unpublish(name string) {
	p.t.Helper()
	_, err := p.e.Client.CloseTracks(rtctest.Ctx(p.t), p.sid, rtapi.CloseTracksRequest{Force: true,
		Tracks: []rtapi.CloseTrackObject{{Mid: p.mids[name]}}})
	if err != nil {
		p.t.Fatalf("tracks/close %s: %v", name, err)
	}
	p.srcs[name].Halt()
}

// checkPayloads fails unless every payload a track got is one the source
// tagged tag wrote, byte for byte.
func checkPayloads(t *testing.T, s *recSink, idx int, tag string) {
	t.Helper()
	s.mu.Lock()
	tr := s.tracks[idx]
	tr.keepRaw = true
	s.mu.Unlock()
	waitFor(t, "payloads of "+tag, 10*time.Second, func() bool { return len(s.snapshot(idx).raw) >= 20 })
	for _, pl := range s.snapshot(idx).raw {
		i := binary.BigEndian.Uint32(pl)
		if string(pl) != string(rtctest.PayloadFor(tag, i)) {
			t.Fatalf("track %d: payload %d is not what source %q sent", idx, i, tag)
		}
	}
}
