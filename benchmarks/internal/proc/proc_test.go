package proc

import (
	"os"
	"testing"
	"time"
)

func TestSelf(t *testing.T) {
	end := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(end) {
	}
	cpu, err := CPU(os.Getpid())
	if err != nil || cpu < 20*time.Millisecond {
		t.Fatalf("CPU = %v, %v; want at least the 50 ms spin", cpu, err)
	}
	if self := SelfCPU(); self < 20*time.Millisecond {
		t.Fatalf("SelfCPU = %v", self)
	}
	rss, threads, err := Status(os.Getpid())
	if err != nil || rss < 1<<20 || threads < 1 {
		t.Fatalf("Status = %d, %d, %v", rss, threads, err)
	}
}
