// Package sfu is rtgate's embedded SFU: it serves the media part of the
// Cloudflare Realtime SFU HTTP API (sessions, tracks, renegotiation) over
// pion PeerConnections, so rtgate and the apps built on that API run and are
// tested offline. It stands on its own (`rtgate sfu`): it imports only
// gateway/peer and gateway/rtapi of the rest of rtgate.
package sfu

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/rtgate/rtgate/gateway/peer"
)

// Options configure an SFU. Zero durations take the Realtime API's values.
type Options struct {
	// AppID is the application id in /v1/apps/{appId}/...
	AppID string
	// AppSecret is the bearer token every request must carry.
	AppSecret string
	// Peer configures the SFU's own pion API (its UDP port).
	Peer peer.Options
	// TrackIdleTimeout collects a published track that sent no media for
	// this long (30 s).
	TrackIdleTimeout time.Duration
	// FirstPacketWait is how long a pull of an announced track waits for the
	// track's first packet before answering not_found_track_error (2 s).
	FirstPacketWait time.Duration
	// ConnectWait is how long a mutation that needs the transport waits for
	// ICE/DTLS connected before answering session_error 425 (5 s).
	ConnectWait time.Duration
	// SessionReuseWindow is how long a session that lost connectivity can be
	// used again before it expires (30 s).
	SessionReuseWindow time.Duration
	// RateLimit is API calls per second per session (50).
	RateLimit float64
	// KeyframeInterval is the minimum time between two keyframe requests
	// sent to one publisher (500 ms).
	KeyframeInterval time.Duration
	// Logger is the SFU's logger; nil means slog.Default().
	Logger *slog.Logger
}

// SFU is the embedded SFU. Create it with New, serve Handler, Close it.
type SFU struct {
	opts Options
}

// New makes an SFU and opens its UDP port.
func New(o Options) (*SFU, error) {
	return nil, errors.New("sfu: not implemented yet")
}

// Handler serves /v1/apps/{appId}/... and /apps/{appId}/...
func (s *SFU) Handler() http.Handler { return http.NotFoundHandler() }

// Close ends every session and releases the UDP port.
func (s *SFU) Close() error { return nil }
