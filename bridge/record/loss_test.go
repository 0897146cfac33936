package record

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
)

// srcFrame is one frame of a packetized source: its packets [first,
// last] and whether it is a keyframe.
type srcFrame struct {
	first, last int
	key         bool
}

// framesOf groups a video source's packets into frames (by timestamp) and
// finds the keyframes with pion's VP8 depacketizer, independently of the
// package's own detection.
func framesOf(t *testing.T, m *media) []srcFrame {
	t.Helper()
	var fs []srcFrame
	for i, p := range m.pkts {
		if i == 0 || p.Timestamp != m.pkts[i-1].Timestamp {
			var d codecs.VP8Packet
			b, err := d.Unmarshal(p.Payload)
			if err != nil || d.S != 1 {
				t.Fatalf("packet %d does not start a VP8 frame", i)
			}
			fs = append(fs, srcFrame{first: i, key: b[0]&1 == 0})
		}
		fs[len(fs)-1].last = i
	}
	return fs
}

// survivors returns the indexes of the frames a recorder should keep when
// the packets in lost never arrive: a frame with a lost packet and the
// frames after it up to the next keyframe are gone.
func survivors(fs []srcFrame, lost map[int]bool) []int {
	var keep []int
	broken := false
	for i, f := range fs {
		if f.key {
			broken = false
		}
		for p := f.first; p <= f.last; p++ {
			broken = broken || lost[p]
		}
		if !broken {
			keep = append(keep, i)
		}
	}
	return keep
}

// lossPlan decides, with a fixed seed, which packets are dropped and
// which of those come again (like an RTX retransmission) 50-200 ms later.
// The first frame of each track and the last 5 packets are never dropped
// (a file starts at its first keyframe; a loss at the very end cannot be
// told from the end).
type lossPlan struct {
	dropped, resent map[[2]int]time.Duration // {track, packet} -> resend arrival (0: never)
}

func makeLossPlan(tracks []*media, rate, resend float64, seed uint64) lossPlan {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	lp := lossPlan{dropped: map[[2]int]time.Duration{}, resent: map[[2]int]time.Duration{}}
	for ti, m := range tracks {
		for i, p := range m.pkts {
			if p.Timestamp == m.pkts[0].Timestamp || i >= len(m.pkts)-5 || rng.Float64() >= rate {
				continue
			}
			k := [2]int{ti, i}
			lp.dropped[k] = 0
			if rng.Float64() < resend {
				lp.resent[k] = p.send + 50*time.Millisecond + time.Duration(rng.Int64N(int64(150*time.Millisecond)))
			}
		}
	}
	return lp
}

func (lp lossPlan) modify(track, i int, p pkt) []time.Duration {
	k := [2]int{track, i}
	if _, ok := lp.dropped[k]; !ok {
		return []time.Duration{p.send}
	}
	if at, ok := lp.resent[k]; ok {
		return []time.Duration{at}
	}
	return nil
}

// lostFor returns the packets of a track never delivered.
func (lp lossPlan) lostFor(track int) map[int]bool {
	m := map[int]bool{}
	for k := range lp.dropped {
		if _, ok := lp.resent[k]; !ok && k[0] == track {
			m[k[1]] = true
		}
	}
	return m
}

func (lp lossPlan) resentFor(track int) int {
	n := 0
	for k := range lp.resent {
		if k[0] == track {
			n++
		}
	}
	return n
}

