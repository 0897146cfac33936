// Package record records pulled tracks to disk: it is a bridge.Sink that
// puts each track's RTP packets back in order (waiting a bounded time for
// retransmissions), depacketizes them into frames, maps every track to one
// wall-clock timeline (RTCP sender reports where there are any), and
// writes the tracks of a Recorder together into segmented, crash-safe
// container files (package container). It forwards media as sent: no
// decoding.
//
// # Files
//
// Segments are named from a template inside Options.Dir; nothing a track
// or stream name holds can make a file land outside it (the values are
// sanitized and every file operation goes through an os.Root). While a
// segment is written, a hidden marker ".<name>.recording" next to it holds
// its format and a lock; a clean finish removes it. After a crash
// (kill -9, power loss) RepairDir finds the markers whose lock is free and
// finalizes their files; the bytes on disk are a playable prefix anyway.
//
// # Timing
//
// A frame's time is the wall-clock time of its capture as the sender
// reports it: RTP time through the track's RTCP sender reports (the
// tracks of one publisher session share the sender's NTP clock, so they
// come out in sync whatever their network delays), or through the arrival
// of the track's first frame until a report comes. A segment's time 0 is
// its first frame, a video keyframe when it holds video.
//
// # Cost
//
// Per packet: one uncontended per-track mutex, a clock read, no
// allocation. Per frame: a channel send to the Recorder's writer goroutine,
// which owns the files, so a slow disk never blocks the caller; frames are
// dropped and counted when its queue is full.
package record

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record/container"
)

// Defaults of Options.
const (
	DefaultTemplate         = "{stream}-{start}"
	DefaultReorder          = 300 * time.Millisecond
	DefaultKeyframeInterval = time.Second
)

// Retry backoff after a disk error.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// queueLen is the writer queue in frames (~10 s of a 30 fps video and an
// Opus track).
const queueLen = 1024

// tickEvery is how often held packets and frames are checked against
// their windows when no packets come.
const tickEvery = 100 * time.Millisecond

// ErrClosed is returned for calls on a closed Recorder or a removed track.
var ErrClosed = errors.New("record: closed")

