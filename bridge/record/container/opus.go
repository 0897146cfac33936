package container

import (
	"encoding/binary"
	"time"
)

// opusSampleRate is the rate of Opus timestamps and granule positions.
const opusSampleRate = 48000

// opusPreSkip is the pre-skip written into OpusHead (and CodecDelay in
// Matroska): 0. RTP carries no encoder delay, and any non-zero value would
// move every audio timestamp earlier than the PTS the recorder gave,
// against the video; the encoder's few ms of priming output stay audible
// instead (inaudible in practice).
const opusPreSkip = 0

// opusSeekPreRoll is Matroska's SeekPreRoll for Opus (80 ms, as RFC 7845
// recommends decoding before a seek point).
const opusSeekPreRoll = 80 * time.Millisecond

// opusHead builds the OpusHead identification header (RFC 7845 5.1),
// mapping family 0 (mono or stereo).
func opusHead(channels uint16) []byte {
	if channels == 0 {
		channels = 1
	}
	b := make([]byte, 0, 19)
	b = append(b, "OpusHead"...)
	b = append(b, 1, byte(channels))
	b = binary.LittleEndian.AppendUint16(b, opusPreSkip)
	b = binary.LittleEndian.AppendUint32(b, opusSampleRate)
	b = append(b, 0, 0, 0) // output gain, mapping family 0
	return b
}

// opusTags builds a minimal OpusTags header (RFC 7845 5.2).
func opusTags() []byte {
	const vendor = "rtgate"
	b := append([]byte("OpusTags"), byte(len(vendor)), 0, 0, 0)
	b = append(b, vendor...)
	return append(b, 0, 0, 0, 0)
}

// opusSamples returns the duration of an Opus packet in 48 kHz samples
// from its TOC byte (RFC 6716 3.1), or 0 for a malformed packet.
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := toc >> 3
	var frame int // samples per frame at 48 kHz
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // Hybrid: 10, 20 ms
		frame = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[cfg&3]
	}
	var n int
	switch toc & 3 {
	case 0:
		n = 1
	case 1, 2:
		n = 2
	default:
		if len(p) < 2 {
			return 0
		}
		n = int(p[1] & 0x3f)
	}
	return n * frame
}

// samples48k converts a PTS to 48 kHz samples, rounding to the nearest.
func samples48k(d time.Duration) int64 {
	return ticks(d, opusSampleRate)
}

// ticks converts a duration to units of 1/rate s, rounding to the nearest.
func ticks(d time.Duration, rate int64) int64 {
	s := int64(d / time.Second)
	r := int64(d % time.Second)
	return s*rate + (r*rate+int64(time.Second)/2)/int64(time.Second)
}
