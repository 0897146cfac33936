package record

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/record/container"
)

type msgKind uint8

const (
	msgFrame    msgKind = iota
	msgProgress         // a frame a track dropped: its time, so others need not wait
	msgAdd
	msgRemove
	msgTick
	msgClose
)

// msg goes from the tracks (and AddTrack, RemoveTrack, the ticker, Close)
// to the writer goroutine.
type msg struct {
	kind msgKind
	in   *input
	// wall is, for a frame, its capture time in Unix ns on our clock
	// (plus dom's offset when dom is not nil: see clock.wall); for a
	// tick, now.
	wall  int64
	dom   *domain
	at    int64 // frame: arrival of its last packet
	key   bool
	buf   *frameBuf
	reply chan error
}

// fifo is a growable ring of frames.
type fifo struct {
	b       []msg
	head, n int
}

func (f *fifo) push(m msg) {
	if f.n == len(f.b) {
		nb := make([]msg, max(16, 2*len(f.b)))
		for i := 0; i < f.n; i++ {
			nb[i] = f.b[(f.head+i)%len(f.b)]
		}
		f.b, f.head = nb, 0
	}
	f.b[(f.head+f.n)%len(f.b)] = m
	f.n++
}

func (f *fifo) peek() *msg { return &f.b[f.head] }

// capture returns a frame's capture time with its domain's current offset.
func (m *msg) capture() int64 {
	if m.dom != nil {
		return m.wall + m.dom.off.Load()
	}
	return m.wall
}

func (f *fifo) pop() msg {
	m := f.b[f.head]
	f.b[f.head] = msg{}
	f.head = (f.head + 1) % len(f.b)
	f.n--
	return m
}

// segment is the file being written.
type segment struct {
	path    string // relative to Dir
	marker  string // relative to Dir
	lock    *os.File
	w       container.Writer
	format  container.Format
	slots   []segSlot
	start   int64         // wall of PTS 0
	end     time.Duration // largest PTS written
	video   bool          // holds a video track
	rotate  string        // why a new segment is due ("" if none yet)
	lastAt  int64         // when the last frame was written (arrival clock)
	flushed bool          // Flush was called since the last frame
}

type segSlot struct {
	track bridge.Track
	owner *input
	last  time.Duration
}

// writer owns the files. Frames from the tracks are interleaved in wall
// order (the container wants them roughly in time order): a frame waits
// until every other active track has delivered a frame (or dropped one
// and said so) at least as late, or until it has waited Reorder + 200 ms
// (a track held up by a loss, or silent). What a track delivered is
// known only from the queue, in order, so a segment's first keyframe is
// always written before the audio that follows it.
type writer struct {
	r       *Recorder
	inputs  []*input // known inputs: active, or with frames still queued
	seg     *segment
	now     int64 // latest arrival or tick time seen
	retryAt int64 // no new segment before this after a disk error
	backoff time.Duration
	// failing: a disk error happened and no segment has been written
	// well since (a while of media, or finished cleanly).
	failing       bool
	lastRetention int64
	// cut are segments a disk error left unfinalized (their markers
	// stay); they are repaired once a new segment works.
	cut []*segment
}

func (w *writer) run() {
	defer close(w.r.done)
	for m := range w.r.queue {
		switch m.kind {
		case msgFrame:
			w.now = max(w.now, m.at)
			m.in.mark = m.capture()
			m.in.q.push(m)
			w.interleave(false)
		case msgProgress:
			w.now = max(w.now, m.at)
			m.in.mark = m.capture()
			w.interleave(false)
		case msgAdd:
			m.in.addedAt = m.at
			w.add(m.in)
		case msgRemove:
			w.remove(m.in)
		case msgTick:
			w.now = max(w.now, m.wall)
			w.interleave(false)
			w.idle()
		case msgClose:
			w.interleave(true)
			m.reply <- w.finish()
			return
		}
	}
}

