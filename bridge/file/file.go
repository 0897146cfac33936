// Package file plays media files as paced RTP sources: one bridge.Source
// with one track per file.
//
// Containers: IVF (VP8, VP9, AV1), Ogg holding Opus, and raw H.264 Annex-B.
// The file's frames are forwarded exactly as stored (no decoding, no
// re-encoding), packetized with pion/rtp's payloaders, and sent at the
// times the container gives them: IVF frame PTS, Opus packet durations
// (with the pre-skip), or n/fps for H.264, which has no timestamps.
// Looping rewinds the file and continues the RTP sequence numbers,
// timestamps and wall-clock schedule as if the file simply went on.
//
// RTP: one random SSRC per Source; sequence numbers and timestamps go on
// across loops and restarts of Run. A video frame's last packet has the
// marker bit; for Opus (one packet per Opus packet) only the first packet
// of a Run has it, as the start of a talkspurt (RFC 7587).
//
// H.264: NAL units are grouped into access units (a new one on an AUD, on
// an SPS, PPS or SEI after a slice, or on a slice with first_mb_in_slice 0
// after a slice). Parameter sets are cached by id, seeded at Open from the
// first SPS and PPS in the file; an IDR access unit without the SPS and PPS
// its slices use gets the cached ones inserted, so a receiver can start
// there. pion's payloader drops AUD and filler NAL units (RFC 6184 lets a
// sender do so). The SPS's VUI timing gives the frame rate unless the URL
// sets fps. Annex-B has no framing, so a file cut inside its last NAL unit
// plays as a shorter file; IVF and Ogg truncation is always an error.
//
// A file cannot make keyframes: RequestKeyframe refuses and counts.
//
// URLs look like file:///abs/path/video.ivf?loop=true; see ParseURL.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/rtgate/rtgate/bridge"
)

// Options tune a Source.
type Options struct {
	// Epoch is the wall-clock instant that the file's time 0 maps to when
	// Run first starts (zero: the moment Run starts). Give the video and
	// the audio file of one stream the same Epoch and they play in sync.
	// A frame whose time has already passed is sent at once.
	Epoch time.Time
}

// Stats counts what a Source did.
type Stats struct {
	Frames           uint64 // frames, access units or Opus packets sent
	Packets          uint64 // RTP packets sent
	Bytes            uint64 // RTP payload bytes sent
	Loops            uint64 // times the file was rewound
	KeyframeRequests uint64 // RequestKeyframe calls, all refused
	ParamSetInserts  uint64 // H.264 IDR access units given cached SPS/PPS
}

// Source plays one media file as one RTP track. It implements
// bridge.Source.
type Source struct {
	spec    Spec
	track   bridge.Track
	clock   int64 // RTP clock rate
	delay   int64 // clock units before the file's time 0 (Opus pre-skip)
	isVideo bool
	isVP9   bool

	f   *os.File
	dmx demuxer
	pl  rtp.Payloader

	mu      sync.Mutex
	running bool
	closed  bool
	started bool // Run has been called: Epoch is spent

	// RTP and schedule state, used by one Run at a time, kept across Runs.
	ssrc      uint32
	seq       uint16
	ts0       uint32    // RTP timestamp of stream position 0
	anchor    time.Time // wall-clock time of stream position anchorPos+delay
	anchorPos int64
	nextPos   int64 // stream position just after the last frame sent
	pkt       rtp.Packet

	frames, packets, bytes, loops, keyframeReqs atomic.Uint64
	posNS, durNS                                atomic.Int64
}

var _ bridge.Source = (*Source)(nil)

// Open opens the file named by a file URL (see ParseURL), checks its
// header and returns a Source ready to Run.
func Open(raw string, opts Options) (*Source, error) {
	spec, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	s, err := newSource(*spec, f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("file %s: %w", spec.Path, err)
	}
	return s, nil
}

