// Package realtime is the gateway's one client for the Realtime SFU HTTP
// API: Cloudflare's at https://rtc.live.cloudflare.com/v1, or rtgate's
// embedded SFU, which serves the same API.
//
// Mutations of one session run one at a time, in call order, because the
// SFU rejects overlapping ones; reads and other sessions are not held up.
//
// A request is retried with exponential backoff and full jitter on HTTP 429,
// any 5xx, a top-level errorCode that rtapi.Retryable accepts, and transport
// errors such as connection refused or reset (the SFU may be restarting);
// never on other 4xx, and never once the call's context is done.
//
// A request-level failure is an *Error. Item failures inside a successful
// batch response stay in the response; ItemErrors turns them into
// *ItemErrors. IsCode matches either kind.
package realtime

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rtgate/rtgate/gateway/rtapi"
)

// MaxTracksPerCall is the most tracks (or mids) one API call may carry.
const MaxTracksPerCall = 64

const (
	defaultMaxAttempts    = 5
	defaultRetryBaseDelay = 200 * time.Millisecond
	defaultRetryMaxDelay  = 5 * time.Second
	defaultHTTPTimeout    = 30 * time.Second
	// maxRetryAfter bounds how long a Retry-After header can make a call wait.
	maxRetryAfter = time.Minute
	// maxResponseBody bounds how much of a response body is read.
	maxResponseBody = 4 << 20
	// maxDrain bounds how much of an unread body is drained so that the
	// connection can be reused.
	maxDrain = 64 << 10
)

// Options configure a Client.
type Options struct {
	// BaseURL is the API root including the version:
	// "https://rtc.live.cloudflare.com/v1" or, for the embedded SFU,
	// e.g. "http://127.0.0.1:8080/v1".
	BaseURL string
	// AppID and AppSecret identify the app; the secret is sent as a bearer
	// token and never logged or put in an error.
	AppID, AppSecret string
	// HTTPClient sends the requests; nil means a client with a 30 s timeout
	// over http.DefaultTransport (keep-alive). Deadlines come from the
	// context of each call.
	HTTPClient *http.Client
	// Logger receives retries (warn) and requests (debug); nil discards.
	Logger *slog.Logger
	// MaxAttempts is the most HTTP attempts per request (default 5).
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay shape the exponential backoff with
	// full jitter between attempts: attempt n waits a random duration up to
	// min(RetryMaxDelay, RetryBaseDelay*2^(n-1)) (defaults 200 ms, 5 s),
	// or longer if the response's Retry-After asks for it.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// Observe, if set, is called once per HTTP attempt with the endpoint
	// (see Error.Endpoint), the response status (0 on a transport error)
	// and the attempt's duration; for metrics.
	Observe func(endpoint string, status int, d time.Duration)
}

// Client calls one app of a Realtime SFU. It is safe for concurrent use.
// Mutations of one session (everything but NewSession and Session) run one
// at a time, in call order; reads and other sessions are not held up.
type Client struct {
	appURL      string // {BaseURL}/apps/{AppID}/
	secret      string
	http        *http.Client
	log         *slog.Logger
	maxAttempts int
	baseDelay   time.Duration
	maxDelay    time.Duration
	observe     func(endpoint string, status int, d time.Duration)
	sessions    lockTable
}

