package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// whep-ttff: how long a WHEP viewer waits for its first frame. The system
// under test is the daemon (`rtgate run`: embedded SFU, WHIP and WHEP,
// the /watch page) with two WHIP streams, one per WHEP mode; the load
// publishes a VP8 file into each over WHIP, making a keyframe when asked
// as an encoder does, and plays them one viewer at a time: headless
// Chromium on the /watch page (POST sent -> first frame presented), and a
// pion WHEP client for the floor (POST sent -> first keyframe packet, no
// browser, no decoder). Proxy mode is also the reference for relay: the
// same publisher, SFU and viewer, without rtgate in the media path.

// ttffModes are the WHEP modes measured, in order.
var ttffModes = []string{"proxy", "relay"}

// TTFF is one row of whep-ttff: the viewers of one kind in one mode.
type TTFF struct {
	Mode   string `json:"mode"`   // proxy or relay
	Viewer string `json:"viewer"` // chromium, or pion (the floor)
	// Measures says what a sample is.
	Measures  string    `json:"measures"`
	SamplesMs []float64 `json:"samplesMs"`
	// Median and p90 (linear interpolation between the sorted samples),
	// min and max, in ms.
	MedianMs float64 `json:"medianMs"`
	P90Ms    float64 `json:"p90Ms"`
	MinMs    float64 `json:"minMs"`
	MaxMs    float64 `json:"maxMs"`
	// Failed viewers saw no first frame; they are not in the samples.
	Failed     int    `json:"failed,omitempty"`
	FirstError string `json:"firstError,omitempty"`
	// Medians of where the time went, ms after the POST was sent: the
	// 201 arrived; ICE and DTLS were connected.
	ResponseMs  float64 `json:"responseMs"`
	ConnectedMs float64 `json:"connectedMs"`
	// Server holds the medians of rtgate's own timelines of the viewers
	// (gateway/wish), ms after the POST arrived, by step; EarlyKeyframes
	// counts the viewers that a keyframe reached rtgate for before their
	// DTLS was up (the one the pull's start asked for: held for a cold
	// start's first viewer, lost to a later one).
	Server         map[string]float64 `json:"server,omitempty"`
	EarlyKeyframes int                `json:"earlyKeyframes,omitempty"`
	Samples        []ttffSample       `json:"samples"`
}

const (
	measuresChromium = "POST sent -> first frame presented (headless Chromium, requestVideoFrameCallback)"
	measuresPion     = "POST sent -> first packet of the first keyframe (pion WHEP client: the floor)"
)

// notMeasuredChromium is the status of the TTFF target when Chromium
// cannot run here.
const notMeasuredChromium = statusNotMeasured + " (no chromium)"

