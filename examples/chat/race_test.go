//go:build race

package main

// raceEnabled: the race detector slows the thousands of clients that
// TestDrainSpreadsReconnects runs in this process by several times, so
// that their arrivals would time the detector and the other packages'
// tests running beside it rather than the drain; .ci/run runs that test
// without it.
const raceEnabled = true
