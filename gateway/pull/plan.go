package pull

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/rtapi"
)

// want is a track to be pulled from a publisher session.
type want struct {
	t       *track
	session string
}

// plan is what should be pulled now.
type plan struct {
	wants []want
	// gone are tracks unpublished for good: they leave the sink.
	gone []gone
	// idle: nothing to pull for now (a stream that is not live), which is
	// not an error.
	idle bool
}

type gone struct {
	t   *track
	why string
}

func (pl *plan) sessionOf(t *track) (string, bool) {
	for _, w := range pl.wants {
		if w.t == t {
			return w.session, true
		}
	}
	return "", false
}

// poll is what GET /sessions/{id} said last about a publisher session.
type poll struct {
	at    time.Time
	res   *rtapi.SessionStateResponse // nil until a GET succeeded
	gone  bool                        // 404 or 410: the session ended
	why   string
	tries int
}

// pollSession reads a publisher session's state, at most once per
// PollInterval; a failed read keeps what was known (the SFU may be
// restarting: the attempt notices that by itself).
func (p *Pull) pollSession(ctx context.Context, id string, now time.Time) *poll {
	st := p.polls[id]
	if st == nil {
		st = &poll{}
		p.polls[id] = st
	}
	if st.gone || (!st.at.IsZero() && now.Sub(st.at) < p.opts.PollInterval) {
		return st
	}
	st.at = now
	res, err := p.opts.Client.Session(ctx, id)
	switch code := realtime.StatusOf(err); {
	case err == nil:
		st.res, st.tries = res, 0
	case code == http.StatusNotFound || code == http.StatusGone:
		st.gone, st.why = true, err.Error()
	default:
		st.tries++
		if st.tries == 1 || st.tries%10 == 0 {
			p.log.Warn("reading the publisher session failed", "session", id, "err", err)
		}
	}
	return st
}

// activeLocal returns the active published (location local) track of
// that name in a session state, and whether one is listed at all.
func activeLocal(res *rtapi.SessionStateResponse, name string) (active, listed bool) {
	for _, tr := range res.Tracks {
		if tr.Location != rtapi.LocationLocal || tr.TrackName != name {
			continue
		}
		listed = true
		if tr.Status == rtapi.StatusActive {
			return true, true
		}
	}
	return false, listed
}

func (p *Pull) wanted(name string) bool {
	return len(p.filter) == 0 || slices.Contains(p.filter, name)
}

// plan says what to pull now, by mode. Its error wraps errEnded when
// everything pulled ended for good.
func (p *Pull) plan(ctx context.Context, now time.Time) (plan, error) {
	switch p.mode {
	case modeSession:
		return p.planSession(ctx, now)
	case modeStream:
		return p.planStream()
	default:
		return p.planRefs(ctx, now)
	}
}

// planRefs: every ref not ended. A ref ends when its session is gone, or
// when a track it listed as active is no longer active there; until it was
// listed, it is pulled (and not_found_track_error is retried).
func (p *Pull) planRefs(ctx context.Context, now time.Time) (plan, error) {
	var pl plan
	for _, r := range p.opts.Refs {
		key := r.Session + "/" + r.Track
		if p.endedRefs[key] {
			continue
		}
		t := p.trackFor(key, r.Track, r.Session)
		st := p.pollSession(ctx, r.Session, now)
		if st.gone {
			pl.gone = append(pl.gone, gone{t, "session gone: " + st.why})
			continue
		}
		if st.res != nil {
			if active, _ := activeLocal(st.res, r.Track); active {
				t.seen = true
			} else if t.seen {
				pl.gone = append(pl.gone, gone{t, "unpublished"})
				continue
			}
		}
		pl.wants = append(pl.wants, want{t, r.Session})
	}
	for _, g := range pl.gone {
		p.endedRefs[g.t.key] = true
	}
	if len(pl.wants) == 0 {
		return pl, fmt.Errorf("every pulled track ended: %w", errEnded)
	}
	return pl, nil
}

// planSession: every active published track of the session (filtered);
// tracks no longer active are gone; a session that went away ends the
// pull.
func (p *Pull) planSession(ctx context.Context, now time.Time) (plan, error) {
	var pl plan
	id := p.opts.Session
	st := p.pollSession(ctx, id, now)
	if st.gone {
		for _, t := range p.tracks {
			pl.gone = append(pl.gone, gone{t, "session gone: " + st.why})
		}
		return pl, fmt.Errorf("session %s went away (%s): %w", id, st.why, errEnded)
	}
	if st.res == nil {
		// Not read yet: keep pulling what we have.
		for _, t := range p.tracks {
			pl.wants = append(pl.wants, want{t, id})
		}
		return pl, nil
	}
	active := map[string]bool{}
	for _, tr := range st.res.Tracks {
		if tr.Location == rtapi.LocationLocal && tr.Status == rtapi.StatusActive && p.wanted(tr.TrackName) && !active[tr.TrackName] {
			active[tr.TrackName] = true
			pl.wants = append(pl.wants, want{p.trackFor(tr.TrackName, tr.TrackName, id), id})
		}
	}
	for name, t := range p.tracks {
		if !active[name] {
			pl.gone = append(pl.gone, gone{t, "unpublished"})
		}
	}
	pl.idle = len(pl.wants) == 0
	return pl, nil
}

// planStream: the stream's tracks on its current session; while it is not
// live, nothing (its tracks stay in the sink, waiting). A track the stream
// no longer has is gone.
func (p *Pull) planStream() (plan, error) {
	var pl plan
	id, names, ok := p.opts.Stream.Published()
	if !ok || id == "" {
		pl.idle = true
		return pl, nil
	}
	has := map[string]bool{}
	for _, n := range names {
		if p.wanted(n) && !has[n] {
			has[n] = true
			pl.wants = append(pl.wants, want{p.trackFor(n, n, id), id})
		}
	}
	for name, t := range p.tracks {
		if !has[name] {
			pl.gone = append(pl.gone, gone{t, "no longer a track of the stream"})
		}
	}
	pl.idle = len(pl.wants) == 0
	return pl, nil
}
