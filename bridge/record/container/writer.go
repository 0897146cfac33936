package container

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/rtgate/rtgate/bridge"
)

// Frame is one access unit of one track.
type Frame struct {
	Track int           // index into the tracks given to NewWriter
	PTS   time.Duration // presentation time since the file's start; >= 0, non-decreasing per track
	Key   bool          // keyframe (video); always true for audio
	// Data is one access unit, only valid during WriteFrame: a VP8 or VP9
	// frame as pion's depacketizers give it; an AV1 temporal unit in
	// low-overhead format (OBUs with size fields); an H.264/H.265 Annex-B
	// access unit (parameter sets in-band before each IDR); one Opus packet.
	Data []byte
}

// Writer writes frames into one file.
type Writer interface {
	// WriteFrame writes one frame. Errors about the frame (unknown track,
	// PTS going back, a first video frame that is not a keyframe: see
	// ErrInvalidFrame, ErrNeedKeyframe) leave the writer usable; a write
	// error is returned on every later call (the file stays a playable
	// prefix that Repair can finish).
	WriteFrame(f Frame) error
	// Written is the number of bytes written to the file so far (for
	// size-based rotation).
	Written() int64
	// Flush hands what the writer holds to the OS: the Ogg pages in
	// progress, the MP4 fragment of samples whose durations are known.
	// Matroska and IVF hold nothing. Writers flush by themselves every
	// 500 ms of media; Flush is for a recorder whose input stalls.
	Flush() error
	// Close finalizes the file (durations, cues/index, IVF length, Ogg EOS,
	// ...), syncs it to disk and closes it.
	Close() error
}

// File is what a Writer writes to; *os.File satisfies it.
type File interface {
	io.Writer
	io.Seeker
	io.Closer
	Sync() error
}

// Errors wrapped by WriteFrame, NewWriter and Repair.
var (
	// ErrNeedKeyframe: a video track's first frame is not a keyframe, or
	// a keyframe lacks what the header needs (H.264/H.265 parameter sets,
	// AV1 sequence header).
	ErrNeedKeyframe = errors.New("need a keyframe")
	// ErrInvalidFrame: a frame for an unknown track, with a negative or
	// decreasing PTS, or with empty or malformed data.
	ErrInvalidFrame = errors.New("invalid frame")
	// ErrClosed: the writer was closed.
	ErrClosed = errors.New("writer closed")
	// ErrNotRepairable: Repair found no header of the format it was told
	// (an empty file, or another format).
	ErrNotRepairable = errors.New("not repairable")
)

// Frames of other tracks held while a video track waits for its first
// keyframe (the header needs it): at most this much media, oldest dropped.
const maxPendingSpan = 3 * time.Second

// muxer is one format's writer behind the common checks.
type muxer interface {
	// header writes the file header; cfg has one entry per track (zero
	// for audio tracks).
	header(cfg []trackConfig) error
	// frame writes a checked frame.
	frame(f *Frame) error
	flush() error
	// finish finalizes the file (Close).
	finish() error
}

type trackState struct {
	bridge.Track
	codec      codec
	started    bool
	last       time.Duration
	configured bool
}

type writer struct {
	format  Format
	out     *output
	tracks  []trackState
	cfg     []trackConfig
	mux     muxer
	ready   bool    // header written
	pending []Frame // frames held until the header can be written (copies)
	dropped int     // pending frames dropped
	closed  bool
	cur     Frame
}

