package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rtgate/rtgate/config"
	"github.com/rtgate/rtgate/gateway/realtime"
	"github.com/rtgate/rtgate/gateway/supervise"
)

// maxControlBody bounds a control API request body.
const maxControlBody = 64 << 10

// apiError is the JSON body of every control API error.
type apiError struct {
	Error string `json:"error"`
	// Details lists every configuration problem ("key: value: reason").
	Details []string `json:"details,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	body := apiError{Error: err.Error()}
	var errs config.Errors
	if errors.As(err, &errs) {
		body.Error = "invalid configuration"
		for _, e := range errs {
			body.Details = append(body.Details, e.Error())
		}
	}
	writeJSON(w, code, body)
}

// controlAuth lets a control API request through when it carries api.token
// as a bearer token, or, without a token configured, when it comes from
// loopback. It answers 401 or 403 otherwise.
func (d *Daemon) controlAuth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		tok, err := d.cfg.ResolveAPIToken()
		d.mu.Unlock()
		switch {
		case err != nil:
			writeError(w, http.StatusInternalServerError, fmt.Errorf("api token: %w", err))
			return
		case tok.Value != "":
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(tok.Value)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="rtgate"`)
				writeError(w, http.StatusUnauthorized, errors.New("a valid bearer token (api.token) is required"))
				return
			}
		default:
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				writeError(w, http.StatusForbidden, errors.New("without api.token, only clients on loopback may change pipelines"))
				return
			}
		}
		next(w, r)
	}
}

// controlRoutes registers the control API's changing calls.
func (d *Daemon) controlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/streams", d.controlAuth(addHandler[config.Stream](d, config.KindStream)))
	mux.HandleFunc("POST /api/recordings", d.controlAuth(addHandler[config.Recording](d, config.KindRecording)))
	mux.HandleFunc("POST /api/forwards", d.controlAuth(addHandler[config.Forward](d, config.KindForward)))
	for _, k := range []struct{ path, kind string }{
		{"streams", config.KindStream}, {"recordings", config.KindRecording}, {"forwards", config.KindForward},
	} {
		mux.HandleFunc("DELETE /api/"+k.path+"/{name}", d.controlAuth(d.handleRemove(k.kind)))
	}
}

// otherOutput is the other kind of output: recordings and forwards share
// one name space (the API and the metrics name them).
func otherOutput(kind string) string {
	if kind == config.KindRecording {
		return config.KindForward
	}
	return config.KindRecording
}

// itemName returns a pipeline item's name.
func itemName(v any) string {
	switch x := v.(type) {
	case config.Stream:
		return x.Name
	case config.Recording:
		return x.Name
	case config.Forward:
		return x.Name
	}
	return ""
}

// addHandler serves POST /api/{kind}s: the body is one item as the config
// file writes it (JSON); the pipeline starts at once, 201 with its status.
func addHandler[T config.Item](d *Daemon, kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want application/json", ct))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxControlBody))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("read body: %w", err))
			return
		}
		item, err := config.DecodeItem[T](kind+"s[new]", body)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		name := itemName(item)
		d.mu.Lock()
		if name != "" && (d.has(kind, name) || kind != config.KindStream && d.has(otherOutput(kind), name)) {
			d.mu.Unlock()
			writeError(w, http.StatusConflict, fmt.Errorf("a %s named %q exists", kind, name))
			return
		}
		next := d.cfg.Clone()
		switch x := any(item).(type) {
		case config.Stream:
			next.Streams = append(next.Streams, x)
		case config.Recording:
			next.Recordings = append(next.Recordings, x)
		case config.Forward:
			next.Forwards = append(next.Forwards, x)
		}
		_, err = d.applyLocked(next)
		if d.has(kind, name) {
			d.runtime[[2]string{kind, name}] = true
		}
		d.mu.Unlock()
		switch {
		case errors.Is(err, ErrReloadRefused):
			writeError(w, http.StatusBadRequest, err)
			return
		case err != nil:
			// Valid, but it did not start (a port in use, say): it stays
			// configured and its status says why.
			d.log.Warn("control API: added, but it did not start", kind, name, "err", err)
		}
		d.log.Info("control API: added", "kind", kind, "name", name)
		writeJSON(w, http.StatusCreated, d.statusOf(kind, name))
	}
}

