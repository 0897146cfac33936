// Package rtapi holds the wire types of the Cloudflare Realtime SFU HTTP API
// (OpenAPI "realtime-api-2024-05-21"): request and response bodies and the
// documented error codes.
//
// It is a leaf package: the client (gateway/realtime) and the embedded SFU
// (gateway/sfu) both import it and nothing else of gateway, so the two sides
// cannot drift apart on a JSON field name while the SFU still stands alone.
package rtapi

// SessionDescription is an SDP offer or answer.
type SessionDescription struct {
	Type string `json:"type"` // "offer" or "answer"
	SDP  string `json:"sdp"`
}

// Track locations.
const (
	LocationLocal  = "local"  // publish from this session
	LocationRemote = "remote" // pull a track published by (SessionID, TrackName)
)

// Simulcast carries simulcast preferences of a pulled track.
type Simulcast struct {
	PreferredRid     string `json:"preferredRid,omitempty"`
	PriorityOrdering string `json:"priorityOrdering,omitempty"`
	RidNotAvailable  string `json:"ridNotAvailable,omitempty"`
}

// TrackObject names a track in a request; in a response it also carries the
// per-item error and, for GET /sessions/{id}, the status.
type TrackObject struct {
	Location                 string     `json:"location,omitempty"`
	Mid                      string     `json:"mid,omitempty"`
	SessionID                string     `json:"sessionId,omitempty"`
	TrackName                string     `json:"trackName,omitempty"`
	BidirectionalMediaStream bool       `json:"bidirectionalMediaStream,omitempty"`
	Kind                     string     `json:"kind,omitempty"`
	Simulcast                *Simulcast `json:"simulcast,omitempty"`
	Status                   string     `json:"status,omitempty"`
	ErrorCode                string     `json:"errorCode,omitempty"`
	ErrorDescription         string     `json:"errorDescription,omitempty"`
}

// Track and DataChannel statuses in GET /sessions/{id}.
const (
	StatusActive       = "active"
	StatusInactive     = "inactive"
	StatusInitializing = "initializing"
)

// Error is the top-level error body every endpoint may return.
type Error struct {
	ErrorCode        string `json:"errorCode,omitempty"`
	ErrorDescription string `json:"errorDescription,omitempty"`
}

// NewSessionRequest is the body of POST sessions/new (optional).
type NewSessionRequest struct {
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// NewSessionResponse is the 201 body of POST sessions/new.
type NewSessionResponse struct {
	Error
	SessionID          string              `json:"sessionId"`
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// TracksRequest is the body of POST sessions/{id}/tracks/new.
type TracksRequest struct {
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks             []TrackObject       `json:"tracks,omitempty"`
	AutoDiscover       bool                `json:"autoDiscover,omitempty"`
}

// TracksResponse is the body of tracks/new and tracks/update.
type TracksResponse struct {
	Error
	RequiresImmediateRenegotiation bool                `json:"requiresImmediateRenegotiation"`
	SessionDescription             *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks                         []TrackObject       `json:"tracks,omitempty"`
}

// RenegotiateRequest is the body of PUT sessions/{id}/renegotiate.
type RenegotiateRequest struct {
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// RenegotiateResponse is the body of PUT sessions/{id}/renegotiate.
type RenegotiateResponse struct {
	Error
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
}

// CloseTrackObject names one track to close by its mid on this session.
type CloseTrackObject struct {
	Mid              string `json:"mid"`
	ErrorCode        string `json:"errorCode,omitempty"`
	ErrorDescription string `json:"errorDescription,omitempty"`
}

// CloseTracksRequest is the body of PUT sessions/{id}/tracks/close.
type CloseTracksRequest struct {
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks             []CloseTrackObject  `json:"tracks"`
	Force              bool                `json:"force"`
}

// CloseTracksResponse is the body of a tracks/close answer.
type CloseTracksResponse struct {
	Error
	SessionDescription             *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks                         []CloseTrackObject  `json:"tracks,omitempty"`
	RequiresImmediateRenegotiation bool                `json:"requiresImmediateRenegotiation"`
}

// UpdateTracksRequest is the body of PUT sessions/{id}/tracks/update.
type UpdateTracksRequest struct {
	SessionDescription *SessionDescription `json:"sessionDescription,omitempty"`
	Tracks             []TrackObject       `json:"tracks"`
}

// DataChannelObject is the DataChannel item (the embedded SFU does not
// implement DataChannels yet; the type is here for the client).
type DataChannelObject struct {
	Location         string `json:"location,omitempty"`
	SessionID        string `json:"sessionId,omitempty"`
	DataChannelName  string `json:"dataChannelName,omitempty"`
	ID               *int   `json:"id,omitempty"`
	Status           string `json:"status,omitempty"`
	ErrorCode        string `json:"errorCode,omitempty"`
	ErrorDescription string `json:"errorDescription,omitempty"`
}

// SessionStateResponse is the body of GET sessions/{id}.
type SessionStateResponse struct {
	Error
	Tracks       []TrackObject       `json:"tracks"`
	DataChannels []DataChannelObject `json:"dataChannels"`
}

// Error codes (Cloudflare docs: realtime/sfu/observability/error-codes).
const (
	// Request level.
	CodeUnauthorized    = "unauthorized"
	CodeNotFound        = "not_found"
	CodeDecodingError   = "decoding_error"
	CodeInvalidParams   = "invalid_params"
	CodePayloadTooLarge = "payload_too_large"
	CodeNotSupported    = "not_supported"
	// Session level.
	CodeSessionError = "session_error"
	// SDP.
	CodeInvalidSessionDescription = "invalid_session_description"
	// Items.
	CodeNotFoundTrack      = "not_found_track_error"
	CodeEmptyTrack         = "empty_track_error"
	CodeRepeatedLocalTrack = "repeated_local_track_error"
	CodeUpdateTrack        = "update_track_error"
	CodeCloseTrack         = "close_track_error"
	CodeInvalidTrack       = "invalid_track_error"
	// Service.
	CodeRetryableTransient     = "retryable_transient_error"
	CodeTemporarilyUnavailable = "temporarily_unavailable_error"
	CodeTransportUnavailable   = "transport_unavailable_error"
	CodeBackend                = "backend_error"
	CodeInternal               = "internal_error"
)

// Retryable reports whether a request that failed with this error code may
// succeed if sent again unchanged (after a backoff). internal_error and
// backend_error are not: Cloudflare's docs ask to inspect the session before
// another mutation, since the failed one may have been partly applied.
func Retryable(code string) bool {
	switch code {
	case CodeRetryableTransient, CodeTemporarilyUnavailable, CodeTransportUnavailable:
		return true
	}
	return false
}
