// Command bench runs wsloop and its peers side by side on this machine and
// reports the figures, with ratios, as markdown:
//
//	cd benchmarks && go run ./cmd/bench -out RESULTS.md   # the full run (about 15 minutes)
//	cd benchmarks && go run ./cmd/bench -quick            # CI smoke test (about a minute)
//
// It builds every server it needs (./servers/<name>), the load generator
// (./cmd/loadgen) and, when present, the fan-out client (./cmd/fanout) into
// a temporary directory. The fan-out peer uws-room, uWebSockets' pub/sub,
// is C++: it is compiled from the uWebSockets and uSockets checkouts that
// UWS_DIR and USOCKETS_DIR name, and skipped without them (uws.go;
// RESULTS.md, "uWebSockets as a fan-out peer"):
//
//	cd benchmarks && UWS_DIR=... USOCKETS_DIR=... go run ./cmd/bench -scenarios fanout -servers wsloop-room,uws-room
//
// Each scenario starts a fresh server pinned with taskset to -server-cpu
// and one or more load generators pinned to -load-cpus, then drives them
// through their stdin/stdout protocol (CONNECTED, GO, CHECK, RESULT). The server's CPU time comes from
// /proc/PID/stat over the measured phase, its memory from VmRSS. More than
// 5,000 connections are split over -procs load generators, each with its
// own source address (127.0.0.2, 127.0.0.3, ...).
//
// The wss-fanout scenario is the fanout scenario over TLS (wss://) against
// the fan-out servers that serve TLS (tlsFanoutServers): every server gets
// the run's own certificate (internal/benchcert: self-signed, made in the
// temporary directory, nothing kept) with -tls-cert and -tls-key, and
// cmd/fanout dials with -tls, trusting that certificate alone (-tls-ca).
// It is not in the default -scenarios (10,000 TLS subscribers per run
// made it 18 minutes on its own on the benchmark machine):
//
//	cd benchmarks && go run ./cmd/bench -scenarios wss-fanout -out /tmp/wssfan.md
//
// The quick mode runs tiny sizes against wsloop and gorilla, prints the
// tables and fails (exit 1) only on errors: wrong bytes, a crash, a server
// that is not ready; never on speed. With -out, only the text between the
// markers <!-- bench:begin --> and <!-- bench:end --> of the file is
// replaced, and the raw figures of every run go to a .json file beside it,
// with the run's setup (machine, commit, flags), so that
//
//	cd benchmarks && go run ./cmd/bench -render RESULTS.json [-out RESULTS.md]
//
// prints (or writes) the same report again from the file.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
	"github.com/wsloop/wsloop/benchmarks/internal/mdblock"
	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

var (
	out        = flag.String("out", "", "markdown file to update between its bench markers (and a .json beside it); none: print to stdout")
	quick      = flag.Bool("quick", false, "smoke test: tiny sizes, wsloop and gorilla only, fails only on errors")
	serverArg  = flag.String("servers", "", "comma-separated servers: echo servers for idle, echo, pipeline, connect and churn (default: wsloop,floor,gorilla,coder,gobwas,gws,nbio; quick: wsloop,gorilla), and fan-out servers for fanout (default: "+strings.Join(fanoutServers, ",")+"; uws-room needs UWS_DIR)")
	scenArg    = flag.String("scenarios", "idle,echo,pipeline,connect,churn,fanout,deflate,deflate-idle,deflate-fanout", "comma-separated scenarios (also wss-fanout: fanout over TLS, not in the default list)")
	duration   = flag.Duration("duration", 10*time.Second, "measured phase of echo, pipeline and fanout runs (quick: 2s)")
	warmup     = flag.Duration("warmup", time.Second, "echo and pipeline traffic before measuring")
	serverCPU  = flag.String("server-cpu", "0", "taskset CPU list for the server (empty: no pinning)")
	loadCPUs   = flag.String("load-cpus", "1", "taskset CPU list for the load generators (empty: no pinning)")
	nprocs     = flag.Int("procs", 4, "load generator processes for more than 5,000 connections")
	renderFile = flag.String("render", "", "print the report of a run saved by -out (its .json) instead of running; with -out, write it there")
	rounds     = flag.Int("rounds", 3, "runs of each echo, pipeline, connect, churn and fanout configuration per server, servers interleaved; the report shows medians (quick: 1)")
	before     = flag.String("before", "", "an older wsloop tree (e.g. made with git worktree add --detach /tmp/wsold 069d9f7): the server named -before-name in -servers is the benchmark's wsloop echo server built against that tree's engine")
	fanReader  = flag.String("fanout-reader", "", "cmd/fanout's -reader for the plain fan-out scenarios (epoll or goroutine; empty: cmd/fanout's default, epoll); wss-fanout always reads with goroutine, so -fanout-reader goroutine gives its plain counterpart")
	beforeName = flag.String("before-name", "wsloop-before", "the name -servers and the report give the server built from -before")
)

