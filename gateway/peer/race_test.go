//go:build race

package peer

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// x/net's pooled message headers are allocated again: allocation counts
// mean nothing then.
const raceEnabled = true
