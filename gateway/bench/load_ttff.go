package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/rtgate/rtgate/bridge"
)

// The load side of whep-ttff: the publisher of each stream (a VP8 file
// replayed in real time over WHIP, making a keyframe when asked, as an
// encoder does), and the viewers, one at a time: headless Chromium on
// rtgate's /watch page, and a pion WHEP client for the floor.

// Arguments and results of the load's whep-ttff requests.
type (
	whipArg struct {
		Base    string   `json:"base"` // http://host:port of the daemon
		Token   string   `json:"token"`
		Streams []string `json:"streams"`
		IVF     string   `json:"ivf"` // the VP8 file to replay
	}
	ttffStep struct {
		Mode   string `json:"mode"`
		Stream string `json:"stream"`
		Viewer string `json:"viewer"` // viewerChromium or viewerPion
	}
	ttffArg struct {
		Base  string        `json:"base"`
		Token string        `json:"token"`
		Steps []ttffStep    `json:"steps"`
		Gap   time.Duration `json:"gap"`
		// Browser is nil when Chromium cannot run: its steps are skipped.
		Browser *browserTools `json:"browser,omitempty"`
	}
	// ttffSample is one viewer. Times are ms after the viewer sent its
	// POST (0: did not happen).
	ttffSample struct {
		Mode     string `json:"mode"`
		Viewer   string `json:"viewer"`
		Resource string `json:"resource,omitempty"` // the WHEP resource's path
		// PostUnixMs is when the POST was sent (Unix ms, this machine's
		// clock: Chromium's performance.timeOrigin + now, or Go's).
		PostUnixMs float64 `json:"postUnixMs"`
		// TTFFMs is what the sample measures: Chromium, the first frame
		// presented (requestVideoFrameCallback); pion, the first packet
		// of the first keyframe.
		TTFFMs      float64 `json:"ttffMs"`
		ResponseMs  float64 `json:"responseMs,omitempty"`  // the 201 arrived
		ConnectedMs float64 `json:"connectedMs,omitempty"` // ICE and DTLS up
		FirstRTPMs  float64 `json:"firstRtpMs,omitempty"`  // pion: the first video packet
		// The publisher's side: keyframe requests that reached it and the
		// keyframes it sent, from the POST to the first frame.
		PublisherPLIsMs      []float64 `json:"publisherPlisMs,omitempty"`
		PublisherKeyframesMs []float64 `json:"publisherKeyframesMs,omitempty"`
		// Server is rtgate's own timeline of the viewer (gateway/wish's
		// "WHEP viewer timeline"), ms after the POST arrived.
		Server map[string]float64 `json:"server,omitempty"`
		Error  string             `json:"error,omitempty"`
	}
)

const (
	viewerChromium = "chromium"
	viewerPion     = "pion"
)

// ttffLoad is the whep-ttff part of the load process.
type ttffLoad struct {
	log  *slog.Logger
	pubs map[string]*whipPublisher // by stream
}

// ---- the publisher ----

// whipPublisher replays a VP8 IVF file in real time, looping, from a lean
// peer published over WHIP. A keyframe request (PLI or FIR) makes its next
// frame the file's next keyframe: it skips ahead, so what it sends stays
// decodable, and it answers within one frame interval, as a live encoder.
// Like a browser's (libwebrtc's EncoderRtcpFeedback), it ignores a request
// that comes less than 300 ms after the last one it honoured.
type whipPublisher struct {
	p        *leanPeer
	track    *webrtc.TrackLocalStaticSample
	frames   [][]byte
	key      []bool
	frameDur time.Duration
	resource string // the WHIP resource URL, for the DELETE
	token    string

	want     atomic.Bool
	lastWant time.Time // of the last request honoured; readRTCP's
	stop     chan struct{}
	done     chan struct{}

	mu   sync.Mutex
	plis []int64 // Unix ns of each keyframe request received
	kfs  []int64 // Unix ns of each keyframe sent
}

