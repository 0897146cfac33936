package bench

import (
	"encoding/binary"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
)

// procStats are the measured process's own figures at one instant.
type procStats struct {
	CPUNs      int64  `json:"cpuNs"`   // user + system CPU time (getrusage RUSAGE_SELF)
	Mallocs    uint64 `json:"mallocs"` // runtime.MemStats.Mallocs
	RSS        int64  `json:"rss"`     // resident set size, bytes (/proc/self/statm)
	Goroutines int    `json:"goroutines"`
}

// readProcStats reads the process's figures. Reading them does not
// allocate; answering a mark (JSON) does, a few dozen allocations per
// measured window, which is noise next to its thousands of packets.
func readProcStats() procStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procStats{CPUNs: cpuTime(), Mallocs: ms.Mallocs, RSS: rss(), Goroutines: runtime.NumGoroutine()}
}

// settledRSS is the RSS after a GC that returns free memory to the
// system: what the live state costs, not the allocator's slack.
func settledRSS() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	return rss()
}

// histBuckets is the latency histogram's size: 1 µs buckets up to 100 ms;
// the last bucket also holds everything slower.
const histBuckets = 100_000

// histogram counts latencies in 1 µs buckets. add is safe for concurrent
// use and does not allocate; delta is called by one goroutine.
type histogram struct {
	b    []atomic.Uint64
	last []uint64
}

func newHistogram() *histogram {
	return &histogram{b: make([]atomic.Uint64, histBuckets), last: make([]uint64, histBuckets)}
}

func (h *histogram) add(ns int64) {
	i := max(ns/1000, 0)
	if i >= histBuckets {
		i = histBuckets - 1
	}
	h.b[i].Add(1)
}

// delta returns the counts added since the previous delta, as (bucket,
// count) pairs in bucket order.
func (h *histogram) delta() [][2]uint64 {
	var out [][2]uint64
	for i := range h.b {
		v := h.b[i].Load()
		if d := v - h.last[i]; d > 0 {
			out = append(out, [2]uint64{uint64(i), d})
			h.last[i] = v
		}
	}
	return out
}

// quantileUs is the q-quantile of a sparse histogram, in µs (the middle
// of its bucket); 0 for an empty one.
func quantileUs(h [][2]uint64, q float64) float64 {
	var total uint64
	for _, b := range h {
		total += b[1]
	}
	if total == 0 {
		return 0
	}
	h = slices.Clone(h)
	slices.SortFunc(h, func(a, b [2]uint64) int { return int(a[0]) - int(b[0]) })
	want := uint64(q*float64(total) + 0.5)
	want = max(want, 1)
	var cum uint64
	for _, b := range h {
		cum += b[1]
		if cum >= want {
			return float64(b[0]) + 0.5
		}
	}
	return float64(h[len(h)-1][0]) + 0.5
}

var be = binary.BigEndian
