package record

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rtgate/rtgate/bridge/record/container"
)

// maxValueLen bounds a sanitized template value (in bytes, all ASCII).
const maxValueLen = 64

// markerSuffix ends the name of the marker ".<name>.recording" that sits
// next to a file while it is written.
const markerSuffix = ".recording"

// startLayout formats {start}.
const startLayout = "20060102T150405Z"

// sanitize makes a template value safe as part of one path component:
// only [A-Za-z0-9._-] stay, other characters (each rune, so "é" is one)
// become "_", as does a leading "." (no hidden files, no ".."); empty
// becomes "_"; at most maxValueLen bytes.
func sanitize(v string) string {
	b := make([]byte, 0, min(len(v), maxValueLen))
	for _, c := range v {
		if len(b) == maxValueLen {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b = append(b, byte(c))
		case c == '.' && len(b) > 0:
			b = append(b, '.')
		default:
			b = append(b, '_')
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// render expands the template's placeholders with sanitized values.
func render(t string, value func(string) string) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			b.WriteString(t)
			return b.String(), nil
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			return "", errors.New("unclosed {")
		}
		key := t[i+1 : i+j]
		switch key {
		case "stream", "session", "track", "start":
		default:
			return "", fmt.Errorf("unknown placeholder {%s} (known: {stream} {session} {track} {start})", key)
		}
		b.WriteString(t[:i])
		b.WriteString(sanitize(value(key)))
		t = t[i+j+1:]
	}
}

// checkTemplate rejects templates that could name a file outside Dir, or
// an odd one: absolute, "." or ".." components, empty components,
// backslashes or control characters.
func checkTemplate(t string) error {
	for _, c := range t {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	name, err := render(t, func(string) string { return "x" })
	if err != nil {
		return err
	}
	if strings.HasPrefix(name, "/") {
		return errors.New("must be relative to Dir")
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("path component %q not allowed", c)
		}
		if strings.HasPrefix(c, ".") {
			return fmt.Errorf("path component %q: hidden names are reserved for markers", c)
		}
	}
	if !filepath.IsLocal(name) {
		return errors.New("must stay inside Dir")
	}
	return nil
}

// create makes the next segment's file and its marker (holding the format
// and a lock) inside Dir; start (the wall time of its first frame) is
// {start}. A name already taken, by a file or a marker,
// gets -1, -2, ... before the extension.
func (r *Recorder) create(format container.Format, ins []*input, start int64) (path, marker string, lock, f *os.File, err error) {
	first := ins[0].st
	base, err := render(r.o.Template, func(k string) string {
		switch k {
		case "stream":
			if r.o.Stream != "" {
				return r.o.Stream
			}
			return first.Stream
		case "session":
			if r.o.Session != "" {
				return r.o.Session
			}
			return first.Session
		case "track":
			return first.Name
		}
		return time.Unix(0, start).UTC().Format(startLayout)
	})
	if err != nil {
		return "", "", nil, nil, fmt.Errorf("name a segment: %w", err)
	}
	for n := 0; n < 10000; n++ {
		name := base
		if n > 0 {
			name += "-" + strconv.Itoa(n)
		}
		name += format.Ext()
		if !filepath.IsLocal(name) {
			return "", "", nil, nil, fmt.Errorf("segment name %q is not inside the recordings directory", name)
		}
		dir := filepath.Dir(name)
		if dir != "." {
			if err := r.root.MkdirAll(dir, 0o750); err != nil {
				return "", "", nil, nil, fmt.Errorf("create directory %s: %w", dir, err)
			}
		}
		mk := filepath.Join(dir, "."+filepath.Base(name)+markerSuffix)
		lock, err := r.root.OpenFile(mk, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", "", nil, nil, fmt.Errorf("create marker %s: %w", mk, err)
		}
		f, err := r.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, fs.ErrExist) {
			lock.Close()
			_ = r.root.Remove(mk)
			continue
		}
		if err != nil {
			r.discardFiles("", mk, lock)
			return "", "", nil, nil, fmt.Errorf("create %s: %w", name, err)
		}
		if _, err := io.WriteString(lock, string(format)+"\n"); err != nil {
			f.Close()
			r.discardFiles(name, mk, lock)
			return "", "", nil, nil, fmt.Errorf("write marker %s: %w", mk, err)
		}
		if err := lockFile(lock); err != nil {
			// Not fatal: without the lock only RepairDir's check that the
			// file is not being written is lost.
			r.log.Warn("record: cannot lock marker", "path", mk, "err", err)
		}
		return name, mk, lock, f, nil
	}
	return "", "", nil, nil, fmt.Errorf("segment name %q: all 10000 suffixes taken", base)
}

// discardFiles removes a segment that never got going.
func (r *Recorder) discardFiles(path, marker string, lock *os.File) {
	if path != "" {
		_ = r.root.Remove(path)
	}
	if marker != "" {
		_ = r.root.Remove(marker)
	}
	if lock != nil {
		lock.Close()
	}
}

func isMarker(name string) bool {
	return len(name) > 1+len(markerSuffix) && name[0] == '.' && strings.HasSuffix(name, markerSuffix)
}

// mediaOf returns the file a marker (a path relative to Dir) stands for.
func mediaOf(marker string) string {
	base := strings.TrimSuffix(filepath.Base(marker)[1:], markerSuffix)
	return filepath.Join(filepath.Dir(marker), base)
}

// readMarker reads the format a marker holds (falling back to the file's
// extension).
func readMarker(f *os.File, media string) (container.Format, error) {
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read marker: %w", err)
	}
	if ft, err := container.ParseFormat(strings.TrimSpace(string(b[:n]))); err == nil {
		return ft, nil
	}
	return container.ParseFormat(filepath.Ext(media))
}

// retention deletes finished recordings (files with a container extension
// and no marker, anywhere under Dir) older than MaxAge, then the oldest
// while the total (files being written included) exceeds MaxTotalSize.
func (w *writer) retention() {
	r := w.r
	w.lastRetention = w.now
	if r.o.MaxAge == 0 && r.o.MaxTotalSize == 0 {
		return
	}
	type file struct {
		path string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	_ = fs.WalkDir(r.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip
		}
		if d.IsDir() {
			return nil
		}
		name := d.Name()
		if !d.Type().IsRegular() || strings.HasPrefix(name, ".") || !r.exts[filepath.Ext(name)] {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		total += info.Size()
		if _, err := r.root.Stat(filepath.Join(filepath.Dir(p), "."+name+markerSuffix)); err == nil {
			return nil // being written (or waiting for RepairDir)
		}
		files = append(files, file{p, info.Size(), info.ModTime()})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].mod.Before(files[j].mod) })
	now := r.now()
	for _, f := range files {
		var reason string
		switch {
		case r.o.MaxAge > 0 && now.Sub(f.mod) > r.o.MaxAge:
			reason = "max age"
		case r.o.MaxTotalSize > 0 && total > r.o.MaxTotalSize:
			reason = "max total size"
		default:
			return
		}
		if err := r.root.Remove(f.path); err != nil {
			if errors.Is(err, fs.ErrNotExist) { // another recorder's retention
				total -= f.size
			} else {
				r.log.Warn("record: retention: delete", "path", f.path, "err", err)
			}
			continue
		}
		total -= f.size
		r.log.Info("record: retention: deleted", "path", f.path, "reason", reason, "bytes", f.size)
	}
}
