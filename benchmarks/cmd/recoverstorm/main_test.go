package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// server builds servers/wsloop-room once for the tests.
func server(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wsloop-room")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wsloop/wsloop/benchmarks/servers/wsloop-room").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func testConfig(t *testing.T, bin string) config {
	return config{clients: 50, size: 200, history: 1000, dials: 8, srcs: 2,
		server: bin, timeout: 30 * time.Second, logf: t.Logf}
}

// TestStorm: 50 clients over real sockets, storms with 10 missed and with
// none, every check passing and every figure filled in.
func TestStorm(t *testing.T) {
	cfg := testConfig(t, server(t))
	cfg.missed = []int{10, 0}
	res, err := run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d storms, want 2", len(res))
	}
	for i, s := range res {
		if s.Missed != cfg.missed[i] || s.Clients != 50 {
			t.Errorf("storm %d: %+v", i, s)
		}
		if s.Seconds <= 0 || s.PerSecond <= 0 || s.P50ms <= 0 || s.P99ms < s.P50ms || s.Maxms < s.P99ms {
			t.Errorf("storm %d: times %+v", i, s)
		}
		if s.RSSBeforeMiB <= 0 || s.RSSPeakMiB < s.RSSBeforeMiB || s.RSSAfterMiB <= 0 {
			t.Errorf("storm %d: memory %+v", i, s)
		}
	}
	var b strings.Builder
	report(&b, res)
	t.Log("\n" + b.String())
}

// TestStormFailsUnrecovered: a room that keeps fewer messages than the
// clients missed tells them they did not recover, and the run fails.
func TestStormFailsUnrecovered(t *testing.T) {
	cfg := testConfig(t, server(t))
	cfg.history = 5
	_, err := runStorm(cfg, cfg.server, 10)
	if err == nil || !strings.Contains(err.Error(), "want recovered, 10 missed") {
		t.Fatalf("err = %v, want the storm to fail on a welcome that is not recovered", err)
	}
}

// TestCheck: a message with the wrong offset, bytes or opcode fails.
func TestCheck(t *testing.T) {
	want := newPayloads(7, 2, 50)
	good := append([]byte("8 "), want.of(8)...)
	if err := check(1, good, 8, want); err != nil {
		t.Fatal(err)
	}
	bad := append([]byte("8 "), want.of(8)...)
	bad[len(bad)-1] ^= 1
	for name, c := range map[string]struct {
		op  int
		p   []byte
		off uint64
	}{
		"offset": {1, good, 9},
		"bytes":  {1, bad, 8},
		"binary": {2, good, 8},
		"none":   {1, want.of(8), 8},
	} {
		if check(c.op, c.p, c.off, want) == nil {
			t.Errorf("%s: passed", name)
		}
	}
}

// TestStormTenThousandMembers: a room with history and 10,000 members
// (issue 27's edge case), all dropping at once while 100 messages are
// published, and all coming back at once: each must be told it recovered
// and get exactly the 100 it missed, in order, then the next live message
// and nothing else (run's checks). The clients are in this process, the
// server in its own.
func TestStormTenThousandMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections")
	}
	cfg := testConfig(t, server(t))
	cfg.clients, cfg.dials, cfg.srcs = 10000, 500, 4
	cfg.timeout = 2 * time.Minute
	cfg.missed = []int{100}
	res, err := run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Clients != 10000 || res[0].Missed != 100 {
		t.Fatalf("storms: %+v", res)
	}
	t.Logf("10,000 members recovered 100 messages each in %.2f s", res[0].Seconds)
}
