package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/pull"
	"github.com/rtgate/rtgate/gateway/wish"
)

// testWISHOptions, when set by a test, adjusts the WHIP/WHEP options
// (shorter timeouts and polls).
var testWISHOptions func(*wish.Options)

// sfuAPI makes a pion API with its own UDP port (on webrtc.listen_ip) for
// one PeerConnection toward the SFU: the SFU tells its sessions apart by
// the peer's address, so two of rtgate's PeerConnections toward it must
// not share webrtc.udp_port.
func (d *Daemon) sfuAPI() (*peer.API, error) {
	o := d.cfg.PeerOptions(d.log.With("component", "webrtc"))
	o.UDPPort = 0
	return peer.New(o)
}

// pullStream pulls a stream for its relay WHEP viewers with gateway/pull,
// over a PeerConnection with its own UDP port.
func (d *Daemon) pullStream(ctx context.Context, stream string, r wish.Resolver, sink bridge.Sink) error {
	api, err := d.sfuAPI()
	if err != nil {
		return fmt.Errorf("whep pull of %s: %w", stream, err)
	}
	defer api.Close()
	p, err := pull.New(pull.Options{Name: "whep " + stream, Client: d.rt, API: api, Sink: sink,
		Stream: r, StreamName: stream, Logger: d.log.With("component", "pull"),
		// The relay fan-out, the pull's one sink, coalesces its viewers'
		// keyframe requests itself (one per 500 ms): a second window of the
		// same length here dropped the fan-out's deferred request whenever
		// the two timers lined up.
		KeyframeInterval: time.Nanosecond})
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// openWISH makes the WHIP/WHEP handler over the registry (whip.* and
// whep.* of the configuration).
func (d *Daemon) openWISH() error {
	whipToken, err := d.cfg.ResolveWHIPToken()
	if err != nil {
		return fmt.Errorf("whip token: %w", err)
	}
	whepToken, err := d.cfg.ResolveWHEPToken()
	if err != nil {
		return fmt.Errorf("whep token: %w", err)
	}
	o := wish.Options{
		Registry:       d.registry,
		Client:         d.rt,
		API:            d.peer,
		ICEServers:     d.cfg.WebRTC.WebRTCICEServers(),
		WHIPToken:      whipToken.Value,
		WHEPToken:      whepToken.Value,
		AllowAnyStream: d.cfg.WHIP.AllowAnyStream,
		OnConflict:     d.cfg.WHIP.OnConflict,
		WHIPMode:       d.cfg.WHIP.Mode,
		WHEPMode:       d.cfg.WHEP.Mode,
		SFUAPI:         d.sfuAPI,
		Pull:           d.pullStream,
		Logger:         d.log,
	}
	if testWISHOptions != nil {
		testWISHOptions(&o)
	}
	d.wish, err = wish.New(o)
	if err != nil {
		return fmt.Errorf("whip/whep: %w", err)
	}
	return nil
}
