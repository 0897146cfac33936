package v4l2

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Spec is a parsed v4l2 URL.
type Spec struct {
	URL    string // as given
	Device string // device node, e.g. "/dev/video0"
	Codec  string // "h264"
	Width  int    // 0: the device's current width
	Height int    // 0: the device's current height
	FPS    int    // 0: the device's current rate
	GOP    int    // keyframe interval in frames; 0: leave the device's setting
}

// ParseURL parses v4l2:///dev/video0?codec=h264&width=1280&height=720&fps=30&gop=60.
// codec is optional and may only be h264; width and height go together;
// fps and gop are optional. Unknown parameters are errors.
func ParseURL(raw string) (*Spec, error) {
	sp, err := parseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", raw, err)
	}
	sp.URL = raw
	return sp, nil
}

func parseURL(raw string) (*Spec, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if u.Scheme != "v4l2" {
		return nil, fmt.Errorf("scheme %q: want v4l2://", u.Scheme)
	}
	if u.Host != "" {
		return nil, fmt.Errorf("host %q: want v4l2:///dev/videoN (three slashes)", u.Host)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, errors.New("want v4l2:///dev/videoN?params")
	}
	if u.Path == "" || !strings.HasPrefix(u.Path, "/dev/") || path.Clean(u.Path) != u.Path {
		return nil, fmt.Errorf("device %q: want a device node under /dev", u.Path)
	}
	sp := &Spec{Device: u.Path, Codec: "h264"}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, fmt.Errorf("parameter %s given %d times", k, len(vs))
		}
		v := vs[0]
		num := func(name string, max int) (int, error) {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > max {
				return 0, fmt.Errorf("%s=%q: want an integer 1..%d", name, v, max)
			}
			return n, nil
		}
		switch k {
		case "codec":
			if strings.ToLower(v) != "h264" {
				return nil, fmt.Errorf("codec=%q: only h264 is supported (the camera must encode)", v)
			}
		case "width":
			if sp.Width, err = num(k, 16384); err != nil {
				return nil, err
			}
		case "height":
			if sp.Height, err = num(k, 16384); err != nil {
				return nil, err
			}
		case "fps":
			if sp.FPS, err = num(k, 1000); err != nil {
				return nil, err
			}
		case "gop":
			if sp.GOP, err = num(k, 100000); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown parameter %q (want codec, width, height, fps, gop)", k)
		}
	}
	if (sp.Width == 0) != (sp.Height == 0) {
		return nil, errors.New("width and height go together")
	}
	return sp, nil
}
