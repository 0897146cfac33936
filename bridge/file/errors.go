package file

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by FormatError.
var (
	// ErrTruncated: the file ends inside a structure.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: the bytes are not what the container format requires.
	ErrMalformed = errors.New("malformed")
	// ErrUnsupported: valid, but not something this package plays.
	ErrUnsupported = errors.New("unsupported")
)

// FormatError reports bad data in a media file: where, in what, and what
// was expected. Run and Open wrap it with the file's path.
type FormatError struct {
	Offset int64  // byte offset in the file of the structure being read
	What   string // the structure, e.g. "IVF frame header" or "Ogg page"
	Err    error  // wraps ErrTruncated, ErrMalformed or ErrUnsupported
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("offset %d: %s: %v", e.Offset, e.What, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }

func truncated(off int64, what string, format string, args ...any) error {
	return &FormatError{Offset: off, What: what, Err: fmt.Errorf("%w: "+format, append([]any{ErrTruncated}, args...)...)}
}

func malformed(off int64, what string, format string, args ...any) error {
	return &FormatError{Offset: off, What: what, Err: fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)}
}

func unsupported(off int64, what string, format string, args ...any) error {
	return &FormatError{Offset: off, What: what, Err: fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)}
}
