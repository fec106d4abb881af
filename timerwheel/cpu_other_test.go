//go:build !unix

package timerwheel

import "time"

// processCPU is not measured here; BenchmarkAdvance then omits cpu-ns/fire.
func processCPU() time.Duration { return 0 }
