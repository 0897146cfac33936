package record

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// ntpOf converts Unix ns to the RFC 3550 64-bit NTP format.
func ntpOf(ns int64) uint64 {
	secs := uint64(ns/1e9) + 2208988800
	frac := uint64(ns%1e9) << 32 / 1e9
	return secs<<32 | frac
}

func TestNTPConversion(t *testing.T) {
	for _, ns := range []int64{0, 1, 999_999_999, 1_700_000_000_123_456_789} {
		if got := ntpToUnix(ntpOf(ns)); got-ns > 1 || ns-got > 1 {
			t.Errorf("ntpToUnix(ntpOf(%d)) = %d", ns, got)
		}
	}
}

// syncResult is how a recording placed audio against video: err is the
// A/V offset in the file minus the offset at the sender, at the first
// and the last frames.
type syncResult struct {
	firstV, firstA       float64 // PTS, s
	errFirst, errLast    time.Duration
	monotonicV, monotonA bool
}

// recordSync records VP8 + Opus that the sender captured together, with
// the video arriving videoDelay later than the audio, and sender reports
// (same NTP clock for both tracks) delivered at the times in srAt.
func recordSync(t *testing.T, videoDelay time.Duration, srAt []time.Duration) syncResult {
	t.Helper()
	v, a := packetize(t, "vp8.ivf"), packetize(t, "opus.ogg")
	tracks := []*media{v, a}
	ds := schedule(tracks, func(track, i int, p pkt) []time.Duration {
		if track == 0 {
			return []time.Duration{p.send + videoDelay}
		}
		return []time.Duration{p.send}
	})
	r, clk := newTestRecorder(t, Options{})
	start := clk.ns.Load()
	senderEpoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano() // the sender's clock is elsewhere
	idx := feed(t, r, clk, tracks, nil, nil)
	// Interleave the sender reports with the packets by arrival time.
	type sr struct {
		at    time.Duration
		track int
	}
	var srs []sr
	for _, at := range srAt {
		for ti := range tracks {
			srs = append(srs, sr{at, ti})
		}
	}
	report := func(s sr) {
		m := tracks[s.track]
		rate := int64(m.track.Codec.ClockRate)
		sendTime := s.at // the sender made the report at this time of its stream
		rtpTime := m.pkts[0].Timestamp + uint32(int64(sendTime)*rate/1e9)
		r.WriteSenderReport(idx[s.track], ntpOf(senderEpoch+int64(sendTime)), rtpTime)
	}
	for _, d := range ds {
		for len(srs) > 0 && srs[0].at <= d.arrive {
			clk.Set(start + int64(srs[0].at))
			report(srs[0])
			srs = srs[1:]
		}
		clk.Set(start + int64(d.arrive))
		if err := r.WriteRTP(idx[d.track], d.p); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(r.o.Dir, files[0])

	// The recorded packets are a suffix of the source's (the file starts
	// at the first keyframe; audio before it is dropped): find where each
	// begins and compare its sender time with its PTS.
	srcV, srcA := streamPackets(t, fixture(t, "vp8.ivf"), "v:0"), streamPackets(t, fixture(t, "opus.ogg"), "a:0")
	gotV, gotA := streamPackets(t, path, "v:0"), streamPackets(t, path, "a:0")
	offV, offA := len(srcV)-len(gotV), len(srcA)-len(gotA)
	if offV < 0 || offA < 0 || !slices.Equal(hashes(srcV[offV:]), hashes(gotV)) ||
		!slices.Equal(hashes(srcA[offA:]), hashes(gotA)) {
		t.Fatalf("recorded streams are not suffixes of the sources (video %d/%d, audio %d/%d)",
			len(gotV), len(srcV), len(gotA), len(srcA))
	}
	// Sender times from the sources' own timestamps.
	errAt := func(iv, ia int) time.Duration {
		inFile := gotA[ia].pts - gotV[iv].pts
		atSender := srcA[offA+ia].pts - srcV[offV+iv].pts
		return time.Duration((inFile - atSender) * float64(time.Second))
	}
	res := syncResult{
		firstV: gotV[0].pts, firstA: gotA[0].pts,
		errFirst:   errAt(0, 0),
		errLast:    errAt(len(gotV)-1, len(gotA)-1),
		monotonicV: slices.IsSortedFunc(gotV, func(a, b packet) int { return cmp(a.pts, b.pts) }),
		monotonA:   slices.IsSortedFunc(gotA, func(a, b packet) int { return cmp(a.pts, b.pts) }),
	}
	t.Logf("video delay %v, reports at %v: first PTS video %.3f audio %.3f; sync error first %v last %v",
		videoDelay, srAt, res.firstV, res.firstA, res.errFirst, res.errLast)
	if !res.monotonicV || !res.monotonA {
		t.Errorf("PTS go backwards in the file")
	}
	return res
}

func cmp(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestSyncWithSenderReports: audio and video captured together, the video
// 150 ms late on the network: with sender reports the file has them in
// sync (within 40 ms at the first and the last frames); without, it has
// the 150 ms skew (the control that shows the reports did it).
func TestSyncWithSenderReports(t *testing.T) {
	const skew = 150 * time.Millisecond
	res := recordSync(t, skew, []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second})
	if abs(res.errFirst) > 40*time.Millisecond || abs(res.errLast) > 40*time.Millisecond {
		t.Errorf("with sender reports: sync error %v / %v, want within 40 ms", res.errFirst, res.errLast)
	}
	if d := time.Duration((res.firstA - res.firstV) * float64(time.Second)); abs(d) > 40*time.Millisecond {
		t.Errorf("first audio and video PTS differ by %v", d)
	}

	res = recordSync(t, skew, nil)
	if abs(res.errLast+skew) > 40*time.Millisecond {
		t.Errorf("without sender reports: sync error %v, want about -%v (arrival times)", res.errLast, skew)
	}

	// Without delay and without reports, arrival times are in sync too.
	res = recordSync(t, 0, nil)
	if abs(res.errFirst) > 40*time.Millisecond || abs(res.errLast) > 40*time.Millisecond {
		t.Errorf("no skew, no reports: sync error %v / %v", res.errFirst, res.errLast)
	}
}

// TestSyncReportsArriveLater: the first sender reports come 1.5 s into
// the recording; the tracks switch from arrival times to them without
// going back in time, and the end of the file is in sync.
func TestSyncReportsArriveLater(t *testing.T) {
	const skew = 150 * time.Millisecond
	res := recordSync(t, skew, []time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond})
	if abs(res.errLast) > 40*time.Millisecond {
		t.Errorf("after the switch: sync error %v, want within 40 ms", res.errLast)
	}
	if abs(res.errFirst+skew) > 40*time.Millisecond {
		t.Errorf("before the reports: sync error %v, want about -%v", res.errFirst, skew)
	}
}
