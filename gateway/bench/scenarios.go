package bench

import (
	"fmt"
	"time"
)

// Point is one measured point of one variant.
type Point struct {
	Scenario    string `json:"scenario"`
	Variant     string `json:"variant"`
	Streams     int    `json:"streams"`                // sources (relay, record, idle); 1 for fan-out
	PPS         int    `json:"ppsPerStream,omitempty"` // packets/s of each stream
	Subscribers int    `json:"subscribers,omitempty"`  // fan-out
	PacketSize  int    `json:"packetSize,omitempty"`   // bytes, RTP header included

	Seconds   float64 `json:"seconds,omitempty"` // the measured window
	Sent      uint64  `json:"sent"`              // packets generated in the window, all streams
	Handled   uint64  `json:"handled"`           // packets the SUT counted in the window
	Delivered uint64  `json:"delivered"`         // packets that reached the receivers (record: the writer)
	// Loss is the fraction of what was due that did not arrive (fan-out:
	// sent × subscribers was due); WorstLoss that of the worst
	// subscriber; Failed subscribers never connected (they count as lost).
	Loss      float64 `json:"loss"`
	WorstLoss float64 `json:"worstLoss,omitempty"`
	Failed    int     `json:"failedSubscribers,omitempty"`

	// CPUNsPerPacket is the SUT's CPU time (user+system) per packet:
	// per packet handled for relay and record, per packet delivered to a
	// subscriber for fan-out. AllocsPerPacket is the SUT's heap
	// allocations per the same packet.
	CPUNsPerPacket  float64 `json:"cpuNsPerPacket"`
	AllocsPerPacket float64 `json:"allocsPerPacket"`
	// VsFloor and VsPion are CPUNsPerPacket over the floor's and the pion
	// loop's at the same point (0: not measured).
	VsFloor float64 `json:"vsFloor,omitempty"`
	VsPion  float64 `json:"vsPion,omitempty"`

	// LatencyP50Us and LatencyP99Us are generator-to-receiver latencies
	// over Hops forwarding hops (the SUT's, and for relay the embedded
	// SFU's after it), in µs.
	LatencyP50Us float64 `json:"latencyP50Us,omitempty"`
	LatencyP99Us float64 `json:"latencyP99Us,omitempty"`
	Hops         int     `json:"hops,omitempty"`

	// RSS of the SUT (bytes): before its first track, once every track is
	// set up and idle, at the end of the window; per track (per
	// subscriber for fan-out) the growth over RSSBefore.
	RSSBefore       int64   `json:"rssBefore,omitempty"`
	RSSIdle         int64   `json:"rssIdle,omitempty"`
	RSS             int64   `json:"rss,omitempty"`
	RSSPerTrackIdle float64 `json:"rssPerTrackIdle,omitempty"`
	RSSPerTrack     float64 `json:"rssPerTrack,omitempty"`

	// Record: files written, their bytes, frames (rtgate only).
	Files  int    `json:"files,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	Frames uint64 `json:"frames,omitempty"`

	// TTFF is whep-ttff's figures.
	TTFF *TTFF `json:"ttff,omitempty"`

	// Error says why the point could not be measured (in full); Skipped
	// why it was not (a tool missing on this machine, without CI=true).
	Error   string `json:"error,omitempty"`
	Skipped string `json:"skipped,omitempty"`
}

const callTimeout = 30 * time.Second

func (r *runner) logPoint(p *Point) {
	what := fmt.Sprintf("%s %s", p.Scenario, p.Variant)
	switch p.Scenario {
	case ScenarioFanout:
		what += fmt.Sprintf(" %d subscribers", p.Subscribers)
	case ScenarioIdle:
		what += fmt.Sprintf(" %d tracks", p.Streams)
	default:
		what += fmt.Sprintf(" %dx%d pps", p.Streams, p.PPS)
	}
	if p.Scenario == ScenarioTTFF && p.TTFF != nil {
		what = fmt.Sprintf("%s %s %s", p.Scenario, p.TTFF.Mode, p.TTFF.Viewer)
	}
	if p.Error != "" {
		r.logf("%s: FAILED: %s", what, p.Error)
		return
	}
	if p.Skipped != "" {
		r.logf("%s: not measured (%s)", what, p.Skipped)
		return
	}
	if p.Scenario == ScenarioTTFF && p.TTFF != nil {
		r.logf("%s: median %.0f ms, p90 %.0f ms of %v", what, p.TTFF.MedianMs, p.TTFF.P90Ms, roundMs(p.TTFF.SamplesMs))
		return
	}
	if p.Scenario == ScenarioIdle {
		r.logf("%s: %.0f KiB per idle track", what, p.RSSPerTrackIdle/1024)
		return
	}
	lat := ""
	if p.Hops > 0 {
		lat = fmt.Sprintf(", p99 %.0f µs", p.LatencyP99Us)
	}
	r.logf("%s: %.2f µs CPU/pkt, %.3f allocs/pkt, loss %.2f%%%s", what,
		p.CPUNsPerPacket/1000, p.AllocsPerPacket, p.Loss*100, lat)
}

// delta is b-a for counters, element by element (a may be shorter: sinks
// added in between count from 0).
func delta(a, b []uint64) []uint64 {
	out := make([]uint64, len(b))
	for i := range b {
		out[i] = b[i]
		if i < len(a) {
			out[i] -= a[i]
		}
	}
	return out
}

func sum(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

func frac(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// fill sets the figures common to every scenario from a window; per is
// the packet count CPU and allocations are divided by.
func (p *Point) fill(w window, ready sutReady, per uint64, tracks int) {
	p.Seconds = w.seconds
	p.Sent = sum(delta(w.l0.Sent, w.l1.Sent))
	p.Handled = w.s1.Packets - w.s0.Packets
	p.RSSBefore, p.RSSIdle, p.RSS = ready.RSSBefore, ready.RSSIdle, w.s1.RSS
	if tracks > 0 {
		p.RSSPerTrackIdle = float64(ready.RSSIdle-ready.RSSBefore) / float64(tracks)
		p.RSSPerTrack = float64(w.s1.RSS-ready.RSSBefore) / float64(tracks)
	}
	p.LatencyP50Us = quantileUs(w.l1.Hist, 0.50)
	p.LatencyP99Us = quantileUs(w.l1.Hist, 0.99)
	if per == 0 {
		p.Error = errNoTraffic.Error()
		return
	}
	p.CPUNsPerPacket = float64(w.s1.CPUNs-w.s0.CPUNs) / float64(per)
	p.AllocsPerPacket = float64(w.s1.Mallocs-w.s0.Mallocs) / float64(per)
}

// relay: N RTP/UDP sources -> SUT -> embedded SFU -> one subscriber.
func (r *runner) relay() []Point {
	var pts []Point
	for _, rp := range r.o.RelayPoints {
		for _, v := range r.o.Variants {
			if r.ctx.Err() != nil {
				return pts
			}
			pts = append(pts, r.relayPoint(v, rp))
		}
	}
	return pts
}

func (r *runner) relayPoint(v string, rp RelayPoint) (p Point) {
	p = Point{Scenario: ScenarioRelay, Variant: v, Streams: rp.Streams, PPS: rp.PPS, PacketSize: r.o.PacketSize, Hops: 2}
	if v == VariantFloor {
		p.Hops = 1 // no SFU behind a bare relay
	}
	defer r.logPoint(&p)
	fail := func(err error) Point { p.Error = err.Error(); return p }

	load, err := r.start("load", workerConfig{Role: roleLoad}, nil)
	if err != nil {
		return fail(err)
	}
	defer load.stop()
	cfg := workerConfig{Role: roleSUT, Scenario: ScenarioRelay, Variant: v, Streams: rp.Streams}
	if v == VariantFloor {
		var rec struct {
			Addrs []string `json:"addrs"`
		}
		if err := load.call("udprecv", udprecvArg{N: rp.Streams}, &rec, callTimeout); err != nil {
			return fail(err)
		}
		cfg.Dests = rec.Addrs
	} else {
		cfg.SFU = &sfuInfo{}
		if err := load.call("sfu", nil, cfg.SFU, callTimeout); err != nil {
			return fail(err)
		}
	}
	var ready sutReady
	sut, err := r.start("sut", cfg, &ready)
	if err != nil {
		return fail(err)
	}
	defer sut.stop()
	if err := load.call("gen", genArg{Targets: ready.Sources, PPS: rp.PPS, Size: r.o.PacketSize}, nil, callTimeout); err != nil {
		return fail(err)
	}
	if v != VariantFloor {
		if err := load.call("pull", pullArg{SFU: *cfg.SFU, Tracks: ready.Tracks}, nil, 90*time.Second); err != nil {
			return fail(err)
		}
	}
	var wr waitRes
	if err := load.call("wait", waitArg{Timeout: 15 * time.Second}, &wr, callTimeout); err != nil {
		return fail(err)
	}
	if wr.Waiting == rp.Streams {
		return fail(errNoTraffic)
	}
	w, err := r.measure(load, sut, fmt.Sprintf("relay-%s-%s", rp, v))
	if err != nil {
		return fail(err)
	}
	p.fill(w, ready, w.s1.Packets-w.s0.Packets, rp.Streams)
	p.Delivered = sum(delta(w.l0.Recv, w.l1.Recv))
	p.Loss = max(0, 1-frac(p.Delivered, p.Sent))
	return p
}

// idle: K published tracks without media; memory per idle track.
func (r *runner) idle() []Point {
	var pts []Point
	for _, v := range r.o.Variants {
		if r.ctx.Err() != nil {
			break
		}
		if v == VariantFloor {
			continue // a bare socket publishes nothing
		}
		pts = append(pts, r.idlePoint(v))
	}
	return pts
}

func (r *runner) idlePoint(v string) (p Point) {
	p = Point{Scenario: ScenarioIdle, Variant: v, Streams: r.o.IdleTracks}
	defer r.logPoint(&p)
	fail := func(err error) Point { p.Error = err.Error(); return p }
	load, err := r.start("load", workerConfig{Role: roleLoad}, nil)
	if err != nil {
		return fail(err)
	}
	defer load.stop()
	cfg := workerConfig{Role: roleSUT, Scenario: ScenarioIdle, Variant: v, Streams: r.o.IdleTracks, SFU: &sfuInfo{}}
	if err := load.call("sfu", nil, cfg.SFU, callTimeout); err != nil {
		return fail(err)
	}
	var ready sutReady
	sut, err := r.start("sut", cfg, &ready)
	if err != nil {
		return fail(err)
	}
	defer sut.stop()
	p.RSSBefore, p.RSSIdle, p.RSS = ready.RSSBefore, ready.RSSIdle, ready.RSSIdle
	p.RSSPerTrackIdle = float64(ready.RSSIdle-ready.RSSBefore) / float64(r.o.IdleTracks)
	return p
}

// fanout: one publisher -> SUT -> M subscribers, ramped.
func (r *runner) fanout() []Point {
	var pts []Point
	for _, v := range r.o.Variants {
		if r.ctx.Err() != nil {
			break
		}
		steps := r.o.FanoutBaselineSteps
		if v == VariantRTGate {
			steps = r.o.FanoutSteps
		}
		pts = append(pts, r.fanoutRamp(v, steps)...)
	}
	return pts
}

func (r *runner) fanoutRamp(v string, steps []int) []Point {
	began := time.Now()
	base := Point{Scenario: ScenarioFanout, Variant: v, Streams: 1, PPS: r.o.FanoutPPS, PacketSize: r.o.PacketSize, Hops: 1}
	fail := func(err error) []Point {
		p := base
		p.Subscribers = steps[0]
		p.Error = err.Error()
		r.logPoint(&p)
		return []Point{p}
	}
	var ready sutReady
	sut, err := r.start("sut", workerConfig{Role: roleSUT, Scenario: ScenarioFanout, Variant: v}, &ready)
	if err != nil {
		return fail(err)
	}
	defer sut.stop()
	load, err := r.start("load", workerConfig{Role: roleLoad}, nil)
	if err != nil {
		return fail(err)
	}
	defer load.stop()
	var track trackRef
	if v == VariantFloor {
		err = load.call("gen", genArg{Targets: []string{ready.Addr}, PPS: r.o.FanoutPPS, Size: r.o.PacketSize}, nil, callTimeout)
	} else {
		err = load.call("publish", publishArg{SFU: ready.SFU, URL: ready.URL, PPS: r.o.FanoutPPS, Size: r.o.PacketSize}, &track, 60*time.Second)
	}
	if err != nil {
		return fail(err)
	}
	var pts []Point
	cur, failed := 0, 0
	for _, m := range steps {
		if r.ctx.Err() != nil || m <= cur {
			break
		}
		if len(pts) > 0 && time.Since(began) > r.o.FanoutBudget {
			r.logf("fanout %s: time budget %s spent; the ramp stops at %d subscribers", v, r.o.FanoutBudget, cur)
			break
		}
		p := base
		p.Subscribers = m
		add := m - cur
		if v == VariantFloor {
			var rec struct {
				Addrs []string `json:"addrs"`
			}
			err = load.call("udprecv", udprecvArg{N: add}, &rec, callTimeout)
			if err == nil {
				err = sut.call("dests", struct {
					Addrs []string `json:"addrs"`
				}{rec.Addrs}, nil, callTimeout)
			}
		} else {
			var res subscribeRes
			par := r.o.FanoutParallel
			err = load.call("subscribe", subscribeArg{SFU: ready.SFU, URL: ready.URL, Track: track, Count: add, Parallel: par},
				&res, callTimeout+time.Duration((add+par-1)/par)*20*time.Second)
			failed += res.Failed
			if res.Failed > 0 {
				r.logf("fanout %s: %d of %d new subscribers did not connect: %s", v, res.Failed, add, res.FirstError)
			}
		}
		cur = m
		p.Failed = failed
		if err == nil {
			err = load.call("wait", waitArg{Timeout: 15 * time.Second}, nil, callTimeout)
		}
		var w window
		if err == nil {
			w, err = r.measure(load, sut, fmt.Sprintf("fanout-%d-%s", m, v))
		}
		if err != nil {
			p.Error = err.Error()
			r.logPoint(&p)
			pts = append(pts, p)
			break
		}
		recv := delta(w.l0.Recv, w.l1.Recv)
		p.Delivered = sum(recv)
		p.fill(w, ready, p.Delivered, m)
		sent := p.Sent // one stream: what each subscriber was due
		p.Loss = max(0, 1-frac(p.Delivered, sent*uint64(len(recv))))
		for _, n := range recv {
			p.WorstLoss = max(p.WorstLoss, 1-frac(n, sent))
		}
		r.logPoint(&p)
		pts = append(pts, p)
		if p.Error != "" || p.Loss >= 0.01 {
			break
		}
	}
	return pts
}

// record: K RTP/UDP sources -> SUT -> one file each.
func (r *runner) record() []Point {
	var pts []Point
	for _, v := range r.o.Variants {
		if r.ctx.Err() != nil {
			break
		}
		pts = append(pts, r.recordPoint(v))
	}
	return pts
}

func (r *runner) recordPoint(v string) (p Point) {
	k := r.o.RecordTracks
	p = Point{Scenario: ScenarioRecord, Variant: v, Streams: k, PPS: r.o.RecordPPS, PacketSize: r.o.PacketSize}
	defer r.logPoint(&p)
	fail := func(err error) Point { p.Error = err.Error(); return p }
	load, err := r.start("load", workerConfig{Role: roleLoad}, nil)
	if err != nil {
		return fail(err)
	}
	defer load.stop()
	var ready sutReady
	sut, err := r.start("sut", workerConfig{Role: roleSUT, Scenario: ScenarioRecord, Variant: v, Streams: k,
		Format: r.o.RecordFormat}, &ready)
	if err != nil {
		return fail(err)
	}
	defer sut.stop()
	if err := load.call("gen", genArg{Targets: ready.Sources, PPS: r.o.RecordPPS, Size: r.o.PacketSize}, nil, callTimeout); err != nil {
		return fail(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		var m sutMark
		if err := sut.call("mark", nil, &m, callTimeout); err != nil {
			return fail(err)
		}
		if m.Packets > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fail(errNoTraffic)
		}
		if err := r.sleep(20 * time.Millisecond); err != nil {
			return fail(err)
		}
	}
	w, err := r.measure(load, sut, fmt.Sprintf("record-%dx%d-%s", k, r.o.RecordPPS, v))
	if err != nil {
		return fail(err)
	}
	p.fill(w, ready, w.s1.Packets-w.s0.Packets, k)
	p.Delivered = p.Handled
	p.Loss = max(0, 1-frac(p.Handled, p.Sent))
	_ = load.call("stopgen", nil, nil, callTimeout)
	var res recordResult
	if err := sut.call("finish", nil, &res, 60*time.Second); err != nil {
		return fail(err)
	}
	p.Files, p.Bytes, p.Frames = res.Files, res.Bytes, res.Frames
	if res.Error != "" {
		p.Error = "finishing the files: " + res.Error
	}
	return p
}

// ratios sets VsFloor and VsPion of every point from the points of the
// same scenario and parameters.
func ratios(pts []Point) {
	type key struct {
		sc                 string
		streams, pps, subs int
	}
	cpu := map[key]map[string]float64{}
	k := func(p Point) key { return key{p.Scenario, p.Streams, p.PPS, p.Subscribers} }
	for _, p := range pts {
		if p.Error != "" || p.CPUNsPerPacket <= 0 {
			continue
		}
		if cpu[k(p)] == nil {
			cpu[k(p)] = map[string]float64{}
		}
		cpu[k(p)][p.Variant] = p.CPUNsPerPacket
	}
	for i := range pts {
		p := &pts[i]
		if p.Error != "" || p.CPUNsPerPacket <= 0 {
			continue
		}
		if f := cpu[k(*p)][VariantFloor]; f > 0 {
			p.VsFloor = p.CPUNsPerPacket / f
		}
		if f := cpu[k(*p)][VariantPion]; f > 0 {
			p.VsPion = p.CPUNsPerPacket / f
		}
	}
}