// readIVF reads every frame of a VP8 IVF file and their frame interval.
func readIVF(path string) (frames [][]byte, key []bool, dur time.Duration, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("publisher: %w", err)
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("publisher: %s: %w", path, err)
	}
	if hdr.FourCC != "VP80" {
		return nil, nil, 0, fmt.Errorf("publisher: %s is %q, not VP8", path, hdr.FourCC)
	}
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("publisher: %s: frame %d: %w", path, len(frames), err)
		}
		if len(fr) == 0 {
			continue
		}
		frames = append(frames, fr)
		key = append(key, fr[0]&0x01 == 0) // VP8 frame tag: P bit clear
	}
	if len(frames) < 2 || !key[0] {
		return nil, nil, 0, fmt.Errorf("publisher: %s: %d frames, want 2 or more starting with a keyframe", path, len(frames))
	}
	// The time base is the frame period, as the IVF writers of ffmpeg and
	// libvpx make it (the frames' timestamps do not always count in it:
	// deploy/demo/demo.ivf's step by 30 in a base of 1/30 s).
	dur = time.Second / 30
	if hdr.TimebaseDenominator > 0 && hdr.TimebaseNumerator > 0 {
		if d := time.Second * time.Duration(hdr.TimebaseNumerator) / time.Duration(hdr.TimebaseDenominator); d >= time.Second/120 && d <= time.Second/5 {
			dur = d
		}
	}
	return frames, key, dur, nil
}

// publish starts one publisher per stream and waits until each is
// connected and sending.
func (l *ttffLoad) publish(ctx context.Context, a whipArg) error {
	frames, key, dur, err := readIVF(a.IVF)
	if err != nil {
		return err
	}
	if l.pubs == nil {
		l.pubs = map[string]*whipPublisher{}
	}
	for _, s := range a.Streams {
		if l.pubs[s] != nil {
			continue
		}
		p, err := startWHIPPublisher(ctx, a.Base, s, a.Token, frames, key, dur, l.log)
		if err != nil {
			return fmt.Errorf("publish %s: %w", s, err)
		}
		l.pubs[s] = p
	}
	return nil
}

func startWHIPPublisher(ctx context.Context, base, stream, token string, frames [][]byte, key []bool, dur time.Duration,
	log *slog.Logger) (*whipPublisher, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err := newLeanPeer(1<<20, log)
	if err != nil {
		return nil, err
	}
	pub := &whipPublisher{p: p, frames: frames, key: key, frameDur: dur, token: token, stop: make(chan struct{}), done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = p.close()
		}
	}()
	if pub.track, err = webrtc.NewTrackLocalStaticSample(vp8Capability, "video", "ttff"); err != nil {
		return nil, err
	}
	tr, err := p.pc.AddTransceiverFromTrack(pub.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("transceiver: %w", err)
	}
	go pub.readRTCP(tr.Sender()) // owner: pub's peer; ends when it closes
	sdp, err := offer(ctx, p.pc)
	if err != nil {
		return nil, err
	}
	res, err := postWISH(ctx, base+"/whip/"+url.PathEscape(stream), token, sdp)
	if err != nil {
		return nil, err
	}
	pub.resource = res.location
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.sdp}); err != nil {
		return nil, fmt.Errorf("apply answer: %w", err)
	}
	if err := waitConnected(ctx, p.pc); err != nil {
		return nil, err
	}
	go pub.run() // owner: pub; ends on close
	ok = true
	return pub, nil
}

// minKeyframeRequestInterval is libwebrtc's kMinKeyframeSendIntervalMs.
const minKeyframeRequestInterval = 300 * time.Millisecond

// readRTCP turns keyframe requests into the next frame being a keyframe.
func (pub *whipPublisher) readRTCP(s *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		n, _, err := s.Read(buf)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, pk := range pkts {
			switch pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				now := time.Now()
				pub.mu.Lock()
				pub.plis = append(pub.plis, now.UnixNano())
				pub.mu.Unlock()
				if now.Sub(pub.lastWant) >= minKeyframeRequestInterval {
					pub.lastWant = now
					pub.want.Store(true)
				}
			}
		}
	}
}

