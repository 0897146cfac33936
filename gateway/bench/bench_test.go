package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary is also the harness's worker: with RTGATE_BENCH_WORKER
// set it serves the requests of the orchestrator, as `rtgate bench-worker`
// does.
func TestMain(m *testing.M) {
	if os.Getenv("RTGATE_BENCH_WORKER") == "1" {
		if err := Worker(context.Background(), os.Stdin, os.NewFile(3, "bench-replies"), os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testWorker() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RTGATE_BENCH_WORKER=1")
	return cmd
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// packetScenarios are the scenarios that measure packets (all but
// whep-ttff, which TestWHEPTTFF runs).
var packetScenarios = []string{ScenarioRelay, ScenarioIdle, ScenarioFanout, ScenarioRecord}

// TestScenarios runs every packet scenario for a moment, through real
// worker processes, real pion peers and the embedded SFU, and checks that the
// JSON holds sane figures: packets went through every variant, CPU and
// ratios are positive and finite, latencies and memory were measured, the
// files were recorded. It keeps the harness from rotting silently; the
// figures themselves are too short to mean anything.
func TestScenarios(t *testing.T) {
	out := t.TempDir()
	var tables bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{
		Out: out, Scenarios: packetScenarios, Duration: 400 * time.Millisecond, Warmup: 200 * time.Millisecond,
		RelayPoints: []RelayPoint{{Streams: 1, PPS: 400}},
		FanoutSteps: []int{2, 4}, FanoutBaselineSteps: []int{2}, FanoutPPS: 200,
		RecordTracks: 2, RecordPPS: 200, IdleTracks: 3,
		Worker: testWorker, Stdout: &tables, Log: logWriter{t},
	})
	t.Logf("tables:\n%s", tables.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	variants := map[string][]string{
		ScenarioRelay: Variants, ScenarioFanout: Variants, ScenarioRecord: Variants,
		ScenarioIdle: {VariantPion, VariantRTGate},
	}
	for _, sc := range packetScenarios {
		b, err := os.ReadFile(filepath.Join(out, sc+".json"))
		if err != nil {
			t.Fatalf("%s: %v", sc, err)
		}
		var f scenarioFile
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s.json: %v", sc, err)
		}
		seen := map[string]bool{}
		for _, p := range f.Points {
			seen[p.Variant] = true
		}
		for _, p := range f.Points {
			// rtgate's fan-out ramp goes further than the baselines.
			baselined := p.Scenario != ScenarioFanout || p.Subscribers == 2
			checkPoint(t, p, baselined)
		}
		for _, v := range variants[sc] {
			if !seen[v] {
				t.Errorf("%s.json has no %s point", sc, v)
			}
		}
		if !strings.Contains(tables.String(), scenarioTitles[sc]) {
			t.Errorf("no %s table printed", sc)
		}
	}
	// rtgate's fan-out ramp went through both steps, unless the first
	// lost 1% or more (a very loaded machine), where it must stop.
	var ramp []Point
	for _, p := range rep.Points {
		if p.Scenario == ScenarioFanout && p.Variant == VariantRTGate {
			ramp = append(ramp, p)
		}
	}
	switch {
	case len(ramp) == 2 && ramp[0].Subscribers == 2 && ramp[1].Subscribers == 4 && ramp[0].Loss < 0.01:
	case len(ramp) == 1 && ramp[0].Subscribers == 2 && ramp[0].Loss >= 0.01:
		t.Logf("the ramp stopped at 2 subscribers with %.1f%% loss", ramp[0].Loss*100)
	default:
		t.Errorf("rtgate fan-out ramp %+v: want 2 then 4 subscribers, or a stop at 2 on >= 1%% loss", ramp)
	}

	var sum Report
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if sum.Machine.NumCPU < 1 || len(sum.Targets) < 10 || len(sum.Points) != len(rep.Points) {
		t.Errorf("summary: machine %+v, %d targets, %d points", sum.Machine, len(sum.Targets), len(sum.Points))
	}
	for _, tg := range sum.Targets {
		if tg.Status == "" || tg.Want == "" {
			t.Errorf("target %+v incomplete", tg)
		}
	}
	for _, name := range []string{"relay.svg", "fanout.svg"} {
		checkSVG(t, filepath.Join(out, name))
	}
}

// checkPoint checks one point's figures; baselined says the floor and the
// pion loop ran the same point.
func checkPoint(t *testing.T, p Point, baselined bool) {
	t.Helper()
	what := fmt.Sprintf("%s %s (%d streams, %d subscribers)", p.Scenario, p.Variant, p.Streams, p.Subscribers)
	if p.Error != "" {
		t.Errorf("%s: %s", what, p.Error)
		return
	}
	finite := func(name string, v float64, positive bool) {
		t.Helper()
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (positive && v == 0) {
			t.Errorf("%s: %s = %v", what, name, v)
		}
	}
	if p.RSSIdle <= 0 || p.RSSBefore <= 0 {
		t.Errorf("%s: RSS before %d, idle %d", what, p.RSSBefore, p.RSSIdle)
	}
	if p.Scenario == ScenarioIdle {
		if p.Variant != VariantFloor {
			finite("RSS per idle track", p.RSSPerTrackIdle, true)
		}
		return
	}
	if p.Sent == 0 || p.Handled == 0 || p.Delivered == 0 {
		t.Errorf("%s: sent %d, handled %d, delivered %d", what, p.Sent, p.Handled, p.Delivered)
	}
	finite("CPU per packet", p.CPUNsPerPacket, true)
	finite("allocations per packet", p.AllocsPerPacket, false)
	finite("loss", p.Loss, false)
	if p.Loss > 0.5 {
		t.Errorf("%s: loss %.1f%%", what, p.Loss*100)
	}
	if p.Variant != VariantFloor && baselined {
		finite("CPU over the floor's", p.VsFloor, true)
		finite("CPU over the pion loop's", p.VsPion, true)
	}
	if p.Variant == VariantPion && p.AllocsPerPacket < 0.5 {
		// pion's loops allocate about once per packet or more (a new
		// rtp.Packet or ReadRTP's buffer, its NACK responder's copies):
		// the harness would be blind if it saw less.
		t.Errorf("%s: %.3f allocations per packet; the pion loop makes about one or more", what, p.AllocsPerPacket)
	}
	switch p.Scenario {
	case ScenarioRelay, ScenarioFanout:
		finite("p50 latency", p.LatencyP50Us, true)
		finite("p99 latency", p.LatencyP99Us, true)
		if p.LatencyP99Us < p.LatencyP50Us {
			t.Errorf("%s: p99 %v < p50 %v", what, p.LatencyP99Us, p.LatencyP50Us)
		}
	case ScenarioRecord:
		if p.Files != p.Streams || p.Bytes <= 0 {
			t.Errorf("%s: %d files, %d bytes", what, p.Files, p.Bytes)
		}
		if p.Variant == VariantRTGate && p.Frames == 0 {
			t.Errorf("%s: no frames recorded", what)
		}
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	lines := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != len(Variants) {
		t.Errorf("%s: %d lines, want one per variant (%d)", path, lines, len(Variants))
	}
}

// TestMarkDoesNotAllocate: the SUT answers a mark without allocating, so
// the allocations it reports are its own.
func TestMarkDoesNotAllocate(t *testing.T) {
	b := newSUTBase(context.Background(), newLogger(io.Discard))
	defer b.close()
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = b.appendMark(buf[:0]) }); n != 0 {
		t.Errorf("appendMark: %v allocations", n)
	}
	var m sutMark
	if err := json.Unmarshal(buf, &m); err != nil || m.CPUNs <= 0 || m.RSS <= 0 || m.Mallocs == 0 {
		t.Errorf("mark %s: %+v, %v", buf, m, err)
	}
}

// TestQuantile checks the histogram's percentiles on known data.
func TestQuantile(t *testing.T) {
	h := newHistogram()
	for i := range 100 {
		h.add(int64(i) * 1000) // 0..99 µs, one each
	}
	h.add(5 * int64(time.Second)) // beyond the range: the last bucket
	d := h.delta()
	if got := quantileUs(d, 0.5); got != 50.5 {
		t.Errorf("p50 = %v µs, want 50.5", got)
	}
	if got := quantileUs(d, 0.99); got != 99.5 {
		t.Errorf("p99 = %v µs, want 99.5", got)
	}
	if got := quantileUs(d, 1); got != histBuckets-0.5 {
		t.Errorf("max = %v µs, want the last bucket", got)
	}
	if len(h.delta()) != 0 {
		t.Error("a second delta without new samples is not empty")
	}
}
