// Package bridge holds the contract between media sources that live outside
// WebRTC (RTP/UDP, files, cameras, disk) and the gateway that publishes and
// pulls them. A source knows nothing of HTTP, SDP offers or the SFU: it
// produces RTP packets for one or more tracks and, where it can, makes
// keyframes on request. A sink is the way back out: it consumes the RTP
// packets of pulled tracks and asks for keyframes when it needs them. The
// sub-packages implement them: rtpudp (RTP over UDP in and out), file (IVF,
// Ogg/Opus, H.264 Annex-B), v4l2 (cameras), record (recordings on disk).
// The contract's vocabulary lives here too: codecs and track kinds, and
// where a keyframe starts in a codec's RTP payload (PayloadKind).
//
// bridge never imports gateway.
package bridge

import (
	"context"
	"strings"
	"time"

	"github.com/pion/rtp"
)

// Kinds of track.
const (
	KindAudio = "audio"
	KindVideo = "video"
)

// Codec describes the RTP stream of a track the way SDP does.
type Codec struct {
	MimeType    string // "video/VP8", "video/H264", "audio/opus", ... (pion's MIME type constants)
	ClockRate   uint32
	Channels    uint16 // audio only; 0 means 1
	Fmtp        string // SDP fmtp parameters, e.g. "packetization-mode=1;profile-level-id=42e01f"
	PayloadType uint8  // the payload type the source's packets carry
}

// Kind returns KindAudio or KindVideo from the MIME type.
func (c Codec) Kind() string {
	if strings.HasPrefix(strings.ToLower(c.MimeType), "audio/") {
		return KindAudio
	}
	return KindVideo
}

// Track is one media track of a source.
type Track struct {
	Kind  string // KindAudio or KindVideo
	Codec Codec
}

// PacketFunc receives the packets of a source: track is the index into
// Tracks(). The packet and its payload are only valid during the call (the
// source reuses its buffers); a receiver that keeps one must copy it.
// Sources call it from one goroutine per track at most; it must not block
// for long.
type PacketFunc func(track int, pkt *rtp.Packet)

// Source produces RTP packets for its tracks.
type Source interface {
	// Tracks describes the tracks; it is known before Run (from the URL,
	// an SDP file or a file header) and does not change.
	Tracks() []Track
	// Run produces packets until ctx is done (it then returns nil), a
	// non-looping file ends (io.EOF), or a fatal error. It does not return
	// before its last call of fn has returned. It may be called again after
	// it returned, to restart the source. ctx may ask the source to
	// announce its batches (WithBatch).
	Run(ctx context.Context, fn PacketFunc) error
	// RequestKeyframe asks the source to make a keyframe on a video track
	// soon. It returns false when the source cannot (a file); the caller
	// counts such requests. It never blocks.
	RequestKeyframe(track int) bool
	// Close releases what the source holds (sockets, files).
	Close() error
}

// Batch is an optional contract between a Source and the receiver of its
// packets, who asks for it by running the source with a context made by
// WithBatch. A source that reads its packets in batches (bridge/rtpudp:
// every datagram one recvmmsg(2) returned) then tells the receiver where a
// batch begins and ends, so that the receiver can send what it makes of a
// batch with one system call too (gateway/peer's API.Cork and API.Flush:
// sendmmsg(2)). Sources without batches ignore it.
//
// It travels in the context, not as a method of Source, because wrappers
// of a source (a counting wrapper, a watchdog) pass the context of Run
// through unchanged but hide the methods of what they wrap, and because
// every Source would otherwise have to implement it.
type Batch struct {
	// Begin is called before the first packet of a batch of two or more
	// packets, and End after the last one was handed to the PacketFunc;
	// both from the goroutine that calls the PacketFunc for them, both or
	// neither, and never nested. A batch of one packet is not announced.
	// Either may be nil.
	Begin, End func()
	// Linger lets a source that reads a socket wait up to this long
	// before reading again, when its packets arrive fast enough that the
	// wait gathers several (fewer wakeups and system calls per packet, on
	// both sides of the receiver) at the price of that much added
	// latency. At low packet rates the source never waits. 0: no wait.
	Linger time.Duration
}

type batchKey struct{}

// WithBatch returns a context for Source.Run that asks the source to
// announce its batches to b (see Batch).
func WithBatch(ctx context.Context, b Batch) context.Context {
	return context.WithValue(ctx, batchKey{}, b)
}

// BatchFrom returns the Batch that WithBatch put in ctx; the zero Batch
// (no calls, no wait) if there is none.
func BatchFrom(ctx context.Context) Batch {
	b, _ := ctx.Value(batchKey{}).(Batch)
	return b
}

// SinkTrack describes a pulled track to a Sink.
type SinkTrack struct {
	Track
	// Name is the track's name on the SFU; Session the publisher's session
	// id; Stream the local stream name, when the track belongs to one.
	Name, Session, Stream string
	// RequestKeyframe asks the track's publisher for a keyframe (a PLI
	// upstream). The caller rate-limits it; it never blocks. Nil for
	// audio tracks.
	RequestKeyframe func()
}

// Sink consumes the RTP packets of pulled tracks: a recorder, an RTP/UDP
// forward, a relay's viewers. The puller calls AddTrack when a track
// starts, WriteRTP for each packet (from one goroutine per track) and
// WriteSenderReport for each RTCP sender report of the track; the sink
// must tolerate jumps in sequence numbers and timestamps (a publisher that
// restarted without continuity) and resynchronize.
type Sink interface {
	// AddTrack announces a track and returns its index for the other
	// calls. It may refuse a track (a codec the sink cannot handle).
	AddTrack(t SinkTrack) (int, error)
	// WriteRTP consumes one packet. The packet and its payload are only
	// valid during the call. An error is reported by the caller (counted,
	// logged) and does not stop the pull; the sink retries what it can.
	WriteRTP(track int, pkt *rtp.Packet) error
	// WriteSenderReport passes an RTCP sender report: the NTP time (RFC
	// 3550 64-bit format) that corresponds to the RTP timestamp.
	WriteSenderReport(track int, ntpTime uint64, rtpTime uint32)
	// RemoveTrack tells the sink that a track ended (unpublished, or its
	// publisher went away). No further calls name the index.
	RemoveTrack(track int)
	// Close finishes the sink's work (finalizes files) and releases it.
	Close() error
}
