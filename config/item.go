package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Item is a pipeline a config lists by name: a Stream, a Recording or a
// Forward.
type Item interface {
	Stream | Recording | Forward
}

// DecodeItem decodes one list item (a stream, recording or forward) from
// JSON with the config file's key names and conversions ("30s" for a
// duration). Unknown keys are errors; key is the key path errors name,
// e.g. "streams[new]".
func DecodeItem[T Item](key string, data []byte) (T, error) {
	var item T
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return item, fmt.Errorf("%s: not a JSON object: %w", key, err)
	}
	for k, v := range raw {
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				raw[k] = i
			} else if f, err := n.Float64(); err == nil {
				raw[k] = f
			}
		}
	}
	if err := decodeValue(raw, &item, true); err != nil {
		return item, decodeErrors(key, raw, err)
	}
	return item, nil
}

// Clone returns a copy of c whose lists can be changed without changing
// c's (the lists' items are values; their own slices are shared and must
// not be changed in place).
func (c *Config) Clone() *Config {
	n := *c
	n.Streams = append([]Stream(nil), c.Streams...)
	n.Recordings = append([]Recording(nil), c.Recordings...)
	n.Forwards = append([]Forward(nil), c.Forwards...)
	return &n
}

// Has reports whether c defines the stream, recording or forward (kind
// KindStream, KindRecording or KindForward) called name.
func (c *Config) Has(kind, name string) bool {
	switch kind {
	case KindStream:
		return slices.ContainsFunc(c.Streams, func(x Stream) bool { return x.Name == name })
	case KindRecording:
		return slices.ContainsFunc(c.Recordings, func(x Recording) bool { return x.Name == name })
	case KindForward:
		return slices.ContainsFunc(c.Forwards, func(x Forward) bool { return x.Name == name })
	}
	return false
}
