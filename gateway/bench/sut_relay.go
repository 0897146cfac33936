package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
)

// sutReady is what a system under test reports once set up.
type sutReady struct {
	Sources []string   `json:"sources,omitempty"` // where to send stream i (relay, record)
	Tracks  []trackRef `json:"tracks,omitempty"`  // the published tracks (relay, idle)
	SFU     *sfuInfo   `json:"sfu,omitempty"`     // fan-out rtgate: the SUT's SFU
	URL     string     `json:"url,omitempty"`     // fan-out pion: its signalling base URL
	Addr    string     `json:"addr,omitempty"`    // fan-out floor: where the publisher sends
	TTFF    *ttffInfo  `json:"ttff,omitempty"`    // whep-ttff: the daemon and its streams
	// RSSBefore is the settled RSS before the first track, RSSIdle after
	// every track is set up (published and connected), before any media.
	RSSBefore int64 `json:"rssBefore"`
	RSSIdle   int64 `json:"rssIdle"`
}

// sutBase is what every system under test shares: its goroutines, the
// count of packets it handled and what to release.
type sutBase struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	// pipelines end when ctx is cancelled (and close their own
	// PeerConnections); wg's goroutines end when closers close their
	// sockets.
	pipelines sync.WaitGroup
	wg        sync.WaitGroup
	packets   atomic.Uint64
	count     func() uint64 // overrides packets when set
	closers   []func() error
}

func newSUTBase(ctx context.Context, log *slog.Logger) *sutBase {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &sutBase{log: log, ctx: ctx, cancel: cancel}
}

func (b *sutBase) mark() sutMark {
	m := sutMark{procStats: readProcStats()}
	if b.count != nil {
		m.Packets = b.count()
	} else {
		m.Packets = b.packets.Load()
	}
	return m
}

// appendMark appends the JSON of a mark to dst without allocating (when
// dst has room and count does not allocate).
func (b *sutBase) appendMark(dst []byte) []byte {
	m := b.mark()
	dst = append(dst, `{"cpuNs":`...)
	dst = strconv.AppendInt(dst, m.CPUNs, 10)
	dst = append(dst, `,"mallocs":`...)
	dst = strconv.AppendUint(dst, m.Mallocs, 10)
	dst = append(dst, `,"rss":`...)
	dst = strconv.AppendInt(dst, m.RSS, 10)
	dst = append(dst, `,"goroutines":`...)
	dst = strconv.AppendInt(dst, int64(m.Goroutines), 10)
	dst = append(dst, `,"packets":`...)
	dst = strconv.AppendUint(dst, m.Packets, 10)
	return append(dst, '}')
}

func (b *sutBase) handle(_ context.Context, op string, arg json.RawMessage) (any, error) {
	switch op {
	case "mark":
		return b.mark(), nil
	case "profstart", "profstop":
		var prefix string
		if err := json.Unmarshal(arg, &prefix); err != nil {
			return nil, err
		}
		if op == "profstart" {
			return struct{}{}, startProfile(prefix)
		}
		return struct{}{}, stopProfile(prefix)
	}
	return nil, fmt.Errorf("sut: unknown request %q", op)
}

// close stops the pipelines, then releases everything, last opened first,
// and waits for the goroutines.
func (b *sutBase) close() error {
	b.cancel()
	b.pipelines.Wait()
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.wg.Wait()
	return errors.Join(errs...)
}

// listenLoopback binds a UDP socket on 127.0.0.1 with the receive buffer
// rtpudp asks for, so that no variant loses packets for a smaller one.
// eachDatagram calls handle with every datagram c reads, in one reused
// buffer, until c is closed: the read loop of the baselines and receivers.
func eachDatagram(c *net.UDPConn, handle func([]byte)) {
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		handle(buf[:n])
	}
}

func listenLoopback() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopbackIP})
	if err != nil {
		return nil, fmt.Errorf("listen udp 127.0.0.1: %w", err)
	}
	_ = c.SetReadBuffer(4 << 20)
	return c, nil
}

// relaySUT is the relay (and idle) system under test: N RTP/UDP inputs,
// each forwarded as its own stream.
type relaySUT struct{ *sutBase }

func newRelaySUT(ctx context.Context, cfg workerConfig, log *slog.Logger) (role, any, error) {
	s := &relaySUT{newSUTBase(ctx, log)}
	var ready sutReady
	var err error
	switch cfg.Variant {
	case VariantFloor:
		err = s.floor(cfg, &ready)
	case VariantPion:
		err = s.pion(cfg, &ready)
	case VariantRTGate:
		err = s.rtgate(cfg, &ready)
	default:
		err = fmt.Errorf("relay: unknown variant %q", cfg.Variant)
	}
	if err != nil {
		_ = s.close()
		return nil, nil, fmt.Errorf("relay %s: %w", cfg.Variant, err)
	}
	ready.RSSIdle = settledRSS()
	return s, ready, nil
}

// floor reads one datagram and writes it on: no parsing, no crypto.
func (s *relaySUT) floor(cfg workerConfig, ready *sutReady) error {
	if len(cfg.Dests) != cfg.Streams {
		return fmt.Errorf("%d destinations for %d streams", len(cfg.Dests), cfg.Streams)
	}
	ready.RSSBefore = settledRSS()
	for _, d := range cfg.Dests {
		dst, err := netip.ParseAddrPort(d)
		if err != nil {
			return fmt.Errorf("destination %q: %w", d, err)
		}
		c, err := listenLoopback()
		if err != nil {
			return err
		}
		s.closers = append(s.closers, c.Close)
		ready.Sources = append(ready.Sources, c.LocalAddr().String())
		s.wg.Go(func() {
			eachDatagram(c, func(b []byte) {
				_, _ = c.WriteToUDPAddrPort(b, dst)
				s.packets.Add(1)
			})
		})
	}
	return nil
}