// recordLossy records VP8 + Opus through a loss plan and checks that the
// file holds exactly the frames that should survive, byte for byte, and
// decodes cleanly; it returns the fraction of frames present.
func recordLossy(t *testing.T, lp lossPlan, vname, aname string) (present float64, r *Recorder, keys *keyCounter) {
	t.Helper()
	v, a := packetize(t, vname), packetize(t, aname)
	tracks := []*media{v, a}
	r, clk := newTestRecorder(t, Options{})
	keys = &keyCounter{}
	feed(t, r, clk, tracks, schedule(tracks, lp.modify), []*keyCounter{keys, nil})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(r.o.Dir, files[0])
	if err := xerror(path); err != nil {
		t.Error(err)
	}

	srcV := streamPackets(t, fixture(t, vname), "v:0")
	fs := framesOf(t, v)
	if len(fs) != len(srcV) {
		t.Fatalf("source: %d frames in RTP, %d in the file", len(fs), len(srcV))
	}
	var want []string
	for _, i := range survivors(fs, lp.lostFor(0)) {
		want = append(want, srcV[i].hash)
	}
	gotV := hashes(streamPackets(t, path, "v:0"))
	if !slices.Equal(gotV, want) {
		t.Errorf("video: %d frames recorded, want %d (the frames not hit by a loss up to the next keyframe)",
			len(gotV), len(want))
	}

	srcA := streamPackets(t, fixture(t, aname), "a:0")
	lostA := lp.lostFor(1)
	var wantA []string
	for i, p := range srcA {
		if !lostA[i] {
			wantA = append(wantA, p.hash)
		}
	}
	gotA := hashes(streamPackets(t, path, "a:0"))
	if !slices.Equal(gotA, wantA) {
		t.Errorf("audio: %d packets recorded, want %d", len(gotA), len(wantA))
	}

	st := r.Stats()
	for ti := range tracks {
		ts := st.Tracks[ti]
		if ts.Lost != uint64(len(lp.lostFor(ti))) {
			t.Errorf("track %d: Lost %d, want %d", ti, ts.Lost, len(lp.lostFor(ti)))
		}
		if ts.Repaired != uint64(lp.resentFor(ti)) {
			t.Errorf("track %d: Repaired %d, want %d (the retransmissions)", ti, ts.Repaired, lp.resentFor(ti))
		}
		t.Logf("track %d: %+v", ti, ts)
	}
	total := len(srcV) + len(srcA)
	present = float64(len(gotV)+len(gotA)) / float64(total)
	t.Logf("frames present: video %d/%d, audio %d/%d, all %.2f%%; keyframe requests %d",
		len(gotV), len(srcV), len(gotA), len(srcA), 100*present, keys.n.Load())
	return present, r, keys
}

// TestLossRepairedByRetransmission: 5% of the packets are dropped and 95%
// of those come again 50-200 ms later, as RTX would bring them: every
// retransmission lands in its place (Repaired counts them), and only the
// frames hit by a packet that never came are missing.
func TestLossRepairedByRetransmission(t *testing.T) {
	v, a := packetize(t, "vp8-long.ivf"), packetize(t, "opus-long.ogg")
	lp := makeLossPlan([]*media{v, a}, 0.05, 0.95, 1)
	if len(lp.resent) < 25 {
		t.Fatalf("only %d retransmissions planned", len(lp.resent))
	}
	present, _, _ := recordLossy(t, lp, "vp8-long.ivf", "opus-long.ogg")
	if len(lp.lostFor(0)) == 0 && present < 0.995 {
		t.Errorf("%.2f%% of the frames present, want >= 99.5%%", 100*present)
	}
	// All retransmitted: nothing lost at all.
	all := makeLossPlan([]*media{v, a}, 0.05, 1, 2)
	present, _, _ = recordLossy(t, all, "vp8-long.ivf", "opus-long.ogg")
	if present != 1 {
		t.Errorf("with every drop retransmitted, %.2f%% of the frames present, want all", 100*present)
	}
}

// TestLossWithoutRepair: 5% of the packets never come. The file still
// decodes cleanly (video resumes at keyframes), keyframes are requested,
// and the losses are counted.
func TestLossWithoutRepair(t *testing.T) {
	v, a := packetize(t, "vp8.ivf"), packetize(t, "opus.ogg")
	lp := makeLossPlan([]*media{v, a}, 0.05, 0, 3)
	present, r, keys := recordLossy(t, lp, "vp8.ivf", "opus.ogg")
	if keys.n.Load() < 2 { // one at the start, more after losses
		t.Errorf("keyframe requests %d", keys.n.Load())
	}
	st := r.Stats().Tracks[0]
	if st.FramesIncomplete == 0 || st.FramesWaitingKey == 0 || st.KeyframeRequests != uint64(keys.n.Load()) {
		t.Errorf("video stats %+v", st)
	}
	if present > 0.99 {
		t.Errorf("%.2f%% present with 5%% loss: the test lost nothing?", 100*present)
	}
}

