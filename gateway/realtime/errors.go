package realtime

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/rtgate/rtgate/gateway/rtapi"
)

// ErrTooManyTracks is wrapped by the error of a call that names more tracks
// than one API call may carry and that the client cannot split.
var ErrTooManyTracks = errors.New("too many tracks for one call")

// Error is a request-level failure: the SFU answered with a non-2xx status
// or with a top-level errorCode.
type Error struct {
	// Endpoint names the call: sessions/new, tracks/new, renegotiate,
	// tracks/close, tracks/update or session (GET sessions/{id}).
	Endpoint string
	// Method is the HTTP method.
	Method string
	// StatusCode is the HTTP status of the response.
	StatusCode int
	// Code is the response's errorCode (an rtapi.Code* constant); empty when
	// the body carried none (for example an HTML page from a proxy).
	Code string
	// Description is the response's errorDescription or, without one, the
	// status text and the start of the body.
	Description string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("realtime ")
	b.WriteString(e.Endpoint)
	b.WriteString(": ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
		if e.Description != "" {
			b.WriteString(":")
		}
	}
	if e.Description != "" {
		b.WriteString(" ")
		b.WriteString(e.Description)
	}
	return b.String()
}

// ItemError is the failure of one item of a batch call that otherwise
// succeeded (HTTP 200 with tracks[i].errorCode).
type ItemError struct {
	// Index is the item's position in the items given to ItemErrors (the
	// tracks of a response, or the merged results of PullTracks).
	Index int
	// Mid, SessionID and TrackName identify the item as far as the
	// response did; close results carry only Mid.
	Mid, SessionID, TrackName string
	// Code and Description are the item's errorCode and errorDescription.
	Code, Description string
}

func (e *ItemError) Error() string {
	var id []string
	switch {
	case e.SessionID != "" && e.TrackName != "":
		id = append(id, e.SessionID+"/"+e.TrackName)
	case e.TrackName != "":
		id = append(id, e.TrackName)
	}
	if e.Mid != "" {
		id = append(id, "mid "+e.Mid)
	}
	s := fmt.Sprintf("realtime track %d", e.Index)
	if len(id) > 0 {
		s += " (" + strings.Join(id, ", ") + ")"
	}
	s += ": " + e.Code
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// TrackItem is an item type of a batch response that may carry its own
// errorCode.
type TrackItem interface {
	rtapi.TrackObject | rtapi.CloseTrackObject
}

// ItemErrors returns nil if no item carries an error, the *ItemError if one
// does, and the *ItemErrors joined with errors.Join if several do.
func ItemErrors[T TrackItem](items []T) error {
	var errs []error
	for i, item := range items {
		var e ItemError
		switch it := any(item).(type) {
		case rtapi.TrackObject:
			e = ItemError{Mid: it.Mid, SessionID: it.SessionID, TrackName: it.TrackName,
				Code: it.ErrorCode, Description: it.ErrorDescription}
		case rtapi.CloseTrackObject:
			e = ItemError{Mid: it.Mid, Code: it.ErrorCode, Description: it.ErrorDescription}
		}
		if e.Code == "" && e.Description == "" {
			continue
		}
		e.Index = i
		errs = append(errs, &e)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// IsCode reports whether err, or any error it wraps or joins, is an *Error or
// *ItemError with this error code.
func IsCode(err error, code string) bool {
	return walk(err, func(err error) bool {
		switch e := err.(type) {
		case *Error:
			return e.Code == code
		case *ItemError:
			return e.Code == code
		}
		return false
	})
}

// StatusOf returns the HTTP status of the first *Error in err's tree, or 0
// if there is none (transport errors, item errors, validation errors).
func StatusOf(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.StatusCode
	}
	return 0
}

// walk calls f on err and the errors it wraps or joins, depth first, until f
// returns true; errors.As would stop at the first error of the type, which
// in a join of item errors need not be the one with the code asked for.
func walk(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, f) {
					return true
				}
			}
			return false
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return false
		}
	}
	return false
}

// maxSnippet bounds how much of a body without an errorCode goes into an
// Error's Description.
const maxSnippet = 160

// describe summarizes a response without an errorCode: the status text and
// the start of the body on one line.
func describe(status int, body []byte) string {
	desc := http.StatusText(status)
	if desc == "" {
		desc = "HTTP " + strconv.Itoa(status)
	}
	if len(body) > maxSnippet {
		body = body[:maxSnippet]
	}
	snippet := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "?")), " ")
	if snippet != "" {
		desc += ": " + snippet
	}
	return desc
}
