//go:build !unix

package bench

// cpuTime and rss are not measured on this platform.
func cpuTime() int64 { return 0 }
func rss() int64     { return 0 }
