package config

import (
	"reflect"
	"slices"
	"strings"
)

// Pipeline kinds a reload can touch.
const (
	KindStream    = "stream"
	KindRecording = "recording"
	KindForward   = "forward"
)

// Operations of a Change.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Change is one pipeline a reload starts, stops or restarts.
type Change struct {
	Kind string // KindStream, KindRecording or KindForward
	Name string
	Op   string // Added, Removed or Changed
}

// Diff is what a reload from one config to another does.
type Diff struct {
	// Pipelines lists the pipelines to start, stop or restart; pipelines
	// not listed keep running untouched.
	Pipelines []Change
	// Restart lists the changed key paths a running daemon cannot apply
	// (listen addresses, the SFU, rtgate's own WebRTC port): a reload that
	// changes them is refused, and the process must be restarted.
	Restart []string
	// Other lists the changed key paths the daemon applies in place
	// (log.*, tokens), without touching any pipeline.
	Other []string
}

// restartPrefixes are the key paths that need a new process: they decide
// sockets, the SFU the pipelines talk to, or the pion API every
// PeerConnection was built with.
var restartPrefixes = []string{"http.", "realtime.", "webrtc.", "sfu."}

// Empty reports whether the reload changes nothing.
func (d Diff) Empty() bool {
	return len(d.Pipelines) == 0 && len(d.Restart) == 0 && len(d.Other) == 0
}

// DiffConfigs compares two configs. A pipeline counts as changed when any
// of its own settings changed; a recording also when record.* changed,
// since it inherits those defaults; recordings and forwards that pull a
// stream are not restarted when only the stream changed (they follow it).
func DiffConfigs(old, cur *Config) Diff {
	var d Diff
	for _, l := range leaves {
		if l.key == "streams" || l.key == "recordings" || l.key == "forwards" {
			continue
		}
		a := reflect.ValueOf(old).Elem().FieldByIndex(l.index).Interface()
		b := reflect.ValueOf(cur).Elem().FieldByIndex(l.index).Interface()
		if reflect.DeepEqual(a, b) {
			continue
		}
		if slices.ContainsFunc(restartPrefixes, func(p string) bool { return strings.HasPrefix(l.key, p) }) {
			d.Restart = append(d.Restart, l.key)
		} else if !strings.HasPrefix(l.key, "record.") {
			d.Other = append(d.Other, l.key)
		}
	}
	d.Pipelines = append(d.Pipelines, diffNamed(KindStream, old.Streams, cur.Streams,
		func(s Stream) string { return s.Name }, nil)...)
	recordChanged := !reflect.DeepEqual(old.Record, cur.Record)
	d.Pipelines = append(d.Pipelines, diffNamed(KindRecording, old.Recordings, cur.Recordings,
		func(r Recording) string { return r.Name }, func(Recording) bool { return recordChanged })...)
	// A forward's default SDP path lives under record.dir.
	dirChanged := old.Record.Dir != cur.Record.Dir
	d.Pipelines = append(d.Pipelines, diffNamed(KindForward, old.Forwards, cur.Forwards,
		func(f Forward) string { return f.Name }, func(f Forward) bool { return dirChanged && f.SDP == "" })...)
	return d
}

// diffNamed compares two lists of named pipelines; also reports a kept
// pipeline as changed when it is true for it.
func diffNamed[T any](kind string, old, cur []T, name func(T) string, also func(T) bool) []Change {
	var out []Change
	before := make(map[string]T, len(old))
	for _, o := range old {
		before[name(o)] = o
	}
	seen := map[string]bool{}
	for _, c := range cur {
		n := name(c)
		seen[n] = true
		o, ok := before[n]
		switch {
		case !ok:
			out = append(out, Change{Kind: kind, Name: n, Op: Added})
		case !reflect.DeepEqual(o, c) || (also != nil && also(c)):
			out = append(out, Change{Kind: kind, Name: n, Op: Changed})
		}
	}
	for _, o := range old {
		if n := name(o); !seen[n] {
			out = append(out, Change{Kind: kind, Name: n, Op: Removed})
		}
	}
	return out
}
