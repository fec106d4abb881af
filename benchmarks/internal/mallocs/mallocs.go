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
	"runtime/pprof"
	"strconv"
	"strings"
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

// Report starts answering SIGUSR1 (the allocation count) and SIGUSR2 (two
// collections, so that sync.Pools' victim caches are empty too, and
// runtime/debug.FreeOSMemory, then a line "FREED <goroutines> heap <n>
// stack <n> other <n> objects <n> threads <n>", from runtime.MemStats and
// /proc): an orchestrator that wants the memory live objects hold, rather
// than what the heap grew to at its peak, asks for the latter before
// reading VmRSS. With MALLOCS_HEAPPROFILE=FILE set, the SIGUSR2 answer
// also writes a heap profile to FILE.<pid>.
func Report() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for sig := range ch {
			if sig == syscall.SIGUSR2 {
				runtime.GC()
				runtime.GC()
				debug.FreeOSMemory()
				if f := os.Getenv("MALLOCS_HEAPPROFILE"); f != "" {
					if w, err := os.Create(fmt.Sprintf("%s.%d", f, os.Getpid())); err == nil {
						_ = pprof.WriteHeapProfile(w)
						_ = w.Close()
					}
				}
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Println(Freed, runtime.NumGoroutine(), "heap", m.HeapInuse, "stack", m.StackInuse,
					"other", m.MSpanInuse+m.MCacheInuse+m.BuckHashSys+m.GCSys+m.OtherSys, "objects", m.HeapObjects, "threads", threads())
				continue
			}
			fmt.Printf("%s%d\n", Line, Count())
		}
	}()
}

// threads is the process's OS threads, from /proc/self/status (0 if it
// cannot be read).
func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
