package config

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/rtgate/rtgate/bridge/rtpudp"
)

// Record holds the defaults of every recording (recordings[] and `rtgate
// record`).
type Record struct {
	// Dir is the recordings directory; every file a recording writes stays
	// inside it.
	Dir string `mapstructure:"dir"`
	// Format is auto (WebM, or Matroska when a codec needs it), webm, mkv,
	// ogg (Opus only), ivf (one VP8/VP9/AV1 track) or mp4 (fragmented).
	Format string `mapstructure:"format"`
	// Template names the files, without extension: {stream}, {session},
	// {track} and {start} (UTC, 20261121T101500Z) are replaced by
	// sanitized values; "/" makes subdirectories.
	Template string `mapstructure:"template"`
	// SegmentDuration starts a new file after this long; 0 never does.
	SegmentDuration time.Duration `mapstructure:"segment_duration"`
	// SegmentSize starts a new file after this many bytes; 0 never does.
	SegmentSize int64 `mapstructure:"segment_size"`
	// Reorder is how long a packet may wait for a missing one before it
	// (so that a retransmission can still land).
	Reorder time.Duration `mapstructure:"reorder"`
	// MaxAge and MaxTotalSize delete the oldest finished recordings in Dir
	// beyond that age or total size; 0 keeps everything.
	MaxAge       time.Duration `mapstructure:"max_age"`
	MaxTotalSize int64         `mapstructure:"max_total_size"`
	// NotFoundTimeout is how long a pull retries a track the SFU does not
	// know yet (its publisher is not sending) before the pull fails and is
	// restarted.
	NotFoundTimeout time.Duration `mapstructure:"not_found_timeout"`
}

// Recording pulls tracks out of the SFU and writes them to disk. It names
// a local stream (stream), or a session of any publisher (session, with
// tracks to choose some of its tracks; without, the whole session,
// including tracks published later).
type Recording struct {
	// Name identifies the recording (as a stream name).
	Name    string   `mapstructure:"name"`
	Stream  string   `mapstructure:"stream"`
	Session string   `mapstructure:"session"`
	Tracks  []string `mapstructure:"tracks"`
	// The rest override record.* for this recording; empty or 0 keeps the
	// default.
	Dir             string        `mapstructure:"dir"`
	Format          string        `mapstructure:"format"`
	Template        string        `mapstructure:"template"`
	SegmentDuration time.Duration `mapstructure:"segment_duration"`
	SegmentSize     int64         `mapstructure:"segment_size"`
}

// Forward pulls tracks out of the SFU and sends them as RTP/UDP to To
// (video on its port, audio on port+2; RTCP on the next port of each),
// with an SDP file other tools open.
type Forward struct {
	Name    string   `mapstructure:"name"`
	Stream  string   `mapstructure:"stream"`
	Session string   `mapstructure:"session"`
	Tracks  []string `mapstructure:"tracks"`
	// To is rtp://host:port.
	To string `mapstructure:"to"`
	// SDP is the path of the SDP file written for receivers; empty means
	// <record.dir>/<name>.sdp.
	SDP string `mapstructure:"sdp"`
}

// RecordFormats are the values of record.format and recordings[].format.
var RecordFormats = []string{"auto", "webm", "mkv", "ogg", "ivf", "mp4"}

// templateField matches a {placeholder} of a file name template.
var templateField = regexp.MustCompile(`\{[^{}]*\}`)

// templateFields are the placeholders a template may use.
var templateFields = map[string]bool{"{stream}": true, "{session}": true, "{track}": true, "{start}": true}

// Effective returns the recording with record.* filled in where it
// leaves a setting empty.
func (r Recording) Effective(def Record) Recording {
	if r.Dir == "" {
		r.Dir = def.Dir
	}
	if r.Format == "" {
		r.Format = def.Format
	}
	if r.Template == "" {
		r.Template = def.Template
	}
	if r.SegmentDuration == 0 {
		r.SegmentDuration = def.SegmentDuration
	}
	if r.SegmentSize == 0 {
		r.SegmentSize = def.SegmentSize
	}
	return r
}

// SDPPath returns where the forward's SDP file goes.
func (f Forward) SDPPath(def Record) string {
	if f.SDP != "" {
		return f.SDP
	}
	return path.Join(def.Dir, f.Name+".sdp")
}

