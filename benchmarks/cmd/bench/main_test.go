package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

func TestWriteBetweenMarkers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "R.md")
	if err := writeBetweenMarkers(path, "first"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != beginMarker+"\nfirst\n"+endMarker+"\n" {
		t.Fatalf("new file: %q", b)
	}
	hand := "# Results\n\nwritten by hand\n\n" + beginMarker + "\nold\ntable\n" + endMarker + "\n\n## Notes\nkeep me\n"
	os.WriteFile(path, []byte(hand), 0o644)
	if err := writeBetweenMarkers(path, "new\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	want := "# Results\n\nwritten by hand\n\n" + beginMarker + "\nnew\n" + endMarker + "\n\n## Notes\nkeep me\n"
	if string(b) != want {
		t.Fatalf("got %q", b)
	}
	os.WriteFile(path, []byte("no markers"), 0o644)
	writeBetweenMarkers(path, "x")
	b, _ = os.ReadFile(path)
	if string(b) != "no markers\n\n"+beginMarker+"\nx\n"+endMarker+"\n" {
		t.Fatalf("appended: %q", b)
	}
}

func TestJobsAndReport(t *testing.T) {
	js := jobs(echoServers, fanoutServers, allScenarios, false, 10*time.Second, 3)
	count := map[string]int{}
	for _, j := range js {
		count[j.scenario]++
	}
	// fanout: 2 sizes x 2 inflight x 3 rounds x 6 servers; wss-fanout: the
	// same with the 4 that serve TLS; deflate: 3 rounds x (2
	// plain + 3 compressed); deflate-idle: 2 plain + 2 compressed;
	// deflate-fanout: 1 plain + 2 compressed.
	if count["idle"] != 14 || count["echo"] != 3*28 || count["pipeline"] != 3*7 || count["connect"] != 3*7 || count["churn"] != 3*7 || count["fanout"] != 3*24 || count["wss-fanout"] != 3*16 ||
		count["deflate"] != 15 || count["deflate-idle"] != 4 || count["deflate-fanout"] != 3 {
		t.Fatalf("jobs: %v", count)
	}
	// Rounds interleave servers: every server runs round 1 of a
	// configuration before any runs round 2.
	var echo []job
	for _, j := range js {
		if j.scenario == "echo" && j.conns == 100 && j.size == 64 {
			echo = append(echo, j)
		}
	}
	for i, j := range echo {
		if j.round != 1+i/len(echoServers) || j.server != echoServers[i%len(echoServers)] {
			t.Fatalf("echo job %d: round %d server %s", i, j.round, j.server)
		}
	}
	runs := []Run{
		{Scenario: "idle", Server: "wsloop", Conns: 10000, BytesPerConn: 1000, Alive: 10000},
		{Scenario: "idle", Server: "floor", Conns: 10000, BytesPerConn: 600, Alive: 10000},
		{Scenario: "idle", Server: "gorilla", Conns: 10000, BytesPerConn: 17000, Alive: 10000},
		{Scenario: "idle", Server: "nbio", Conns: 10000, BytesPerConn: 900, Alive: 10000},
		{Scenario: "echo", Server: "wsloop", Conns: 1000, Size: 64, Depth: 1, CPUPerMsgUs: 10, P99us: 100},
		{Scenario: "echo", Server: "floor", Conns: 1000, Size: 64, Depth: 1, CPUPerMsgUs: 9, P99us: 100},
		{Scenario: "echo", Server: "gws", Conns: 1000, Size: 64, Depth: 1, CPUPerMsgUs: 12, P99us: 90},
		{Scenario: "echo", Server: "coder", Conns: 1000, Size: 64, Depth: 1, Errors: 1, Failure: "boom|x"},
	}
	out := targets(runs, false)
	for _, want := range []string{
		"**PASS** idle bytes/conn at 10,000: wsloop 1000, floor 600: 1.67×",
		"**PASS** idle bytes/conn at 10,000: wsloop 1000, gorilla 17000: 0.059×",
		"**FAIL** idle bytes/conn at 10,000: wsloop 1000, best event-loop peer nbio 900: 1.11×",
		"**PASS** server CPU per 64 B echo, C=1,000: wsloop 10.00 µs, floor 9.00 µs: 1.11×",
		"**PASS** server CPU per 64 B echo, C=1,000: wsloop 10.00 µs, cheapest peer gws 12.00 µs",
		"**FAIL** p99 latency, 64 B echo, C=1,000: wsloop 100 µs, best peer gws 90 µs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("targets lack %q:\n%s", want, out)
		}
	}
	md := render(&saved{Date: time.Now(), Runs: runs, Setup: setup{Duration: time.Second}})
	if !strings.Contains(md, "| coder **FAILED** |") || !strings.Contains(md, "boom/x") {
		t.Errorf("failed run not shown:\n%s", md)
	}
}