// splitAbove is the connection count above which a scenario's connections
// are spread over -procs load generators.
const splitAbove = 5000

// dialConcurrency is the number of dials in flight over all load generators.
const dialConcurrency = 200

// churnCycles is the churn scenario's connect/upgrade/echo/close cycles.
const churnCycles = 20000

var (
	echoServers = []string{"wsloop", "floor", "gorilla", "coder", "gobwas", "gws", "nbio"}
	peers       = []string{"gorilla", "coder", "gobwas", "gws", "nbio"} // not wsloop, not the floor
	eventPeers  = []string{"gws", "nbio"}
	// fanoutServers are the fanout scenario's servers, which take part in
	// no other scenario. uws-room is uWebSockets' pub/sub, built from the
	// checkout UWS_DIR names and skipped without it (uws.go).
	fanoutServers = []string{"wsloop-room", "gorilla-hub", "gws-room", "nbio-room", "centrifuge-room", uwsRoom}
	// tlsFanoutServers are the fan-out servers that serve TLS with
	// -tls-cert and -tls-key: the wss-fanout scenario's.
	tlsFanoutServers = []string{"wsloop-room", "gorilla-hub", "gws-room", "nbio-room"}
	// fanoutProto is cmd/fanout's -proto for a fan-out server that does
	// not send each message as its own frame.
	fanoutProto   = map[string]string{"gorilla-hub": "newline", "centrifuge-room": "centrifuge"}
	deflateServer = []string{"wsloop", "wsloop-stdflate", "gws"} // the compression scenarios' servers
	// stdflateSuffix marks a wsloop server built with -tags wsloop_stdflate:
	// compress/flate instead of klauspost/compress, to compare the two.
	stdflateSuffix = "-stdflate"
	allScenarios   = []string{"idle", "echo", "pipeline", "connect", "churn", "fanout", "wss-fanout", "deflate", "deflate-idle", "deflate-fanout"}
)

// tlsCert and tlsKey are the run's certificate and key (PEM files in the
// temporary directory), made when wss-fanout runs.
var tlsCert, tlsKey string

// bins maps a program name to its built binary.
var bins = map[string]string{}

// moduleDir returns the benchmarks module's directory.
func moduleDir() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(b))
	mod, err := os.ReadFile(gomod)
	if err != nil || !strings.Contains(string(mod), "module github.com/wsloop/wsloop/benchmarks\n") {
		return "", fmt.Errorf("run bench from the benchmarks module (cd benchmarks), not %q", filepath.Dir(gomod))
	}
	return filepath.Dir(gomod), nil
}