// Options configure a Recorder.
type Options struct {
	// Dir is the recordings directory, created 0o750. Every file stays
	// inside it.
	Dir string
	// Template names the segments (the format's extension is added):
	// placeholders {stream}, {session}, {track} (the segment's first
	// track's name) and {start} (UTC, e.g. 20261121T101500Z); "/" makes
	// subdirectories. Values are sanitized to [A-Za-z0-9._-] (others
	// become "_", a leading "." too, an empty value "_"), so they cannot
	// add path components. Default DefaultTemplate. A name already taken
	// gets "-1", "-2", ... before the extension.
	Template string
	// Format of the files; "" chooses per segment with container.Auto.
	Format container.Format
	// Stream and Session are template values; empty: those of the first
	// track.
	Stream, Session string
	// SegmentDuration starts a new segment after this much media (0:
	// never); with video, at the next keyframe (one is requested).
	SegmentDuration time.Duration
	// SegmentSize starts a new segment after this many bytes (0: never),
	// at a keyframe too.
	SegmentSize int64
	// Reorder is how long a missing packet is waited for. Default
	// DefaultReorder.
	Reorder time.Duration
	// KeyframeInterval is the least time between two keyframe requests of
	// a track. Default DefaultKeyframeInterval.
	KeyframeInterval time.Duration
	// MaxAge and MaxTotalSize limit the finished recordings in Dir (files
	// with a container extension, any recorder's): older ones, then the
	// oldest beyond the total, are deleted after each segment and every
	// minute. 0: no limit.
	MaxAge       time.Duration
	MaxTotalSize int64
	// Logger receives state changes (segments, disk errors and
	// recoveries), never per-packet messages. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Recorder records the tracks given to it into one file per segment. It
// implements bridge.Sink; its methods are safe for concurrent use, with
// WriteRTP called from one goroutine per track.
type Recorder struct {
	o           Options
	log         *slog.Logger
	now         func() time.Time
	root        *os.Root
	window      int64 // Reorder, ns
	maxWait     int64 // interleaving wait, ns
	keyInterval int64 // ns
	exts        map[string]bool

	mu      sync.Mutex // AddTrack, RemoveTrack, Close
	inputs  atomic.Pointer[[]*input]
	active  []*input
	domains map[string]*domain
	closed  atomic.Bool

	queue    chan msg
	done     chan struct{} // the writer goroutine ended
	tickStop chan struct{}
	tickDone chan struct{}

	w writer // owned by the writer goroutine

	// Figures of the writer, read by Stats.
	statsMu     sync.Mutex
	segments    int
	doneBytes   int64
	doneDur     time.Duration
	current     string
	lastErr     error
	failing     bool
	writeErrors uint64
	curBytes    atomic.Int64
	curDur      atomic.Int64

	// blockOnFull makes frame sends wait instead of dropping when the
	// writer queue is full (tests and benchmarks that feed faster than
	// real time).
	blockOnFull bool
	// newWriter makes the container writer (container.NewWriter; a
	// benchmark replaces it to measure this package alone).
	newWriter func(container.Format, container.File, []bridge.Track) (container.Writer, error)
}

var _ bridge.Sink = (*Recorder)(nil)

// New validates o, creates the directory and starts the Recorder's writer.
func New(o Options) (*Recorder, error) {
	if o.Dir == "" {
		return nil, errors.New("record: Options.Dir is empty")
	}
	if o.Template == "" {
		o.Template = DefaultTemplate
	}
	if err := checkTemplate(o.Template); err != nil {
		return nil, fmt.Errorf("record: template %q: %w", o.Template, err)
	}
	if o.Format != "" {
		f, err := container.ParseFormat(string(o.Format))
		if err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
		o.Format = f
	}
	if o.Reorder <= 0 {
		o.Reorder = DefaultReorder
	}
	if o.KeyframeInterval <= 0 {
		o.KeyframeInterval = DefaultKeyframeInterval
	}
	if o.SegmentDuration < 0 || o.SegmentSize < 0 || o.MaxAge < 0 || o.MaxTotalSize < 0 {
		return nil, errors.New("record: negative segment or retention limit")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("record: create recordings directory: %w", err)
	}
	root, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("record: open recordings directory: %w", err)
	}
	r := &Recorder{
		o:           o,
		log:         o.Logger,
		now:         o.Now,
		root:        root,
		window:      int64(o.Reorder),
		maxWait:     int64(o.Reorder + 200*time.Millisecond),
		keyInterval: int64(o.KeyframeInterval),
		exts:        extensions(),
		domains:     map[string]*domain{},
		queue:       make(chan msg, queueLen),
		done:        make(chan struct{}),
		tickStop:    make(chan struct{}),
		tickDone:    make(chan struct{}),
		newWriter:   container.NewWriter,
	}
	r.inputs.Store(&[]*input{})
	r.w.r = r
	go r.w.run()
	go r.ticker()
	return r, nil
}

// extensions are the file extensions of the container formats, the files
// that retention may delete.
func extensions() map[string]bool {
	m := map[string]bool{}
	for _, f := range []container.Format{container.WebM, container.MKV, container.Ogg, container.IVF, container.MP4} {
		m[f.Ext()] = true
	}
	return m
}

// AddTrack implements bridge.Sink. A track added while a segment is being
// written starts a new segment that includes it (at the next keyframe),
// unless it replaces a removed track of the same codec, whose place in the
// file it takes. It fails for a codec this package or the format cannot
// record.
func (r *Recorder) AddTrack(t bridge.SinkTrack) (int, error) {
	kind := kindOf(t.Codec.MimeType)
	if kind == codecNone {
		return -1, fmt.Errorf("record: add track %q: codec %q: %w (VP8, VP9, AV1, H.264, H.265 and Opus are)",
			t.Name, t.Codec.MimeType, container.ErrUnsupported)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return -1, ErrClosed
	}
	set := make([]bridge.Track, 0, len(r.active)+1)
	for _, in := range r.active {
		set = append(set, in.st.Track)
	}
	set = append(set, t.Track)
	f := r.o.Format
	if f == "" {
		f = container.Auto(set)
	}
	if err := container.Check(f, set); err != nil {
		return -1, fmt.Errorf("record: add track %q (%s): %w", t.Name, t.Codec.MimeType, err)
	}
	dom := r.domains[t.Session]
	if dom == nil {
		dom = &domain{}
		r.domains[t.Session] = dom
	}
	old := *r.inputs.Load()
	in := newInput(r, len(old), t, kind, dom)
	all := append(old[:len(old):len(old)], in)
	r.inputs.Store(&all)
	r.active = append(r.active, in)
	now := r.now().UnixNano()
	r.queue <- msg{kind: msgAdd, in: in, at: now}
	in.requestKeyframe(now)
	return in.idx, nil
}

