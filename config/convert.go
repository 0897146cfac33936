package config

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/sfu"
)

// PeerOptions returns the pion API options of rtgate's own PeerConnections
// (webrtc.*). Call it on a validated Config: out-of-range numbers are not
// checked again here.
func (c *Config) PeerOptions(logger *slog.Logger) peer.Options {
	w := c.WebRTC
	return peer.Options{
		ListenIP:          w.ListenIP,
		UDPPort:           w.UDPPort,
		PublicIPs:         slices.Clone(w.PublicIPs),
		ICEServers:        w.WebRTCICEServers(),
		NACKMaxPerPacket:  uint16(w.NACK.MaxPerPacket),
		NACKGeneratorSize: uint16(w.NACK.GeneratorSize),
		NACKResponderSize: uint16(w.NACK.ResponderSize),
		Logger:            logger,
	}
}

// SFUPeerOptions returns the pion API options of the embedded SFU (sfu.*):
// its own UDP port; no ICE servers, an SFU is reached, it does not reach
// out. sfu.nack_buffer sizes its NACK responder (the history each
// published track keeps for its subscribers) and generator.
func (c *Config) SFUPeerOptions(logger *slog.Logger) peer.Options {
	return peer.Options{
		ListenIP:          c.SFU.ListenIP,
		UDPPort:           c.SFU.UDPPort,
		PublicIPs:         slices.Clone(c.SFU.PublicIPs),
		NACKGeneratorSize: uint16(c.SFU.NACKBuffer),
		NACKResponderSize: uint16(c.SFU.NACKBuffer),
		Logger:            logger,
	}
}

// SFUOptions returns the options of an embedded SFU serving app AppID()
// with the given secret (see EmbeddedSecret).
func (c *Config) SFUOptions(secret string, logger *slog.Logger) sfu.Options {
	return sfu.Options{
		AppID:              c.AppID(),
		AppSecret:          secret,
		Peer:               c.SFUPeerOptions(logger),
		TrackIdleTimeout:   c.SFU.TrackIdleTimeout,
		FirstPacketWait:    c.SFU.FirstPacketWait,
		ConnectWait:        c.SFU.ConnectWait,
		SessionReuseWindow: c.SFU.SessionReuseWindow,
		RateLimit:          c.SFU.RateLimit,
		Logger:             logger,
	}
}

// WebRTCICEServers converts webrtc.ice_servers to pion's type.
func (w WebRTC) WebRTCICEServers() []webrtc.ICEServer {
	if len(w.ICEServers) == 0 {
		return nil
	}
	out := make([]webrtc.ICEServer, len(w.ICEServers))
	for i, s := range w.ICEServers {
		out[i] = webrtc.ICEServer{URLs: slices.Clone(s.URLs), Username: s.Username}
		if s.Credential != "" {
			out[i].Credential = s.Credential
			out[i].CredentialType = webrtc.ICECredentialTypePassword
		}
	}
	return out
}

// SlogLevel returns log.level as a slog level (info for an invalid one;
// Validate reports it).
func (l Log) SlogLevel() slog.Level {
	lvl, err := parseLevel(l.Level)
	if err != nil {
		return slog.LevelInfo
	}
	return lvl
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q", s)
}

// NewLogger returns a logger writing to w as log.* says (see
// NewLogSwitch for one a reload can change).
func (l Log) NewLogger(w io.Writer) *slog.Logger {
	return l.NewLogSwitch(w).Logger()
}