// pion is the loop of pion's rtp-to-webrtc example: read a datagram,
// unmarshal it into a new rtp.Packet, TrackLocalStaticRTP.WriteRTP, on a
// PeerConnection with pion's default interceptors; published through the
// Realtime API like rtgate.
func (s *relaySUT) pion(cfg workerConfig, ready *sutReady) error {
	if cfg.SFU == nil {
		return errors.New("no SFU to publish to")
	}
	api, err := pionAPI(s.log)
	if err != nil {
		return err
	}
	c, err := cfg.SFU.client(s.log)
	if err != nil {
		return err
	}
	ready.RSSBefore = settledRSS()
	ctx, cancel := context.WithTimeout(s.ctx, setupTimeout(cfg.Streams))
	defer cancel()
	for i := range cfg.Streams {
		name := fmt.Sprintf("bench%d-video", i)
		track, err := webrtc.NewTrackLocalStaticRTP(vp8Capability, name, fmt.Sprintf("bench%d", i))
		if err != nil {
			return err
		}
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		s.closers = append(s.closers, pc.Close)
		tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		go drainRTCP(tr.Sender()) // owner: pc; ends when it closes
		sid, err := publishRealtime(ctx, c, pc, tr, name)
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		if err := waitConnected(ctx, pc); err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		conn, err := listenLoopback()
		if err != nil {
			return err
		}
		s.closers = append(s.closers, conn.Close)
		ready.Sources = append(ready.Sources, conn.LocalAddr().String())
		ready.Tracks = append(ready.Tracks, trackRef{Session: sid, Name: name})
		s.wg.Go(func() {
			eachDatagram(conn, func(b []byte) {
				pkt := &rtp.Packet{}
				if err := pkt.Unmarshal(b); err != nil {
					return
				}
				_ = track.WriteRTP(pkt)
				s.packets.Add(1)
			})
		})
	}
	return nil
}

// rtgate is what `rtgate run` does for a stream with an rtp:// source:
// rtpudp.Source -> publish.Stream (continuity, TrackLocalStaticRTP, rtgate's
// interceptors, a UDP port for each PeerConnection) with the daemon's
// default WebRTC settings.
func (s *relaySUT) rtgate(cfg workerConfig, ready *sutReady) error {
	if cfg.SFU == nil {
		return errors.New("no SFU to publish to")
	}
	po := config.Default().PeerOptions(s.log)
	po.ListenIP, po.UDPPort, po.PublicIPs, po.ICEServers = "127.0.0.1", 0, nil, nil
	po.RemoteIPFilter = isLoopback
	// Each stream its own API and UDP port, as the daemon gives every
	// PeerConnection toward the SFU (gateway.Daemon.sfuAPI): the SFU tells
	// sessions apart by the peer's address.
	apiFor := func() (*peer.API, error) {
		a, err := peer.New(po)
		if err == nil {
			s.closers = append(s.closers, a.Close)
		}
		return a, err
	}
	c, err := cfg.SFU.client(s.log)
	if err != nil {
		return err
	}
	ready.RSSBefore = settledRSS()
	var streams []*publish.Stream
	for i := range cfg.Streams {
		src, err := rtpudp.Open("rtp://127.0.0.1:0?codec=vp8&pt=96")
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		s.closers = append(s.closers, src.Close)
		sapi, err := apiFor()
		if err != nil {
			return err
		}
		st, err := publish.New(publish.Options{Name: fmt.Sprintf("bench%d", i), Sources: []bridge.Source{countingSource{src, &s.packets}},
			Client: c, API: sapi, Logger: s.log})
		if err != nil {
			return err
		}
		addr, _ := src.LocalAddr(0)
		ready.Sources = append(ready.Sources, addr.String())
		streams = append(streams, st)
		s.pipelines.Go(func() {
			if err := st.Run(s.ctx); err != nil {
				s.log.Warn("stream stopped", "stream", st.Name(), "err", err)
			}
		})
	}
	deadline := time.Now().Add(setupTimeout(cfg.Streams))
	for _, st := range streams {
		for st.Status().State != publish.StateLive {
			if time.Now().After(deadline) {
				return fmt.Errorf("stream %s not live: %+v", st.Name(), st.Status())
			}
			time.Sleep(10 * time.Millisecond)
		}
		status := st.Status()
		ready.Tracks = append(ready.Tracks, trackRef{Session: status.SessionID, Name: status.Tracks[0].Name})
	}
	return nil
}

// countingSource counts the packets a source hands to the stream: an
// atomic add per packet, where Stream.Status would allocate at every mark.
type countingSource struct {
	bridge.Source
	n *atomic.Uint64
}

func (c countingSource) Run(ctx context.Context, fn bridge.PacketFunc) error {
	return c.Source.Run(ctx, func(track int, pkt *rtp.Packet) {
		c.n.Add(1)
		fn(track, pkt)
	})
}

// setupTimeout bounds setting up n PeerConnections on a loaded machine.
func setupTimeout(n int) time.Duration { return 15*time.Second + time.Duration(n)*100*time.Millisecond }