// whepTTFF runs the scenario: a point per mode for Chromium (variant
// rtgate) and for the pion client (variant floor).
func (r *runner) whepTTFF() []Point {
	o := r.o
	var pts []Point
	for _, viewer := range []string{viewerChromium, viewerPion} {
		for _, mode := range ttffModes {
			p := Point{Scenario: ScenarioTTFF, Variant: VariantRTGate, Streams: 1,
				TTFF: &TTFF{Mode: mode, Viewer: viewer, Measures: measuresChromium}}
			if viewer == viewerPion {
				p.Variant, p.TTFF.Measures = VariantFloor, measuresPion
			}
			pts = append(pts, p)
		}
	}
	failAll := func(err error) []Point {
		for i := range pts {
			if pts[i].Skipped == "" {
				pts[i].Error = err.Error()
			}
			r.logPoint(&pts[i])
		}
		return pts
	}
	tools, missing := findBrowser(o.BrowserDir, o.Chromium)
	var browserArg *browserTools
	switch {
	case missing == "":
		browserArg = &tools
	case os.Getenv("CI") == "true":
		return failAll(fmt.Errorf("%s; with CI=true every tool must be there", missing))
	default:
		for i := range pts {
			if pts[i].TTFF.Viewer == viewerChromium {
				pts[i].Skipped = missing
			}
		}
	}
	ivf, err := filepath.Abs(o.TTFFVideo)
	if err == nil {
		_, err = os.Stat(ivf)
	}
	if err != nil {
		return failAll(fmt.Errorf("the VP8 file to publish (--ttff-video): %w", err))
	}

	var ready sutReady
	sut, err := r.start("sut", workerConfig{Role: roleSUT, Scenario: ScenarioTTFF}, &ready)
	if err != nil {
		return failAll(err)
	}
	defer sut.stop()
	if ready.TTFF == nil {
		return failAll(fmt.Errorf("the SUT reported no daemon"))
	}
	info := *ready.TTFF
	load, err := r.start("load", workerConfig{Role: roleLoad}, nil)
	if err != nil {
		return failAll(err)
	}
	defer load.stop()
	var streams []string
	for _, m := range ttffModes {
		streams = append(streams, info.Streams[m])
	}
	if err := load.call("whip", whipArg{Base: info.Base, Token: info.WHIPToken, Streams: streams, IVF: ivf}, nil, 60*time.Second); err != nil {
		return failAll(err)
	}

	// One viewer at a time, the modes interleaved so that both see the
	// same moments of a shared, noisy machine.
	var steps []ttffStep
	for i := range max(o.TTFFViewers, o.TTFFFloorViewers) {
		for _, v := range []struct {
			kind string
			n    int
		}{{viewerChromium, o.TTFFViewers}, {viewerPion, o.TTFFFloorViewers}} {
			if i >= v.n || (v.kind == viewerChromium && browserArg == nil) {
				continue
			}
			for _, m := range ttffModes {
				steps = append(steps, ttffStep{Mode: m, Stream: info.Streams[m], Viewer: v.kind})
			}
		}
	}
	r.logf("whep-ttff: %d viewers, one at a time", len(steps))
	var samples []ttffSample
	err = load.call("ttff", ttffArg{Base: info.Base, Token: info.WHEPToken, Steps: steps, Gap: o.TTFFGap, Browser: browserArg},
		&samples, 90*time.Second+time.Duration(len(steps))*15*time.Second)
	if err != nil {
		return failAll(err)
	}
	var timelines []map[string]any
	if err := sut.call("timelines", nil, &timelines, callTimeout); err != nil {
		return failAll(err)
	}
	byResource := map[string]map[string]any{}
	for _, tl := range timelines {
		if res, ok := tl["resource"].(string); ok {
			byResource[res] = tl
		}
	}
	for i := range samples {
		tl := byResource[samples[i].Resource]
		if tl == nil {
			continue
		}
		samples[i].Server = map[string]float64{}
		for k, v := range tl {
			switch v := v.(type) {
			case float64:
				samples[i].Server[k] = v
			case bool:
				if v {
					samples[i].Server[k] = 1
				}
			}
		}
	}
	for i := range pts {
		p := &pts[i]
		if p.Skipped == "" {
			p.TTFF.fill(samples)
			if len(p.TTFF.SamplesMs) == 0 {
				p.Error = fmt.Sprintf("no viewer saw a first frame: %s", p.TTFF.FirstError)
			}
		}
		r.logPoint(p)
	}
	return pts
}

// fill computes the row's figures from the samples of its mode and viewer.
func (t *TTFF) fill(all []ttffSample) {
	var resp, conn []float64
	server := map[string][]float64{}
	for _, s := range all {
		if s.Mode != t.Mode || s.Viewer != t.Viewer {
			continue
		}
		t.Samples = append(t.Samples, s)
		if s.Error != "" {
			t.Failed++
			if t.FirstError == "" {
				t.FirstError = s.Error
			}
			continue
		}
		t.SamplesMs = append(t.SamplesMs, s.TTFFMs)
		if s.ResponseMs > 0 {
			resp = append(resp, s.ResponseMs)
		}
		if s.ConnectedMs > 0 {
			conn = append(conn, s.ConnectedMs)
		}
		for k, v := range s.Server {
			server[k] = append(server[k], v)
		}
		if _, ok := s.Server["early_keyframe"]; ok {
			t.EarlyKeyframes++
		}
	}
	if len(t.SamplesMs) == 0 {
		return
	}
	t.MedianMs, t.P90Ms = quantile(t.SamplesMs, 0.5), quantile(t.SamplesMs, 0.9)
	t.MinMs, t.MaxMs = slices.Min(t.SamplesMs), slices.Max(t.SamplesMs)
	t.ResponseMs, t.ConnectedMs = quantile(resp, 0.5), quantile(conn, 0.5)
	if len(server) > 0 {
		t.Server = map[string]float64{}
		for k, v := range server {
			if k == "cold" || k == "viewer_plis" {
				t.Server[k] = sumFloat(v) // viewers started cold; PLIs in all
				continue
			}
			t.Server[k] = quantile(v, 0.5)
		}
	}
}

func sumFloat(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}

// quantile is the q-quantile of v by linear interpolation between the
// sorted values (0 for none).
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// The rtgate-side steps printed under the table, in order.
var ttffServerSteps = []struct{ key, label string }{
	{"media", "pull has media"}, {"answer", "201"}, {"ice", "ICE"}, {"dtls", "DTLS"},
	{"early_keyframe", "keyframe at rtgate"}, {"keyframe_request", "keyframe asked"}, {"first_rtp", "first RTP"},
	{"keyframe", "keyframe sent"},
}

