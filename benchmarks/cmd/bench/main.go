// Command bench runs wsloop and its peers side by side on this machine and
// writes the figures, with ratios, to RESULTS.md:
//
//	cd benchmarks && go run ./cmd/bench -out RESULTS.md   # the full run
//	cd benchmarks && go run ./cmd/bench -quick            # CI smoke test
//
// Each scenario starts a fresh server pinned to -server-cpu and one or
// more load generators pinned to -load-cpus; the server's CPU time comes
// from /proc/PID/stat over the measured phase, its memory from VmRSS. The
// quick mode runs tiny sizes against wsloop and gorilla and fails only on
// errors (wrong bytes, crashes, missing READY), never on speed. With -out,
// only the text between the bench markers of the file is replaced.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

var (
	out       = flag.String("out", "", "markdown file to update (only between its bench markers); stdout when empty")
	quick     = flag.Bool("quick", false, "tiny sizes, wsloop and gorilla only: a smoke test")
	serverArg = flag.String("servers", "", "comma-separated echo servers (default: all; quick: wsloop,gorilla)")
	scenArg   = flag.String("scenarios", "idle,echo,pipeline,connect,fanout", "comma-separated scenarios")
	duration  = flag.Duration("duration", 10*time.Second, "measured phase of echo, pipeline and fanout runs")
	serverCPU = flag.String("server-cpu", "0", "taskset CPU list for the server (empty: no pinning)")
	loadCPUs  = flag.String("load-cpus", "1", "taskset CPU list for the load generators (empty: no pinning)")
	nprocs    = flag.Int("procs", 4, "load generator processes for more than 5,000 connections")
)

var allServers = []string{"wsloop", "floor", "gorilla", "coder", "gobwas", "gws", "nbio"}
var fanoutServers = []string{"wsloop-room", "gorilla-hub"}

// bins maps a program name to its built binary.
var bins = map[string]string{}

func build(dir string) error {
	names := append(append([]string{}, allServers...), fanoutServers...)
	for _, n := range names {
		bins[n] = filepath.Join(dir, n)
		if b, err := exec.Command("go", "build", "-o", bins[n], "./servers/"+n).CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", n, err, b)
		}
	}
	bins["loadgen"] = filepath.Join(dir, "loadgen")
	if b, err := exec.Command("go", "build", "-o", bins["loadgen"], "./cmd/loadgen").CombinedOutput(); err != nil {
		return fmt.Errorf("building loadgen: %v\n%s", err, b)
	}
	return nil
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func jobs(servers, scenarios []string) []job {
	type sz struct{ conns, size int }
	idle := []int{10000, 19000}
	echo := []sz{{100, 64}, {1000, 64}, {100, 4096}, {1000, 4096}}
	pipe := []int{200}
	connect := 10000
	fan := []int{10000}
	fanSizes := []int{64, 1024}
	dur := *duration
	if *quick {
		idle, echo, pipe, connect, fan, fanSizes = []int{500}, []sz{{50, 64}}, []int{20}, 500, []int{200}, []int{64}
		dur = 2 * time.Second
	}
	var js []job
	has := func(s string) bool { return slices.Contains(scenarios, s) }
	for _, srv := range servers {
		if has("idle") {
			for _, n := range idle {
				js = append(js, job{scenario: "idle", server: srv, mode: "idle", conns: n, size: 64})
			}
		}
		if has("echo") {
			for _, e := range echo {
				js = append(js, job{scenario: "echo", server: srv, mode: "echo", conns: e.conns, size: e.size, dur: dur})
			}
		}
		if has("pipeline") {
			for _, c := range pipe {
				js = append(js, job{scenario: "pipeline", server: srv, mode: "pipeline", conns: c, size: 64, depth: 16, dur: dur})
			}
		}
		if has("connect") {
			js = append(js, job{scenario: "connect", server: srv, mode: "connect", conns: connect, size: 64})
		}
	}
	if has("fanout") {
		for _, srv := range fanoutServers {
			for _, n := range fan {
				for _, s := range fanSizes {
					for _, k := range []int{1, 16} {
						js = append(js, job{scenario: "fanout", server: srv, mode: "fanout", conns: n, size: s, inflight: k, dur: dur})
					}
				}
			}
		}
	}
	return js
}

func main() {
	flag.Parse()
	servers := list(*serverArg)
	if len(servers) == 0 {
		servers = allServers
		if *quick {
			servers = []string{"wsloop", "gorilla"}
		}
	}
	tmp, err := os.MkdirTemp("", "wsloop-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "bench: building servers and the load generator")
	if err := build(tmp); err != nil {
		fatal(err)
	}
	started := time.Now()
	var runs []Run
	failed := 0
	for _, j := range jobs(servers, list(*scenArg)) {
		r := runJob(j)
		runs = append(runs, r)
		status := "ok"
		if r.Errors > 0 {
			failed++
			status = "FAILED: " + r.Failure
		}
		fmt.Fprintf(os.Stderr, "bench: %-8s %-12s conns=%-6d size=%-5d msgs/s=%-9.0f cpu/msg=%.2fµs p99=%.0fµs bytes/conn=%.0f loadgen=%.2f cores  %s\n",
			r.Scenario, r.Server, r.Conns, r.Size, r.MsgsPerS, r.CPUPerMsgUs, r.P99us, r.BytesPerConn, r.LoadgenCores, status)
	}
	report := render(runs, started)
	if *out == "" {
		fmt.Print(report)
	} else {
		if err := writeBetweenMarkers(*out, report); err != nil {
			fatal(err)
		}
		js, _ := json.MarshalIndent(runs, "", "  ")
		jsonPath := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".json"
		if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
			fatal(err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s and %s\n", *out, jsonPath)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d run(s) failed\n", failed)
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

const beginMarker, endMarker = "<!-- bench:begin -->", "<!-- bench:end -->"

// writeBetweenMarkers replaces the text between the markers of path (or
// appends the markers), keeping everything else.
func writeBetweenMarkers(path, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	block := beginMarker + "\n" + body + endMarker
	i, k := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i >= 0 && k > i {
		s = s[:i] + block + s[k+len(endMarker):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
