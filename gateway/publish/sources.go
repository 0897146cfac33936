package publish

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/rtgate/rtgate/bridge"
	"github.com/rtgate/rtgate/bridge/file"
	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/bridge/v4l2"
)

// OpenSources opens the sources of one stream from their URLs (rtp://,
// sdp://, file://, v4l2://). Sockets are bound now, so a busy port is reported here.
// File sources share one epoch, so a video file and an audio file of the
// stream play in sync. On an error, what was opened is closed again.
func OpenSources(urls []string, logger *slog.Logger) ([]bridge.Source, error) {
	epoch := time.Now().Add(100 * time.Millisecond)
	var out []bridge.Source
	for _, raw := range urls {
		src, err := openSource(raw, epoch, logger)
		if err != nil {
			for _, s := range out {
				_ = s.Close()
			}
			return nil, err
		}
		out = append(out, src)
	}
	return out, nil
}

func openSource(raw string, epoch time.Time, logger *slog.Logger) (bridge.Source, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", raw, err)
	}
	switch u.Scheme {
	case "rtp", "sdp":
		return rtpudp.Open(raw)
	case "file":
		return file.Open(raw, file.Options{Epoch: epoch})
	case "v4l2":
		return v4l2.Open(raw, v4l2.Options{Logger: logger})
	}
	return nil, fmt.Errorf("source %q: scheme %q: want rtp://, sdp://, file:// or v4l2://", raw, u.Scheme)
}

// CloseSources closes every source, joining the errors.
func CloseSources(srcs []bridge.Source) error {
	var errs []error
	for _, s := range srcs {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