func newSource(spec Spec, f *os.File, opts Options) (*Source, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	s := &Source{spec: spec, f: f, anchor: opts.Epoch, ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts0: rand.Uint32()}
	pt := spec.PayloadType
	codec := func(mime string, rate uint32, defPT int, fmtp string) {
		if pt == AutoPayloadType {
			pt = defPT
		}
		s.track.Codec = bridge.Codec{MimeType: mime, ClockRate: rate, Fmtp: fmtp}
		s.clock = int64(rate)
	}
	switch spec.Container {
	case ContainerIVF:
		d, err := newIVFReader(f, st.Size())
		if err != nil {
			return nil, err
		}
		s.dmx = d
		switch d.fourcc {
		case fourccVP8:
			codec(webrtc.MimeTypeVP8, videoClockRate, DefaultPayloadTypeVP8, "")
			s.pl = &codecs.VP8Payloader{EnablePictureID: true}
		case fourccVP9:
			fmtp, err := vp9Fmtp(d)
			if err != nil {
				return nil, err
			}
			codec(webrtc.MimeTypeVP9, videoClockRate, DefaultPayloadTypeVP9, fmtp)
			s.pl = &codecs.VP9Payloader{}
			s.isVP9 = true
		case fourccAV1:
			codec(webrtc.MimeTypeAV1, videoClockRate, DefaultPayloadTypeAV1, "")
			s.pl = &codecs.AV1Payloader{}
		}
	case ContainerOgg:
		d, err := newOggReader(f, st.Size())
		if err != nil {
			return nil, err
		}
		s.dmx = d
		fmtp := "minptime=10;useinbandfec=1"
		if d.head.channels == 2 {
			fmtp += ";stereo=1;sprop-stereo=1"
		}
		codec(webrtc.MimeTypeOpus, opusClockRate, DefaultPayloadTypeOpus, fmtp)
		s.track.Codec.Channels = 2 // RFC 7587: always 2 in SDP, mono or not
		s.delay = int64(d.head.preSkip)
		s.pl = &codecs.OpusPayloader{}
	case ContainerAnnexB:
		d, err := newAnnexBReader(f, spec.FPS)
		if err != nil {
			return nil, err
		}
		s.dmx = d
		s.spec.FPS = d.rate
		codec(webrtc.MimeTypeH264, videoClockRate, DefaultPayloadTypeH264, fmt.Sprintf(
			"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=%02x%02x%02x",
			d.first.profile, d.first.compat, d.first.level))
		// Without STAP-A every NAL unit goes as it is (single NAL unit or
		// FU-A). pion's STAP-A path keeps only the last SPS and the last
		// PPS it saw, silently drops them if they do not fit one packet,
		// and holds slices of the caller's buffer between calls.
		s.pl = &codecs.H264Payloader{DisableStapA: true}
	default:
		return nil, fmt.Errorf("container %v", spec.Container)
	}
	s.track.Codec.PayloadType = uint8(pt)
	s.track.Kind = s.track.Codec.Kind()
	s.isVideo = s.track.Kind == bridge.KindVideo
	s.spec.PayloadType = pt
	return s, nil
}

// vp9Fmtp reads the profile from the first frame's header.
func vp9Fmtp(d *ivfReader) (string, error) {
	f, err := d.next()
	if err == io.EOF {
		return "", truncated(d.dataStart, "IVF frame", "no frames")
	}
	if err != nil {
		return "", err
	}
	if len(f.data) == 0 || f.data[0]>>6 != 2 {
		return "", malformed(f.off+ivfFrameHeaderSize, "VP9 frame header", "no frame marker")
	}
	profile := (f.data[0]>>5)&1 | (f.data[0]>>4)&1<<1
	return fmt.Sprintf("profile-id=%d", profile), d.rewind()
}

// Spec returns the parsed URL, with the payload type and (for H.264) the
// frame rate resolved.
func (s *Source) Spec() Spec { return s.spec }

// Tracks implements bridge.Source: one track.
func (s *Source) Tracks() []bridge.Track { return []bridge.Track{s.track} }

// RequestKeyframe implements bridge.Source: a file cannot make one, so it
// counts the request and returns false.
func (s *Source) RequestKeyframe(int) bool {
	s.keyframeReqs.Add(1)
	return false
}

// Progress returns the file time of the last frame sent, the file's
// duration (0 until a first pass through the file has ended), and how
// many times the file was rewound.
func (s *Source) Progress() (pos, dur time.Duration, loops int) {
	return time.Duration(s.posNS.Load()), time.Duration(s.durNS.Load()), int(s.loops.Load())
}

// Stats returns the counters.
func (s *Source) Stats() Stats {
	st := Stats{
		Frames:           s.frames.Load(),
		Packets:          s.packets.Load(),
		Bytes:            s.bytes.Load(),
		Loops:            s.loops.Load(),
		KeyframeRequests: s.keyframeReqs.Load(),
	}
	if d, ok := s.dmx.(*annexbReader); ok {
		st.ParamSetInserts = uint64(d.inserted.Load())
	}
	return st
}

