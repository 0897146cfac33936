package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWHEPTTFF runs the whep-ttff scenario once with few viewers: the
// daemon in a worker, a VP8 publisher per stream over WHIP, headless
// Chromium on the /watch page and the pion WHEP client, in both modes. It
// checks that every viewer saw its first frame (its first keyframe for the
// floor), that the figures hang together (the first frame comes after the
// 201 and the connection; rtgate's own timeline of each relay viewer was
// joined to it and runs in order), that the publisher was asked for
// keyframes, and that the table, the JSON and the target row say so.
// Without Chromium or node the browser rows must say "not measured (no
// chromium)", except with CI=true, where they must have been measured.
func TestWHEPTTFF(t *testing.T) {
	if testing.Short() {
		t.Skip("whep-ttff runs Chromium: skipped in -short mode")
	}
	out := t.TempDir()
	var tables bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := Options{
		Out: out, Scenarios: []string{ScenarioTTFF}, TTFFViewers: 2, TTFFFloorViewers: 1,
		TTFFVideo:  filepath.Join("..", "..", "deploy", "demo", "demo.ivf"),
		BrowserDir: filepath.Join("..", "..", "cmd", "rtgate", "testdata", "browser"),
		Worker:     testWorker, Stdout: &tables, Log: logWriter{t},
	}
	rep, err := Run(ctx, o)
	t.Logf("tables:\n%s", tables.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, missing := findBrowser(o.BrowserDir, "")
	if missing != "" && os.Getenv("CI") == "true" {
		t.Fatalf("CI=true: %s", missing)
	}

	b, err := os.ReadFile(filepath.Join(out, ScenarioTTFF+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f scenarioFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s.json: %v", ScenarioTTFF, err)
	}
	if len(f.Points) != 4 {
		t.Fatalf("%d points, want one per mode for Chromium and for the floor", len(f.Points))
	}
	for _, p := range f.Points {
		tt := p.TTFF
		if tt == nil {
			t.Fatalf("point %+v has no ttff", p)
		}
		what := tt.Mode + " " + tt.Viewer
		if p.Error != "" {
			t.Errorf("%s: %s", what, p.Error)
			continue
		}
		if p.Skipped != "" {
			if tt.Viewer != viewerChromium || missing == "" {
				t.Errorf("%s skipped (%s), with chromium %q", what, p.Skipped, missing)
			}
			continue
		}
		want := o.TTFFFloorViewers
		if tt.Viewer == viewerChromium {
			want = o.TTFFViewers
		}
		if len(tt.SamplesMs) != want || tt.Failed != 0 {
			t.Errorf("%s: %d samples, %d failed (%s), want %d", what, len(tt.SamplesMs), tt.Failed, tt.FirstError, want)
		}
		if tt.MedianMs <= 0 || tt.MedianMs > 5000 || tt.P90Ms < tt.MedianMs || tt.MinMs > tt.MedianMs || tt.MaxMs < tt.P90Ms {
			t.Errorf("%s: median %.1f, p90 %.1f, min %.1f, max %.1f ms", what, tt.MedianMs, tt.P90Ms, tt.MinMs, tt.MaxMs)
		}
		for _, s := range tt.Samples {
			if s.ResponseMs <= 0 || s.ConnectedMs < s.ResponseMs || s.TTFFMs < s.ResponseMs {
				t.Errorf("%s: sample out of order: 201 %.1f, connected %.1f, first frame %.1f ms", what, s.ResponseMs, s.ConnectedMs, s.TTFFMs)
			}
			if len(s.PublisherPLIsMs) == 0 || len(s.PublisherKeyframesMs) == 0 {
				t.Errorf("%s: the publisher got keyframe requests at %v and sent keyframes at %v ms: want some of each",
					what, s.PublisherPLIsMs, s.PublisherKeyframesMs)
			}
			if !strings.HasPrefix(s.Resource, "/whep/ttff-"+tt.Mode+"/") {
				t.Errorf("%s: resource %q", what, s.Resource)
			}
			// rtgate's timeline of the viewer, joined by its resource.
			sv := s.Server
			if sv["answer"] <= 0 {
				t.Errorf("%s: no server timeline joined: %v", what, sv)
				continue
			}
			if tt.Mode == "relay" {
				// The first keyframe is the one held since the pull's start,
				// or one asked for once the viewer was connected.
				steps := []string{"media", "answer", "dtls", "keyframe"}
				if _, held := sv["early_keyframe"]; !held {
					steps = []string{"media", "answer", "dtls", "keyframe_request", "keyframe"}
				}
				for i, k := range steps {
					if sv[k] <= 0 || (i > 0 && sv[k] < sv[steps[i-1]]) {
						t.Errorf("%s: server timeline out of order at %s: %v", what, k, sv)
						break
					}
				}
			}
		}
	}
	tg := ttffTarget(rep.Points)
	switch {
	case missing != "":
		if tg.Status != notMeasuredChromium {
			t.Errorf("target %+v: want %q without chromium", tg, notMeasuredChromium)
		}
		if !strings.Contains(tables.String(), "not measured (no chromium") {
			t.Errorf("the table does not say the browser rows were not measured")
		}
	case tg.Status != statusMet && tg.Status != statusNotMet:
		t.Errorf("target %+v: want met or NOT met", tg)
	}
	if !strings.Contains(tables.String(), scenarioTitles[ScenarioTTFF]) {
		t.Error("no whep-ttff table printed")
	}
}

// TestQuantileFloat checks the interpolated quantiles the TTFF rows use.
func TestQuantileFloat(t *testing.T) {
	v := []float64{40, 10, 30, 20}
	for _, c := range []struct{ q, want float64 }{{0, 10}, {0.5, 25}, {0.9, 37}, {1, 40}} {
		if got := quantile(v, c.q); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("quantile(%v, %v) = %v, want %v", v, c.q, got, c.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}
