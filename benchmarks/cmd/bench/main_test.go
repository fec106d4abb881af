package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	js := jobs(echoServers, allScenarios, false, 10*time.Second)
	count := map[string]int{}
	for _, j := range js {
		count[j.scenario]++
	}
	if count["idle"] != 14 || count["echo"] != 28 || count["pipeline"] != 7 || count["connect"] != 7 || count["fanout"] != 8 {
		t.Fatalf("jobs: %v", count)
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
	out := targets(runs)
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
	md := render(runs, time.Now(), time.Second)
	if !strings.Contains(md, "| coder **FAILED** |") || !strings.Contains(md, "boom/x") {
		t.Errorf("failed run not shown:\n%s", md)
	}
}
