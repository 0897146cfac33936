//go:build unix

package bench

import (
	"os"
	"sync"
	"syscall"
)

// cpuTime is the process's user plus system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// statm is /proc/self/statm, opened once: rss reads it again from offset 0
// (procfs regenerates it) without allocating inside a measured window.
var statm = sync.OnceValue(func() int {
	fd, err := syscall.Open("/proc/self/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
})

// rss is the resident set size from /proc/self/statm (0 where there is no
// /proc).
func rss() int64 {
	fd := statm()
	if fd < 0 {
		return 0
	}
	var buf [128]byte
	n, err := syscall.Pread(fd, buf[:], 0)
	if err != nil || n <= 0 {
		return 0
	}
	// "size resident shared ...": the second field, in pages.
	i := 0
	for i < n && buf[i] != ' ' {
		i++
	}
	i++
	var pages int64
	for ; i < n && buf[i] >= '0' && buf[i] <= '9'; i++ {
		pages = pages*10 + int64(buf[i]-'0')
	}
	return pages * int64(os.Getpagesize())
}