func TestMedians(t *testing.T) {
	runs := []Run{
		{Scenario: "idle", Server: "wsloop", Conns: 10, BytesPerConn: 5},
		{Scenario: "echo", Server: "wsloop", Conns: 1000, Size: 64, Depth: 1, Round: 1, P99us: 300, CPUPerMsgUs: 12, MsgsPerS: 10},
		{Scenario: "echo", Server: "gws", Conns: 1000, Size: 64, Depth: 1, Round: 1, P99us: 90, CPUPerMsgUs: 15},
		{Scenario: "echo", Server: "wsloop", Conns: 1000, Size: 64, Depth: 1, Round: 2, P99us: 100, CPUPerMsgUs: 10, MsgsPerS: 30},
		{Scenario: "echo", Server: "gws", Conns: 1000, Size: 64, Depth: 1, Round: 2, P99us: 95, CPUPerMsgUs: 16, Errors: 1, Failure: "mismatch"},
		{Scenario: "echo", Server: "wsloop", Conns: 1000, Size: 64, Depth: 1, Round: 3, P99us: 120, CPUPerMsgUs: 11, MsgsPerS: 20},
		{Scenario: "echo", Server: "gws", Conns: 1000, Size: 64, Depth: 1, Round: 3, P99us: 110, CPUPerMsgUs: 14},
	}
	m := medians(runs)
	if len(m) != 3 || m[0].Scenario != "idle" || m[1].Server != "wsloop" || m[2].Server != "gws" {
		t.Fatalf("folded into %+v", m)
	}
	w, g := m[1], m[2]
	if w.Rounds != 3 || w.P99us != 120 || w.CPUPerMsgUs != 11 || w.MsgsPerS != 20 || w.P99Min != 100 || w.P99Max != 300 || w.Errors != 0 {
		t.Fatalf("wsloop median: %+v", w)
	}
	if g.P99us != 95 || g.Errors != 1 || g.Failure != "mismatch" {
		t.Fatalf("gws median: %+v", g)
	}
	md := render(&saved{Date: time.Now(), Runs: runs, Setup: setup{Duration: time.Second}})
	if !strings.Contains(md, "median of 3 rounds") || !strings.Contains(md, "| 100–300 |") || !strings.Contains(md, "| gws **FAILED** |") {
		t.Fatalf("report:\n%s", md)
	}
}

// TestRenderSaved checks that a run saved as the .json beside -out renders
// again, from the file, into the same report, setup included.
func TestRenderSaved(t *testing.T) {
	sv := &saved{Args: []string{"-scenarios", "fanout", "-out", "/tmp/fan.md"}, Date: time.Date(2026, 11, 26, 15, 40, 0, 0, time.UTC), Took: 3 * time.Minute,
		Machine: runinfo.Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.18", Go: "go1.26.8"},
		Tree:    runinfo.Tree{Dir: "/r", Commit: "9040dde0123456789abcdef0123456789abcdef0"},
		Setup:   setup{Duration: 10 * time.Second, Warmup: time.Second, IdleSettle: 3 * time.Second, ServerCPU: "0", LoadCPUs: "1", Procs: 4},
		Runs: []Run{{Scenario: "fanout", Server: "wsloop-room", Conns: 10000, Size: 64, Inflight: 16, MsgsPerS: 757000, CPUPerMsgUs: 1.3},
			{Scenario: "fanout", Server: "gws-room", Conns: 10000, Size: 64, Inflight: 16, MsgsPerS: 81000, CPUPerMsgUs: 12.42}}}
	md := render(sv)
	for _, want := range []string{"## Run of 2026-11-26 15:40 UTC (full run)", "go run ./cmd/bench -scenarios fanout -out /tmp/fan.md` at 9040dde", "Go: `go1.26.8`",
		"Machine: Test CPU, 2 cores, Linux 6.18", "server on CPU 0, load generators on CPU 1", "Measured phase 10s", "Took 3m0s", "| wsloop-room | 16 | 757000 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	path := filepath.Join(t.TempDir(), "fan.json")
	b, _ := json.MarshalIndent(sv, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	old := *out
	*out = ""
	defer func() { *out = old }()
	stdout := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	err := rerender(path)
	w.Close()
	os.Stdout = stdout
	again, _ := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != md {
		t.Errorf("rendered from the JSON:\n%s\nwant:\n%s", again, md)
	}
	if err := os.WriteFile(path, []byte(`[{"scenario": "fanout"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rerender(path); err == nil {
		t.Error("rerender took a .json that kept only the runs")
	}
}
