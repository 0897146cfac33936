package bench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// The plots are a few lines of hand-written SVG: a line chart is all they
// need, and no charting module is available here.

type series struct {
	name string
	x, y []float64
}

var seriesColors = map[string]string{VariantFloor: "#7f7f7f", VariantPion: "#d62728", VariantRTGate: "#1f77b4"}

// lineChart draws series as lines with points. With labels, x values are
// indexes into labels (categorical axis).
func lineChart(title, xLabel, yLabel string, labels []string, ss []series) string {
	const w, h = 720.0, 420.0
	const left, right, top, bottom = 70.0, 130.0, 40.0, 60.0
	pw, ph := w-left-right, h-top-bottom
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range ss {
		for i := range s.x {
			xmin, xmax, ymax = math.Min(xmin, s.x[i]), math.Max(xmax, s.x[i]), math.Max(ymax, s.y[i])
		}
	}
	if labels != nil {
		xmin, xmax = -0.5, float64(len(labels))-0.5
	} else {
		xmin = 0
	}
	if math.IsInf(xmax, -1) || xmax <= xmin {
		xmax = xmin + 1
	}
	ystep := niceStep(ymax / 5)
	ymax = math.Max(ystep, math.Ceil(ymax/ystep)*ystep)
	px := func(x float64) float64 { return left + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return top + ph - y/ymax*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	// Y grid and ticks.
	for y := 0.0; y <= ymax+ystep/2; y += ystep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", left, py(y), left+pw, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, py(y)+4, fmtTick(y))
	}
	// X ticks.
	if labels != nil {
		for i, l := range labels {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(float64(i)), top+ph+18, html.EscapeString(l))
		}
	} else {
		xstep := niceStep((xmax - xmin) / 6)
		for x := 0.0; x <= xmax+xstep/2; x += xstep {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", px(x), top, px(x), top+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), top+ph+18, fmtTick(x))
		}
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, h-14, html.EscapeString(xLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, html.EscapeString(yLabel))
	// Series and legend.
	for i, s := range ss {
		color := seriesColors[s.name]
		if color == "" {
			color = "#2ca02c"
		}
		var pts []string
		for j := range s.x {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x[j]), py(s.y[j])))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), color)
		for j := range s.x {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s</title></circle>`+"\n",
				px(s.x[j]), py(s.y[j]), color, html.EscapeString(s.name), fmtTick(s.y[j]))
		}
		ly := top + 14 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", left+pw+12, ly-4, left+pw+32, ly-4, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+38, ly, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func fmtTick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// writeSVGs writes relay.svg (CPU per packet at each relay point) and
// fanout.svg (the SUT's CPU use as subscribers grow), for the scenarios
// that ran.
func writeSVGs(dir string, pts []Point) error {
	var labels []string
	idx := map[string]int{}
	relay := map[string]*series{}
	fan := map[string]*series{}
	for _, p := range pts {
		if p.Error != "" {
			continue
		}
		switch p.Scenario {
		case ScenarioRelay:
			l := fmt.Sprintf("%d x %d pps", p.Streams, p.PPS)
			if _, ok := idx[l]; !ok {
				idx[l] = len(labels)
				labels = append(labels, l)
			}
			s := relay[p.Variant]
			if s == nil {
				s = &series{name: p.Variant}
				relay[p.Variant] = s
			}
			s.x = append(s.x, float64(idx[l]))
			s.y = append(s.y, p.CPUNsPerPacket/1000)
		case ScenarioFanout:
			s := fan[p.Variant]
			if s == nil {
				s = &series{name: p.Variant}
				fan[p.Variant] = s
			}
			s.x = append(s.x, float64(p.Subscribers))
			// Share of one core: CPU per delivered packet times packets per second.
			s.y = append(s.y, p.CPUNsPerPacket*float64(p.Delivered)/p.Seconds/1e9*100)
		}
	}
	ordered := func(m map[string]*series) []series {
		var out []series
		for _, v := range Variants {
			if s := m[v]; s != nil {
				out = append(out, *s)
			}
		}
		return out
	}
	if len(relay) > 0 {
		svg := lineChart("relay: SUT CPU per relayed packet", "streams x packets/s per stream", "CPU µs per packet", labels, ordered(relay))
		if err := os.WriteFile(filepath.Join(dir, "relay.svg"), []byte(svg), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if len(fan) > 0 {
		svg := lineChart("fan-out: SUT CPU as subscribers grow", "subscribers", "CPU, % of one core", nil, ordered(fan))
		if err := os.WriteFile(filepath.Join(dir, "fanout.svg"), []byte(svg), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}