// interleave writes the queued frames that are due, oldest first.
func (w *writer) interleave(force bool) {
	for {
		var best *input
		var bestAt int64
		for _, in := range w.inputs {
			if in.q.n > 0 && (best == nil || in.q.peek().capture() < bestAt) {
				best, bestAt = in, in.q.peek().capture()
			}
		}
		if best == nil {
			break
		}
		h := best.q.peek()
		if !force && w.now-h.at < w.r.maxWait {
			ready := true
			for _, in := range w.inputs {
				if in != best && in.wActive && in.q.n == 0 && in.mark < bestAt {
					ready = false
					break
				}
			}
			if !ready {
				break
			}
		}
		m := best.q.pop()
		m.wall, m.dom = bestAt, nil
		w.write(&m)
		best.free <- m.buf // never blocks: cap(free) is the number of buffers
	}
	// Forget removed inputs whose frames are all written.
	kept := w.inputs[:0]
	for _, in := range w.inputs {
		if in.wActive || in.q.n > 0 {
			kept = append(kept, in)
		} else {
			in.slot = -1
		}
	}
	clear(w.inputs[len(kept):])
	w.inputs = kept
}

func (w *writer) add(in *input) {
	in.wActive = true
	w.inputs = append(w.inputs, in)
	if w.seg == nil {
		return
	}
	// A track that replaces a removed one of the same codec (a publisher
	// that reconnected) takes its place in the file.
	for i := range w.seg.slots {
		s := &w.seg.slots[i]
		if (s.owner == nil || !s.owner.wActive) && sameCodec(s.track, in.st.Track) {
			s.owner, in.slot, in.wStarted = in, i, false
			return
		}
	}
	if w.seg.rotate == "" {
		w.seg.rotate = "track " + in.st.Name + " added"
	}
}

func sameCodec(a, b bridge.Track) bool {
	return a.Kind == b.Kind && strings.EqualFold(a.Codec.MimeType, b.Codec.MimeType) &&
		a.Codec.ClockRate == b.Codec.ClockRate && a.Codec.Channels == b.Codec.Channels &&
		a.Codec.Fmtp == b.Codec.Fmtp
}

func (w *writer) remove(in *input) {
	in.wActive = false
	for _, x := range w.inputs {
		if x.wActive {
			return
		}
	}
	// Nothing left to record: write what is queued, finish the file (an
	// error is logged and in Stats).
	w.interleave(true)
	_ = w.finish()
}

// videoWait is how long a video track may go without a keyframe, from
// when it was added, before segments start without it (a camera that is
// off): its audio is recorded meanwhile, and its first keyframe starts a
// segment that holds it.
const videoWait = 2 * time.Second

// counts reports whether a track belongs in a new segment: an active
// audio track, or an active video track that has sent a keyframe or was
// added less than videoWait ago.
func (w *writer) counts(in *input) bool {
	return in.wActive && (!in.video || in.keySeen || w.now-in.addedAt < int64(videoWait))
}

// active returns the tracks a new segment holds.
func (w *writer) active() []*input {
	var a []*input
	for _, in := range w.inputs {
		if w.counts(in) {
			a = append(a, in)
		}
	}
	return a
}

// canStart: a segment starts at a video keyframe when it holds video, at
// any frame otherwise.
func (w *writer) canStart(m *msg) bool {
	if m.in.video {
		return m.key
	}
	for _, in := range w.inputs {
		if in.video && w.counts(in) {
			return false
		}
	}
	return true
}

// due returns why the segment should end, "" if it should not.
func (w *writer) due(m *msg) string {
	s, o := w.seg, &w.r.o
	switch {
	case s.rotate != "":
		return s.rotate
	case o.SegmentDuration > 0 && m.wall-s.start >= int64(o.SegmentDuration):
		return "duration"
	case o.SegmentSize > 0 && s.w.Written() >= o.SegmentSize:
		return "size"
	}
	return ""
}

func (w *writer) requestKeyframes() {
	for _, in := range w.inputs {
		if in.wActive {
			in.requestKeyframe(w.now)
		}
	}
}

