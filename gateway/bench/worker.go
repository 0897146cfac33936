package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// Roles, scenarios and variants.
const (
	roleLoad = "load"
	roleSUT  = "sut"

	ScenarioRelay  = "relay"
	ScenarioFanout = "fanout"
	ScenarioRecord = "record"
	ScenarioIdle   = "idle"
	ScenarioTTFF   = "whep-ttff"

	VariantFloor  = "floor"
	VariantPion   = "pion"
	VariantRTGate = "rtgate"
)

// Variants in the order they run and print.
var Variants = []string{VariantFloor, VariantPion, VariantRTGate}

// workerConfig is what a worker is started as (the init request).
type workerConfig struct {
	Role     string   `json:"role"`
	Scenario string   `json:"scenario,omitempty"`
	Variant  string   `json:"variant,omitempty"`
	Streams  int      `json:"streams,omitempty"`
	Dests    []string `json:"dests,omitempty"` // relay floor: where stream i goes
	SFU      *sfuInfo `json:"sfu,omitempty"`   // relay, idle: the SFU to publish to
	Format   string   `json:"format,omitempty"`
	// Profile, if set, is the path prefix of the CPU and allocation
	// profiles the SUT writes for the measured window.
	Profile string `json:"profile,omitempty"`
}

func newRole(ctx context.Context, cfg workerConfig, log *slog.Logger) (role, any, error) {
	switch cfg.Role {
	case roleLoad:
		return newLoad(log)
	case roleSUT:
		switch cfg.Scenario {
		case ScenarioRelay, ScenarioIdle:
			return newRelaySUT(ctx, cfg, log)
		case ScenarioFanout:
			return newFanoutSUT(cfg, log)
		case ScenarioRecord:
			return newRecordSUT(ctx, cfg, log)
		case ScenarioTTFF:
			return newTTFFSUT(ctx, log)
		}
	}
	return nil, nil, fmt.Errorf("bench worker: unknown role %q scenario %q", cfg.Role, cfg.Scenario)
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func isLoopback(ip net.IP) bool { return ip.IsLoopback() }

// sutMark is a system under test's figures at a mark.
type sutMark struct {
	procStats
	// Packets is what the SUT handled so far: packets relayed (relay),
	// packets given to the recorder (record), packets in (fan-out).
	Packets uint64 `json:"packets"`
}

// embeddedSFU is rtgate's embedded SFU with the daemon's defaults (config
// defaults for sfu.*), served over loopback HTTP.
type embeddedSFU struct {
	sfu  *sfu.SFU
	srv  *http.Server
	info sfuInfo
	done chan struct{}
}

// With bigBuffer its UDP socket gets a 4 MiB receive buffer: the load's
// SFU, which takes a relay's full packet rate in a process that is busy
// generating and receiving, should not be where packets are lost. The SUT's
// SFU keeps the daemon's socket as it is.
func startSFU(log *slog.Logger, bigBuffer bool) (*embeddedSFU, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	secret := hex.EncodeToString(b[:])
	cfg := config.Default()
	o := cfg.SFUOptions(secret, log)
	o.AppID = "bench"
	o.Peer.ListenIP = "127.0.0.1"
	o.Peer.UDPPort = 0
	o.Peer.PublicIPs = nil
	o.Peer.RemoteIPFilter = isLoopback
	if bigBuffer {
		o.Peer.WrapConn = func(pc net.PacketConn) net.PacketConn {
			if u, ok := pc.(*net.UDPConn); ok {
				_ = u.SetReadBuffer(4 << 20)
			}
			return pc
		}
	}
	f, err := sfu.New(o)
	if err != nil {
		return nil, fmt.Errorf("embedded SFU: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("embedded SFU: listen: %w", err)
	}
	e := &embeddedSFU{sfu: f, srv: &http.Server{Handler: f.Handler()}, done: make(chan struct{}),
		info: sfuInfo{URL: "http://" + ln.Addr().String(), AppID: o.AppID, Secret: secret}}
	go func() { // owner: e; ends on close
		defer close(e.done)
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("embedded SFU HTTP", "err", err)
		}
	}()
	return e, nil
}

func (e *embeddedSFU) close() error {
	err := e.srv.Close()
	<-e.done
	return errors.Join(err, e.sfu.Close())
}

// packetsIn sums the packets of the SFU's published tracks.
func (e *embeddedSFU) packetsIn() uint64 {
	var n uint64
	for _, t := range e.sfu.Tracks() {
		n += t.Packets
	}
	return n
}
