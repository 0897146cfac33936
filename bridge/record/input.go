package record

import (
	"sync"
	"sync/atomic"

	"github.com/rtgate/rtgate/bridge"
)

// A track's frames in flight (queued for the writer or waiting to be
// interleaved) are bounded: baseBufs plus 100 per second of the
// interleaving wait. Their buffers are reused; none is allocated once a
// track has as many as it needs.
const baseBufs = 64

// frameBuf carries one frame's bytes from a track to the writer and back.
type frameBuf struct {
	data []byte
}

// input is one track given to AddTrack: reorder buffer, depacketizer,
// clock and the frame being assembled. Its fields under mu are used by
// the caller's goroutine (WriteRTP, WriteSenderReport, RemoveTrack) and
// the ticker; those marked writer-owned only by the writer goroutine.
type input struct {
	r     *Recorder
	idx   int
	st    bridge.SinkTrack
	kind  codecKind
	video bool

	mu      sync.Mutex
	removed bool
	ro      reorder
	dp      depack
	clk     clock

	// The frame being assembled.
	buf     *frameBuf
	scratch []byte // H.264/H.265: to put parameter sets in front of a keyframe
	inFrame bool
	clean   bool // no packet of it is missing so far
	key     bool
	ts      uint32
	at      int64 // arrival of its first packet
	needKey bool  // video: drop frames until a keyframe
	last    int64 // wall of the last frame, so that wall never decreases

	// Counters under mu.
	packets, senderReports, malformed  uint64
	incomplete, waitingKey, queueDrops uint64
	lastErr                            error

	free    chan *frameBuf // buffers back from the writer
	bufs    int            // buffers made, at most cap(free)
	bufSize int            // initial capacity of a buffer

	// Shared with the writer goroutine.
	lastKeyReq atomic.Int64
	keyReqs    atomic.Uint64
	frames     atomic.Uint64
	dropped    atomic.Uint64 // by the writer: before the start, not in the segment, waiting for a keyframe
	diskDrops  atomic.Uint64
	gone       atomic.Bool // removed (for Stats)

	// Writer-owned.
	mark     int64 // capture time of the last frame (or progress) the writer got
	slot     int   // index in the segment's tracks, -1 when not in it
	wActive  bool  // added and not removed, as the writer sees it
	wStarted bool  // video: a keyframe was written in this segment
	keySeen  bool  // video: a keyframe reached the writer once
	addedAt  int64 // when AddTrack was called
	q        fifo  // frames waiting to be interleaved
}

func newInput(r *Recorder, idx int, t bridge.SinkTrack, kind codecKind, dom *domain) *input {
	rate := int64(t.Codec.ClockRate)
	if rate == 0 {
		rate = 90000
		if kind == codecOpus {
			rate = 48000
		}
	}
	in := &input{
		r:       r,
		idx:     idx,
		st:      t,
		kind:    kind,
		video:   kind != codecOpus,
		needKey: kind != codecOpus,
		free:    make(chan *frameBuf, baseBufs+int(r.maxWait/1e7)),
		bufSize: 16 << 10,
		slot:    -1,
	}
	if kind == codecOpus {
		in.bufSize = 1276 // the largest Opus packet
	}
	in.ro.window = r.window
	in.dp.kind = kind
	if kind == codecH264 || kind == codecH265 {
		in.dp.seedParamSets(t.Codec.Fmtp)
	}
	in.clk.rate, in.clk.dom = rate, dom
	return in
}

// requestKeyframe asks the publisher for a keyframe unless one was asked
// for less than KeyframeInterval ago. Safe from any goroutine.
func (in *input) requestKeyframe(now int64) {
	if !in.video || in.st.RequestKeyframe == nil {
		return
	}
	last := in.lastKeyReq.Load()
	if last != 0 && now-last < in.r.keyInterval {
		return
	}
	if !in.lastKeyReq.CompareAndSwap(last, now) {
		return
	}
	in.keyReqs.Add(1)
	in.st.RequestKeyframe()
}

