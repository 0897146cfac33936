package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/realtime"
)

// load is the load process: packet generators, receivers, the lean
// publisher and subscribers, and (relay, idle) the embedded SFU the system
// under test publishes to. Its CPU is not the SUT's.
type load struct {
	log   *slog.Logger
	epoch time.Time
	recv  *receiver

	sfu     *embeddedSFU
	gens    []*generator
	streams []*genStream
	conns   []*net.UDPConn
	peers   []*leanPeer
	clients map[string]*realtime.Client
	mu      sync.Mutex // guards peers (subscribers are added concurrently)
	ttff    ttffLoad   // whep-ttff: the publishers and viewers
}

func newLoad(log *slog.Logger) (*load, any, error) {
	epoch := time.Now()
	return &load{log: log, epoch: epoch, recv: &receiver{epoch: epoch, hist: newHistogram()},
		clients: map[string]*realtime.Client{}, ttff: ttffLoad{log: log}}, struct{}{}, nil
}

// Arguments of the load's requests.
type (
	genArg struct {
		Targets []string `json:"targets"`
		PPS     int      `json:"pps"`
		Size    int      `json:"size"`
	}
	udprecvArg struct {
		N int `json:"n"`
	}
	publishArg struct {
		SFU  *sfuInfo `json:"sfu,omitempty"`
		URL  string   `json:"url,omitempty"` // pion baseline: POST URL+"/pub"
		PPS  int      `json:"pps"`
		Size int      `json:"size"`
	}
	pullArg struct {
		SFU    sfuInfo    `json:"sfu"`
		Tracks []trackRef `json:"tracks"`
	}
	subscribeArg struct {
		SFU      *sfuInfo `json:"sfu,omitempty"`
		URL      string   `json:"url,omitempty"` // pion baseline: POST URL+"/sub"
		Track    trackRef `json:"track"`
		Count    int      `json:"count"`
		Parallel int      `json:"parallel"`
	}
	subscribeRes struct {
		Connected  int    `json:"connected"`
		Failed     int    `json:"failed"`
		FirstError string `json:"firstError,omitempty"`
	}
	waitArg struct {
		Timeout time.Duration `json:"timeout"`
	}
	waitRes struct {
		Waiting int `json:"waiting"`
	}
	loadMark struct {
		Sent []uint64    `json:"sent"` // per generated stream
		Recv []uint64    `json:"recv"` // per sink
		Dead []bool      `json:"dead"` // per sink: never connected
		Hist [][2]uint64 `json:"hist"` // latency since the previous mark: (µs bucket, count)
	}
)

func (l *load) handle(ctx context.Context, op string, arg json.RawMessage) (any, error) {
	switch op {
	case "sfu":
		if l.sfu == nil {
			e, err := startSFU(l.log, true)
			if err != nil {
				return nil, err
			}
			l.sfu = e
		}
		return l.sfu.info, nil
	case "udprecv":
		var a udprecvArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return l.udpReceivers(a.N)
	case "gen":
		var a genArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return struct{}{}, l.udpGenerator(a)
	case "publish":
		var a publishArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return l.publish(ctx, a)
	case "pull":
		var a pullArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return struct{}{}, l.pull(ctx, a)
	case "subscribe":
		var a subscribeArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return l.subscribe(ctx, a), nil
	case "wait":
		var a waitArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return l.wait(ctx, a.Timeout), nil
	case "mark":
		return l.mark(), nil
	case "whip":
		var a whipArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return struct{}{}, l.ttff.publish(ctx, a)
	case "ttff":
		var a ttffArg
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		return l.ttff.run(ctx, a)
	case "stopgen":
		for _, g := range l.gens {
			g.halt()
		}
		return struct{}{}, nil
	}
	return nil, fmt.Errorf("load: unknown request %q", op)
}

// udpReceivers opens n UDP sockets on loopback, each counting into its own
// sink, and returns their addresses.
func (l *load) udpReceivers(n int) (any, error) {
	sinks := l.recv.addSinks(n)
	addrs := make([]string, n)
	for i := range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackIP})
		if err != nil {
			sinks[i].dead.Store(true)
			return nil, fmt.Errorf("udp receiver: %w", err)
		}
		_ = c.SetReadBuffer(4 << 20)
		l.conns = append(l.conns, c)
		addrs[i] = c.LocalAddr().String()
		go l.recv.readUDP(c, sinks[i]) // owner: l; ends when close closes c
	}
	return struct {
		Addrs []string `json:"addrs"`
	}{addrs}, nil
}

// udpGenerator starts one stream per target, sent from one socket.
func (l *load) udpGenerator(a genArg) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackIP})
	if err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	_ = c.SetWriteBuffer(4 << 20)
	l.conns = append(l.conns, c)
	outs := make([]io.Writer, len(a.Targets))
	for i, t := range a.Targets {
		ap, err := netip.ParseAddrPort(t)
		if err != nil {
			return fmt.Errorf("generator target %q: %w", t, err)
		}
		outs[i] = udpOut{conn: c, to: ap}
	}
	l.startGenerator(a.PPS, a.Size, outs)
	return nil
}

func (l *load) startGenerator(pps, size int, outs []io.Writer) {
	g := newGenerator(l.epoch, pps, size, outs, len(l.streams))
	l.gens = append(l.gens, g)
	l.streams = append(l.streams, g.streams...)
	g.start()
}

// client returns the (one, shared) Realtime client of an SFU.
func (l *load) client(s sfuInfo) (*realtime.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[s.URL]; c != nil {
		return c, nil
	}
	c, err := s.client(l.log)
	if err != nil {
		return nil, err
	}
	l.clients[s.URL] = c
	return c, nil
}

func (l *load) addPeer(p *leanPeer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.peers = append(l.peers, p)
}

