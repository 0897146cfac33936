package container

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rtgate/rtgate/bridge"
)

// Format is a container format.
type Format string

// Formats.
const (
	WebM Format = "webm"
	MKV  Format = "mkv"
	Ogg  Format = "ogg"
	IVF  Format = "ivf"
	MP4  Format = "mp4" // fragmented MP4
)

var formats = []Format{WebM, MKV, Ogg, IVF, MP4}

// ErrUnsupported is wrapped by the errors of Check (and so of NewWriter) for
// a codec or a set of tracks that a format cannot hold.
var ErrUnsupported = errors.New("unsupported")

// ParseFormat parses a format name ("webm", "mkv", "ogg", "ivf", "mp4";
// case-insensitive, a leading dot is accepted).
func ParseFormat(s string) (Format, error) {
	v := Format(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "."))
	for _, f := range formats {
		if v == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("container format %q: %w (valid: webm, mkv, ogg, ivf, mp4)", s, ErrUnsupported)
}

// Ext returns the file name extension with its dot: ".webm", ".mkv", ...
func (f Format) Ext() string { return "." + string(f) }

// String returns the format's name.
func (f Format) String() string { return string(f) }

// codec is a codec this package can write.
type codec int

const (
	codecUnknown codec = iota
	codecVP8
	codecVP9
	codecAV1
	codecH264
	codecH265
	codecOpus
)

func (c codec) String() string {
	return [...]string{"unknown", "VP8", "VP9", "AV1", "H.264", "H.265", "Opus"}[c]
}

func (c codec) video() bool { return c != codecOpus && c != codecUnknown }

// codecOf maps a track's MIME type (pion's webrtc.MimeType* spelling,
// compared case-insensitively) to a codec.
func codecOf(t bridge.Track) codec {
	switch strings.ToLower(t.Codec.MimeType) {
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	case "video/av1":
		return codecAV1
	case "video/h264":
		return codecH264
	case "video/h265", "video/hevc":
		return codecH265
	case "audio/opus":
		return codecOpus
	}
	return codecUnknown
}

// allowed lists the codecs each format holds.
var allowed = map[Format][]codec{
	WebM: {codecVP8, codecVP9, codecAV1, codecOpus},
	MKV:  {codecVP8, codecVP9, codecAV1, codecH264, codecH265, codecOpus},
	Ogg:  {codecOpus},
	IVF:  {codecVP8, codecVP9, codecAV1},
	MP4:  {codecH264, codecH265, codecVP9, codecAV1, codecOpus},
}

func names(cs []codec) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}

// Check reports whether f can hold these tracks, with the reason when not
// (the error wraps ErrUnsupported). WebM holds VP8, VP9, AV1 and Opus; MKV
// also H.264 and H.265; Ogg only Opus (one logical stream per track); IVF
// exactly one VP8, VP9 or AV1 track; MP4 H.264, H.265, VP9, AV1 and Opus.
// Opus tracks have at most 2 channels (mapping family 0).
func Check(f Format, tracks []bridge.Track) error {
	ok, known := allowed[f]
	if !known {
		return fmt.Errorf("container format %q: %w (valid: webm, mkv, ogg, ivf, mp4)", string(f), ErrUnsupported)
	}
	if len(tracks) == 0 {
		return fmt.Errorf("%s: no tracks: %w", f, ErrUnsupported)
	}
	if f == IVF && len(tracks) != 1 {
		return fmt.Errorf("ivf holds exactly one video track, got %d tracks: %w", len(tracks), ErrUnsupported)
	}
	for i, t := range tracks {
		c := codecOf(t)
		if c == codecUnknown {
			return fmt.Errorf("%s: track %d: codec %q: %w (this package writes %s)", f, i, t.Codec.MimeType,
				ErrUnsupported, names(allowed[MKV]))
		}
		found := false
		for _, a := range ok {
			found = found || a == c
		}
		if !found {
			return fmt.Errorf("%s: track %d: codec %s: %w in %s (it holds %s)", f, i, c, ErrUnsupported, f, names(ok))
		}
		if c == codecOpus && t.Codec.Channels > 2 {
			return fmt.Errorf("%s: track %d: Opus with %d channels: %w (at most 2)", f, i, t.Codec.Channels, ErrUnsupported)
		}
	}
	return nil
}

// Auto picks WebM when every codec fits WebM, else MKV.
func Auto(tracks []bridge.Track) Format {
	if Check(WebM, tracks) == nil {
		return WebM
	}
	return MKV
}
