// Package bench is rtgate's benchmark harness (`rtgate bench`, `make
// bench`): it measures what rtgate's media paths cost per packet, against
// baselines measured in the same run on the same machine, and prints the
// figures as tables next to the project's targets, with JSON and SVG
// plots in an output directory.
//
// Scenarios:
//
//	relay   N RTP/UDP sources -> SUT -> embedded SFU -> one subscriber
//	fanout  one publisher -> SUT -> M subscribers, M ramped up until loss
//	record  K RTP/UDP sources -> SUT -> one file each
//	idle    K published tracks without media: memory per idle track
//	whep-ttff  WHEP POST -> first frame in headless Chromium, proxy and
//	        relay mode, one viewer at a time (the floor: a pion WHEP
//	        client's first keyframe packet)
//
// Each runs three variants of the system under test (SUT): "floor", a bare
// UDP read/write loop with no parsing and no crypto; "pion", the
// straightforward loop of pion's examples (default codecs and interceptors,
// a new rtp.Packet or ReadRTP and WriteRTP per packet); and "rtgate",
// rtgate's own code (publish.Stream over rtpudp, the embedded SFU,
// record.Recorder). Machines are shared and noisy, so the tables show
// rtgate as ratios to the baselines of the same run.
//
// Process layout: for every measured point the orchestrator (Run) starts
// two workers, re-executions of this binary (`rtgate bench-worker`): the
// SUT and the load (packet generators, receivers, the publisher and
// subscriber peers, and the embedded SFU a relay SUT publishes to). CPU
// time (getrusage RUSAGE_SELF) and allocations (runtime.MemStats) are read
// by the SUT about itself, so they are its own. Latency is measured in the
// load process: the generator writes a monotonic send time into every
// payload and the receivers, in the same process, subtract it.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Options configure a run. Zero values take the defaults of `make bench`,
// chosen so that the whole run takes about two and a half minutes
// (whep-ttff: 15 to 20 s).
type Options struct {
	// Out is the directory for the JSON and SVG files ("bench-results").
	Out string
	// Scenarios to run, in order; nil means all: relay, idle, fanout,
	// record, whep-ttff.
	Scenarios []string
	// Variants to run (nil: floor, pion and rtgate). Ratios need the
	// baselines.
	Variants []string
	// Duration is the measured window of each point (3 s), after Warmup
	// (1 s) of traffic.
	Duration, Warmup time.Duration
	// PacketSize is the size of every RTP packet, header included (1200).
	PacketSize int
	// RelayPoints are the relay's (streams, packets/s per stream) points
	// (1x1000, 1x20000, 10x2000).
	RelayPoints []RelayPoint
	// FanoutPPS is the packet rate of the fan-out's published stream (105:
	// 1 Mbit/s of 1200-byte packets).
	FanoutPPS int
	// FanoutSteps is rtgate's subscriber ramp (50, 100, 200, 300, 500,
	// 750, 1000); the ramp stops at the first step with 1% loss or more,
	// or when FanoutBudget (60 s) has passed since the ramp began.
	FanoutSteps  []int
	FanoutBudget time.Duration
	// FanoutBaselineSteps are the steps the floor and pion run (50, 200).
	FanoutBaselineSteps []int
	// FanoutParallel is how many subscribers connect at once (8).
	FanoutParallel int
	// RecordTracks recorded at RecordPPS packets/s each (10 at 200), in
	// RecordFormat (rtgate; "ivf", as pion's ivfwriter writes).
	RecordTracks, RecordPPS int
	RecordFormat            string
	// IdleTracks is how many idle tracks are published (100).
	IdleTracks int
	// TTFFViewers is how many Chromium viewers whep-ttff starts per mode
	// (8), TTFFFloorViewers how many pion WHEP clients (4); TTFFGap is
	// the least time between the POSTs of two viewers of one stream
	// (1 s: the SFU's keyframe budget, two requests refilled one per
	// 500 ms, is full again, so that each viewer is measured on its own).
	// Variants do not apply to whep-ttff.
	TTFFViewers, TTFFFloorViewers int
	TTFFGap                       time.Duration
	// TTFFVideo is the VP8 IVF file whep-ttff publishes
	// (deploy/demo/demo.ivf); BrowserDir the end-to-end tests' Chromium
	// runner (cmd/rtgate/testdata/browser, with npm ci done); Chromium the
	// browser's binary (RTGATE_CHROMIUM, else /usr/lib/chromium/chromium).
	// Relative paths are from the working directory: `make bench` runs
	// from the repository's root. Without Chromium or node, whep-ttff's
	// browser rows are "not measured (no chromium)", or, with CI=true,
	// failed.
	TTFFVideo, BrowserDir, Chromium string
	// Profile, if set, is a directory: the SUT of every point writes a CPU
	// profile and allocation profiles of its measured window there.
	Profile string
	// Worker makes the command of a worker process; nil runs this
	// executable as `bench-worker`.
	Worker func() *exec.Cmd
	// Stdout receives the tables; Log the progress lines (nil: discarded).
	Stdout, Log io.Writer
}

