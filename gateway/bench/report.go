package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a whole run: summary.json.
type Report struct {
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"` // wall time of the run
	Machine Machine   `json:"machine"`
	Options Params    `json:"options"`
	Points  []Point   `json:"points"`
	Targets []Target  `json:"targets"`
}

// Params are the options a run used, as recorded in its JSON.
type Params struct {
	Scenarios           []string `json:"scenarios"`
	Variants            []string `json:"variants"`
	Duration            string   `json:"duration"`
	Warmup              string   `json:"warmup"`
	PacketSize          int      `json:"packetSize"`
	RelayPoints         []string `json:"relayPoints"`
	FanoutPPS           int      `json:"fanoutPPS"`
	FanoutSteps         []int    `json:"fanoutSteps"`
	FanoutBaselineSteps []int    `json:"fanoutBaselineSteps"`
	FanoutBudget        string   `json:"fanoutBudget"`
	RecordTracks        int      `json:"recordTracks"`
	RecordPPS           int      `json:"recordPPS"`
	RecordFormat        string   `json:"recordFormat"`
	IdleTracks          int      `json:"idleTracks"`
	TTFFViewers         int      `json:"ttffViewers"`
	TTFFFloorViewers    int      `json:"ttffFloorViewers"`
	TTFFGap             string   `json:"ttffGap"`
	TTFFVideo           string   `json:"ttffVideo"`
}

func (o Options) summary() Params {
	p := Params{Scenarios: o.Scenarios, Variants: o.Variants, Duration: o.Duration.String(), Warmup: o.Warmup.String(),
		PacketSize: o.PacketSize, FanoutPPS: o.FanoutPPS, FanoutSteps: o.FanoutSteps,
		FanoutBaselineSteps: o.FanoutBaselineSteps, FanoutBudget: o.FanoutBudget.String(),
		RecordTracks: o.RecordTracks, RecordPPS: o.RecordPPS, RecordFormat: o.RecordFormat, IdleTracks: o.IdleTracks,
		TTFFViewers: o.TTFFViewers, TTFFFloorViewers: o.TTFFFloorViewers,
		TTFFGap: o.TTFFGap.String(), TTFFVideo: o.TTFFVideo}
	for _, rp := range o.RelayPoints {
		p.RelayPoints = append(p.RelayPoints, rp.String())
	}
	return p
}

