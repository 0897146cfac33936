//go:build !linux

package v4l2

import "errors"

// OpenDevice fails: V4L2 exists on Linux only.
func OpenDevice(path string) (Device, error) {
	return nil, errors.New("v4l2: not supported on this OS")
}
