package file

import (
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Container is the kind of media file a Source plays.
type Container int

// Containers.
const (
	// ContainerIVF is an IVF file holding VP8, VP9 or AV1 (.ivf).
	ContainerIVF Container = iota + 1
	// ContainerOgg is an Ogg file holding one Opus stream (.ogg, .opus).
	ContainerOgg
	// ContainerAnnexB is a raw H.264 Annex-B byte stream (.h264, .264).
	ContainerAnnexB
)

func (c Container) String() string {
	switch c {
	case ContainerIVF:
		return "IVF"
	case ContainerOgg:
		return "Ogg"
	case ContainerAnnexB:
		return "H.264 Annex-B"
	}
	return fmt.Sprintf("Container(%d)", int(c))
}

// Defaults of the URL options.
const (
	DefaultMTU = 1200 // RTP payload budget in bytes
	DefaultFPS = 30   // H.264 Annex-B frame rate when neither the URL nor the SPS gives one
)

// Limits of the URL options.
const (
	minMTU = 64
	maxMTU = 65000
	maxFPS = 1000
)

// Default payload types per codec.
const (
	DefaultPayloadTypeVP8  = 96
	DefaultPayloadTypeVP9  = 98
	DefaultPayloadTypeAV1  = 45
	DefaultPayloadTypeH264 = 102
	DefaultPayloadTypeOpus = 111
)

// AutoPayloadType in Spec.PayloadType means the codec's default payload
// type, resolved when the file is opened (for IVF the codec is only known
// from the file header).
const AutoPayloadType = -1

// FrameRate is an exact frame rate Num/Den frames per second. The zero
// value means "not given".
type FrameRate struct {
	Num, Den int64
}

// IsZero reports whether the rate was not given.
func (r FrameRate) IsZero() bool { return r.Num == 0 || r.Den == 0 }

func (r FrameRate) String() string {
	if r.IsZero() {
		return "unset"
	}
	if r.Den == 1 {
		return strconv.FormatInt(r.Num, 10)
	}
	return fmt.Sprintf("%d/%d", r.Num, r.Den)
}

// Spec is a parsed and validated file source URL.
type Spec struct {
	Path      string    // absolute path of the file
	Container Container // from the file name extension
	Loop      bool      // rewind at the end and play on
	// PayloadType is the RTP payload type, 0..127, or AutoPayloadType.
	PayloadType int
	// FPS is the frame rate of an H.264 Annex-B file (zero: from the
	// SPS's VUI timing info, else DefaultFPS). Other containers carry
	// their own timestamps and reject the option.
	FPS FrameRate
	MTU int // RTP payload budget in bytes
}

// ParseURL parses and validates a file source URL without touching the
// file:
//
//	file:///abs/path/video.ivf?loop=true
//	file:///abs/path/audio.ogg
//	file:///abs/path/video.h264?fps=30
//
// Extensions: .ivf (VP8, VP9, AV1), .ogg and .opus (Opus), .h264 and .264
// (H.264 Annex-B). Options: loop (bool), pt (payload type 0..127), fps
// (H.264 only: 30, 29.97 or 30000/1001), mtu (RTP payload budget, default
// 1200). Errors name the bad value.
func ParseURL(raw string) (*Spec, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("file source %q: %w", raw, err)
	}
	if u.Scheme != "file" {
		return nil, fmt.Errorf("file source %q: scheme %q: want file:///abs/path", raw, u.Scheme)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("file source %q: path %q is not absolute: want file:///abs/path", raw, u.Opaque)
	}
	if u.Host != "" && u.Host != "localhost" {
		return nil, fmt.Errorf("file source %q: host %q: only local files (file:///abs/path)", raw, u.Host)
	}
	if u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("file source %q: unexpected user info or fragment", raw)
	}
	p := u.Path
	if p == "" || !path.IsAbs(p) {
		return nil, fmt.Errorf("file source %q: path %q is not absolute: want file:///abs/path", raw, p)
	}
	if strings.HasSuffix(p, "/") {
		return nil, fmt.Errorf("file source %q: path %q names a directory", raw, p)
	}
	spec := &Spec{Path: p, PayloadType: AutoPayloadType, MTU: DefaultMTU}
	switch ext := strings.ToLower(path.Ext(p)); ext {
	case ".ivf":
		spec.Container = ContainerIVF
	case ".ogg", ".opus":
		spec.Container = ContainerOgg
	case ".h264", ".264":
		spec.Container = ContainerAnnexB
	default:
		return nil, fmt.Errorf("file source %q: extension %q: want .ivf, .ogg, .opus, .h264 or .264", raw, ext)
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("file source %q: query %q: %w", raw, u.RawQuery, err)
	}
	for key, vals := range q {
		if len(vals) != 1 {
			return nil, fmt.Errorf("file source %q: option %s given %d times", raw, key, len(vals))
		}
		val := vals[0]
		bad := func(err error) error {
			return fmt.Errorf("file source %q: option %s=%q: %w", raw, key, val, err)
		}
		switch key {
		case "loop":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return nil, bad(errors.New("want true or false"))
			}
			spec.Loop = b
		case "pt":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || n > 127 {
				return nil, bad(errors.New("want a payload type 0..127"))
			}
			if n >= 72 && n <= 76 {
				return nil, bad(errors.New("payload types 72..76 clash with RTCP packet types"))
			}
			spec.PayloadType = n
		case "mtu":
			n, err := strconv.Atoi(val)
			if err != nil || n < minMTU || n > maxMTU {
				return nil, bad(fmt.Errorf("want an RTP payload size %d..%d", minMTU, maxMTU))
			}
			spec.MTU = n
		case "fps":
			if spec.Container != ContainerAnnexB {
				return nil, bad(fmt.Errorf("only H.264 Annex-B files take fps; %s files carry timestamps", spec.Container))
			}
			r, err := parseFrameRate(val)
			if err != nil {
				return nil, bad(err)
			}
			spec.FPS = r
		default:
			return nil, fmt.Errorf("file source %q: unknown option %q (want loop, pt, fps, mtu)", raw, key)
		}
	}
	return spec, nil
}

// parseFrameRate parses "30", "29.97" or "30000/1001" into an exact rate.
func parseFrameRate(s string) (FrameRate, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() <= 0 || r.Cmp(big.NewRat(maxFPS, 1)) > 0 || r.Cmp(big.NewRat(1, 1000)) < 0 {
		return FrameRate{}, fmt.Errorf("want a frame rate above 0 and at most %d (30, 29.97 or 30000/1001)", maxFPS)
	}
	if !r.Num().IsInt64() || !r.Denom().IsInt64() || r.Num().Int64() > 1<<31 || r.Denom().Int64() > 1<<31 {
		return FrameRate{}, errors.New("frame rate numerator and denominator too large")
	}
	return FrameRate{Num: r.Num().Int64(), Den: r.Denom().Int64()}, nil
}