// build compiles the servers named and the clients into dir, in one go
// build; cmd/fanout is built on its own when wanted, since it is optional.
// It returns whether the fan-out client was built.
func build(mod, dir string, servers []string, wantFanout bool) (bool, error) {
	pkgs := []string{"./cmd/loadgen"}
	var std []string
	for _, s := range servers {
		if s == *beforeName && *before != "" {
			if err := buildBefore(mod, dir, s); err != nil {
				return false, err
			}
			continue
		}
		if base, ok := strings.CutSuffix(s, stdflateSuffix); ok {
			std = append(std, base)
			continue
		}
		pkgs = append(pkgs, "./servers/"+s)
	}
	for _, base := range std {
		name := base + stdflateSuffix
		c := exec.Command("go", "build", "-tags", "wsloop_stdflate", "-o", filepath.Join(dir, name), "./servers/"+base)
		c.Dir = mod
		if b, err := c.CombinedOutput(); err != nil {
			return false, fmt.Errorf("go build -tags wsloop_stdflate ./servers/%s: %v\n%s", base, err, b)
		}
		bins[name] = filepath.Join(dir, name)
	}
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)
	c := exec.Command("go", args...)
	c.Dir = mod
	if b, err := c.CombinedOutput(); err != nil {
		return false, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	for _, p := range pkgs {
		bins[filepath.Base(p)] = filepath.Join(dir, filepath.Base(p))
	}
	if !wantFanout {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(mod, "cmd", "fanout")); err != nil {
		fmt.Fprintln(os.Stderr, "bench: no ./cmd/fanout: skipping the fanout scenario")
		return false, nil
	}
	bins["fanout"] = filepath.Join(dir, "fanout")
	c = exec.Command("go", "build", "-o", bins["fanout"], "./cmd/fanout")
	c.Dir = mod
	if b, err := c.CombinedOutput(); err != nil {
		return false, fmt.Errorf("go build ./cmd/fanout: %v\n%s", err, b)
	}
	return true, nil
}