// TestReorderAndDuplicates: packets shuffled within 100 ms, 10% of them
// twice: the file equals the in-order recording, timestamps included.
func TestReorderAndDuplicates(t *testing.T) {
	v, a := packetize(t, "vp8.ivf"), packetize(t, "opus.ogg")
	tracks := []*media{v, a}
	inOrder := func() []packet {
		path, _ := recordAll(t, Options{}, "vp8.ivf", "opus.ogg")
		return append(streamPackets(t, path, "v:0"), streamPackets(t, path, "a:0")...)
	}()

	rng := rand.New(rand.NewPCG(7, 7))
	ds := schedule(tracks, func(track, i int, p pkt) []time.Duration {
		if p.Timestamp == tracks[track].pkts[0].Timestamp {
			return []time.Duration{p.send} // the first frame anchors the timeline
		}
		arr := []time.Duration{p.send + time.Duration(rng.Int64N(int64(100*time.Millisecond)))}
		if rng.IntN(10) == 0 {
			arr = append(arr, p.send+time.Duration(rng.Int64N(int64(150*time.Millisecond))))
		}
		return arr
	})
	r, clk := newTestRecorder(t, Options{})
	feed(t, r, clk, tracks, ds, nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(r.o.Dir, files[0])
	got := append(streamPackets(t, path, "v:0"), streamPackets(t, path, "a:0")...)
	if !slices.Equal(got, inOrder) {
		t.Errorf("reordered recording differs from the in-order one: %d vs %d packets", len(got), len(inOrder))
		for i := range min(len(got), len(inOrder)) {
			if got[i] != inOrder[i] {
				t.Errorf("first difference at %d: %+v vs %+v", i, got[i], inOrder[i])
				break
			}
		}
	}
	for i, ts := range r.Stats().Tracks {
		if ts.Lost != 0 || ts.Repaired == 0 || ts.Late+ts.Duplicates == 0 {
			t.Errorf("track %d: %+v", i, ts)
		}
	}
}

// TestLossH264: H.264 (FU-A, STAP-A) with 5% of the packets lost: the
// Matroska file decodes without an error, and every picture in it is a
// picture of the source, in order.
func TestLossH264(t *testing.T) {
	v, a := packetize(t, "h264.h264"), packetize(t, "opus.ogg")
	tracks := []*media{v, a}
	lp := makeLossPlan(tracks, 0.05, 0, 5)
	r, clk := newTestRecorder(t, Options{})
	keys := &keyCounter{}
	feed(t, r, clk, tracks, schedule(tracks, lp.modify), []*keyCounter{keys, nil})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := recordings(t, r.o.Dir)
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	path := filepath.Join(r.o.Dir, files[0])
	if err := xerror(path); err != nil {
		t.Error(err)
	}
	src := hashes(decodedFrames(t, fixture(t, "h264.h264"), "v:0"))
	got := hashes(decodedFrames(t, path, "v:0"))
	// Frames and IDRs of the source, test-side: an IDR has a NAL unit of
	// type 5, alone, in a STAP-A, or fragmented.
	var fs []srcFrame
	for i, p := range v.pkts {
		if i == 0 || p.Timestamp != v.pkts[i-1].Timestamp {
			fs = append(fs, srcFrame{first: i})
		}
		f := &fs[len(fs)-1]
		f.last = i
		switch b := p.Payload; b[0] & 0x1f {
		case 5:
			f.key = true
		case 28:
			f.key = f.key || b[1]&0x1f == 5
		case 24:
			for j := 1; j+2 < len(b); j += 2 + (int(b[j])<<8 | int(b[j+1])) {
				f.key = f.key || b[j+2]&0x1f == 5
			}
		}
	}
	if len(fs) != len(src) {
		t.Fatalf("%d frames in RTP, %d decoded from the source", len(fs), len(src))
	}
	var want []string
	for _, i := range survivors(fs, lp.lostFor(0)) {
		want = append(want, src[i])
	}
	st := r.Stats().Tracks[0]
	t.Logf("H.264 with %d packets lost: %d/%d pictures, %+v", len(lp.lostFor(0)), len(got), len(src), st)
	if !slices.Equal(got, want) || len(want) < 10 {
		t.Errorf("%d pictures decoded, want the %d not hit by a loss up to the next IDR", len(got), len(want))
	}
	if st.Lost != uint64(len(lp.lostFor(0))) || keys.n.Load() < 2 {
		t.Errorf("lost %d (want %d), keyframe requests %d", st.Lost, len(lp.lostFor(0)), keys.n.Load())
	}
}