func (r *Recorder) input(track int) (*input, error) {
	ins := *r.inputs.Load()
	if track < 0 || track >= len(ins) {
		return nil, fmt.Errorf("record: no track %d", track)
	}
	return ins[track], nil
}

// WriteRTP implements bridge.Sink. It returns an error only for an unknown
// or removed track or a closed Recorder: losses and disk errors are
// handled here and show in Stats.
func (r *Recorder) WriteRTP(track int, pkt *rtp.Packet) error {
	in, err := r.input(track)
	if err != nil {
		return err
	}
	now := r.now().UnixNano()
	in.mu.Lock()
	if in.removed {
		in.mu.Unlock()
		return ErrClosed
	}
	in.packets++
	in.ro.push(pkt, now, in)
	in.mu.Unlock()
	return nil
}

// WriteSenderReport implements bridge.Sink.
func (r *Recorder) WriteSenderReport(track int, ntpTime uint64, rtpTime uint32) {
	in, err := r.input(track)
	if err != nil {
		return
	}
	in.mu.Lock()
	if !in.removed {
		in.senderReports++
		in.clk.senderReport(ntpToUnix(ntpTime), rtpTime)
	}
	in.mu.Unlock()
}

// RemoveTrack implements bridge.Sink: the track's held packets are
// written and the others go on in the same segment.
func (r *Recorder) RemoveTrack(track int) {
	in, err := r.input(track)
	if err != nil {
		return
	}
	in.mu.Lock()
	if in.removed {
		in.mu.Unlock()
		return
	}
	in.finish()
	in.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, a := range r.active {
		if a == in {
			r.active = append(r.active[:i:i], r.active[i+1:]...)
			break
		}
	}
	if !r.closed.Load() {
		r.queue <- msg{kind: msgRemove, in: in}
	}
}

// Close implements bridge.Sink: it writes what the tracks hold, finalizes
// the file and stops the writer. It returns the error of finalizing.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed.Swap(true) {
		r.mu.Unlock()
		<-r.done
		return nil
	}
	r.mu.Unlock()
	close(r.tickStop)
	<-r.tickDone
	for _, in := range *r.inputs.Load() {
		in.mu.Lock()
		if !in.removed {
			in.finish()
		}
		in.mu.Unlock()
	}
	reply := make(chan error, 1)
	r.queue <- msg{kind: msgClose, reply: reply}
	err := <-reply
	<-r.done
	if cerr := r.root.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("record: close recordings directory: %w", cerr)
	}
	return err
}

// ticker gives up on gaps and late frames when packets stop coming, and
// drives the writer's timers (retention).
func (r *Recorder) ticker() {
	defer close(r.tickDone)
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-r.tickStop:
			return
		case <-t.C:
		}
		now := r.now().UnixNano()
		for _, in := range *r.inputs.Load() {
			in.mu.Lock()
			if !in.removed {
				in.ro.tick(now, in)
			}
			in.mu.Unlock()
		}
		select {
		case r.queue <- msg{kind: msgTick, wall: now}:
		case <-r.tickStop:
			return
		}
	}
}

// Stats is a snapshot of a Recorder's figures.
type Stats struct {
	Segments int           // segments started
	Bytes    int64         // bytes written, all segments
	Duration time.Duration // media time written, all segments
	Current  string        // the file being written (relative to Dir), "" if none
	// Failing is true from a disk error until a new segment has been
	// written for a while; LastError is the last such error.
	Failing     bool
	LastError   error
	WriteErrors uint64 // disk errors (failed creates, writes, finalizations)
	Tracks      []TrackStats
}