// run sends a frame every frame interval, paced by the clock.
func (pub *whipPublisher) run() {
	defer close(pub.done)
	t := time.NewTicker(pub.frameDur)
	defer t.Stop()
	i := 0
	for {
		if pub.want.Swap(false) && !pub.key[i] {
			// The file's next keyframe, looping.
			for !pub.key[i] {
				i = (i + 1) % len(pub.frames)
			}
		}
		if pub.key[i] {
			pub.mu.Lock()
			pub.kfs = append(pub.kfs, time.Now().UnixNano())
			pub.mu.Unlock()
		}
		_ = pub.track.WriteSample(media.Sample{Data: pub.frames[i], Duration: pub.frameDur})
		i = (i + 1) % len(pub.frames)
		select {
		case <-pub.stop:
			return
		case <-t.C:
		}
	}
}

// clockSlack widens the publisher's event window for a Chromium sample,
// whose POST time is converted from the page's clock to the wall clock
// (ttffPage.Skew: within about a ms).
const clockSlack = 5 * time.Millisecond

// events returns the keyframe requests and keyframes between from and to
// (Unix ns), widened by slack on each side, in ms after from.
func (pub *whipPublisher) events(from, to int64, slack time.Duration) (plis, kfs []float64) {
	pub.mu.Lock()
	defer pub.mu.Unlock()
	pick := func(ts []int64) []float64 {
		var out []float64
		for _, t := range ts {
			if t >= from-int64(slack) && t <= to+int64(slack) {
				out = append(out, float64(t-from)/1e6)
			}
		}
		return out
	}
	return pick(pub.plis), pick(pub.kfs)
}

func (pub *whipPublisher) close() error {
	close(pub.stop)
	<-pub.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	deleteWISH(ctx, pub.resource, pub.token)
	return pub.p.close()
}

func (l *ttffLoad) close() error {
	var errs []error
	for _, p := range l.pubs {
		errs = append(errs, p.close())
	}
	return errors.Join(errs...)
}

// ---- WHIP/WHEP signalling ----

type wishResponse struct {
	sdp      string
	location string // absolute URL of the resource
}

// postWISH POSTs an SDP offer to a WHIP or WHEP endpoint.
func postWISH(ctx context.Context, endpoint, token, sdp string) (wishResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(sdp))
	if err != nil {
		return wishResponse{}, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return wishResponse{}, fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return wishResponse{}, fmt.Errorf("POST %s: %w", endpoint, err)
	}
	if res.StatusCode != http.StatusCreated {
		return wishResponse{}, fmt.Errorf("POST %s: %s: %s", endpoint, res.Status, bytes.TrimSpace(b))
	}
	loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
	if err != nil || res.Header.Get("Location") == "" {
		return wishResponse{}, fmt.Errorf("POST %s: 201 without a usable Location (%q)", endpoint, res.Header.Get("Location"))
	}
	return wishResponse{sdp: string(b), location: loc.String()}, nil
}

// deleteWISH ends a WHIP or WHEP resource (best effort: the daemon also
// ends it when the PeerConnection closes).
func deleteWISH(ctx context.Context, resource, token string) {
	if resource == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, resource, nil)
	if err != nil {
		return
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if res, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
	}
}

// ---- the viewers ----

// run runs the steps one after another: never two viewers at once, and
// at least a.Gap between the POSTs of two viewers of the same stream.
func (l *ttffLoad) run(ctx context.Context, a ttffArg) ([]ttffSample, error) {
	var br *browser
	defer func() {
		if br != nil {
			_ = br.close()
		}
	}()
	last := map[string]time.Time{}
	out := make([]ttffSample, 0, len(a.Steps))
	for _, st := range a.Steps {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		if st.Viewer == viewerChromium && a.Browser == nil {
			continue
		}
		if st.Viewer == viewerChromium && br == nil {
			var err error
			if br, err = startBrowser(*a.Browser); err != nil {
				return out, err
			}
		}
		// Chromium sends its POST after loading the page: the gap is
		// counted from the previous POST to this step's start.
		time.Sleep(time.Until(last[st.Stream].Add(a.Gap)))
		start := time.Now()
		var s ttffSample
		switch st.Viewer {
		case viewerChromium:
			s = l.chromiumViewer(br, a, st)
		case viewerPion:
			s = l.pionViewer(ctx, a, st)
		default:
			return out, fmt.Errorf("unknown viewer %q", st.Viewer)
		}
		s.Mode, s.Viewer = st.Mode, st.Viewer
		last[st.Stream] = start
		if s.PostUnixMs > 0 {
			last[st.Stream] = time.UnixMicro(int64(s.PostUnixMs * 1e3))
		}
		if pub := l.pubs[st.Stream]; pub != nil && s.Error == "" {
			from := int64(s.PostUnixMs * 1e6)
			s.PublisherPLIsMs, s.PublisherKeyframesMs = pub.events(from, from+int64(s.TTFFMs*1e6), clockSlack)
		}
		out = append(out, s)
		// The next viewer finds the stream as this one found it: no viewer,
		// so in relay mode no pull either.
		if err := waitNoViewers(ctx, a.Base, st.Stream, 5*time.Second); err != nil {
			return out, err
		}
	}
	return out, nil
}

