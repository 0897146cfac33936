package realtime

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/rtgate/rtgate/gateway/rtapi"
)

// Endpoint names, as in Error.Endpoint and Options.Observe.
const (
	epNewSession   = "sessions/new"
	epTracksNew    = "tracks/new"
	epRenegotiate  = "renegotiate"
	epTracksClose  = "tracks/close"
	epTracksUpdate = "tracks/update"
	epSession      = "session"
)

// NewSession creates a session (POST sessions/new). With a nil offer the
// request has no body and the response no sessionDescription; with an offer
// the response carries the SFU's answer.
func (c *Client) NewSession(ctx context.Context, offer *rtapi.SessionDescription) (*rtapi.NewSessionResponse, error) {
	var in any
	if offer != nil {
		in = rtapi.NewSessionRequest{SessionDescription: offer}
	}
	var out rtapi.NewSessionResponse
	if err := c.do(ctx, http.MethodPost, epNewSession, "sessions/new", in, &out); err != nil {
		return nil, err
	}
	if out.SessionID == "" {
		return nil, fmt.Errorf("realtime %s: response has no sessionId", epNewSession)
	}
	return &out, nil
}

// AddTracks adds local or remote tracks to a session (POST tracks/new).
// Item failures are in the response's tracks (see ItemErrors). A request
// may carry at most MaxTracksPerCall tracks; PullTracks pulls more without
// an offer.
func (c *Client) AddTracks(ctx context.Context, sessionID string, req rtapi.TracksRequest) (*rtapi.TracksResponse, error) {
	if n := len(req.Tracks); n > MaxTracksPerCall {
		if req.SessionDescription != nil {
			return nil, fmt.Errorf("realtime %s: %d tracks with one sessionDescription cannot be split into calls of %d: %w",
				epTracksNew, n, MaxTracksPerCall, ErrTooManyTracks)
		}
		return nil, fmt.Errorf("realtime %s: %d tracks in one call (at most %d; PullTracks batches them): %w",
			epTracksNew, n, MaxTracksPerCall, ErrTooManyTracks)
	}
	unlock, err := c.lock(ctx, epTracksNew, sessionID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.addTracks(ctx, sessionID, req)
}

func (c *Client) addTracks(ctx context.Context, sessionID string, req rtapi.TracksRequest) (*rtapi.TracksResponse, error) {
	var out rtapi.TracksResponse
	if err := c.do(ctx, http.MethodPost, epTracksNew, sessionPath(sessionID, "/tracks/new"), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PullTracks adds tracks without an offer (typically location remote), in
// calls of at most MaxTracksPerCall tracks. After each call whose response
// requires immediate renegotiation it asks answer for an answer to the SFU's
// offer and PUTs it to renegotiate before the next call. It returns the item
// results of all calls in request order; item failures are not errors (see
// ItemErrors).
//
// The session is held for the whole pull, so answer must not call mutating
// methods of c for the same session. On error, the returned items are those
// of the calls the SFU accepted, so that the caller can close them.
func (c *Client) PullTracks(ctx context.Context, sessionID string, tracks []rtapi.TrackObject,
	answer func(ctx context.Context, offer rtapi.SessionDescription) (rtapi.SessionDescription, error),
) ([]rtapi.TrackObject, error) {
	if answer == nil {
		return nil, fmt.Errorf("realtime %s: PullTracks needs an answer function", epTracksNew)
	}
	if len(tracks) == 0 {
		return nil, nil
	}
	unlock, err := c.lock(ctx, epTracksNew, sessionID)
	if err != nil {
		return nil, err
	}
	defer unlock()

	var items []rtapi.TrackObject
	for start := 0; start < len(tracks); start += MaxTracksPerCall {
		batch := tracks[start:min(start+MaxTracksPerCall, len(tracks))]
		resp, err := c.addTracks(ctx, sessionID, rtapi.TracksRequest{Tracks: batch})
		if err != nil {
			return items, err
		}
		items = append(items, resp.Tracks...)
		if !resp.RequiresImmediateRenegotiation {
			continue
		}
		if resp.SessionDescription == nil {
			return items, fmt.Errorf("realtime %s: response requires renegotiation but has no sessionDescription", epTracksNew)
		}
		sd, err := answer(ctx, *resp.SessionDescription)
		if err != nil {
			return items, fmt.Errorf("realtime %s: answer the SFU's offer: %w", epTracksNew, err)
		}
		if err := c.renegotiate(ctx, sessionID, sd); err != nil {
			return items, err
		}
	}
	return items, nil
}

// Renegotiate sends the answer to an offer the SFU made (PUT renegotiate).
func (c *Client) Renegotiate(ctx context.Context, sessionID string, answer rtapi.SessionDescription) error {
	unlock, err := c.lock(ctx, epRenegotiate, sessionID)
	if err != nil {
		return err
	}
	defer unlock()
	return c.renegotiate(ctx, sessionID, answer)
}

func (c *Client) renegotiate(ctx context.Context, sessionID string, answer rtapi.SessionDescription) error {
	req := rtapi.RenegotiateRequest{SessionDescription: &answer}
	return c.do(ctx, http.MethodPut, epRenegotiate, sessionPath(sessionID, "/renegotiate"), req, nil)
}

// CloseTracks closes tracks of a session by mid (PUT tracks/close). A forced
// close without a sessionDescription of more than MaxTracksPerCall mids is
// sent in several calls and their item results merged in request order; on
// a failure after the first call, the returned response holds the results
// of the calls that succeeded. Item failures are not errors (see ItemErrors).
func (c *Client) CloseTracks(ctx context.Context, sessionID string, req rtapi.CloseTracksRequest) (*rtapi.CloseTracksResponse, error) {
	n := len(req.Tracks)
	switch {
	case n == 0:
		return nil, fmt.Errorf("realtime %s: no tracks to close", epTracksClose)
	case n > MaxTracksPerCall && req.SessionDescription != nil:
		return nil, fmt.Errorf("realtime %s: %d mids with one sessionDescription cannot be split into calls of %d: %w",
			epTracksClose, n, MaxTracksPerCall, ErrTooManyTracks)
	case n > MaxTracksPerCall && !req.Force:
		return nil, fmt.Errorf("realtime %s: %d mids in one call (at most %d; only forced closes are split): %w",
			epTracksClose, n, MaxTracksPerCall, ErrTooManyTracks)
	}
	unlock, err := c.lock(ctx, epTracksClose, sessionID)
	if err != nil {
		return nil, err
	}
	defer unlock()

	var merged *rtapi.CloseTracksResponse
	for start := 0; start < n; start += MaxTracksPerCall {
		part := req
		part.Tracks = req.Tracks[start:min(start+MaxTracksPerCall, n)]
		var out rtapi.CloseTracksResponse
		if err := c.do(ctx, http.MethodPut, epTracksClose, sessionPath(sessionID, "/tracks/close"), part, &out); err != nil {
			return merged, err
		}
		if merged == nil {
			merged = &out
			continue
		}
		merged.Tracks = append(merged.Tracks, out.Tracks...)
		merged.RequiresImmediateRenegotiation = merged.RequiresImmediateRenegotiation || out.RequiresImmediateRenegotiation
		if out.SessionDescription != nil {
			merged.SessionDescription = out.SessionDescription
		}
	}
	return merged, nil
}

// UpdateTracks changes the tracks of existing transceivers, e.g. the pulled
// track or its simulcast preferences (PUT tracks/update). Item failures are
// not errors (see ItemErrors).
func (c *Client) UpdateTracks(ctx context.Context, sessionID string, req rtapi.UpdateTracksRequest) (*rtapi.TracksResponse, error) {
	if n := len(req.Tracks); n > MaxTracksPerCall {
		return nil, fmt.Errorf("realtime %s: %d tracks in one call (at most %d): %w",
			epTracksUpdate, n, MaxTracksPerCall, ErrTooManyTracks)
	}
	unlock, err := c.lock(ctx, epTracksUpdate, sessionID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out rtapi.TracksResponse
	if err := c.do(ctx, http.MethodPut, epTracksUpdate, sessionPath(sessionID, "/tracks/update"), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Session returns the tracks and DataChannels of a session (GET
// sessions/{id}). It does not wait for mutations of the session.
func (c *Client) Session(ctx context.Context, sessionID string) (*rtapi.SessionStateResponse, error) {
	if sessionID == "" {
		return nil, errNoSession(epSession)
	}
	var out rtapi.SessionStateResponse
	if err := c.do(ctx, http.MethodGet, epSession, sessionPath(sessionID, ""), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// lock takes the session's mutation lock for a call to endpoint.
func (c *Client) lock(ctx context.Context, endpoint, sessionID string) (unlock func(), err error) {
	if sessionID == "" {
		return nil, errNoSession(endpoint)
	}
	unlock, err = c.sessions.lock(ctx, sessionID)
	if err != nil {
		return nil, fmt.Errorf("realtime %s: wait for session %s: %w", endpoint, sessionID, err)
	}
	return unlock, nil
}

func errNoSession(endpoint string) error {
	return fmt.Errorf("realtime %s: empty session id", endpoint)
}

func sessionPath(sessionID, suffix string) string {
	return "sessions/" + url.PathEscape(sessionID) + suffix
}