// TrackStats are the figures of one track, indexed as AddTrack returned.
type TrackStats struct {
	Name, MimeType string
	Removed        bool
	Packets        uint64 // packets received
	SenderReports  uint64
	Lost           uint64 // packets given up on after the reorder window
	Repaired       uint64 // packets that came out of order but within the window
	Late           uint64 // packets that came after their place was released (too late, or duplicates)
	Duplicates     uint64 // copies of a packet still held
	Restarts       uint64 // sender restarts (new SSRC or a jump in sequence numbers)
	Malformed      uint64 // payloads that did not depacketize
	Frames         uint64 // frames written
	// FramesIncomplete: frames with a packet missing. FramesWaitingKey:
	// video frames dropped after a loss or a start until a keyframe.
	// FramesDropped: complete frames not written for other reasons (the
	// writer queue was full, before the file's start, a track not in the
	// current segment yet, a segment waiting for this track's keyframe).
	FramesIncomplete uint64
	FramesWaitingKey uint64
	FramesDropped    uint64
	// WriteErrors counts frames not written because of a disk error.
	WriteErrors      uint64
	KeyframeRequests uint64
	LastError        error // last depacketizing error
}

// Stats returns the figures.
func (r *Recorder) Stats() Stats {
	r.statsMu.Lock()
	s := Stats{
		Segments:    r.segments,
		Bytes:       r.doneBytes + r.curBytes.Load(),
		Duration:    r.doneDur + time.Duration(r.curDur.Load()),
		Current:     r.current,
		Failing:     r.failing,
		LastError:   r.lastErr,
		WriteErrors: r.writeErrors,
	}
	r.statsMu.Unlock()
	for _, in := range *r.inputs.Load() {
		s.Tracks = append(s.Tracks, in.stats())
	}
	return s
}

// RepairDir finalizes the recordings a crash left in dir (and its
// subdirectories): every file with a marker that no running Recorder
// holds is passed to container.Repair and its marker removed. It returns
// the repaired files, and the errors of those it could not repair (a
// file killed before its header was written: removed if empty, else left
// unmarked; a file that failed otherwise keeps its marker for the next
// run). Call it at startup; markers held by live Recorders (of this or
// another process) are left alone.
func RepairDir(dir string, logger *slog.Logger) ([]string, error) {
	if logger == nil {
		logger = slog.Default()
	}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record: repair %s: %w", dir, err)
	}
	defer root.Close()
	var markers []string
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && isMarker(d.Name()) {
			markers = append(markers, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record: repair %s: list: %w", dir, err)
	}
	var repaired []string
	var errs []error
	for _, m := range markers {
		p, err := repairOne(root, dir, m, logger)
		if err != nil {
			errs = append(errs, err)
		}
		if p != "" {
			repaired = append(repaired, p)
		}
	}
	return repaired, errors.Join(errs...)
}

func repairOne(root *os.Root, dir, marker string, logger *slog.Logger) (string, error) {
	mf, err := root.OpenFile(marker, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("record: repair: open marker %s: %w", marker, err)
	}
	defer mf.Close()
	if held, err := tryLock(mf); err != nil {
		return "", fmt.Errorf("record: repair: lock marker %s: %w", marker, err)
	} else if held {
		return "", nil // a live recording
	}
	media := mediaOf(marker)
	full := filepath.Join(dir, media)
	f, ferr := readMarker(mf, media)
	if _, err := root.Stat(media); errors.Is(err, fs.ErrNotExist) {
		// A crash between creating the marker and the file.
		if err := root.Remove(marker); err != nil {
			return "", fmt.Errorf("record: repair: remove marker %s: %w", marker, err)
		}
		return "", nil
	}
	if ferr != nil {
		return "", fmt.Errorf("record: repair %s: %w", full, ferr)
	}
	res, err := container.Repair(full, f)
	if errors.Is(err, container.ErrNotRepairable) {
		// Killed before the header was out: nothing to keep if empty; else
		// the file stays as it is, no longer marked (not retried forever).
		if fi, serr := root.Stat(media); serr == nil && fi.Size() == 0 {
			_ = root.Remove(media)
		}
		_ = root.Remove(marker)
		return "", fmt.Errorf("record: repair %s: %w", full, err)
	}
	if err != nil {
		return "", fmt.Errorf("record: repair %s: %w", full, err)
	}
	if err := root.Remove(marker); err != nil {
		return full, fmt.Errorf("record: repair %s: remove marker: %w", full, err)
	}
	logger.Info("record: repaired a recording left by a crash", "path", full, "format", string(f),
		"result", fmt.Sprintf("%+v", res))
	return full, nil
}