// NewWriter writes format f into out, which must be empty and at offset 0
// (an *os.File in production; the writer seeks to finalize). It checks the
// tracks with Check. The header is written once every video track's first
// keyframe is known (dimensions, avcC/hvcC/av1C); frames of other tracks
// that come before are held (at most 3 s of them). Formats without video
// write their header at once.
func NewWriter(f Format, out File, tracks []bridge.Track) (Writer, error) {
	if err := Check(f, tracks); err != nil {
		return nil, err
	}
	w := &writer{format: f, out: newOutput(out), cfg: make([]trackConfig, len(tracks))}
	w.tracks = make([]trackState, len(tracks))
	ready := true
	for i, t := range tracks {
		w.tracks[i] = trackState{Track: t, codec: codecOf(t)}
		if w.tracks[i].codec.video() {
			ready = false
		}
	}
	switch f {
	case WebM, MKV:
		w.mux = newMatroska(w.out, f, w.tracks)
	case Ogg:
		w.mux = newOgg(w.out, w.tracks)
	case IVF:
		w.mux = newIVF(w.out, w.tracks[0].codec)
	case MP4:
		w.mux = newMP4(w.out, w.tracks)
	}
	if ready {
		if err := w.mux.header(w.cfg); err != nil {
			return nil, fmt.Errorf("%s: write header: %w", f, err)
		}
		w.ready = true
	}
	return w, nil
}

func (w *writer) Written() int64 { return w.out.pos }

func (w *writer) WriteFrame(f Frame) error {
	if w.closed {
		return fmt.Errorf("%s: write frame: %w", w.format, ErrClosed)
	}
	if w.out.err != nil {
		return w.out.err
	}
	if f.Track < 0 || f.Track >= len(w.tracks) {
		return fmt.Errorf("%s: frame for track %d, the file has %d: %w", w.format, f.Track, len(w.tracks), ErrInvalidFrame)
	}
	t := &w.tracks[f.Track]
	switch {
	case f.PTS < 0:
		return fmt.Errorf("%s: track %d: negative PTS %v: %w", w.format, f.Track, f.PTS, ErrInvalidFrame)
	case t.started && f.PTS < t.last:
		return fmt.Errorf("%s: track %d: PTS %v before the previous frame's %v: %w", w.format, f.Track, f.PTS, t.last, ErrInvalidFrame)
	case len(f.Data) == 0:
		return fmt.Errorf("%s: track %d: empty frame at %v: %w", w.format, f.Track, f.PTS, ErrInvalidFrame)
	}
	if !t.codec.video() {
		f.Key = true
		if opusSamples(f.Data) == 0 {
			return fmt.Errorf("%s: track %d: malformed Opus packet at %v: %w", w.format, f.Track, f.PTS, ErrInvalidFrame)
		}
	} else if !t.configured {
		if !f.Key {
			return fmt.Errorf("%s: track %d: first %s frame (PTS %v) is not a keyframe: %w", w.format, f.Track, t.codec, f.PTS, ErrNeedKeyframe)
		}
		cfg, err := configOf(t.codec, f.Data)
		if err != nil {
			return fmt.Errorf("%s: track %d: first frame: %w", w.format, f.Track, err)
		}
		w.cfg[f.Track] = cfg
		t.configured = true
	}
	if !w.ready {
		if !w.allConfigured() {
			w.hold(f)
			t.started, t.last = true, f.PTS
			return nil
		}
		if err := w.mux.header(w.cfg); err != nil {
			return fmt.Errorf("%s: write header: %w", w.format, err)
		}
		w.ready = true
		for i := range w.pending {
			// Pending frames were checked when they came; only write
			// errors can fail here.
			if err := w.mux.frame(&w.pending[i]); err != nil && w.out.err != nil {
				return err
			}
		}
		w.pending = nil
	}
	// Through a field: &f of the parameter would escape (one allocation
	// per frame) across the muxer interface.
	w.cur = f
	err := w.mux.frame(&w.cur)
	w.cur.Data = nil
	if err != nil {
		return err
	}
	t.started, t.last = true, f.PTS
	return nil
}

func (w *writer) allConfigured() bool {
	for _, t := range w.tracks {
		if t.codec.video() && !t.configured {
			return false
		}
	}
	return true
}

// hold keeps a copy of a frame until the header can be written.
func (w *writer) hold(f Frame) {
	f.Data = append([]byte(nil), f.Data...)
	w.pending = append(w.pending, f)
	n := 0
	for n < len(w.pending) && f.PTS-w.pending[n].PTS > maxPendingSpan {
		n++
	}
	if n > 0 {
		w.dropped += n
		w.pending = append(w.pending[:0], w.pending[n:]...)
	}
}

