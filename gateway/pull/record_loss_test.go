package pull_test

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record"
	"github.com/rtgate/rtgate/bridge/record/container"
	"github.com/rtgate/rtgate/gateway/internal/rtctest"
	"github.com/rtgate/rtgate/gateway/peer"
	"github.com/rtgate/rtgate/gateway/publish"
	"github.com/rtgate/rtgate/gateway/pull"
)

// saveToDisk is pion's examples/save-to-disk as a bridge.Sink: each packet
// goes to ivfwriter.WriteRTP as it is read, in arrival order, with no
// reorder buffer (ivfwriter.New with only WithCodec, as the example makes
// it). It is the baseline the recorder is compared with; unlike the
// example, which stops at the first WriteRTP error, it counts the error
// and goes on.
type saveToDisk struct {
	dir string

	mu      sync.Mutex
	w       *ivfwriter.IVFWriter
	path    string
	packets int
	markers int // packets with the marker bit: frame ends seen
	errs    int
	lastErr error
}

func (s *saveToDisk) AddTrack(t bridge.SinkTrack) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil || t.Kind != bridge.KindVideo {
		return -1, fmt.Errorf("save-to-disk sink: one video track only, not %s (%s)", t.Name, t.Codec.MimeType)
	}
	s.path = filepath.Join(s.dir, "save-to-disk.ivf")
	w, err := ivfwriter.New(s.path, ivfwriter.WithCodec(t.Codec.MimeType))
	if err != nil {
		return -1, fmt.Errorf("save-to-disk sink: create %s: %w", s.path, err)
	}
	s.w = w
	return 0, nil
}

func (s *saveToDisk) WriteRTP(_ int, p *rtp.Packet) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.packets++
	if p.Marker {
		s.markers++
	}
	if err := s.w.WriteRTP(p); err != nil {
		s.errs++
		s.lastErr = err
	}
	return nil
}

func (s *saveToDisk) WriteSenderReport(int, uint64, uint32) {}
func (s *saveToDisk) RemoveTrack(int)                       {}

func (s *saveToDisk) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	return s.w.Close()
}

func (s *saveToDisk) frameEnds() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.markers
}

// filePacket is one video packet of a file as ffprobe lists it.
type filePacket struct {
	pos int64  // byte offset in the file: what ties a decoded picture to it
	md5 string // MD5 of the packet's data (what framemd5 with -c copy prints)
}

// probePackets lists a file's video packets in file order.
func probePackets(t *testing.T, path string) []filePacket {
	t.Helper()
	ffprobe := rtctest.RequireTool(t, "ffprobe")
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "v:0", "-show_data_hash", "MD5",
		"-show_entries", "packet=pos,data_hash", "-of", "compact=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe packets of %s: %v", path, err)
	}
	var pkts []filePacket
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var p filePacket
		for _, kv := range strings.Split(line, "|") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "pos":
				if p.pos, err = strconv.ParseInt(v, 10, 64); err != nil {
					t.Fatalf("ffprobe %s: packet line %q: %v", path, line, err)
				}
			case "data_hash":
				p.md5 = strings.TrimPrefix(v, "MD5:")
			}
		}
		if p.md5 == "" {
			t.Fatalf("ffprobe %s: packet line %q has no hash", path, line)
		}
		pkts = append(pkts, p)
	}
	return pkts
}

var showinfoRE = regexp.MustCompile(`Parsed_showinfo.* n: *\d+ .*pos: *(-?\d+) .* checksum:([0-9A-F]+) `)

