package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/rtgate/rtgate/bridge/file"
	"github.com/rtgate/rtgate/bridge/rtpudp"
	"github.com/rtgate/rtgate/bridge/v4l2"
)

// CheckSource validates a stream's source URL with the parser of its
// bridge, without opening sockets or media files (an sdp:// file is read).
func CheckSource(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", unwrapURLError(err))
	}
	switch u.Scheme {
	case "rtp", "sdp":
		_, err = rtpudp.ParseURL(raw)
	case "file":
		_, err = file.ParseURL(raw)
	case "v4l2":
		_, err = v4l2.ParseURL(raw)
	default:
		return fmt.Errorf("scheme %q: want rtp://, sdp://, file:// or v4l2://", u.Scheme)
	}
	if err == nil {
		return nil
	}
	// The key's line shows the URL already; drop the parser's copy of it.
	msg := err.Error()
	for _, prefix := range []string{raw + ": ", fmt.Sprintf("file source %q: ", raw)} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return errors.New(msg)
}
