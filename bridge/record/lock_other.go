//go:build !unix

package record

import "os"

// Without flock, RepairDir cannot tell a live recording from a crashed
// one: call it before recording starts.
func lockFile(*os.File) error { return nil }

func tryLock(*os.File) (bool, error) { return false, nil }