// RelayPoint is one relay measurement: Streams sources at PPS packets/s
// each.
type RelayPoint struct{ Streams, PPS int }

func (p RelayPoint) String() string { return fmt.Sprintf("%dx%d", p.Streams, p.PPS) }

// ParseRelayPoints parses "1x1000,1x20000,10x2000".
func ParseRelayPoints(s string) ([]RelayPoint, error) {
	var out []RelayPoint
	for _, f := range strings.Split(s, ",") {
		var p RelayPoint
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%dx%d", &p.Streams, &p.PPS); err != nil || p.Streams < 1 || p.PPS < 1 {
			return nil, fmt.Errorf("relay point %q: want STREAMSxPPS, e.g. 1x20000", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// AllScenarios in the order they run.
var AllScenarios = []string{ScenarioRelay, ScenarioIdle, ScenarioFanout, ScenarioRecord, ScenarioTTFF}

func (o *Options) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	if o.Out == "" {
		o.Out = "bench-results"
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(AllScenarios, s) {
			return fmt.Errorf("bench: unknown scenario %q (have %s)", s, strings.Join(AllScenarios, ", "))
		}
	}
	if len(o.Variants) == 0 {
		o.Variants = Variants
	}
	for _, v := range o.Variants {
		if !slices.Contains(Variants, v) {
			return fmt.Errorf("bench: unknown variant %q (have %s)", v, strings.Join(Variants, ", "))
		}
	}
	def(&o.Duration, 3*time.Second)
	def(&o.Warmup, time.Second)
	defInt(&o.PacketSize, 1200)
	if o.PacketSize < rtpHeaderSize+minPayload || o.PacketSize > 1400 {
		return fmt.Errorf("bench: packet size %d: want %d..1400", o.PacketSize, rtpHeaderSize+minPayload)
	}
	if len(o.RelayPoints) == 0 {
		o.RelayPoints = []RelayPoint{{1, 1000}, {1, 20000}, {10, 2000}}
	}
	defInt(&o.FanoutPPS, 105)
	if len(o.FanoutSteps) == 0 {
		o.FanoutSteps = []int{50, 100, 200, 300, 500, 750, 1000}
	}
	if len(o.FanoutBaselineSteps) == 0 {
		o.FanoutBaselineSteps = []int{50, 200}
	}
	def(&o.FanoutBudget, 60*time.Second)
	defInt(&o.FanoutParallel, 8)
	defInt(&o.RecordTracks, 10)
	defInt(&o.RecordPPS, 200)
	if o.RecordFormat == "" {
		o.RecordFormat = "ivf"
	}
	defInt(&o.IdleTracks, 100)
	defInt(&o.TTFFViewers, 8)
	defInt(&o.TTFFFloorViewers, 4)
	def(&o.TTFFGap, time.Second)
	if o.TTFFVideo == "" {
		o.TTFFVideo = filepath.Join("deploy", "demo", "demo.ivf")
	}
	if o.BrowserDir == "" {
		o.BrowserDir = filepath.Join("cmd", "rtgate", "testdata", "browser")
	}
	if o.Worker == nil {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find this executable to start workers: %w", err)
		}
		o.Worker = func() *exec.Cmd { return exec.Command(exe, "bench-worker") }
	}
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return fmt.Errorf("bench: profile directory: %w", err)
		}
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return nil
}