// The watch page's own figures (gateway/web/static/watch.js): ttffMs is
// POST sent -> first frame presented; timings are performance.now() of
// postSent, response, connected and firstFrame. The probe waits for the
// first frame in the page, so it costs one round trip to pages.mjs.
const ttffProbe = `(async () => {
  const until = Date.now() + %d;
  while (Date.now() < until) {
    const r = window.rtgate;
    if (r && (r.ttffMs !== null || r.state === 'failed')) break;
    await new Promise(res => setTimeout(res, 5));
  }
  // Date.now() minus timeOrigin + now, from the pair of readings with the
  // least time between them: a pair read across a preemption (tens of ms
  // on a loaded machine) would be off by it. Date.now() counts whole ms,
  // so its middle is half a ms later.
  let best = null;
  for (let i = 0; i < 200 && !(best && best.w < 0.2); i++) {
    const a = performance.now(), d = Date.now(), b = performance.now();
    if (best === null || b - a < best.w) best = {w: b - a, skew: d + 0.5 - (performance.timeOrigin + (a + b) / 2)};
  }
  const r = window.rtgate || {};
  return {state: r.state || '', error: r.error || '', ttffMs: r.ttffMs ?? null, timings: r.timings || {},
    origin: performance.timeOrigin, skew: best.skew, resource: r.resource || ''};
})()`

type ttffPage struct {
	State   string             `json:"state"`
	Error   string             `json:"error"`
	TTFFMs  *float64           `json:"ttffMs"`
	Timings map[string]float64 `json:"timings"`
	Origin  float64            `json:"origin"`
	// Skew is the wall clock minus timeOrigin + now. Chromium derives
	// both from a monotonic clock with an offset it fixes early, so
	// they drift from the wall clock the publisher stamps its events
	// with when that clock is slewed (NTP on a fresh VM). Here it is
	// about 1 ms; two CI runs lost the publisher's events of a sample
	// out of its window, the second with a skew read across a
	// preemption.
	Skew     float64 `json:"skew"`
	Resource string  `json:"resource"`
}

const ttffTimeout = 10 * time.Second

// chromiumViewer opens the stream's /watch page, reads the page's time to
// first frame, and leaves the page (its pagehide DELETEs the resource).
func (l *ttffLoad) chromiumViewer(br *browser, a ttffArg, st ttffStep) (s ttffSample) {
	u := a.Base + "/watch/" + url.PathEscape(st.Stream) + "?token=" + url.QueryEscape(a.Token)
	defer func() {
		if _, err := br.do(map[string]any{"op": "goto", "page": "ttff", "url": "about:blank"}, 20*time.Second); err != nil && s.Error == "" {
			s.Error = err.Error()
		}
	}()
	if _, err := br.do(map[string]any{"op": "goto", "page": "ttff", "url": u}, 20*time.Second); err != nil {
		s.Error = err.Error()
		return s
	}
	raw, err := br.do(map[string]any{"op": "eval", "page": "ttff", "expr": fmt.Sprintf(ttffProbe, ttffTimeout.Milliseconds())},
		ttffTimeout+10*time.Second)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	var pg ttffPage
	if err := json.Unmarshal(raw, &pg); err != nil {
		s.Error = fmt.Sprintf("watch page: %s: %v", raw, err)
		return s
	}
	if u, err := url.Parse(pg.Resource); err == nil {
		s.Resource = u.Path
	}
	post := pg.Timings["postSent"]
	s.PostUnixMs = pg.Origin + pg.Skew + post
	if pg.TTFFMs == nil {
		s.Error = fmt.Sprintf("no first frame within %s: page state %q %s", ttffTimeout, pg.State, pg.Error)
		return s
	}
	s.TTFFMs = *pg.TTFFMs
	if v, ok := pg.Timings["firstFrame"]; ok && post > 0 {
		s.TTFFMs = v - post // unrounded
	}
	if v, ok := pg.Timings["response"]; ok {
		s.ResponseMs = v - post
	}
	if v, ok := pg.Timings["connected"]; ok {
		s.ConnectedMs = v - post
	}
	return s
}

