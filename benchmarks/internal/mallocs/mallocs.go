// Package mallocs lets the orchestrator count a server's heap allocations
// over a measured phase: a server calls Report once at start, and then
// answers every SIGUSR1 with a stdout line "MALLOCS <n>", n being the heap
// allocations the process has made so far (runtime.MemStats.Mallocs, which
// stops the world for a moment: the orchestrator asks before and after a
// measured phase, not during it; runtime/metrics does not stop it, but
// its counts lag behind the per-P caches).
package mallocs

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// Line is the prefix of the answer.
const Line = "MALLOCS "

// Count is the heap allocations made so far.
func Count() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// Freed is the line a server prints once it has collected its garbage and
// returned the free memory to the system, on SIGUSR2: "FREED <n>", n being
// the goroutines it runs then (runtime.NumGoroutine).
const Freed = "FREED"

// Report starts answering SIGUSR1 (the allocation count) and SIGUSR2
// (runtime/debug.FreeOSMemory, then a line "FREED <goroutines>"): an orchestrator that
// wants the memory live objects hold, rather than what the heap grew to
// at its peak, asks for the latter before reading VmRSS.
func Report() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for sig := range ch {
			if sig == syscall.SIGUSR2 {
				debug.FreeOSMemory()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Println(Freed, runtime.NumGoroutine(), "heap", m.HeapInuse, "stack", m.StackInuse,
					"other", m.MSpanInuse+m.MCacheInuse+m.BuckHashSys+m.GCSys+m.OtherSys, "objects", m.HeapObjects)
				continue
			}
			fmt.Printf("%s%d\n", Line, Count())
		}
	}()
}
