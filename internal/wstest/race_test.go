//go:build race

package wstest

// raceEnabled: the race detector makes sync.Pool drop a quarter of what
// is put back, and makes DEFLATE about 20 times slower.
const raceEnabled = true
