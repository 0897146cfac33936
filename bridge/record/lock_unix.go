//go:build unix

package record

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on a marker for as long as the file is
// open (released by the kernel when the process dies, even by SIGKILL).
func lockFile(f *os.File) error {
	_, err := flock(f)
	return err
}

// tryLock reports whether another open file description holds the lock;
// if not, f now holds it.
func tryLock(f *os.File) (held bool, err error) {
	return flock(f)
}

func flock(f *os.File) (held bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		ferr = syscall.Flock(int(fd), syscall.LOCK_EX|syscall.LOCK_NB)
	}); err != nil {
		return false, err
	}
	if errors.Is(ferr, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, ferr
}