// unique is ss without repeats, in first-seen order.
func unique(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
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

// job describes one run: one scenario configuration against one server.
type job struct {
	scenario string
	server   string
	mode     string
	conns    int
	size     int
	depth    int
	inflight int
	round    int // 1-based; echo and pipeline run -rounds times
	dur      time.Duration
	variant  string // "": the default payload; "json": chat-like JSON; "deflate": JSON, compressed (permessage-deflate)
}

// jobs lists the runs, scenario-major (servers run the echo scenarios,
// fanSrv the fanout scenario): every server runs a configuration
// before the next configuration starts, so that drift in the machine's
// state (other tenants, heat) touches all servers alike.
//
// Echo and pipeline configurations run nrounds times, all servers in each
// round before the next round: on a shared machine a closed loop's tail
// latency moves by tens of percent from one run to the next, and a median
// over interleaved rounds is what one server can be compared with another on.
func jobs(servers, fanSrv, scenarios []string, quick bool, dur time.Duration, nrounds int) []job {
	type sz struct{ conns, size int }
	idle := []int{10000, 19000}
	echo := []sz{{100, 64}, {1000, 64}, {100, 4096}, {1000, 4096}}
	pipe := []int{200}
	connect, churn := 10000, churnCycles
	fan, fanSizes, fanInflight := 10000, []int{64, 1024}, []int{1, 16}
	deflateEcho, deflateIdle := sz{100, 1024}, 10000
	if quick {
		idle, echo, pipe, connect, churn = []int{500}, []sz{{50, 64}}, []int{20}, 500, 1000
		fan, fanSizes = 200, []int{64}
		deflateEcho, deflateIdle = sz{20, 1024}, 200
	}
	var js []job
	has := func(s string) bool { return slices.Contains(scenarios, s) }
	each := func(j job) {
		for _, srv := range servers {
			j.server = srv
			js = append(js, j)
		}
	}
	eachRound := func(j job) {
		for r := 1; r <= max(nrounds, 1); r++ {
			j.round = r
			each(j)
		}
	}
	if has("idle") {
		for _, n := range idle {
			each(job{scenario: "idle", mode: "idle", conns: n, size: 64})
		}
	}
	if has("echo") {
		for _, e := range echo {
			eachRound(job{scenario: "echo", mode: "echo", conns: e.conns, size: e.size, depth: 1, dur: dur})
		}
	}
	if has("pipeline") {
		for _, c := range pipe {
			eachRound(job{scenario: "pipeline", mode: "pipeline", conns: c, size: 64, depth: 16, dur: dur})
		}
	}
	if has("connect") {
		eachRound(job{scenario: "connect", mode: "connect", conns: connect, size: 64})
	}
	if has("churn") {
		eachRound(job{scenario: "churn", mode: "churn", conns: churn, size: 64})
	}
	// The compression scenarios run wsloop and gws only, each plain (the
	// same JSON, not compressed) and compressed.
	eachVariant := func(j job, rounds int) {
		for r := 1; r <= rounds; r++ {
			if rounds > 1 {
				j.round = r
			}
			for _, v := range []string{"json", "deflate"} {
				for _, srv := range deflateServer {
					if strings.HasSuffix(srv, stdflateSuffix) && (v == "json" || j.mode == "idle") {
						continue // compress/flate only changes compressed echoes
					}
					j.server, j.variant = srv, v
					js = append(js, j)
				}
			}
		}
	}
	if has("deflate") {
		eachVariant(job{scenario: "deflate", mode: "echo", conns: deflateEcho.conns, size: deflateEcho.size, depth: 1, dur: dur}, max(nrounds, 1))
	}
	if has("deflate-idle") {
		eachVariant(job{scenario: "deflate-idle", mode: "idle", conns: deflateIdle, size: 1024}, 1)
	}
	if has("deflate-fanout") {
		for _, v := range []string{"json", "deflate"} {
			for _, srv := range []string{"wsloop-room", "wsloop-room" + stdflateSuffix} {
				if v == "json" && srv != "wsloop-room" {
					continue // the plain run does not compress: one is enough
				}
				js = append(js, job{scenario: "deflate-fanout", server: srv, mode: "fanout", conns: fan, size: 1024, inflight: 16, dur: dur, variant: v})
			}
		}
	}
	if has("fanout") || has("wss-fanout") {
		// Rounds, as for echo: on this machine one server's fan-out CPU
		// moved by 40 % from one run to the next (RESULTS.md, issue 26).
		// wss-fanout is the same shapes over TLS, with the fan-out
		// servers that serve it; with both scenarios, each round runs
		// plain then TLS, so that the two compare within a round.
		var plain, wss []string
		if has("fanout") {
			plain = fanSrv
		}
		if has("wss-fanout") {
			wss = tlsOnly(fanSrv)
		}
		for _, s := range fanSizes {
			for _, k := range fanInflight {
				for r := 1; r <= max(nrounds, 1); r++ {
					add := func(scenario string, srvs []string) {
						for _, srv := range srvs {
							j := job{scenario: scenario, server: srv, mode: "fanout", conns: fan, size: s, inflight: k, dur: dur}
							if nrounds > 1 {
								j.round = r
							}
							js = append(js, j)
						}
					}
					add("fanout", plain)
					add("wss-fanout", wss)
				}
			}
		}
	}
	return js
}

// tlsOnly is the servers of fan that serve TLS, in fan's order.
func tlsOnly(fan []string) []string {
	var out []string
	for _, s := range fan {
		if slices.Contains(tlsFanoutServers, s) {
			out = append(out, s)
		}
	}
	return out
}

// isFanoutScenario says whether a scenario runs the fan-out servers with
// cmd/fanout.
func isFanoutScenario(s string) bool {
	return s == "fanout" || s == "wss-fanout" || s == "deflate-fanout"
}

// saved is the .json -out writes beside the markdown: every run, and what
// the report says of the run's setup, so that -render prints the same
// report later, on any machine.
type saved struct {
	Args    []string        `json:"args"` // after go run ./cmd/bench
	Date    time.Time       `json:"date"`
	Took    time.Duration   `json:"took_ns"`
	Machine runinfo.Machine `json:"machine"`
	Tree    runinfo.Tree    `json:"tree"`          // the repository the servers were built from
	UWS     *UWSBuild       `json:"uws,omitempty"` // how uws-room was built, when it was
	Setup   setup           `json:"setup"`
	Runs    []Run           `json:"runs"`
}

// setup is the flags the report quotes.
type setup struct {
	Quick                        bool
	Duration, Warmup, IdleSettle time.Duration
	ServerCPU, LoadCPUs          string
	Procs                        int
}

// rerender prints the report of a saved run, and writes it between the
// markers of -out when -out is given.
func rerender(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var sv saved
	if err := json.Unmarshal(b, &sv); err != nil {
		return fmt.Errorf("%s: %w (a .json written before -render kept only the runs, not the setup: it cannot be rendered again)", path, err)
	}
	if sv.Date.IsZero() || sv.Runs == nil {
		return fmt.Errorf("%s: not a run saved by cmd/bench", path)
	}
	report := render(&sv)
	fmt.Print(report)
	if *out != "" {
		return writeBetweenMarkers(*out, report)
	}
	return nil
}

func main() {
	flag.Parse()
	if *renderFile != "" {
		if err := rerender(*renderFile); err != nil {
			fatal(err)
		}
		return
	}
	durSet, roundsSet := false, false
	flag.Visit(func(f *flag.Flag) {
		durSet = durSet || f.Name == "duration"
		roundsSet = roundsSet || f.Name == "rounds"
	})
	dur := *duration
	if *quick && !durSet {
		dur = 2 * time.Second
	}
	if *quick && !roundsSet {
		*rounds = 1
	}
	if *rounds < 1 {
		fatal(fmt.Errorf("-rounds must be at least 1"))
	}
	scenarios := list(*scenArg)
	for _, s := range scenarios {
		if !slices.Contains(allScenarios, s) {
			fatal(fmt.Errorf("unknown scenario %q (want %s)", s, strings.Join(allScenarios, ",")))
		}
	}
	echoScenarios := slices.ContainsFunc(scenarios, func(s string) bool { return s != "fanout" && s != "wss-fanout" && !strings.HasPrefix(s, "deflate") })
	// -servers names echo servers, fan-out servers or both: the fan-out
	// ones run the fanout scenario (all of them when it names none), the
	// others the echo scenarios.
	servers, fan := splitServers(list(*serverArg))
	if len(fan) == 0 {
		fan = slices.Clone(fanoutServers)
	}
	if len(servers) == 0 {
		if *serverArg != "" && echoScenarios {
			fatal(fmt.Errorf("-servers %s names fan-out servers only, which run the fanout scenario only: name echo servers too, or run -scenarios fanout", *serverArg))
		}
		servers = echoServers
		if *quick {
			servers = []string{"wsloop", "gorilla"}
		}
	}
	mod, err := moduleDir()
	if err != nil {
		fatal(err)
	}
	tmp, err := os.MkdirTemp("", "wsloop-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tmp)
	go onSignal(tmp)

	var toBuild []string
	if echoScenarios {
		toBuild = slices.Clone(servers)
	}
	if slices.ContainsFunc(scenarios, func(s string) bool { return s == "deflate" || s == "deflate-idle" }) {
		for _, s := range deflateServer {
			if !slices.Contains(toBuild, s) {
				toBuild = append(toBuild, s)
			}
		}
	}
	wantFanout := slices.ContainsFunc(scenarios, isFanoutScenario)
	if slices.Contains(scenarios, "fanout") {
		toBuild = append(toBuild, fan...)
	}
	if slices.Contains(scenarios, "wss-fanout") {
		wss := tlsOnly(fan)
		if len(wss) == 0 {
			fatalIn(tmp, fmt.Errorf("-servers %s: none serves TLS, which wss-fanout needs (%s do)", *serverArg, strings.Join(tlsFanoutServers, ", ")))
		}
		toBuild = append(toBuild, wss...)
		// The run's certificate, for every server of the scenario.
		if tlsCert, tlsKey, err = benchcert.Write(tmp); err != nil {
			fatalIn(tmp, err)
		}
	}
	if slices.Contains(scenarios, "deflate-fanout") {
		toBuild = append(toBuild, "wsloop-room", "wsloop-room"+stdflateSuffix)
	}
	toBuild = unique(toBuild)
	var uws *UWSBuild
	if slices.Contains(toBuild, uwsRoom) {
		toBuild = slices.DeleteFunc(toBuild, func(s string) bool { return s == uwsRoom })
		if uws, err = buildUWS(os.Getenv, mod, tmp); err != nil {
			fatalIn(tmp, err)
		}
		if uws == nil {
			fmt.Fprintln(os.Stderr, uwsSkip)
			fan = slices.DeleteFunc(fan, func(s string) bool { return s == uwsRoom })
			if len(fan) == 0 {
				fatalIn(tmp, fmt.Errorf("-servers %s: no fan-out server left to run", *serverArg))
			}
		} else {
			fmt.Fprintf(os.Stderr, "bench: built %s\n", uws)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: building %s, the load generator and the fan-out client\n", strings.Join(toBuild, ", "))
	haveFanout, err := build(mod, tmp, toBuild, wantFanout)
	if err != nil {
		fatalIn(tmp, err)
	}
	if !haveFanout {
		scenarios = slices.DeleteFunc(scenarios, isFanoutScenario)
	}

	started := time.Now()
	var runs []Run
	failed := 0
	for _, j := range jobs(servers, fan, scenarios, *quick, dur, *rounds) {
		r := runJob(j)
		runs = append(runs, r)
		if r.Errors > 0 {
			failed++
		}
		fmt.Fprintf(os.Stderr, "bench: %s\n", r.summary())
	}
	sv := &saved{Args: os.Args[1:], Date: started.UTC(), Took: time.Since(started), Machine: runinfo.This(), Tree: runinfo.GitTree(filepath.Dir(mod)), UWS: uws,
		Setup: setup{Quick: *quick, Duration: dur, Warmup: *warmup, IdleSettle: idleSettle(), ServerCPU: *serverCPU, LoadCPUs: *loadCPUs, Procs: *nprocs},
		Runs:  runs}
	report := render(sv)
	if *out == "" {
		fmt.Print(report)
	} else {
		if *quick {
			fmt.Print(report)
		}
		if err := writeBetweenMarkers(*out, report); err != nil {
			fatalIn(tmp, err)
		}
		js, _ := json.MarshalIndent(sv, "", "  ")
		jsonPath := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".json"
		if err := os.WriteFile(jsonPath, append(js, '\n'), 0o644); err != nil {
			fatalIn(tmp, err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s and %s\n", *out, jsonPath)
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d run(s) failed:\n", failed)
		for _, r := range runs {
			if r.Errors > 0 {
				fmt.Fprintf(os.Stderr, "  %s %s: %s\n", r.Scenario, r.Server, firstLines(r.Failure, 3))
			}
		}
		os.RemoveAll(tmp)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "bench: %d runs, no errors, %s\n", len(runs), time.Since(started).Round(time.Second))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func fatalIn(tmp string, err error) {
	os.RemoveAll(tmp)
	fatal(err)
}

// onSignal kills every child on SIGINT/SIGTERM.
func onSignal(tmp string) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	s := <-ch
	fmt.Fprintf(os.Stderr, "bench: %v: stopping\n", s)
	killChildren()
	fatalIn(tmp, fmt.Errorf("interrupted"))
}

const beginMarker, endMarker = "<!-- bench:begin -->", "<!-- bench:end -->"

// writeBetweenMarkers replaces the text between the markers of path (or
// appends the markers with body between them), keeping everything else.
func writeBetweenMarkers(path, body string) error {
	return mdblock.Write(path, beginMarker, endMarker, body)
}
