package wish

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// Content types of the protocol.
const (
	typeSDP     = "application/sdp"
	typeSDPFrag = "application/trickle-ice-sdpfrag"
)

// streamName is what a stream may be called (as config validates it).
var streamName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// resource is a WHIP or WHEP session: the URL a POST created.
type resource interface {
	base() *resBase
	// patch handles a PATCH whose body has content type ctype: trickle
	// candidates, an ICE restart, or (WHEP) the answer to rtgate's offer.
	patch(w http.ResponseWriter, r *http.Request, ctype string, body []byte)
	// end frees the resource and everything it holds; it is idempotent
	// and returns when the work is done.
	end(why string)
}

// resBase is what every resource has.
type resBase struct {
	h       *Handler
	id      string
	kind    string // "whip" or "whep"
	st      *Stream
	remote  string // the client's address
	created time.Time

	mu   sync.Mutex // guards etag and the resource's signalling
	etag string

	endOnce sync.Once
	ended   chan struct{} // closed when end starts
}

func (b *resBase) init(h *Handler, kind string, st *Stream, r *http.Request) {
	b.h, b.id, b.kind, b.st, b.remote, b.created = h, newID(), kind, st, r.RemoteAddr, time.Now()
	b.etag, b.ended = newETag(), make(chan struct{})
}

func (b *resBase) base() *resBase { return b }

// location is the resource's URL path.
func (b *resBase) location() string {
	return "/" + b.kind + "/" + url.PathEscape(b.st.Name()) + "/" + b.id
}

func newETag() string { return `"` + newID() + `"` }

// isEnded reports whether end has started.
func (b *resBase) isEnded() bool {
	select {
	case <-b.ended:
		return true
	default:
		return false
	}
}

// token returns the bearer token that authorizes requests on the stream:
// the stream's own or the global one of the kind.
func (h *Handler) token(kind string, st *Stream) string {
	if kind == "whip" {
		if st != nil && st.o.WHIPToken != "" {
			return st.o.WHIPToken
		}
		return h.settings().WHIPToken
	}
	if st != nil && st.o.WHEPToken != "" {
		return st.o.WHEPToken
	}
	return h.settings().WHEPToken
}

// authorize checks a request against the token of kind for st (nil: a
// stream that does not exist yet). With a token, the request must carry it
// as a bearer token (401 otherwise). Without one, WHIP requests are
// accepted from loopback clients only (403 otherwise) and WHEP requests
// from anyone. It writes the error response and returns false on refusal.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, kind string, st *Stream) bool {
	want := h.token(kind, st)
	if want == "" {
		if kind == "whip" && !fromLoopback(r) {
			httpError(w, http.StatusForbidden, "publishing without a token is allowed from this machine only: set whip.token")
			return false
		}
		return true
	}
	got, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rtgate"`)
		httpError(w, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <token>)")
		return false
	}
	// Compare hashes in constant time: neither the token nor its length leaks.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rtgate", error="invalid_token"`)
		httpError(w, http.StatusUnauthorized, "wrong bearer token")
		return false
	}
	return true
}

func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpError writes a plain-text error: clients show it as it is.
func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, format+"\n", args...)
}

// mediaType returns the request's content type without parameters.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(ct))
	}
	return mt
}

// readBody reads at most MaxSDPSize bytes; it writes 413 and returns false
// for a larger body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSDPSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, "the request body is larger than %d bytes", MaxSDPSize)
		} else {
			httpError(w, http.StatusBadRequest, "cannot read the request body: %v", err)
		}
		return nil, false
	}
	return body, true
}

// cors lets pages of other origins call the endpoints (a player page, a
// browser publisher): the headers a WHIP/WHEP client reads are exposed.
func (h *Handler) cors(fn http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); origin != "" {
			hd.Set("Access-Control-Allow-Origin", origin)
			hd.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post, Content-Type")
		}
		fn(w, r)
	})
}

// options answers OPTIONS on an endpoint or a resource: a CORS preflight
// and, for any client, the ICE servers to use (Link rel="ice-server"). TURN
// credentials are given only to a request that an authorization allows:
// preflights carry no Authorization header, so they get STUN servers only.
func (h *Handler) options(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	kind := kindOf(r)
	allow := "OPTIONS, POST"
	if r.PathValue("id") != "" {
		allow = "OPTIONS, PATCH, DELETE"
		hd.Set("Accept-Patch", typeSDPFrag)
	} else {
		hd.Set("Accept-Post", typeSDP)
	}
	hd.Set("Allow", allow)
	if r.Header.Get("Access-Control-Request-Method") != "" {
		hd.Set("Access-Control-Allow-Methods", allow)
		hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		hd.Set("Access-Control-Max-Age", "86400")
	}
	st, _ := h.o.Registry.Lookup(r.PathValue("stream"))
	withCreds := false
	if want := h.token(kind, st); want != "" {
		if got, ok := bearer(r); ok {
			a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
			withCreds = subtle.ConstantTimeCompare(a[:], b[:]) == 1
		}
	} else {
		withCreds = kind == "whep" || fromLoopback(r)
	}
	h.addLinks(w, withCreds)
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func kindOf(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/whep/") {
		return "whep"
	}
	return "whip"
}