// write writes one frame, starting and ending segments as needed.
func (w *writer) write(m *msg) {
	in := m.in
	if in.video && m.key {
		in.keySeen = true
	}
	if w.seg != nil && in.wActive {
		if in.slot < 0 && w.seg.rotate == "" && w.counts(in) {
			w.seg.rotate = "track " + in.st.Name + " started" // a video track that was silent
		}
		if reason := w.due(m); reason != "" {
			if !w.canStart(m) {
				w.requestKeyframes()
			} else {
				w.r.log.Debug("record: next segment", "reason", reason)
				w.finish()
			}
		}
	}
	if w.seg == nil {
		if w.failing && w.now < w.retryAt {
			in.diskDrops.Add(1)
			return
		}
		if !in.wActive || !w.canStart(m) {
			in.dropped.Add(1)
			if in.wActive {
				w.requestKeyframes()
			}
			return
		}
		if err := w.open(m.wall); err != nil {
			w.fail(err)
			in.diskDrops.Add(1)
			return
		}
	}
	s := w.seg
	pts := time.Duration(m.wall - s.start)
	if in.slot < 0 || pts < 0 {
		in.dropped.Add(1)
		return
	}
	if in.video && !in.wStarted {
		if !m.key {
			in.dropped.Add(1)
			in.requestKeyframe(w.now)
			return
		}
		in.wStarted = true
	}
	sl := &s.slots[in.slot]
	pts = max(pts, sl.last)
	err := s.w.WriteFrame(container.Frame{Track: in.slot, PTS: pts, Key: m.key, Data: m.buf.data})
	if err != nil {
		if errors.Is(err, container.ErrInvalidFrame) || errors.Is(err, container.ErrNeedKeyframe) {
			// The frame, not the file: the writer stays usable. A keyframe
			// the header cannot use (no parameter sets known): wait for
			// the next.
			in.dropped.Add(1)
			if errors.Is(err, container.ErrNeedKeyframe) && in.video {
				in.wStarted = false
				in.requestKeyframe(w.now)
			}
			in.mu.Lock()
			in.lastErr = err
			in.mu.Unlock()
			return
		}
		w.fail(fmt.Errorf("write frame to %s: %w", s.path, err))
		in.diskDrops.Add(1)
		return
	}
	in.frames.Add(1)
	sl.last = pts
	s.end = max(s.end, pts)
	s.lastAt, s.flushed = w.now, false
	w.r.curBytes.Store(s.w.Written())
	w.r.curDur.Store(int64(s.end))
	if w.failing && s.end >= 2*time.Second {
		w.recovered()
	}
}

// open starts a segment whose time 0 is start.
func (w *writer) open(start int64) error {
	ins := w.active()
	tracks := make([]bridge.Track, len(ins))
	for i, in := range ins {
		tracks[i] = in.st.Track
	}
	format := w.r.o.Format
	if format == "" {
		format = container.Auto(tracks)
	}
	path, marker, lock, f, err := w.r.create(format, ins, start)
	if err != nil {
		return err
	}
	cw, err := w.r.newWriter(format, f, tracks)
	if err != nil {
		f.Close()
		w.r.discardFiles(path, marker, lock)
		return fmt.Errorf("start %s: %w", path, err)
	}
	s := &segment{path: path, marker: marker, lock: lock, w: cw, format: format, start: start}
	for _, in := range w.inputs {
		in.slot, in.wStarted = -1, false
	}
	for i, in := range ins {
		in.slot = i
		s.slots = append(s.slots, segSlot{track: in.st.Track, owner: in})
		s.video = s.video || in.video
	}
	w.seg = s
	w.r.statsMu.Lock()
	w.r.segments++
	w.r.current = path
	w.r.statsMu.Unlock()
	w.r.curBytes.Store(cw.Written())
	w.r.curDur.Store(0)
	w.r.log.Info("record: segment started", "path", path, "format", string(format), "tracks", len(tracks))
	w.repairCut()
	return nil
}

// repairCut finalizes the segments a disk error cut, now that a new one
// could be started (there is room again).
func (w *writer) repairCut() {
	kept := w.cut[:0]
	for _, s := range w.cut {
		res, err := container.Repair(filepath.Join(w.r.o.Dir, s.path), s.format)
		if err != nil && !errors.Is(err, container.ErrNotRepairable) {
			kept = append(kept, s) // try again after the next start
			continue
		}
		if err != nil {
			w.r.log.Warn("record: a segment cut by a disk error cannot be repaired", "path", s.path, "err", err)
		} else {
			w.r.log.Info("record: repaired a segment cut by a disk error", "path", s.path,
				"duration", res.Duration, "truncated", res.Truncated)
		}
		_ = w.r.root.Remove(s.marker)
	}
	clear(w.cut[len(kept):])
	w.cut = kept
}

