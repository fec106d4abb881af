//go:build !race

package wstest

const raceEnabled = false
