package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSelf checks each reader against what this process does. Nothing in
// it depends on the machine's load or on an earlier run in the same
// process (go test -count=N): CPU is compared with CPU, never with the
// wall clock, and the memory it touches is mapped afresh.
func TestSelf(t *testing.T) {
	tck := ClockTicks()
	if tck < 50 || tck > 10000 {
		t.Fatalf("ClockTicks = %d", tck)
	}
	tick := time.Second / time.Duration(tck)

	// Spin until getrusage says this process has used 100 ms more CPU,
	// however long a loaded machine takes to give it that (within a
	// minute): both readers must then show the same growth, within the
	// /proc figure's resolution of a clock tick.
	const want = 100 * time.Millisecond
	before, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self0 := SelfCPU()
	deadline := time.Now().Add(time.Minute)
	for SelfCPU()-self0 < want {
		if time.Now().After(deadline) {
			t.Fatalf("this process got %v of CPU in a minute, not %v", SelfCPU()-self0, want)
		}
	}
	after, err := CPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self1 := SelfCPU()
	// /proc counts in ticks and was read just outside getrusage's two
	// reads: its growth lies between getrusage's, give or take a tick each
	// side (and a little for what other threads ran meanwhile).
	rusage := self1 - self0
	if d := after - before; d < want-2*tick || d > rusage+5*tick {
		t.Fatalf("/proc CPU grew by %v while getrusage's grew by %v (at least %v)", d, rusage, want)
	}
	// Both count the same process from its start: their totals agree
	// within a few ticks.
	if d := (self1 - after).Abs(); d > 5*tick {
		t.Fatalf("getrusage says %v of CPU, /proc %v", self1, after)
	}

	rss, threads, err := Status(os.Getpid())
	if err != nil || rss < 1<<20 || threads < 1 {
		t.Fatalf("Status = %d, %d, %v", rss, threads, err)
	}
	// Touching 64 MiB shows in VmRSS. The memory is mapped afresh, so none
	// of it is resident before it is touched (memory from the Go heap can
	// be, when a run before this one left it behind).
	const size = 64 << 20
	buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	rss2, err := RSS(os.Getpid())
	if err != nil || rss2-rss < size*3/4 {
		t.Fatalf("RSS grew by %d bytes after touching 64 MiB (%v)", rss2-rss, err)
	}
	if n, err := Threads(os.Getpid()); err != nil || n < 1 {
		t.Fatalf("Threads = %d, %v", n, err)
	}
	if _, err := CPU(1 << 30); err == nil {
		t.Fatal("CPU of a missing process: no error")
	}
}

func TestFDs(t *testing.T) {
	n0, err := FDs(os.Getpid())
	if err != nil || n0 < 3 {
		t.Fatalf("%d, %v", n0, err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n1, _ := FDs(os.Getpid()); n1 != n0+1 {
		t.Fatalf("%d descriptors after opening one more than %d", n1, n0)
	}
	if _, err := FDs(1 << 30); err == nil {
		t.Fatal("no error for a PID that does not exist")
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("%d, %v", p, err)
	}
}

func TestDivert(t *testing.T) {
	var ch Children
	c, err := Start("sh", exec.Command("sh", "-c", "read x; echo UP 1; echo A; echo UP 2; echo B"), &ch, true)
	if err != nil {
		t.Fatal(err)
	}
	ups := c.Divert("UP ", 4)
	c.Send("go")
	for _, want := range []string{"A", "B"} {
		if _, err := c.Expect(want, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for l := range ups {
		got = append(got, l)
	}
	if len(got) != 2 || got[0] != "UP 1" || got[1] != "UP 2" {
		t.Fatalf("diverted %q", got)
	}
	<-c.Exited
}

// TestPSS: this process's PSS is positive and at most its RSS.
func TestPSS(t *testing.T) {
	pss, err := PSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rss, err := RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pss <= 0 || pss > rss {
		t.Fatalf("PSS %d, RSS %d", pss, rss)
	}
}
