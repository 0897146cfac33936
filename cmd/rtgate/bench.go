package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/rtgate/rtgate/gateway/bench"
)

const benchLong = `Measure what rtgate's media paths cost, against baselines measured in the
same run: a bare UDP read/write loop (the floor) and the straightforward pion
loop (default interceptors, ReadRTP/WriteRTP per packet). Every figure is
printed next to the floor's and the pion loop's as a ratio, then against
rtgate's performance targets.

Scenarios (--scenarios):
  relay   N RTP/UDP sources -> rtgate -> embedded SFU -> one subscriber
  idle    published tracks without media: memory per idle track
  fanout  one 1 Mbit/s publisher -> embedded SFU -> M subscribers, M ramped
          (50, 100, 200, ...) until 1% loss or the time budget
  record  K RTP/UDP sources -> recordings on disk
  whep-ttff  WHEP POST -> first frame in headless Chromium, proxy and relay
          mode, one viewer at a time; the floor is a pion WHEP client's
          first keyframe packet. It needs node, Chromium and the e2e runner
          (--browser-dir, npm ci there) and the demo file (--ttff-video):
          run it from the repository's root. Without Chromium or node its
          browser rows say "not measured (no chromium)" (an error with
          CI=true)

For every point the system under test runs in its own process and the load
(generators, receivers, peers) in another, both this binary again
("rtgate bench-worker"): CPU time and allocations are the system under
test's own. Traffic stays on 127.0.0.1.

It writes one JSON file per scenario, summary.json and SVG plots to --out.
The defaults take about two and a half minutes (make bench), whep-ttff 15 to
20 s of them.`

func newBenchCommand(a *app) *cobra.Command {
	var (
		o                    bench.Options
		scenarios, relayPts  string
		variants             string
		fanSteps, fanBaseSts []int
	)
	cmd := &cobra.Command{
		Use:   "bench [--out DIR] [--scenarios relay,idle,fanout,record,whep-ttff]",
		Short: "Benchmark rtgate against a bare UDP floor and a plain pion loop",
		Long:  benchLong,
		Example: `  rtgate bench
  rtgate bench --scenarios relay --relay 1x20000 --duration 5s
  rtgate bench --scenarios fanout --fanout-steps 100,500,1000
  rtgate bench --scenarios whep-ttff --ttff-viewers 10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scenarios != "" {
				o.Scenarios = strings.Split(scenarios, ",")
			}
			if variants != "" {
				o.Variants = strings.Split(variants, ",")
			}
			if relayPts != "" {
				pts, err := bench.ParseRelayPoints(relayPts)
				if err != nil {
					return &usageError{err}
				}
				o.RelayPoints = pts
			}
			o.FanoutSteps, o.FanoutBaselineSteps = fanSteps, fanBaseSts
			o.Stdout, o.Log = a.stdout, a.stderr
			rep, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			for _, p := range rep.Points {
				if p.Error != "" {
					return errors.New("some points could not be measured: see FAILED above")
				}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Out, "out", "bench-results", "directory for the JSON and SVG results")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default all: relay,idle,fanout,record,whep-ttff)")
	fs.StringVar(&variants, "variants", "", "comma-separated variants to run (default all: floor,pion,rtgate)")
	fs.DurationVar(&o.Duration, "duration", 3*time.Second, "measured window of each point")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "traffic before each measured window")
	fs.IntVar(&o.PacketSize, "packet-size", 1200, "RTP packet size in bytes, header included")
	fs.StringVar(&relayPts, "relay", "1x1000,1x20000,10x2000", "relay points, STREAMSxPACKETS_PER_SECOND_EACH")
	fs.IntVar(&o.FanoutPPS, "fanout-pps", 105, "packets/s of the fan-out stream (105 x 1200 bytes = 1 Mbit/s)")
	fs.IntSliceVar(&fanSteps, "fanout-steps", []int{50, 100, 200, 300, 500, 750, 1000}, "rtgate's subscriber ramp")
	fs.IntSliceVar(&fanBaseSts, "fanout-baseline-steps", []int{50, 200}, "subscriber counts the floor and pion loop run")
	fs.DurationVar(&o.FanoutBudget, "fanout-budget", 60*time.Second, "the ramp adds no step after this long")
	fs.IntVar(&o.FanoutParallel, "fanout-parallel", 8, "subscribers connecting at once")
	fs.IntVar(&o.RecordTracks, "record-tracks", 10, "tracks recorded at once")
	fs.IntVar(&o.RecordPPS, "record-pps", 200, "packets/s of each recorded track")
	fs.StringVar(&o.RecordFormat, "record-format", "ivf", "rtgate's recording format: ivf, webm, mkv, mp4")
	fs.IntVar(&o.IdleTracks, "idle-tracks", 100, "idle published tracks")
	fs.StringVar(&o.Profile, "profile", "", "directory: write CPU and allocation profiles of every point's system under test")
	fs.IntVar(&o.TTFFViewers, "ttff-viewers", 8, "whep-ttff: Chromium viewers per mode")
	fs.IntVar(&o.TTFFFloorViewers, "ttff-floor-viewers", 4, "whep-ttff: pion WHEP clients (the floor) per mode")
	fs.DurationVar(&o.TTFFGap, "ttff-gap", time.Second, "whep-ttff: least time between the POSTs of two viewers of a stream")
	fs.StringVar(&o.TTFFVideo, "ttff-video", "deploy/demo/demo.ivf", "whep-ttff: the VP8 IVF file its publishers replay")
	fs.StringVar(&o.BrowserDir, "browser-dir", "cmd/rtgate/testdata/browser", "whep-ttff: the Chromium runner (pages.mjs, with npm ci done)")
	fs.StringVar(&o.Chromium, "chromium", "", "whep-ttff: Chromium's binary (default $RTGATE_CHROMIUM, else /usr/lib/chromium/chromium)")
	return cmd
}

// newBenchWorkerCommand is the hidden worker the bench starts: requests on
// stdin, replies on file descriptor 3.
func newBenchWorkerCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "bench-worker",
		Short:  "A process of rtgate bench (internal)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			replies := os.NewFile(3, "bench-replies")
			if replies == nil {
				return fmt.Errorf("bench-worker: no reply pipe on file descriptor 3: it is started by rtgate bench")
			}
			defer replies.Close()
			return bench.Worker(cmd.Context(), os.Stdin, replies, a.stderr)
		},
	}
}
