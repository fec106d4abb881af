//go:build race

package engine

// raceEnabled: the race detector makes sync.Pool drop a quarter of what
// is put back, so allocation counts that rest on a pool do not hold.
const raceEnabled = true
