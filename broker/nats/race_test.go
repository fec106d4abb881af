//go:build race

package natsbroker

// raceEnabled: the race detector slows everything about tenfold, so the
// flood tests send less (they pass their bounds all the same).
const raceEnabled = true