// decodedPictures decodes a file's video with ffmpeg and returns, by the
// position of the packet each came from, the checksum of every picture
// the decoder output (a packet it could not decode has none), and the
// number of lines ffmpeg logs at level error when decoding it, and the
// first of them.
func decodedPictures(t *testing.T, path string) (sums map[int64]string, errLines int, firstErr string) {
	t.Helper()
	ffmpeg := rtctest.RequireTool(t, "ffmpeg")
	var stderr bytes.Buffer
	cmd := exec.Command(ffmpeg, "-hide_banner", "-nostats", "-v", "info", "-threads", "1", "-i", path,
		"-map", "0:v", "-fps_mode", "passthrough", "-vf", "showinfo", "-f", "null", "-")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decode %s: %v\n%s", path, err, stderr.String())
	}
	sums = map[int64]string{}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if m := showinfoRE.FindStringSubmatch(line); m != nil {
			pos, _ := strconv.ParseInt(m[1], 10, 64)
			sums[pos] = m[2]
		}
	}
	stderr.Reset()
	cmd = exec.Command(ffmpeg, "-v", "error", "-threads", "1", "-i", path, "-map", "0:v", "-f", "null", "-")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg -v error %s: %v\n%s", path, err, stderr.String())
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.TrimSpace(line) != "" {
			if errLines == 0 {
				firstErr = line
			}
			errLines++
		}
	}
	return sums, errLines, firstErr
}

// sourceRef is what the publisher sends, one loop of it: frame i's packet
// MD5 and decoded picture checksum.
type sourceRef struct {
	md5s  []string
	sums  []string
	index map[string]int // md5 -> frame
}

func loadSourceRef(t *testing.T, path string) *sourceRef {
	t.Helper()
	pkts := probePackets(t, path)
	sums, errLines, firstErr := decodedPictures(t, path)
	if errLines != 0 {
		t.Fatalf("the source %s does not decode cleanly (%d error lines: %s)", path, errLines, firstErr)
	}
	ref := &sourceRef{index: map[string]int{}}
	for i, p := range pkts {
		if _, dup := ref.index[p.md5]; dup {
			t.Fatalf("source frames %d and %d are identical: frames cannot be matched by content", ref.index[p.md5], i)
		}
		if sums[p.pos] == "" {
			t.Fatalf("source frame %d did not decode", i)
		}
		ref.index[p.md5] = i
		ref.md5s = append(ref.md5s, p.md5)
		ref.sums = append(ref.sums, sums[p.pos])
	}
	return ref
}

// fileScore is what a recording holds of the looping source.
type fileScore struct {
	frames    int    // video packets in the file
	expected  int    // frames the publisher sent from the file's first matched frame to its last
	present   int    // frames byte-identical to the source frame at their place
	decodable int    // present frames whose decoded picture is the source's picture
	foreign   int    // frames that are no source frame (spliced or truncated)
	misplaced int    // source frames written after a later one (or twice)
	errLines  int    // ffmpeg -v error lines when decoding the file
	firstErr  string // the first of them
}

func (s fileScore) String() string {
	return fmt.Sprintf("%d of %d frames present (%.2f%%), %d decodable to the source's picture (%.2f%%); "+
		"%d frames in the file, %d not a source frame, %d misplaced; ffmpeg: %d error lines (first: %q)",
		s.present, s.expected, 100*float64(s.present)/float64(max(s.expected, 1)),
		s.decodable, 100*float64(s.decodable)/float64(max(s.expected, 1)),
		s.frames, s.foreign, s.misplaced, s.errLines, s.firstErr)
}

// scoreFile matches a recording's frames with the source's by content.
// The source loops, so a frame's place is its place in the loop plus the
// number of loops that puts it nearest the previous frame's place: this
// is unambiguous while no gap reaches half a loop (2.5 s), which the caller
// checks against the wall-clock length of the recording. A frame written
// after one that comes later in the source (a late retransmission that
// completed it) is misplaced, not present.
func scoreFile(t *testing.T, path string, ref *sourceRef) fileScore {
	t.Helper()
	pkts := probePackets(t, path)
	sums, errLines, firstErr := decodedPictures(t, path)
	s := fileScore{frames: len(pkts), errLines: errLines, firstErr: firstErr}
	n := len(ref.md5s)
	first, cur := -1, -1
	for _, p := range pkts {
		i, ok := ref.index[p.md5]
		if !ok {
			s.foreign++
			continue
		}
		abs := i
		if cur >= 0 {
			d := ((i-cur%n)%n + n) % n // forward distance, 0..n-1
			if d >= n/2 {
				d -= n // nearer backwards
			}
			if d <= 0 {
				s.misplaced++
				continue
			}
			abs = cur + d
		}
		if first < 0 {
			first = abs
		}
		cur = abs
		s.present++
		if sums[p.pos] == ref.sums[i] {
			s.decodable++
		}
	}
	if first >= 0 {
		s.expected = cur - first + 1
	}
	return s
}