// publish publishes one video track from a lean peer, to the SUT's SFU
// (Realtime API) or to the pion baseline (POST /pub), and feeds it from a
// generator.
func (l *load) publish(ctx context.Context, a publishArg) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := newLeanPeer(1<<20, l.log)
	if err != nil {
		return nil, err
	}
	l.addPeer(p)
	track, err := webrtc.NewTrackLocalStaticRTP(vp8Capability, "bench-video", "bench")
	if err != nil {
		return nil, fmt.Errorf("publisher track: %w", err)
	}
	tr, err := p.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("publisher transceiver: %w", err)
	}
	go drainRTCP(tr.Sender()) // owner: the peer; ends when it closes
	ref := trackRef{Name: "bench-video"}
	if a.SFU != nil {
		c, err := l.client(*a.SFU)
		if err != nil {
			return nil, err
		}
		if ref.Session, err = publishRealtime(ctx, c, p.pc, tr, ref.Name); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	} else {
		sdp, err := offer(ctx, p.pc)
		if err != nil {
			return nil, err
		}
		ans, err := postSDP(ctx, a.URL+"/pub", sdp)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
			return nil, fmt.Errorf("publish: apply answer: %w", err)
		}
	}
	if err := waitConnected(ctx, p.pc); err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	l.startGenerator(a.PPS, a.Size, []io.Writer{track})
	return ref, nil
}

// readTrack counts a remote track's packets into the sink pick chooses by
// the stream index in their payload, until the PeerConnection closes.
func (l *load) readTrack(tr *webrtc.TrackRemote, pick func(stream uint32) *sink) {
	buf := make([]byte, 1500)
	var h rtp.Header
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if idx, ok := l.recv.packet(buf[:n], &h); ok {
			if s := pick(idx); s != nil {
				s.recv.Add(1)
			}
		}
	}
}

// pull makes one subscriber that pulls every track (relay): sink i counts
// stream i.
func (l *load) pull(ctx context.Context, a pullArg) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sinks := l.recv.addSinks(len(a.Tracks))
	pick := func(i uint32) *sink {
		if int(i) < len(sinks) {
			return sinks[i]
		}
		return nil
	}
	p, err := newLeanPeer(4<<20, l.log)
	if err != nil {
		return err
	}
	l.addPeer(p)
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go l.readTrack(tr, pick) // owner: the peer; ends when it closes
	})
	c, err := l.client(a.SFU)
	if err != nil {
		return err
	}
	if err := pullRealtime(ctx, c, p.pc, a.Tracks); err != nil {
		return err
	}
	return waitConnected(ctx, p.pc)
}

// subscribe adds Count subscribers, Parallel at a time, each a lean peer
// with its own sink. One that does not connect within 20 s stays as a dead
// sink: it counts as all lost.
func (l *load) subscribe(ctx context.Context, a subscribeArg) subscribeRes {
	sinks := l.recv.addSinks(a.Count)
	sem := make(chan struct{}, max(a.Parallel, 1))
	var (
		mu  sync.Mutex
		res subscribeRes
		wg  sync.WaitGroup
	)
	for _, s := range sinks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := l.subscribeOne(ctx, a, s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.dead.Store(true)
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				return
			}
			res.Connected++
		})
	}
	wg.Wait()
	return res
}

func (l *load) subscribeOne(ctx context.Context, a subscribeArg, s *sink) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err := newLeanPeer(1<<20, l.log)
	if err != nil {
		return err
	}
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go l.readTrack(tr, func(uint32) *sink { return s }) // owner: the peer; ends when it closes
	})
	if err := l.signalSubscriber(ctx, a, p.pc); err != nil {
		_ = p.close()
		return err
	}
	if err := waitConnected(ctx, p.pc); err != nil {
		_ = p.close()
		return err
	}
	l.addPeer(p)
	return nil
}

func (l *load) signalSubscriber(ctx context.Context, a subscribeArg, pc *webrtc.PeerConnection) error {
	if a.SFU != nil {
		c, err := l.client(*a.SFU)
		if err != nil {
			return err
		}
		return pullRealtime(ctx, c, pc, []trackRef{a.Track})
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fmt.Errorf("subscriber transceiver: %w", err)
	}
	sdp, err := offer(ctx, pc)
	if err != nil {
		return err
	}
	ans, err := postSDP(ctx, a.URL+"/sub", sdp)
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		return fmt.Errorf("subscribe: apply answer: %w", err)
	}
	return nil
}

// wait waits until every live sink has received a packet, or the timeout;
// it returns how many are still waiting.
func (l *load) wait(ctx context.Context, timeout time.Duration) waitRes {
	deadline := time.Now().Add(timeout)
	for {
		waiting := 0
		for _, s := range l.recv.allSinks() {
			if !s.dead.Load() && s.recv.Load() == 0 {
				waiting++
			}
		}
		if waiting == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return waitRes{Waiting: waiting}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *load) mark() loadMark {
	var m loadMark
	for _, s := range l.streams {
		m.Sent = append(m.Sent, s.sent.Load())
	}
	for _, s := range l.recv.allSinks() {
		m.Recv = append(m.Recv, s.recv.Load())
		m.Dead = append(m.Dead, s.dead.Load())
	}
	m.Hist = l.recv.hist.delta()
	return m
}

func (l *load) close() error {
	for _, g := range l.gens {
		g.halt()
	}
	var errs []error
	l.mu.Lock()
	peers := l.peers
	l.peers = nil
	l.mu.Unlock()
	for _, p := range peers {
		if err := p.close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, l.ttff.close())
	for _, c := range l.conns {
		_ = c.Close()
	}
	if l.sfu != nil {
		errs = append(errs, l.sfu.close())
	}
	return errors.Join(errs...)
}
