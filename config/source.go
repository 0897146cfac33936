package config

import (
	"fmt"
	"net/url"
)

// CheckSource validates a stream's source URL without opening anything.
func CheckSource(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", unwrapURLError(err))
	}
	switch u.Scheme {
	case "rtp", "sdp", "file":
		return nil
	}
	return fmt.Errorf("scheme %q: want rtp://, sdp:// or file://", u.Scheme)
}