// handleRemove serves DELETE /api/{kind}s/{name}: it stops the pipeline
// (a recording is finalized) and forgets it until the next reload brings
// it back, if the config file has it.
func (d *Daemon) handleRemove(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		d.mu.Lock()
		if !d.has(kind, name) {
			d.mu.Unlock()
			writeError(w, http.StatusNotFound, fmt.Errorf("no %s named %q", kind, name))
			return
		}
		next := d.cfg.Clone()
		next.Streams = slices.DeleteFunc(next.Streams, func(x config.Stream) bool { return kind == config.KindStream && x.Name == name })
		next.Recordings = slices.DeleteFunc(next.Recordings, func(x config.Recording) bool { return kind == config.KindRecording && x.Name == name })
		next.Forwards = slices.DeleteFunc(next.Forwards, func(x config.Forward) bool { return kind == config.KindForward && x.Name == name })
		_, err := d.applyLocked(next)
		delete(d.runtime, [2]string{kind, name})
		d.mu.Unlock()
		if errors.Is(err, ErrReloadRefused) {
			writeError(w, http.StatusConflict, err)
			return
		}
		if err != nil {
			d.log.Warn("control API: removed, with errors", kind, name, "err", err)
		}
		d.log.Info("control API: removed", "kind", kind, "name", name)
		w.WriteHeader(http.StatusNoContent)
	}
}

// statusOf returns the API status of a pipeline.
func (d *Daemon) statusOf(kind, name string) any {
	if kind == config.KindStream {
		for _, s := range d.StreamStatuses() {
			if s.Name == name {
				return s
			}
		}
		return nil
	}
	for _, s := range d.Outputs(kind) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// readiness caches the last check of the SFU's reachability.
type readiness struct {
	mu      sync.Mutex
	at      time.Time
	sfuErr  error
	checked bool
}

// readyCacheFor is how long a check of the SFU is reused.
const readyCacheFor = 5 * time.Second

// sfuReachable checks that the SFU answers the Realtime API with our app
// id and secret: a GET of a session that does not exist must be a 404.
func (d *Daemon) sfuReachable(ctx context.Context) error {
	if d.sfu != nil {
		return nil // embedded: served by this process
	}
	d.ready.mu.Lock()
	defer d.ready.mu.Unlock()
	if d.ready.checked && time.Since(d.ready.at) < readyCacheFor {
		return d.ready.sfuErr
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := d.rt.Session(ctx, "rtgate-readiness-probe")
	if err != nil && realtime.StatusOf(err) == http.StatusNotFound {
		err = nil
	} else if err == nil {
		err = errors.New("unexpected answer to a probe of a session that does not exist")
	}
	d.ready.at, d.ready.sfuErr, d.ready.checked = time.Now(), err, true
	return err
}

// handleReadyz serves GET /readyz: 200 when the daemon runs with its
// configuration, the SFU answers, and no pipeline failed for good; 503
// with the reasons otherwise.
func (d *Daemon) handleReadyz(w http.ResponseWriter, r *http.Request) {
	var problems []string
	switch {
	case d.stopping.Load():
		problems = append(problems, "shutting down")
	case !d.running.Load():
		problems = append(problems, "starting")
	}
	if err := d.sfuReachable(r.Context()); err != nil {
		problems = append(problems, "SFU: "+err.Error())
	}
	for _, st := range d.group.Statuses() {
		if st.State == supervise.StateFailed {
			problems = append(problems, fmt.Sprintf("%s %s failed: %s", st.Kind, st.Name, st.LastError))
		}
	}
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "problems": problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}