func configOf(c codec, data []byte) (trackConfig, error) {
	switch c {
	case codecVP8:
		w, h, err := vp8Size(data)
		return trackConfig{width: w, height: h}, err
	case codecVP9:
		v, err := parseVP9Keyframe(data)
		if errors.Is(err, ErrNeedKeyframe) {
			return trackConfig{}, err
		}
		if err != nil {
			// Best effort: a header we cannot read (a superframe index
			// first?) still plays; dimensions come from the decoder.
			v = vp9Info{bitDepth: 8, ssX: 1, ssY: 1}
		}
		return trackConfig{width: v.width, height: v.height, priv: vpcC(v), vp9: v}, nil
	case codecAV1:
		return av1Config(data)
	case codecH264:
		return h264Config(data)
	case codecH265:
		return h265Config(data)
	}
	return trackConfig{}, nil
}

func (w *writer) Flush() error {
	if w.closed {
		return fmt.Errorf("%s: flush: %w", w.format, ErrClosed)
	}
	if w.out.err != nil {
		return w.out.err
	}
	if !w.ready {
		return nil
	}
	return w.mux.flush()
}

func (w *writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	var errs []error
	if w.out.err == nil {
		switch {
		case w.ready:
			if err := w.mux.finish(); err != nil && w.out.err == nil {
				errs = append(errs, fmt.Errorf("%s: finalize: %w", w.format, err))
			}
		case len(w.pending) > 0 || w.dropped > 0:
			errs = append(errs, fmt.Errorf("%s: closed before every video track had a keyframe: %d frames not written: %w",
				w.format, len(w.pending)+w.dropped, ErrNeedKeyframe))
		}
		if w.out.err == nil {
			if err := w.out.f.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("%s: sync %s: %w", w.format, w.out.name, err))
			}
		}
	}
	if w.out.err != nil {
		errs = append(errs, w.out.err)
	}
	if err := w.out.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("%s: close %s: %w", w.format, w.out.name, err))
	}
	return errors.Join(errs...)
}

// output appends to a File, remembers the end offset and the first write
// error (sticky: after a failed write the file may end inside a structure,
// so nothing more is appended).
type output struct {
	f    File
	name string
	pos  int64 // end of the data written
	err  error
}

func newOutput(f File) *output {
	o := &output{f: f, name: "file"}
	if n, ok := f.(interface{ Name() string }); ok {
		o.name = n.Name()
	}
	return o
}

func (o *output) write(b []byte) error {
	if o.err != nil {
		return o.err
	}
	n, err := o.f.Write(b)
	o.pos += int64(n)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			// It already names the file.
			o.err = fmt.Errorf("write %d bytes at offset %d: %w", len(b), o.pos-int64(n), err)
		} else {
			o.err = fmt.Errorf("write %d bytes to %s at offset %d: %w", len(b), o.name, o.pos-int64(n), err)
		}
	}
	return o.err
}

// writeAt overwrites bytes already written (sizes, counters) and returns to
// the end.
func (o *output) writeAt(b []byte, off int64) error {
	if o.err != nil {
		return o.err
	}
	if off+int64(len(b)) > o.pos {
		o.err = fmt.Errorf("patch %s at offset %d: beyond the end %d", o.name, off, o.pos)
		return o.err
	}
	if _, err := o.f.Seek(off, io.SeekStart); err != nil {
		o.err = fmt.Errorf("seek %s to %d: %w", o.name, off, err)
		return o.err
	}
	if _, err := o.f.Write(b); err != nil {
		o.err = fmt.Errorf("patch %d bytes of %s at offset %d: %w", len(b), o.name, off, err)
		return o.err
	}
	if _, err := o.f.Seek(o.pos, io.SeekStart); err != nil {
		o.err = fmt.Errorf("seek %s to %d: %w", o.name, o.pos, err)
	}
	return o.err
}