func (c *Config) validateRecord(v *validator) {
	r := c.Record
	if r.Dir == "" {
		v.add("record.dir", r.Dir, "is required")
	}
	checkFormat(v, "record.format", r.Format, false)
	checkTemplate(v, "record.template", r.Template, false)
	v.nonNegative("record.segment_duration", r.SegmentDuration)
	v.nonNegativeInt("record.segment_size", r.SegmentSize)
	v.positive("record.reorder", r.Reorder)
	if r.Reorder > 5*time.Second {
		v.add("record.reorder", r.Reorder, "must be at most 5s: every recorded track holds this much media in memory")
	}
	v.nonNegative("record.max_age", r.MaxAge)
	v.nonNegativeInt("record.max_total_size", r.MaxTotalSize)
	v.positive("record.not_found_timeout", r.NotFoundTimeout)

	names := map[string]string{}
	for i, rec := range c.Recordings {
		key := fmt.Sprintf("recordings[%d]", i)
		pipelineName(v, key, rec.Name, names)
		pullTarget(v, key, rec.Stream, rec.Session, rec.Tracks)
		checkFormat(v, key+".format", rec.Format, true)
		checkTemplate(v, key+".template", rec.Template, true)
		v.nonNegative(key+".segment_duration", rec.SegmentDuration)
		v.nonNegativeInt(key+".segment_size", rec.SegmentSize)
	}
	for i, f := range c.Forwards {
		key := fmt.Sprintf("forwards[%d]", i)
		pipelineName(v, key, f.Name, names)
		pullTarget(v, key, f.Stream, f.Session, f.Tracks)
		if err := CheckForwardURL(f.To); err != nil {
			v.add(key+".to", f.To, "%v", err)
		}
	}
}

// pipelineName checks a recording's or forward's name; seen maps the
// names so far to their keys (a recording and a forward may not share one:
// both appear in the API and the metrics by name).
func pipelineName(v *validator, key, name string, seen map[string]string) {
	switch {
	case name == "":
		v.add(key+".name", name, "is required")
	case !streamName.MatchString(name):
		v.add(key+".name", name, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case seen[name] != "":
		v.add(key+".name", name, "is used by %s", seen[name])
	default:
		seen[name] = key
	}
}

// pullTarget checks that exactly one of stream and session is set.
func pullTarget(v *validator, key, stream, session string, tracks []string) {
	switch {
	case stream == "" && session == "":
		v.add(key+".stream", "", "is required (or session: a session id)")
	case stream != "" && session != "":
		v.add(key+".session", session, "must be empty when stream is set: pull a local stream or a session, not both")
	case stream != "" && !streamName.MatchString(stream):
		v.add(key+".stream", stream, "must be a stream name (letters, digits, '.', '_' or '-')")
	}
	for j, t := range tracks {
		if strings.TrimSpace(t) == "" {
			v.add(fmt.Sprintf("%s.tracks[%d]", key, j), t, "must not be empty")
		}
	}
}

func checkFormat(v *validator, key, f string, emptyOK bool) {
	if f == "" && emptyOK {
		return
	}
	for _, ok := range RecordFormats {
		if f == ok {
			return
		}
	}
	v.add(key, f, "must be one of %s", strings.Join(RecordFormats, ", "))
}

func checkTemplate(v *validator, key, t string, emptyOK bool) {
	if t == "" {
		if !emptyOK {
			v.add(key, t, "is required")
		}
		return
	}
	for _, f := range templateField.FindAllString(t, -1) {
		if !templateFields[f] {
			v.add(key, t, "unknown placeholder %s: use {stream}, {session}, {track} or {start}", f)
			return
		}
	}
	if strings.HasPrefix(t, "/") || strings.Contains("/"+t+"/", "/../") {
		v.add(key, t, "must stay inside the recordings directory: no leading '/' and no '..'")
	}
}

// CheckForwardURL checks a forward's destination with the parser the
// forward itself uses (rtpudp.ParseOutURL), so that what check accepts
// starts.
func CheckForwardURL(s string) error {
	if s == "" {
		return fmt.Errorf("is required: rtp://host:port")
	}
	if _, err := rtpudp.ParseOutURL(s); err != nil {
		// The key's line shows the URL already; drop the parser's copy.
		return errors.New(strings.TrimPrefix(err.Error(), "rtp out "+s+": "))
	}
	return nil
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.add(key, d, "must not be negative (0 turns it off)")
	}
}

func (v *validator) nonNegativeInt(key string, n int64) {
	if n < 0 {
		v.add(key, n, "must not be negative (0 turns it off)")
	}
}