// scenarioFile is <scenario>.json.
type scenarioFile struct {
	Scenario string  `json:"scenario"`
	Machine  Machine `json:"machine"`
	Options  Params  `json:"options"`
	Points   []Point `json:"points"`
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

var scenarioTitles = map[string]string{
	ScenarioRelay:  "relay: N RTP/UDP sources -> SUT -> embedded SFU -> 1 subscriber",
	ScenarioIdle:   "idle: published tracks without media",
	ScenarioFanout: "fan-out: 1 publisher -> SUT -> M subscribers (each its own PeerConnection)",
	ScenarioRecord: "record: K RTP/UDP sources -> SUT -> one file each",
	ScenarioTTFF:   "whep-ttff: WHEP POST -> first frame, proxy and relay mode (rtgate run, embedded SFU)",
}

// printTable prints one scenario's points.
func printTable(w io.Writer, sc string, pts []Point, o Options) {
	fmt.Fprintf(w, "== %s\n", scenarioTitles[sc])
	switch sc {
	case ScenarioRelay:
		fmt.Fprintf(w, "   %d-byte packets, %s per point; CPU and allocations per packet the SUT relayed; latency over all hops\n", o.PacketSize, o.Duration)
	case ScenarioFanout:
		fmt.Fprintf(w, "   %d pps of %d bytes (%.2f Mbit/s), %s per step; CPU and allocations per packet delivered to a subscriber\n",
			o.FanoutPPS, o.PacketSize, float64(o.FanoutPPS*o.PacketSize*8)/1e6, o.Duration)
	case ScenarioRecord:
		fmt.Fprintf(w, "   %d-byte packets, rtgate writes %s, pion its ivfwriter, the floor raw packets; per packet written\n",
			o.PacketSize, o.RecordFormat)
	case ScenarioTTFF:
		printTTFF(w, pts, o)
		for _, p := range pts {
			if p.Error != "" {
				fmt.Fprintf(w, "   FAILED %s %s %s:\n%s\n", p.Scenario, p.TTFF.Mode, p.TTFF.Viewer, indent(p.Error))
			}
		}
		fmt.Fprintln(w)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	switch sc {
	case ScenarioIdle:
		fmt.Fprintln(tw, "tracks\tvariant\tRSS before MiB\tRSS idle MiB\tper track KiB\t")
		for _, p := range pts {
			if p.Error != "" {
				fmt.Fprintf(tw, "%d\t%s\tFAILED\t\n", p.Streams, p.Variant)
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%.1f\t%.0f\t\n", p.Streams, p.Variant,
				mib(float64(p.RSSBefore)), mib(float64(p.RSSIdle)), p.RSSPerTrackIdle/1024)
		}
	case ScenarioFanout:
		fmt.Fprintln(tw, "subs\tvariant\tCPU µs/pkt\tx floor\tx pion\tallocs/pkt\tloss\tworst sub\tfailed\tp50 µs\tp99 µs\tRSS/sub KiB\t")
		for _, p := range pts {
			if p.Error != "" {
				fmt.Fprintf(tw, "%d\t%s\tFAILED\t\n", p.Subscribers, p.Variant)
				continue
			}
			fmt.Fprintf(tw, "%d\t%s\t%.2f\t%s\t%s\t%.3f\t%.2f%%\t%.2f%%\t%d\t%.0f\t%.0f\t%.0f\t\n", p.Subscribers, p.Variant,
				p.CPUNsPerPacket/1000, ratio(p.VsFloor), ratio(p.VsPion), p.AllocsPerPacket, p.Loss*100, p.WorstLoss*100,
				p.Failed, p.LatencyP50Us, p.LatencyP99Us, p.RSSPerTrack/1024)
		}
	case ScenarioRelay:
		fmt.Fprintln(tw, "streams\tpps/stream\tvariant\tCPU µs/pkt\tx floor\tx pion\tallocs/pkt\tloss\thops\tp50 µs\tp99 µs\tRSS/track KiB idle\tloaded\t")
		for _, p := range pts {
			if p.Error != "" {
				fmt.Fprintf(tw, "%d\t%d\t%s\tFAILED\t\n", p.Streams, p.PPS, p.Variant)
				continue
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%s\t%s\t%.3f\t%.2f%%\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t\n", p.Streams, p.PPS, p.Variant,
				p.CPUNsPerPacket/1000, ratio(p.VsFloor), ratio(p.VsPion), p.AllocsPerPacket, p.Loss*100, p.Hops,
				p.LatencyP50Us, p.LatencyP99Us, p.RSSPerTrackIdle/1024, p.RSSPerTrack/1024)
		}
	case ScenarioRecord:
		fmt.Fprintln(tw, "tracks\tpps/track\tvariant\tCPU µs/pkt\tx floor\tx pion\tallocs/pkt\tloss\tfiles\tMB\tframes\tRSS/track KiB\t")
		for _, p := range pts {
			if p.Error != "" {
				fmt.Fprintf(tw, "%d\t%d\t%s\tFAILED\t\n", p.Streams, p.PPS, p.Variant)
				continue
			}
			frames := "-"
			if p.Frames > 0 {
				frames = fmt.Sprint(p.Frames)
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%s\t%s\t%.3f\t%.2f%%\t%d\t%.1f\t%s\t%.0f\t\n", p.Streams, p.PPS, p.Variant,
				p.CPUNsPerPacket/1000, ratio(p.VsFloor), ratio(p.VsPion), p.AllocsPerPacket, p.Loss*100,
				p.Files, float64(p.Bytes)/1e6, frames, p.RSSPerTrack/1024)
		}
	}
	_ = tw.Flush()
	for _, p := range pts {
		if p.Error != "" {
			fmt.Fprintf(w, "   FAILED %s %s (%s):\n%s\n", p.Scenario, p.Variant, p.label(), indent(p.Error))
		}
	}
	fmt.Fprintln(w)
}

func ratio(r float64) string {
	if r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

func mib(b float64) float64 { return b / (1 << 20) }

func indent(s string) string {
	return "     " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n     ")
}

// Target is one of the project's performance targets and where rtgate
// stands against it in this run.
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	// Status is "met", "NOT met" or "not measured".
	Status string `json:"status"`
}

const (
	statusMet         = "met"
	statusNotMet      = "NOT met"
	statusNotMeasured = "not measured"
)

func status(ok bool) string {
	if ok {
		return statusMet
	}
	return statusNotMet
}

// allocTarget is what "0 allocations per packet" is checked as: periodic
// work that does not depend on packets (RTCP reports every second, ICE
// keepalives) spreads over the packets, so the figure is never exactly 0;
// below 0.01, no packet allocates (one allocation in every hundred packets
// would show as 0.01).
const allocTarget = 0.01

// targets sets rtgate against the targets of issue 8.
func targets(rep *Report, o Options) []Target {
	find := func(sc, v string, streams, pps int) *Point {
		for i := range rep.Points {
			p := &rep.Points[i]
			if p.Scenario == sc && p.Variant == v && p.Streams == streams && p.PPS == pps && p.Error == "" {
				return p
			}
		}
		return nil
	}
	var ts []Target
	add := func(name, want, measured, st string) {
		ts = append(ts, Target{Name: name, Want: want, Measured: measured, Status: st})
	}
	// Relay CPU against the floor and the pion loop.
	for _, c := range []struct {
		pps   int
		limit float64
	}{{20000, 1.0}, {1000, 1.2}} {
		name := fmt.Sprintf("relay CPU/pkt at %d pps (1 stream) vs floor", c.pps)
		want := fmt.Sprintf("<= %.1fx", c.limit)
		if p := find(ScenarioRelay, VariantRTGate, 1, c.pps); p != nil && p.VsFloor > 0 {
			add(name, want, fmt.Sprintf("%.2fx", p.VsFloor), status(p.VsFloor <= c.limit))
		} else {
			add(name, want, "-", statusNotMeasured)
		}
	}
	if p := find(ScenarioRelay, VariantRTGate, 1, 20000); p != nil && p.VsPion > 0 {
		add("relay at 20000 pps: pion loop CPU/pkt over rtgate's", ">= 1.5x", fmt.Sprintf("%.2fx", 1/p.VsPion), status(1/p.VsPion >= 1.5))
	} else {
		add("relay at 20000 pps: pion loop CPU/pkt over rtgate's", ">= 1.5x", "-", statusNotMeasured)
	}
	// Allocations per packet on each path. Periodic work (RTCP reports,
	// ICE keepalives) spreads over the packets, so the figure shrinks as
	// the packet rate grows and grows with the number of PeerConnections;
	// an allocation on the per-packet path would keep it >= 1 at every
	// point. The target is judged at rtgate's lowest point; the highest is
	// shown with its allocations per second.
	for _, c := range []struct{ sc, path string }{{ScenarioRelay, "publish (relay)"}, {ScenarioFanout, "fan-out"}, {ScenarioRecord, "record"}} {
		var lowest, highest *Point
		for i := range rep.Points {
			p := &rep.Points[i]
			// A point that lost packets measures repair storms, not the
			// path: its loss is reported in its table.
			if p.Scenario != c.sc || p.Variant != VariantRTGate || p.Error != "" || p.Loss >= 0.01 {
				continue
			}
			if lowest == nil || p.AllocsPerPacket < lowest.AllocsPerPacket {
				lowest = p
			}
			if highest == nil || p.AllocsPerPacket > highest.AllocsPerPacket {
				highest = p
			}
		}
		name := "allocations per packet, " + c.path
		want := fmt.Sprintf("0 (< %.2f; points with < 1%% loss)", allocTarget)
		if lowest == nil {
			add(name, want, "-", statusNotMeasured)
			continue
		}
		m := fmt.Sprintf("%.3f (%s)", lowest.AllocsPerPacket, lowest.label())
		if highest != lowest {
			m += fmt.Sprintf(" to %.3f (%s: %.0f/s)", highest.AllocsPerPacket, highest.label(),
				highest.AllocsPerPacket*highest.packetRate())
		}
		add(name, want, m, status(lowest.AllocsPerPacket < allocTarget))
	}
	// Fan-out capacity.
	held, tried := 0, 0
	var at500 *Point
	for i, p := range rep.Points {
		if p.Scenario != ScenarioFanout || p.Variant != VariantRTGate {
			continue
		}
		tried = max(tried, p.Subscribers)
		if p.Error == "" && p.Loss < 0.01 {
			held = max(held, p.Subscribers)
			if p.Subscribers <= 500 {
				at500 = &rep.Points[i]
			}
		}
	}
	fanWant := fmt.Sprintf(">= 500 subscribers of %.2f Mbit/s, < 1%% loss", float64(o.FanoutPPS*o.PacketSize*8)/1e6)
	switch {
	case tried == 0:
		add("fan-out capacity", fanWant, "-", statusNotMeasured)
	default:
		m := fmt.Sprintf("%d held (ramp reached %d)", held, tried)
		add("fan-out capacity", fanWant, m, status(held >= 500))
	}
	// Latency per rtgate hop: fan-out has one (the SFU); relay two (the
	// publisher and the SFU), judged at 1 stream of 1,000 pps, where the
	// load process (generator, SFU, subscriber) is not itself saturated.
	if at500 != nil {
		add(fmt.Sprintf("p99 latency, fan-out (1 hop: SFU) at %d subscribers", at500.Subscribers), "< 1 ms",
			fmt.Sprintf("%.0f µs", at500.LatencyP99Us)+floorLatency(rep.Points, at500), status(at500.LatencyP99Us < 1000))
	} else {
		add("p99 latency, fan-out (1 hop: SFU)", "< 1 ms", "-", statusNotMeasured)
	}
	if p := find(ScenarioRelay, VariantRTGate, 1, 1000); p != nil {
		add("p99 latency, relay 1x1000 (2 hops: publish, SFU)", "< 2 ms (1 ms per hop)",
			fmt.Sprintf("%.0f µs", p.LatencyP99Us)+floorLatency(rep.Points, p), status(p.LatencyP99Us < 2000))
	} else {
		add("p99 latency, relay 1x1000 (2 hops)", "< 2 ms (1 ms per hop)", "-", statusNotMeasured)
	}
	// Memory per idle track.
	if p := findIdle(rep.Points); p != nil {
		add(fmt.Sprintf("RSS per idle published track (%d tracks)", p.Streams), "<= 256 KiB",
			fmt.Sprintf("%.0f KiB", p.RSSPerTrackIdle/1024), status(p.RSSPerTrackIdle <= 256*1024))
	} else {
		add("RSS per idle published track", "<= 256 KiB", "-", statusNotMeasured)
	}
	ts = append(ts, ttffTarget(rep.Points))
	add("this run's wall time (make bench: plus the build)", "< 3 min",
		fmt.Sprintf("%.0f s", rep.Seconds), status(rep.Seconds < 180))
	return ts
}

func findIdle(pts []Point) *Point {
	for i := range pts {
		if pts[i].Scenario == ScenarioIdle && pts[i].Variant == VariantRTGate && pts[i].Error == "" {
			return &pts[i]
		}
	}
	return nil
}

func printTargets(w io.Writer, rep *Report) {
	fmt.Fprintln(w, "== targets (rtgate, this run)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tmeasured\tstatus")
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Want, t.Measured, t.Status)
	}
	_ = tw.Flush()
}

// packetRate is the packets per second CPU and allocations were divided by.
func (p *Point) packetRate() float64 {
	if p.Seconds <= 0 {
		return 0
	}
	if p.Scenario == ScenarioFanout {
		return float64(p.Delivered) / p.Seconds
	}
	return float64(p.Handled) / p.Seconds
}

// label names a point in a sentence.
func (p *Point) label() string {
	switch p.Scenario {
	case ScenarioFanout:
		return fmt.Sprintf("%d subscribers", p.Subscribers)
	case ScenarioIdle:
		return fmt.Sprintf("%d tracks", p.Streams)
	}
	return fmt.Sprintf("%dx%d pps", p.Streams, p.PPS)
}

// floorLatency is the floor's p99 at the same point, for scale: what one
// bare relay hop took on this machine at that moment.
func floorLatency(pts []Point, at *Point) string {
	for _, p := range pts {
		if p.Scenario == at.Scenario && p.Variant == VariantFloor && p.Streams == at.Streams && p.PPS == at.PPS &&
			p.Subscribers == at.Subscribers && p.Error == "" {
			return fmt.Sprintf(" (floor, 1 bare hop: %.0f µs)", p.LatencyP99Us)
		}
	}
	return ""
}