// finish finalizes the segment (if any) and applies retention.
func (w *writer) finish() error {
	s := w.seg
	if s == nil {
		return nil
	}
	w.seg = nil
	for _, in := range w.inputs {
		in.slot = -1
	}
	err := s.w.Close()
	bytes := w.r.curBytes.Load()
	w.closed(s, err == nil)
	if err != nil {
		err = fmt.Errorf("record: finalize %s: %w", s.path, err)
		w.r.statsMu.Lock()
		w.r.writeErrors++
		w.r.lastErr = err
		w.r.statsMu.Unlock()
		w.r.log.Error("record: finalizing a segment failed; RepairDir can finish it", "path", s.path, "err", err)
	} else {
		w.r.log.Info("record: segment finished", "path", s.path, "duration", s.end, "bytes", bytes)
		if w.failing {
			w.recovered()
		}
	}
	w.retention()
	return err
}

// closed books a closed segment and removes its marker when the file was
// finalized (else the marker stays for RepairDir).
func (w *writer) closed(s *segment, finalized bool) {
	if finalized {
		if err := w.r.root.Remove(s.marker); err != nil {
			w.r.log.Warn("record: remove marker", "path", s.marker, "err", err)
		}
	}
	s.lock.Close()
	w.r.statsMu.Lock()
	w.r.doneBytes += w.r.curBytes.Load()
	w.r.doneDur += s.end
	w.r.current = ""
	w.r.statsMu.Unlock()
	w.r.curBytes.Store(0)
	w.r.curDur.Store(0)
}

// fail handles a disk error: the segment is closed as well as it can be
// (it stays a playable prefix), and a new one is tried after a backoff
// that doubles from 1 s to 30 s. Logged once per failure episode.
func (w *writer) fail(err error) {
	err = fmt.Errorf("record: %w", err)
	if s := w.seg; s != nil {
		w.seg = nil
		for _, in := range w.inputs {
			in.slot = -1
		}
		cerr := s.w.Close()
		if cerr == nil && s.end == 0 && w.r.curBytes.Load() == 0 {
			_ = w.r.root.Remove(s.path) // nothing in it
		}
		if cerr != nil {
			w.cut = append(w.cut, s)
		}
		w.closed(s, cerr == nil)
	}
	if w.backoff == 0 {
		w.backoff = minBackoff
	} else {
		w.backoff = min(2*w.backoff, maxBackoff)
	}
	w.retryAt = w.now + int64(w.backoff)
	w.r.statsMu.Lock()
	w.r.writeErrors++
	w.r.lastErr = err
	w.r.failing = true
	w.r.statsMu.Unlock()
	if !w.failing {
		w.failing = true
		w.r.log.Error("record: disk error; recording suspended, frames are dropped until a new segment works",
			"dir", w.r.o.Dir, "err", err, "retry_in", w.backoff)
	} else {
		w.r.log.Debug("record: disk error again", "err", err, "retry_in", w.backoff)
	}
}

func (w *writer) recovered() {
	w.failing, w.backoff = false, 0
	w.r.statsMu.Lock()
	w.r.failing = false
	w.r.statsMu.Unlock()
	w.r.log.Info("record: recording resumed after a disk error", "dir", w.r.o.Dir)
}

// idle runs on ticks: flushes a stalled segment, and applies retention
// once a minute.
func (w *writer) idle() {
	if s := w.seg; s != nil && !s.flushed && w.now-s.lastAt > int64(500*time.Millisecond) {
		s.flushed = true
		if err := s.w.Flush(); err != nil {
			w.fail(fmt.Errorf("flush %s: %w", s.path, err))
		}
	}
	if w.now-w.lastRetention >= int64(time.Minute) {
		w.retention()
	}
}