// pionViewer is the floor: a pion WHEP client (no interceptors, no
// decoder) that measures from its POST to the first packet of the first
// keyframe, which is when a browser could start decoding.
func (l *ttffLoad) pionViewer(ctx context.Context, a ttffArg, st ttffStep) (s ttffSample) {
	ctx, cancel := context.WithTimeout(ctx, ttffTimeout+5*time.Second)
	defer cancel()
	p, err := newLeanPeer(1<<20, l.log)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer p.close()
	var firstRTP, keyframe, connected atomic.Int64
	gotKey := make(chan struct{})
	p.pc.OnConnectionStateChange(func(cs webrtc.PeerConnectionState) {
		if cs == webrtc.PeerConnectionStateConnected {
			connected.CompareAndSwap(0, time.Now().UnixNano())
		}
	})
	p.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		go func() { // owner: the peer; ends when it closes
			buf := make([]byte, 1500)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				firstRTP.CompareAndSwap(0, now)
				if n > 12 && bridge.PayloadVP8.KeyframeStart(rtpPayload(buf[:n])) && keyframe.CompareAndSwap(0, now) {
					close(gotKey)
				}
			}
		}()
	})
	if _, err := p.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		s.Error = err.Error()
		return s
	}
	sdp, err := offer(ctx, p.pc) // gathered before the POST, as the page does
	if err != nil {
		s.Error = err.Error()
		return s
	}
	t0 := time.Now()
	s.PostUnixMs = float64(t0.UnixNano()) / 1e6
	res, err := postWISH(ctx, a.Base+"/whep/"+url.PathEscape(st.Stream), a.Token, sdp)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.ResponseMs = msSince(t0, time.Now().UnixNano())
	if u, err := url.Parse(res.location); err == nil {
		s.Resource = u.Path
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		deleteWISH(dctx, res.location, a.Token)
	}()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.sdp}); err != nil {
		s.Error = fmt.Sprintf("apply answer: %v", err)
		return s
	}
	select {
	case <-gotKey:
	case <-ctx.Done():
		s.Error = fmt.Sprintf("no keyframe within %s (connected: %v, packets: %v)", ttffTimeout, connected.Load() != 0, firstRTP.Load() != 0)
		return s
	}
	s.TTFFMs = msSince(t0, keyframe.Load())
	s.FirstRTPMs = msSince(t0, firstRTP.Load())
	if c := connected.Load(); c != 0 {
		s.ConnectedMs = msSince(t0, c)
	}
	return s
}

func msSince(t0 time.Time, ns int64) float64 { return float64(ns-t0.UnixNano()) / 1e6 }

// rtpPayload is the payload of an RTP packet (no padding removal: the
// payload's first bytes are what matter here).
func rtpPayload(b []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	i := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 && len(b) >= i+4 { // header extension
		i += 4 + 4*(int(b[i+2])<<8|int(b[i+3]))
	}
	if i >= len(b) {
		return nil
	}
	return b[i:]
}

// waitNoViewers polls GET /api/streams until the stream has no viewer.
func waitNoViewers(ctx context.Context, base, stream string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, err := streamViewers(ctx, base, stream)
		if err == nil && n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d viewers", n)
			}
			return fmt.Errorf("stream %s: still viewed %s after the viewer left: %w", stream, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func streamViewers(ctx context.Context, base, stream string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/streams", nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var list struct {
		Streams []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Viewers int    `json:"viewers"`
		} `json:"streams"`
	}
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		return 0, fmt.Errorf("GET /api/streams: %w", err)
	}
	for _, s := range list.Streams {
		if s.Name == stream {
			return s.Viewers, nil
		}
	}
	return 0, fmt.Errorf("GET /api/streams: no stream %q", stream)
}