// Run runs the scenarios, prints their tables and the targets to
// o.Stdout as each completes, and writes <scenario>.json, summary.json and
// the SVG plots to o.Out. A point that fails is reported in its row and
// JSON (Point.Error), not as an error of the run; Run fails only when it
// cannot run at all or ctx ends.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("bench: output directory: %w", err)
	}
	start := time.Now()
	r := &runner{ctx: ctx, o: o, began: start, rep: &Report{Started: start.UTC(), Machine: machine(), Options: o.summary()}}
	fmt.Fprintf(o.Stdout, "rtgate bench: %s\n\n", r.rep.Machine)
	for _, sc := range o.Scenarios {
		if ctx.Err() != nil {
			break
		}
		var pts []Point
		switch sc {
		case ScenarioRelay:
			pts = r.relay()
		case ScenarioIdle:
			pts = r.idle()
		case ScenarioFanout:
			pts = r.fanout()
		case ScenarioRecord:
			pts = r.record()
		case ScenarioTTFF:
			pts = r.whepTTFF()
		}
		ratios(pts)
		r.rep.Points = append(r.rep.Points, pts...)
		printTable(o.Stdout, sc, pts, o)
		if err := writeJSON(filepath.Join(o.Out, sc+".json"), scenarioFile{Scenario: sc, Machine: r.rep.Machine,
			Options: r.rep.Options, Points: pts}); err != nil {
			return r.rep, err
		}
	}
	r.rep.Seconds = time.Since(start).Seconds()
	r.rep.Targets = targets(r.rep, o)
	printTargets(o.Stdout, r.rep)
	if err := writeSVGs(o.Out, r.rep.Points); err != nil {
		return r.rep, err
	}
	if err := writeJSON(filepath.Join(o.Out, "summary.json"), r.rep); err != nil {
		return r.rep, err
	}
	fmt.Fprintf(o.Stdout, "\nresults in %s (JSON, SVG); run took %.0f s\n", o.Out, r.rep.Seconds)
	return r.rep, ctx.Err()
}

// Machine describes where the figures were measured.
type Machine struct {
	NumCPU   int    `json:"numCPU"`
	CPUModel string `json:"cpuModel"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	LoadAvg  string `json:"loadAvg,omitempty"` // /proc/loadavg at the start: other load on the machine
}

func (m Machine) String() string {
	s := fmt.Sprintf("%d CPUs (%s), %s %s", m.NumCPU, m.CPUModel, m.Go, m.OS)
	if m.LoadAvg != "" {
		s += ", load average " + m.LoadAvg + " at start"
	}
	return s
}

func machine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), CPUModel: "unknown", Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// runner runs the scenarios of one Run.
type runner struct {
	ctx   context.Context
	o     Options
	rep   *Report
	began time.Time
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.o.Log, "bench %3.0fs: "+format+"\n", append([]any{time.Since(r.began).Seconds()}, args...)...)
}

// start starts a worker.
func (r *runner) start(name string, cfg workerConfig, ready any) (*child, error) {
	if r.ctx.Err() != nil {
		return nil, r.ctx.Err()
	}
	return startChild(r.o.Worker, name, cfg, ready)
}

// sleep waits d or until the run is cancelled.
func (r *runner) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return r.ctx.Err()
	case <-t.C:
		return nil
	}
}

// window is one measured window: marks of the load and the SUT at its
// start and end.
type window struct {
	l0, l1  loadMark
	s0, s1  sutMark
	seconds float64
}

// measure lets traffic settle for Warmup, then marks both processes,
// waits Duration and marks them again, in the same order each time, so
// that the load's window and the SUT's are the same length.
func (r *runner) measure(load, sut *child, name string) (window, error) {
	var w window
	if err := r.sleep(r.o.Warmup); err != nil {
		return w, err
	}
	const t = 30 * time.Second
	if r.o.Profile != "" {
		prefix := filepath.Join(r.o.Profile, name)
		if err := sut.call("profstart", prefix, nil, t); err != nil {
			return w, err
		}
		defer func() { _ = sut.call("profstop", prefix, nil, t) }()
	}
	if err := load.call("mark", nil, &w.l0, t); err != nil {
		return w, err
	}
	if err := sut.call("mark", nil, &w.s0, t); err != nil {
		return w, err
	}
	start := time.Now()
	if err := r.sleep(r.o.Duration); err != nil {
		return w, err
	}
	if err := load.call("mark", nil, &w.l1, t); err != nil {
		return w, err
	}
	if err := sut.call("mark", nil, &w.s1, t); err != nil {
		return w, err
	}
	w.seconds = time.Since(start).Seconds()
	return w, nil
}

var errNoTraffic = errors.New("no packets reached the receivers")