// printTTFF prints the whep-ttff table.
func printTTFF(w io.Writer, pts []Point, o Options) {
	fmt.Fprintf(w, "   %s (VP8) published over WHIP (proxy) into the embedded SFU, a keyframe on request (not within 300 ms\n"+
		"   of the last, as a browser); one viewer at a time,", filepath.Base(o.TTFFVideo))
	fmt.Fprintf(w, " the modes interleaved, the POSTs of two viewers of a stream at least %s apart\n", o.TTFFGap)
	fmt.Fprintf(w, "   chromium: %s\n   floor:    %s\n", measuresChromium, measuresPion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tviewer\tn\tmedian ms\tp90 ms\tmin\tmax\t201 ms\tconnected ms\tfailed\t")
	var skipped []string
	for _, p := range pts {
		t := p.TTFF
		if t == nil {
			continue
		}
		name := t.Viewer
		if t.Viewer == viewerPion {
			name = "floor"
		}
		switch {
		case p.Skipped != "":
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t\n", t.Mode, name)
			if !slices.Contains(skipped, p.Skipped) {
				skipped = append(skipped, p.Skipped)
			}
		case p.Error != "":
			fmt.Fprintf(tw, "%s\t%s\tFAILED\t\n", t.Mode, name)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t\n", t.Mode, name, len(t.SamplesMs),
				t.MedianMs, t.P90Ms, t.MinMs, t.MaxMs, t.ResponseMs, t.ConnectedMs, t.Failed)
		}
	}
	_ = tw.Flush()
	for _, s := range skipped {
		fmt.Fprintf(w, "   not measured (%s)\n", s)
	}
	med := map[string]*TTFF{}
	for _, p := range pts {
		if p.TTFF != nil && p.TTFF.Viewer == viewerChromium && p.Error == "" && p.Skipped == "" {
			med[p.TTFF.Mode] = p.TTFF
		}
	}
	if a, b := med["relay"], med["proxy"]; a != nil && b != nil && b.MedianMs > 0 {
		fmt.Fprintf(w, "   relay / proxy (chromium medians; proxy is the reference: no rtgate in the media path): %.2fx\n",
			a.MedianMs/b.MedianMs)
	}
	for _, p := range pts {
		t := p.TTFF
		if t == nil || len(t.Server) == 0 || p.Skipped != "" {
			continue
		}
		var parts []string
		for _, s := range ttffServerSteps {
			if v, ok := t.Server[s.key]; ok {
				parts = append(parts, fmt.Sprintf("%s %.0f", s.label, v))
			}
		}
		if len(parts) == 0 {
			continue
		}
		extra := ""
		if t.Mode == "relay" {
			extra = fmt.Sprintf("; cold pulls %.0f of %d, keyframes at rtgate before DTLS %d", t.Server["cold"], len(t.SamplesMs), t.EarlyKeyframes)
		}
		fmt.Fprintf(w, "   rtgate's side, %s %s (medians, ms after the POST arrived): %s%s\n", t.Mode, t.Viewer,
			strings.Join(parts, ", "), extra)
	}
}

// ttffTarget is the TTFF target's row.
func ttffTarget(pts []Point) Target {
	tg := Target{Name: "WHEP time to first frame, median (Chromium)", Want: "< 300 ms"}
	var parts []string
	ok, n := true, 0
	for _, mode := range ttffModes {
		for _, p := range pts {
			t := p.TTFF
			if p.Scenario != ScenarioTTFF || t == nil || t.Mode != mode || t.Viewer != viewerChromium {
				continue
			}
			if p.Skipped != "" {
				tg.Measured, tg.Status = "-", notMeasuredChromium
				return tg
			}
			if p.Error != "" || len(t.SamplesMs) == 0 {
				continue
			}
			n++
			ok = ok && t.MedianMs < 300
			floor := ""
			for _, f := range pts {
				if f.TTFF != nil && f.TTFF.Mode == mode && f.TTFF.Viewer == viewerPion && f.Error == "" && len(f.TTFF.SamplesMs) > 0 {
					floor = fmt.Sprintf(", floor %.0f", f.TTFF.MedianMs)
				}
			}
			parts = append(parts, fmt.Sprintf("%s %.0f ms (p90 %.0f, n %d%s)", mode, t.MedianMs, t.P90Ms, len(t.SamplesMs), floor))
		}
	}
	if n == 0 {
		tg.Measured, tg.Status = "-", statusNotMeasured
		return tg
	}
	tg.Measured = strings.Join(parts, "; ")
	tg.Status = status(ok && n == len(ttffModes))
	return tg
}

func roundMs(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(math.Round(x))
	}
	return out
}