// addLinks advertises the ICE servers (RFC 9725 section 4.6).
func (h *Handler) addLinks(w http.ResponseWriter, withCredentials bool) {
	for _, l := range linkHeaders(h.o.ICEServers, withCredentials) {
		w.Header().Add("Link", l)
	}
}

// linkHeaders renders ICE servers as Link header values; servers with
// credentials (TURN) are left out unless withCredentials.
func linkHeaders(servers []webrtc.ICEServer, withCredentials bool) []string {
	var out []string
	for _, s := range servers {
		cred, _ := s.Credential.(string)
		hasCreds := s.Username != "" || cred != ""
		if hasCreds && !withCredentials {
			continue
		}
		for _, u := range s.URLs {
			l := "<" + u + `>; rel="ice-server"`
			if hasCreds {
				l += `; username="` + quote(s.Username) + `"; credential="` + quote(cred) + `"; credential-type="password"`
			}
			out = append(out, l)
		}
	}
	return out
}

// quote escapes a quoted-string's content (RFC 9110 section 5.6.4).
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// resourceFor finds the resource a PATCH or DELETE names, writes 404 when
// there is none, and checks the request's authorization.
func (h *Handler) resourceFor(w http.ResponseWriter, r *http.Request) (resource, bool) {
	res := h.lookup(r.PathValue("id"))
	kind := kindOf(r)
	if res == nil || res.base().kind != kind || res.base().st.Name() != r.PathValue("stream") || res.base().isEnded() {
		// Authorize anyway, so that a client without the token learns
		// nothing about which resources exist.
		st, _ := h.o.Registry.Lookup(r.PathValue("stream"))
		if !h.authorize(w, r, kind, st) {
			return nil, false
		}
		httpError(w, http.StatusNotFound, "no such %s resource: %s", strings.ToUpper(kind), r.URL.Path)
		return nil, false
	}
	if !h.authorize(w, r, kind, res.base().st) {
		return nil, false
	}
	return res, true
}

// delete ends a resource: 200 OK (RFC 9725 section 4.2).
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resourceFor(w, r)
	if !ok {
		return
	}
	res.end("deleted by the client")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// patch checks a PATCH (authorization, content type, size, If-Match) and
// hands it to the resource.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resourceFor(w, r)
	if !ok {
		return
	}
	ct := mediaType(r)
	if ct != typeSDPFrag && ct != typeSDP {
		w.Header().Set("Accept-Patch", typeSDPFrag)
		httpError(w, http.StatusUnsupportedMediaType, "PATCH takes %s (trickle ICE, ICE restarts) or, for a WHEP offer made by rtgate, %s; got %q",
			typeSDPFrag, typeSDP, r.Header.Get("Content-Type"))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	res.patch(w, r, ct, body)
}

// checkIfMatch applies If-Match to a trickle PATCH: a value other than
// "*" must be the resource's current ETag (412 otherwise). A missing
// If-Match is accepted: not every client sends one.
func (b *resBase) checkIfMatch(w http.ResponseWriter, r *http.Request) bool {
	im := strings.TrimSpace(r.Header.Get("If-Match"))
	if im == "" || im == "*" {
		return true
	}
	b.mu.Lock()
	etag := b.etag
	b.mu.Unlock()
	for v := range strings.SplitSeq(im, ",") {
		if strings.TrimSpace(v) == etag {
			return true
		}
	}
	httpError(w, http.StatusPreconditionFailed, "If-Match %s is not the resource's current ETag", im)
	return false
}

// respondCreated writes the 201 response of a POST.
func (b *resBase) respondCreated(w http.ResponseWriter, sdp string) {
	hd := w.Header()
	hd.Set("Content-Type", typeSDP)
	hd.Set("Location", b.location())
	b.mu.Lock()
	hd.Set("ETag", b.etag)
	b.mu.Unlock()
	hd.Set("Accept-Patch", typeSDPFrag)
	hd.Set("Cache-Control", "no-store")
	b.h.addLinks(w, true)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, sdp)
}