// Close closes the file. Call it after Run has returned.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("file %s: close: %w", s.spec.Path, err)
	}
	return nil
}

var errRunning = errors.New("already running")

// Run implements bridge.Source. It plays the file from its beginning,
// sending each frame at its due time (or at once if that has passed),
// until ctx is done (nil), the file ends without loop (io.EOF), or the
// file turns out to be bad (an error naming the file and the offset).
// Run may be called again after it returned: the file plays from its
// beginning again, and the RTP sequence numbers and timestamps continue
// (the timestamps advanced by the wall-clock time in between).
func (s *Source) Run(ctx context.Context, fn bridge.PacketFunc) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return fmt.Errorf("file %s: %w", s.spec.Path, os.ErrClosed)
	case s.running:
		s.mu.Unlock()
		return fmt.Errorf("file %s: %w", s.spec.Path, errRunning)
	}
	s.running = true
	first := !s.started
	s.started = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	err := s.run(ctx, fn, first)
	if err == nil || err == io.EOF {
		return err
	}
	return fmt.Errorf("file %s: %w", s.spec.Path, err)
}

// wallTime is the wall-clock due time of stream position pos.
func (s *Source) wallTime(pos int64) time.Time {
	return s.anchor.Add(clockToDuration(pos-s.anchorPos-s.delay, s.clock))
}

func (s *Source) run(ctx context.Context, fn bridge.PacketFunc, first bool) error {
	if err := s.dmx.rewind(); err != nil {
		return err
	}
	now := time.Now()
	if first {
		if s.anchor.IsZero() {
			s.anchor = now
		}
	} else {
		// Continue the RTP clock across the pause: the stream position
		// moves on by the wall-clock time since the last frame was due.
		if gap := now.Sub(s.wallTime(s.nextPos)); gap > 0 {
			s.nextPos += durationToClock(gap, s.clock)
		}
		s.anchor, s.anchorPos = now.Add(clockToDuration(s.delay, s.clock)), s.nextPos
	}
	base := s.anchorPos // stream position of the file's start in this pass
	passFrames := 0
	talkspurt := true // Opus: the marker bit starts a talkspurt (RFC 7587)

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	for {
		if ctx.Err() != nil {
			return nil
		}
		f, err := s.dmx.next()
		if err == io.EOF {
			if passFrames == 0 {
				return truncated(0, s.spec.Container.String()+" file", "no frames")
			}
			d := s.dmx.end()
			s.durNS.Store(int64(clockToDuration(d, s.clock)))
			if !s.spec.Loop {
				return io.EOF
			}
			base += d
			passFrames = 0
			s.loops.Add(1)
			if err := s.dmx.rewind(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		passFrames++
		pos := base + f.ts

		if wait := time.Until(s.wallTime(pos)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
		}

		payloads := s.pl.Payload(uint16(s.spec.MTU), f.data)
		if len(payloads) == 0 && len(f.data) > 0 && s.isVP9 {
			return malformed(f.off+ivfFrameHeaderSize, "VP9 frame", "frame header does not parse")
		}
		// Otherwise an empty result means the frame held nothing RTP
		// carries (an empty IVF frame, an AV1 temporal unit of only a
		// temporal delimiter, an H.264 access unit of only an AUD).
		ts := s.ts0 + uint32(pos)
		for i, p := range payloads {
			s.pkt.Header = rtp.Header{
				Version:        2,
				PayloadType:    s.track.Codec.PayloadType,
				SequenceNumber: s.seq,
				Timestamp:      ts,
				SSRC:           s.ssrc,
			}
			if s.isVideo {
				s.pkt.Marker = i == len(payloads)-1
			} else {
				s.pkt.Marker = talkspurt
				talkspurt = false
			}
			s.pkt.Payload = p
			fn(0, &s.pkt)
			s.seq++
			s.packets.Add(1)
			s.bytes.Add(uint64(len(p)))
		}
		s.pkt.Payload = nil
		s.frames.Add(1)
		s.nextPos = pos + f.dur
		s.posNS.Store(int64(clockToDuration(max(0, f.ts-s.delay), s.clock)))
	}
}
