package proc

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func spin(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
	}
}

func TestSelf(t *testing.T) {
	if tck := ClockTicks(); tck < 50 || tck > 10000 {
		t.Fatalf("ClockTicks = %d", tck)
	}
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self0 := SelfCPU()
	spin(100 * time.Millisecond)
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The spin's 100 ms of CPU, give or take a tick and a noisy machine.
	if d := after - before; d < 50*time.Millisecond || d > 2*time.Second {
		t.Fatalf("/proc CPU grew by %v over a 100 ms spin", d)
	}
	if d := SelfCPU() - self0; d < 50*time.Millisecond || d > 2*time.Second {
		t.Fatalf("getrusage CPU grew by %v over a 100 ms spin", d)
	}
	// Both count the same process: they agree within a few ticks.
	if d := (SelfCPU() - after).Abs(); d > 200*time.Millisecond {
		t.Fatalf("getrusage and /proc differ by %v", d)
	}

	rss, threads, err := Status(os.Getpid())
	if err != nil || rss < 1<<20 || threads < 1 {
		t.Fatalf("Status = %d, %d, %v", rss, threads, err)
	}
	// Touching 64 MiB shows in VmRSS.
	buf := make([]byte, 64<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	rss2, err := RSS(os.Getpid())
	if err != nil || rss2-rss < 48<<20 {
		t.Fatalf("RSS grew by %d bytes after touching 64 MiB (%v)", rss2-rss, err)
	}
	runtime.KeepAlive(buf)
	if n, err := Threads(os.Getpid()); err != nil || n < 1 {
		t.Fatalf("Threads = %d, %v", n, err)
	}
	if _, err := CPU(1 << 30); err == nil {
		t.Fatal("CPU of a missing process: no error")
	}
}