// lossyPuller is a peer API whose socket loses share of the RTP packets
// (media and RTX) coming from the SFU.
func lossyPuller(t *testing.T, share float64) (*peer.API, *lossyIn) {
	t.Helper()
	lossy := &lossyIn{share: share, rtxPT: 97} // VP8's RTX payload type in gateway/peer
	api, err := peer.New(peer.Options{ListenIP: "127.0.0.1", RemoteIPFilter: rtctest.LoopbackOnly,
		WrapConn: func(c net.PacketConn) net.PacketConn { lossy.PacketConn = c; return lossy }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	return api, lossy
}

// TestRecordLossVersusSaveToDisk is the recording loss requirement: the
// demo VP8 file (150 frames, a keyframe every 30) loops through the
// embedded SFU for about 10 s and is pulled twice at once, each puller's
// socket losing 5% of the RTP packets from the SFU (media and RTX
// retransmissions; RTCP, so NACKs and sender reports, is not dropped), both
// with NACK and RTX: (a) into a record.Recorder writing IVF, (b) into pion's
// save-to-disk style (ivfwriter.WriteRTP per packet in arrival order). The
// files are matched frame by frame with the source by content (packet MD5)
// and by decoded picture (ffmpeg). (a) must hold at least 99.5% of the
// frames the publisher sent over its span, every one decoding to the
// source's picture; (b)'s figure is logged for docs/PERFORMANCE.md.
func TestRecordLossVersusSaveToDisk(t *testing.T) {
	src, err := filepath.Abs(filepath.Join("..", "..", "deploy", "demo", "demo.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	ref := loadSourceRef(t, src)
	if len(ref.md5s) != 150 {
		t.Fatalf("the demo has %d frames, want 150", len(ref.md5s))
	}

	e := rtctest.NewEnv(t, rtctest.FastOptions())
	st := runStream(t, publish.Options{Name: "demo", Sources: demoSources(t, "demo.ivf"), Client: e.Client,
		API: rtctest.PeerAPI(t)})
	waitStreamState(t, st, publish.StateLive, 10*time.Second)

	dir := t.TempDir()
	rec, err := record.New(record.Options{Dir: filepath.Join(dir, "rec"), Format: container.IVF})
	if err != nil {
		t.Fatal(err)
	}
	recClosed := false
	t.Cleanup(func() {
		if !recClosed {
			_ = rec.Close()
		}
	})
	std := &saveToDisk{dir: dir}
	t.Cleanup(func() { _ = std.Close() })

	apiA, lossA := lossyPuller(t, 0.05)
	apiB, lossB := lossyPuller(t, 0.05)
	pa, stopA := runPull(t, pull.Options{Name: "recorder", Client: e.Client, API: apiA, Sink: rec, Stream: st, StreamName: "demo"})
	pb, stopB := runPull(t, pull.Options{Name: "save-to-disk", Client: e.Client, API: apiB, Sink: std, Stream: st, StreamName: "demo"})
	received := func(p *pull.Pull) bool {
		s := p.Status()
		return len(s.Tracks) == 1 && s.Tracks[0].Packets > 0
	}
	waitFor(t, "packets at both pullers", 15*time.Second, func() bool { return received(pa) && received(pb) })
	began := time.Now()

	// About 10 s (300 frames) at the source's pace, whatever the machine's
	// load; the deadline only bounds a stalled run.
	waitFor(t, "300 frames at both sinks", 25*time.Second, func() bool {
		s := rec.Stats()
		return len(s.Tracks) == 1 && s.Tracks[0].Frames >= 300 && std.frameEnds() >= 300
	})
	if err := stopA(); err != nil {
		t.Errorf("recorder pull: %v", err)
	}
	if err := stopB(); err != nil {
		t.Errorf("save-to-disk pull: %v", err)
	}
	wall := time.Since(began)
	recStats := rec.Stats()
	recClosed = true
	if err := rec.Close(); err != nil {
		t.Fatalf("close the recorder: %v", err)
	}
	if err := std.Close(); err != nil {
		t.Fatalf("close the save-to-disk writer: %v", err)
	}

	recFiles, err := filepath.Glob(filepath.Join(dir, "rec", "*.ivf"))
	if err != nil || len(recFiles) != 1 {
		t.Fatalf("recorder files %v (%v), want one", recFiles, err)
	}
	a := scoreFile(t, recFiles[0], ref)
	b := scoreFile(t, std.path, ref)

	sa, sb := pa.Status().Tracks[0], pb.Status().Tracks[0]
	for _, x := range []struct {
		name  string
		loss  *lossyIn
		track pull.TrackStatus
	}{{"recorder", lossA, sa}, {"save-to-disk", lossB, sb}} {
		t.Logf("%s puller: wire dropped %d of %d media packets and %d of %d RTX; pull: %d packets, %d repaired by RTX, %d duplicates, %d lost",
			x.name, x.loss.drops.Load(), x.loss.media.Load()-x.loss.rtxIn.Load(), x.loss.rtx.Load(), x.loss.rtxIn.Load(),
			x.track.Packets, x.track.Repaired, x.track.Duplicates, x.track.Lost)
	}
	rt := recStats.Tracks[0]
	t.Logf("recorder: %d frames written, reorder buffer repaired %d, lost %d, late %d; frames incomplete %d, waiting for a keyframe %d, dropped %d",
		rt.Frames, rt.Repaired, rt.Lost, rt.Late, rt.FramesIncomplete, rt.FramesWaitingKey, rt.FramesDropped)
	t.Logf("save-to-disk: %d packets written, %d WriteRTP errors (last: %v)", std.packets, std.errs, std.lastErr)
	t.Logf("over %.1f s: (a) recorder: %s", wall.Seconds(), a)
	t.Logf("over %.1f s: (b) save-to-disk: %s", wall.Seconds(), b)

	// The matching is unambiguous only if no gap reached half a loop: each
	// file's span must be about as long as the recording ran (minus up to
	// a second waiting for the first keyframe and what was still under
	// repair at the end).
	for _, x := range []struct {
		name string
		s    fileScore
	}{{"(a) recorder", a}, {"(b) save-to-disk", b}} {
		span := time.Duration(x.s.expected) * time.Second / 30
		if span < wall-2500*time.Millisecond || span > wall+time.Second {
			t.Errorf("%s: the matched span is %v of media for %v of recording: frames were matched to the wrong loop",
				x.name, span, wall.Round(time.Millisecond))
		}
	}
	// 5% expected; below 1.5% (over 3 standard deviations off) the loss
	// was not really injected.
	if drops, sent := lossA.drops.Load(), lossA.media.Load()-lossA.rtxIn.Load(); drops*200 < sent*3 {
		t.Fatalf("the recorder's wire dropped only %d of %d media packets: no real loss", drops, sent)
	}
	if lossA.rtxIn.Load() == 0 || sa.Repaired == 0 {
		t.Fatalf("no retransmission reached the recorder's puller (%d RTX, %d repaired)", lossA.rtxIn.Load(), sa.Repaired)
	}
	if a.foreign != 0 || a.misplaced != 0 || a.decodable != a.present {
		t.Errorf("(a) the recorder wrote %d frames that are no source frame, %d misplaced, and %d that do not decode to the source's picture",
			a.foreign, a.misplaced, a.present-a.decodable)
	}
	if got := float64(a.decodable) / float64(max(a.expected, 1)); got < 0.995 {
		t.Errorf("(a) the recorder's file holds %.2f%% of the source's frames present and decodable, want at least 99.5%%", 100*got)
	}
	if b.expected == 0 {
		t.Errorf("(b) the save-to-disk file holds no source frame")
	}
}