// New validates o and returns a Client.
func New(o Options) (*Client, error) {
	base, err := parseBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	switch {
	case o.AppID == "":
		return nil, errors.New("realtime: Options.AppID is empty")
	case o.AppSecret == "":
		return nil, errors.New("realtime: Options.AppSecret is empty")
	case strings.ContainsAny(o.AppSecret, "\r\n"):
		return nil, errors.New("realtime: Options.AppSecret contains a line break")
	case o.MaxAttempts < 0:
		return nil, fmt.Errorf("realtime: Options.MaxAttempts is negative (%d)", o.MaxAttempts)
	case o.RetryBaseDelay < 0:
		return nil, fmt.Errorf("realtime: Options.RetryBaseDelay is negative (%v)", o.RetryBaseDelay)
	case o.RetryMaxDelay < 0:
		return nil, fmt.Errorf("realtime: Options.RetryMaxDelay is negative (%v)", o.RetryMaxDelay)
	case o.RetryBaseDelay > 0 && o.RetryMaxDelay > 0 && o.RetryBaseDelay > o.RetryMaxDelay:
		return nil, fmt.Errorf("realtime: Options.RetryBaseDelay (%v) exceeds Options.RetryMaxDelay (%v)",
			o.RetryBaseDelay, o.RetryMaxDelay)
	}
	c := &Client{
		appURL:      base + "/apps/" + url.PathEscape(o.AppID) + "/",
		secret:      o.AppSecret,
		http:        o.HTTPClient,
		log:         o.Logger,
		maxAttempts: cmp.Or(o.MaxAttempts, defaultMaxAttempts),
		maxDelay:    cmp.Or(o.RetryMaxDelay, defaultRetryMaxDelay),
		observe:     o.Observe,
	}
	c.baseDelay = min(cmp.Or(o.RetryBaseDelay, defaultRetryBaseDelay), c.maxDelay)
	if c.http == nil {
		c.http = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.observe == nil {
		c.observe = func(string, int, time.Duration) {}
	}
	return c, nil
}

func parseBaseURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("realtime: Options.BaseURL is empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("realtime: Options.BaseURL is not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("realtime: Options.BaseURL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return "", fmt.Errorf("realtime: Options.BaseURL %q: no host", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("realtime: Options.BaseURL %q: must not have a query or fragment", u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// do sends one API request, retrying as the package doc says, and decodes
// a successful response into out (if not nil). in, if not nil, is the JSON
// body.
func (c *Client) do(ctx context.Context, method, endpoint, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("realtime %s: encode request: %w", endpoint, err)
		}
	}
	for attempt := 1; ; attempt++ {
		retry, after, err := c.attempt(ctx, method, endpoint, path, body, out)
		if err == nil || !retry || attempt >= c.maxAttempts {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w; retry abandoned: %w", err, ctx.Err())
		}
		delay := max(after, c.backoff(attempt))
		c.log.LogAttrs(ctx, slog.LevelWarn, "realtime request failed; retrying",
			slog.String("endpoint", endpoint), slog.Int("attempt", attempt),
			slog.Duration("delay", delay), slog.String("error", err.Error()))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; retry abandoned: %w", err, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff returns the full-jitter delay after the attempt-th failure.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.baseDelay
	for i := 1; i < attempt && ceiling < c.maxDelay; i++ {
		ceiling *= 2
	}
	return rand.N(min(ceiling, c.maxDelay) + 1)
}

// attempt makes one HTTP attempt. retry says whether the failure may go
// away if the request is sent again, after at least the given delay.
func (c *Client) attempt(ctx context.Context, method, endpoint, path string, body []byte, out any) (retry bool, after time.Duration, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.appURL+path, rd)
	if err != nil {
		return false, 0, fmt.Errorf("realtime %s: %w", endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(endpoint, 0, time.Since(start))
		c.debug(ctx, method, endpoint, 0, start)
		// Connection refused or reset, timeouts of the HTTP client: the SFU
		// may be restarting. The caller's context ending is final.
		return ctx.Err() == nil, 0, fmt.Errorf("realtime %s: %w", endpoint, err)
	}
	data, err := readBody(resp.Body)
	c.observe(endpoint, resp.StatusCode, time.Since(start))
	c.debug(ctx, method, endpoint, resp.StatusCode, start)
	if err != nil {
		return ctx.Err() == nil && !errors.Is(err, errBodyTooLarge), 0,
			fmt.Errorf("realtime %s: read %d response: %w", endpoint, resp.StatusCode, err)
	}

	// A top-level errorCode is a failure whatever the status.
	var apiErr rtapi.Error
	_ = json.Unmarshal(data, &apiErr) // not JSON or not an object: no code
	if resp.StatusCode/100 == 2 && apiErr.ErrorCode == "" {
		if out != nil && len(bytes.TrimSpace(data)) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return false, 0, fmt.Errorf("realtime %s: decode %d response: %w", endpoint, resp.StatusCode, err)
			}
		}
		return false, 0, nil
	}
	e := &Error{
		Endpoint:    endpoint,
		Method:      method,
		StatusCode:  resp.StatusCode,
		Code:        apiErr.ErrorCode,
		Description: apiErr.ErrorDescription,
	}
	if e.Code == "" && e.Description == "" {
		e.Description = describe(resp.StatusCode, data)
	}
	// A server echoing the request must not leak the secret into logs.
	e.Description = strings.ReplaceAll(e.Description, c.secret, "[redacted]")
	// 5xx may pass, but 501 Not Implemented will not.
	retry = resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented ||
		rtapi.Retryable(e.Code)
	return retry, retryAfter(resp.Header.Get("Retry-After"), time.Now()), e
}

func (c *Client) debug(ctx context.Context, method, endpoint string, status int, start time.Time) {
	c.log.LogAttrs(ctx, slog.LevelDebug, "realtime request",
		slog.String("method", method), slog.String("endpoint", endpoint),
		slog.Int("status", status), slog.Duration("duration", time.Since(start)))
}

var errBodyTooLarge = fmt.Errorf("body exceeds %d bytes", maxResponseBody)

// readBody reads at most maxResponseBody bytes of body, then drains a little
// of what is left (so the connection can be reused) and closes it.
func readBody(body io.ReadCloser) ([]byte, error) {
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, maxResponseBody+1))
	if err == nil && len(data) > maxResponseBody {
		err = errBodyTooLarge
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
	return data, err
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); 0 if
// absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		d = time.Duration(min(s, int(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
