package bench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
)

// Profiles of the measured window (Options.Profile), for finding where
// the CPU and the allocations go. The CPU profiler samples at 100 Hz: it
// costs about a percent, within the noise of a shared machine.

var profMu sync.Mutex

var cpuProfile *os.File

// startProfile writes the allocation profile so far (prefix.allocs-before,
// to read the window's own with pprof -base) and starts the CPU profile.
func startProfile(prefix string) error {
	profMu.Lock()
	defer profMu.Unlock()
	if cpuProfile != nil {
		return errors.New("profile already started")
	}
	if err := writeHeap(prefix + ".allocs-before.pprof"); err != nil {
		return err
	}
	f, err := os.Create(prefix + ".cpu.pprof")
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	cpuProfile = f
	return nil
}

// stopProfile stops the CPU profile and writes the allocation profile.
func stopProfile(prefix string) error {
	profMu.Lock()
	defer profMu.Unlock()
	if cpuProfile == nil {
		return errors.New("no profile started")
	}
	pprof.StopCPUProfile()
	err := cpuProfile.Close()
	cpuProfile = nil
	return errors.Join(err, writeHeap(prefix+".allocs.pprof"))
}

// writeHeap writes the allocation profile (allocs since the start, sampled
// every 512 KiB by default).
func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	runtime.GC() // the profile is as of the last GC
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}