// release implements releaser: packets in sequence order become frames.
// A frame is complete at its marker bit (every Opus packet is one) or
// when the timestamp changes with no packet missing in between; it is
// clean when none of its packets is missing, including its first, which
// after a gap only a codec-level frame start can prove.
func (in *input) release(seq uint16, ts uint32, marker bool, payload []byte, arrival int64, lost int, restart bool) {
	gap := lost > 0 || restart
	if restart {
		in.clk.restart()
		if in.inFrame {
			in.discard(arrival)
		}
	}
	if gap && in.video {
		in.needKey = true
		in.requestKeyframe(arrival)
	}
	if in.inFrame && ts != in.ts {
		if in.clean && !gap {
			in.emit(arrival)
		} else {
			in.discard(arrival)
		}
	}
	if in.inFrame && gap {
		in.clean = false
	}
	if !in.inFrame {
		in.inFrame, in.ts, in.at, in.key = true, ts, arrival, false
		in.clean = !gap || in.dp.frameStart(payload)
		in.dp.reset()
		if in.buf == nil {
			in.buf = in.getBuf()
		}
		if in.buf == nil {
			// All buffers in flight: the writer is behind.
			in.clean = false
			in.queueDrops++
			if in.video {
				in.needKey = true
				in.requestKeyframe(arrival)
			}
		} else {
			in.buf.data = in.buf.data[:0]
		}
	}
	if in.clean {
		data, key, err := in.dp.appendPayload(in.buf.data, payload)
		in.buf.data = data
		in.key = in.key || key
		if err != nil {
			in.clean = false
			in.malformed++
			in.lastErr = err
		}
	}
	if marker || !in.video {
		if in.clean {
			in.emit(arrival)
		} else {
			in.discard(arrival)
		}
	}
}

// getBuf takes a frame buffer back from the writer or makes one; nil
// when the track has all its buffers in flight.
func (in *input) getBuf() *frameBuf {
	select {
	case b := <-in.free:
		return b
	default:
	}
	if in.bufs < cap(in.free) {
		in.bufs++
		return &frameBuf{data: make([]byte, 0, in.bufSize)}
	}
	if in.r.blockOnFull {
		return <-in.free
	}
	return nil
}

// discard drops the frame in progress: a packet of it is missing (or it
// had no buffer, already counted).
func (in *input) discard(now int64) {
	in.inFrame = false
	if in.buf != nil {
		in.incomplete++
	}
	if in.video {
		in.needKey = true
		in.requestKeyframe(now)
	}
}

// emit passes the complete frame in progress to the writer. now is the
// arrival of the packet that completed it.
func (in *input) emit(now int64) {
	in.inFrame = false
	wall, base, dom := in.clk.wall(in.ts, in.at, in.last)
	if wall < in.last {
		wall, base, dom = in.last, in.last, nil
	}
	in.last = wall
	if in.video && in.needKey {
		if !in.key {
			in.waitingKey++
			in.requestKeyframe(now)
			// Tell the writer the track got this far, so that the other
			// tracks' frames need not wait for it; if the queue is full,
			// the next frame will.
			select {
			case in.r.queue <- msg{kind: msgProgress, in: in, wall: base, dom: dom, at: now}:
			default:
			}
			return
		}
		in.needKey = false
	}
	if in.key {
		if out, built := in.dp.paramSets(in.buf.data, in.scratch); built {
			in.buf.data, in.scratch = out, in.buf.data
		}
	}
	m := msg{kind: msgFrame, in: in, wall: base, dom: dom, at: now, key: in.key, buf: in.buf}
	if in.r.blockOnFull {
		in.r.queue <- m
	} else {
		select {
		case in.r.queue <- m:
		default:
			in.queueDrops++
			if in.video {
				in.needKey = true
				in.requestKeyframe(now)
			}
			return
		}
	}
	in.buf = nil
}

// finish ends the track: held packets are released, a frame without its
// end is dropped. Called under mu.
func (in *input) finish() {
	in.ro.flush(in)
	if in.inFrame {
		in.inFrame = false
		in.incomplete++
	}
	in.removed = true
	in.gone.Store(true)
}

func (in *input) stats() TrackStats {
	in.mu.Lock()
	defer in.mu.Unlock()
	return TrackStats{
		Name:             in.st.Name,
		MimeType:         in.st.Codec.MimeType,
		Removed:          in.gone.Load(),
		Packets:          in.packets,
		SenderReports:    in.senderReports,
		Lost:             in.ro.lost,
		Repaired:         in.ro.repaired,
		Late:             in.ro.late,
		Duplicates:       in.ro.duplicates,
		Restarts:         in.ro.restarts,
		Malformed:        in.malformed,
		Frames:           in.frames.Load(),
		FramesIncomplete: in.incomplete,
		FramesWaitingKey: in.waitingKey,
		FramesDropped:    in.queueDrops + in.dropped.Load(),
		WriteErrors:      in.diskDrops.Load(),
		KeyframeRequests: in.keyReqs.Load(),
		LastError:        in.lastErr,
	}
}
