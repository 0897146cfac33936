package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// fanoutSUT is the fan-out system under test: one published track
// forwarded to every subscriber.
type fanoutSUT struct {
	*sutBase
	dests atomic.Pointer[[]netip.AddrPort] // floor: copy on write
}

func newFanoutSUT(cfg workerConfig, log *slog.Logger) (role, any, error) {
	s := &fanoutSUT{sutBase: newSUTBase(context.Background(), log)}
	s.dests.Store(&[]netip.AddrPort{})
	ready := sutReady{RSSBefore: settledRSS()}
	var err error
	switch cfg.Variant {
	case VariantFloor:
		err = s.floor(&ready)
	case VariantPion:
		err = s.pion(&ready)
	case VariantRTGate:
		err = s.rtgate(&ready)
	default:
		err = fmt.Errorf("unknown variant %q", cfg.Variant)
	}
	if err != nil {
		_ = s.close()
		return nil, nil, fmt.Errorf("fan-out %s: %w", cfg.Variant, err)
	}
	ready.RSSIdle = settledRSS()
	return s, ready, nil
}

func (s *fanoutSUT) handle(ctx context.Context, op string, arg json.RawMessage) (any, error) {
	if op == "dests" { // floor: add subscribers
		var a struct {
			Addrs []string `json:"addrs"`
		}
		if err := json.Unmarshal(arg, &a); err != nil {
			return nil, err
		}
		next := append([]netip.AddrPort(nil), *s.dests.Load()...)
		for _, d := range a.Addrs {
			ap, err := netip.ParseAddrPort(d)
			if err != nil {
				return nil, fmt.Errorf("destination %q: %w", d, err)
			}
			next = append(next, ap)
		}
		s.dests.Store(&next)
		return struct{}{}, nil
	}
	return s.sutBase.handle(ctx, op, arg)
}

// floor reads one datagram and writes it to every subscriber's socket.
func (s *fanoutSUT) floor(ready *sutReady) error {
	c, err := listenLoopback()
	if err != nil {
		return err
	}
	_ = c.SetWriteBuffer(4 << 20)
	s.closers = append(s.closers, c.Close)
	ready.Addr = c.LocalAddr().String()
	s.wg.Go(func() {
		eachDatagram(c, func(b []byte) {
			s.packets.Add(1)
			for _, d := range *s.dests.Load() {
				_, _ = c.WriteToUDPAddrPort(b, d)
			}
		})
	})
	return nil
}

// pion is pion's broadcast example: the publisher's TrackRemote.ReadRTP,
// one shared TrackLocalStaticRTP.WriteRTP to every subscriber, pion's
// default interceptors, one PeerConnection (and UDP socket) per peer.
// Signalling is an SDP POST (/pub, /sub), WHIP/WHEP style.
func (s *fanoutSUT) pion(ready *sutReady) error {
	api, err := pionAPI(s.log)
	if err != nil {
		return err
	}
	local, err := webrtc.NewTrackLocalStaticRTP(vp8Capability, "video", "bench")
	if err != nil {
		return err
	}
	var pcs pcList
	s.closers = append(s.closers, pcs.closeAll)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pub", func(w http.ResponseWriter, r *http.Request) {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pcs.add(pc)
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			s.wg.Go(func() { // ends when the publisher's PeerConnection closes
				for {
					pkt, _, err := remote.ReadRTP()
					if err != nil {
						return
					}
					s.packets.Add(1)
					_ = local.WriteRTP(pkt)
				}
			})
		})
		s.serveAnswer(w, r, pc)
	})
	mux.HandleFunc("POST /sub", func(w http.ResponseWriter, r *http.Request) {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pcs.add(pc)
		snd, err := pc.AddTrack(local)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		go drainRTCP(snd) // owner: pc; ends when it closes
		s.serveAnswer(w, r, pc)
	})
	url, err := s.serve(mux)
	if err != nil {
		return err
	}
	ready.URL = url
	return nil
}

func (s *fanoutSUT) serveAnswer(w http.ResponseWriter, r *http.Request, pc *webrtc.PeerConnection) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	sdp, err := answer(ctx, pc, string(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, sdp)
}

// serve serves h on a loopback port until close and returns its URL.
func (s *fanoutSUT) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { // owner: s; ends when the closer closes srv
		defer close(done)
		_ = srv.Serve(ln)
	}()
	s.closers = append(s.closers, func() error {
		err := srv.Close()
		<-done
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	return "http://" + ln.Addr().String(), nil
}

// rtgate is the embedded SFU, as `rtgate run` or `rtgate sfu` serve it.
func (s *fanoutSUT) rtgate(ready *sutReady) error {
	e, err := startSFU(s.log, false)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, e.close)
	s.count = e.packetsIn
	ready.SFU = &e.info
	return nil
}

// pcList holds PeerConnections made by HTTP handlers, to close them all.
type pcList struct {
	mu  sync.Mutex
	pcs []*webrtc.PeerConnection
}

func (l *pcList) add(pc *webrtc.PeerConnection) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pcs = append(l.pcs, pc)
}

func (l *pcList) closeAll() error {
	l.mu.Lock()
	pcs := l.pcs
	l.pcs = nil
	l.mu.Unlock()
	var errs []error
	for _, pc := range pcs {
		errs = append(errs, pc.Close())
	}
	return errors.Join(errs...)
}
