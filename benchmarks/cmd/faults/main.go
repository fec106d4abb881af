// Command faults measures how WebSocket servers bear faults a client can
// cause on purpose, and prints the figures as markdown:
//
//   - fdflood: more silent TCP connections (-conns) than the server has
//     descriptors (-nofile). Reported: dials that failed, sockets the
//     server refused or closed, the server's peak descriptor count, whether
//     it survived, whether a fresh upgrade+echo works during the flood, and
//     how long after the flood ends one works again.
//   - pingflood: one client writes -ping-bytes of 125-byte pings and never
//     reads. Reported: the server's VmRSS before, at the last byte and after
//     -settle, and whether it still serves a fresh upgrade+echo.
//   - tlsflood: the server speaks TLS; -tls-holders silent TCP connections
//     hold its handshake slots, then -tls-flood-sockets more sockets write
//     -tls-flood-bytes at it (a ClientHello, then zeros) as fast as it
//     takes them. Reported: the server's VmRSS before, at its peak (sampled
//     every 50 ms, and VmHWM) and after; the bytes it read before it closed
//     or stopped reading the flooding sockets; the echo latency on wss
//     connections opened before; and whether a fresh wss upgrade+echo works
//     with the holders alone, during the flood, after it, and once the
//     holders have gone.
//
// Usage, from the benchmarks module:
//
//	go run ./cmd/faults [-servers wsloop,gorilla] [-scenarios tlsflood] [-json RESULTS-faults.json]
//	go run ./cmd/faults -quick                                 # CI smoke run, under a minute
//	go run ./cmd/faults -render RESULTS-faults.json [-out RESULTS.md]
//
// It builds wsloop's examples/echo from the repository (-repo), and from
// an older tree for "wsloop-before" (-before, e.g. a worktree made with
// git worktree add /tmp/before 069d9f7), and the peers from
// benchmarks/servers, into a temporary directory. Every scenario starts a
// fresh server as sh -c 'ulimit -n N && exec BIN -addr 127.0.0.1:PORT'.
// The flood's client sockets are spread over worker processes (this
// binary, re-executed with a hidden first argument), each holding at most
// -per-worker sockets from a source address of its own (127.0.0.2, ...).
//
// Every figure of the run, with its setup (machine, flags, the commit each
// server was built from), goes to -json; -render prints the report of
// such a file again, so that the tables in RESULTS.md come from a file
// kept beside them. The report goes to stdout and to -out, between the
// markers <!-- faults:begin --> and <!-- faults:end --> (the rest of the
// file is kept). -quick runs tiny sizes against wsloop and gorilla and
// fails (exit 1) only when a run could not be done, never on a figure.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/mdblock"
	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

var (
	serversArg     = flag.String("servers", "wsloop,gorilla,gws,nbio", "comma-separated servers: wsloop, wsloop-before (needs -before), gorilla, gws, nbio (quick: wsloop,gorilla)")
	scenariosArg   = flag.String("scenarios", "fdflood,pingflood,tlsflood", "comma-separated scenarios: fdflood, pingflood, tlsflood")
	repo           = flag.String("repo", "..", "the wsloop repository (wsloop is built from its examples/echo, the peers from its benchmarks/servers)")
	before         = flag.String("before", "", "the older wsloop tree (a git worktree) that wsloop-before is built from")
	outFile        = flag.String("out", "/tmp/faults-results.md", "markdown file whose faults block gets the report (empty: none)")
	jsonFile       = flag.String("json", "/tmp/faults-results.json", "file every figure of the run and its setup are written to, for -render (empty: none)")
	renderFile     = flag.String("render", "", "print the report of a run saved with -json instead of running (and write it to -out only when -out is given)")
	quick          = flag.Bool("quick", false, "smoke run: tiny sizes, wsloop and gorilla, no -out or -json unless given; fails only when a run could not be done")
	nofile         = flag.Int("nofile", 20000, "descriptor limit the servers run with (ulimit -n)")
	handshake      = flag.Duration("handshake-timeout", time.Minute, "wsloop's -handshake-timeout, kept past the flood so that it does not evict the silent sockets (the peers have none)")
	conns          = flag.Int("conns", 25000, "fdflood: silent connections to open")
	perWorker      = flag.Int("per-worker", 10000, "fdflood: most sockets one worker process holds")
	dialConc       = flag.Int("dial-concurrency", 256, "fdflood: dials in flight over all workers")
	dialTimeout    = flag.Duration("dial-timeout", 2*time.Second, "fdflood: timeout of one dial (2 s: one SYN retransmission)")
	dialPhase      = flag.Duration("dial-phase", 30*time.Second, "fdflood: no dial starts after this")
	hold           = flag.Duration("hold", 3*time.Second, "fdflood: how long the flood is held before the probe")
	recoverTimeout = flag.Duration("recover-timeout", 30*time.Second, "fdflood: how long to retry an upgrade+echo after the flood closes")
	probeTimeout   = flag.Duration("probe-timeout", 3*time.Second, "timeout of an upgrade+echo probe")
	pingBytes      = flag.Int64("ping-bytes", 128<<20, "pingflood: bytes of ping frames to write")
	pingBatchSize  = flag.Int("ping-batch", 1<<20, "pingflood: bytes per write")
	pingTimeout    = flag.Duration("ping-timeout", 30*time.Second, "pingflood: bound on the whole write")
	stall          = flag.Duration("stall", 5*time.Second, "pingflood, tlsflood: a socket stops writing after this long without progress")
	settle         = flag.Duration("settle", 2*time.Second, "pingflood, tlsflood: wait before the last VmRSS reading")
	tlsHolders     = flag.Int("tls-holders", 300, "tlsflood: silent TCP connections opened before the flood to hold the server's handshake slots (wsloop's default: max(256, 128 per CPU))")
	tlsHello       = flag.Bool("tls-holders-hello", false, "tlsflood: the holders send a ClientHello less its last byte instead of nothing (holds a slot even in a server that waits for the first byte)")
	tlsFloodBytes  = flag.Int64("tls-flood-bytes", 64<<20, "tlsflood: bytes the flood writes, over all its sockets")
	tlsSocketsArg  = flag.String("tls-flood-sockets", "1", "tlsflood: comma-separated numbers of flooding sockets, one run each (e.g. 1,32)")
	tlsFloodTime   = flag.Duration("tls-flood-timeout", 30*time.Second, "tlsflood: bound on the flood's writes")
	tlsProbeAt     = flag.Int64("tls-probe-at", 16<<20, "tlsflood: the fresh wss upgrade+echo during the flood starts once this many bytes are written (or the writes made no progress for 1 s)")
	tlsEchoConns   = flag.Int("tls-echo-conns", 4, "tlsflood: wss connections opened before the holders, echoing all along")
)

var (
	knownServers   = []string{"wsloop", "wsloop-before", "gorilla", "gws", "nbio"}
	knownScenarios = []string{"fdflood", "pingflood", "tlsflood"}
)

// quickSizes are the flags -quick sets, unless given on the command line:
// every scenario in a few seconds a server, and no files written.
var quickSizes = map[string]string{
	"out": "", "json": "", "servers": "wsloop,gorilla", "nofile": "1024", "conns": "1500", "per-worker": "1000", "dial-phase": "10s",
	"hold": "500ms", "recover-timeout": "5s", "probe-timeout": "2s",
	"ping-bytes": "8388608", "ping-timeout": "10s", "stall": "1s", "settle": "500ms",
	"tls-flood-bytes": "8388608", "tls-probe-at": "2097152", "tls-flood-timeout": "5s",
}

// applyQuick sets quickSizes on the flags not given on the command line.
func applyQuick(given map[string]bool) error {
	for name, v := range quickSizes {
		if !given[name] {
			if err := flag.Set(name, v); err != nil {
				return fmt.Errorf("-quick: -%s %s: %w", name, v, err)
			}
		}
	}
	return nil
}

// serverSpec is a server to run: how it was built, and its binary.
type serverSpec struct {
	serverInfo
	bin string
}

// serverInfo is what the report says of a server: where it was built
// from and how it runs.
type serverInfo struct {
	Name     string       `json:"name"`
	Package  string       `json:"package"` // ./examples/echo, ./servers/gorilla, ...
	Tree     runinfo.Tree `json:"tree"`    // the git tree the package was built in (the peers: -repo's)
	Args     []string     `json:"args,omitempty"`
	BuildErr string       `json:"build_error,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerFlag {
		os.Exit(workerMain(os.Args[2:]))
	}
	flag.Parse()
	if *renderFile != "" {
		os.Exit(rerender(*renderFile))
	}
	if *quick {
		given := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if err := applyQuick(given); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			os.Exit(2)
		}
	}
	os.Exit(run())
}

func run() int {
	servers, err := pick(*serversArg, knownServers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: -servers:", err)
		return 2
	}
	scenarios, err := pick(*scenariosArg, knownScenarios)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: -scenarios:", err)
		return 2
	}
	floodSockets, err := parseCounts(*tlsSocketsArg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: -tls-flood-sockets:", err)
		return 2
	}

	// Whatever happens, no process this tool started outlives it.
	defer killAll()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "faults: %v, killing children\n", s)
		killAll()
		os.Exit(130)
	}()

	sv := saved{Command: commandLine(), Date: time.Now().UTC(), Load: loadAvg(), Machine: runinfo.This(), Setup: thisSetup(floodSockets)}
	binDir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	var specs []serverSpec
	for _, name := range servers {
		fmt.Fprintf(os.Stderr, "building %s\n", name)
		spec := build(name, binDir)
		specs = append(specs, spec)
		sv.Servers = append(sv.Servers, spec.serverInfo)
	}
	var cert *certFiles
	if slices.Contains(scenarios, "tlsflood") {
		if cert, err = newCert(binDir); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 1
		}
	}

	for _, sc := range scenarios {
		for _, spec := range specs {
			switch sc {
			case "fdflood":
				fmt.Fprintf(os.Stderr, "%s %s\n", sc, spec.Name)
				sv.FD = append(sv.FD, runFDFlood(spec))
			case "pingflood":
				fmt.Fprintf(os.Stderr, "%s %s\n", sc, spec.Name)
				sv.Ping = append(sv.Ping, runPingFlood(spec))
			case "tlsflood":
				for _, n := range floodSockets {
					fmt.Fprintf(os.Stderr, "%s %s, %d flooding sockets\n", sc, spec.Name, n)
					sv.TLS = append(sv.TLS, runTLSFlood(spec, cert, n))
					killAll()
				}
			}
			killAll() // nothing of one run may linger into the next
		}
	}
	sv.Took = dur(time.Since(sv.Date))
	if *jsonFile != "" {
		if err := sv.write(*jsonFile); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 1
		}
	}
	md := sv.markdown()
	fmt.Print(md)
	if *outFile != "" {
		if err := mdblock.Write(*outFile, beginMarker, endMarker, md); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 1
		}
	}
	if failed := sv.failures(); len(failed) > 0 {
		fmt.Fprintf(os.Stderr, "faults: %d run(s) could not be done:\n  %s\n", len(failed), strings.Join(failed, "\n  "))
		return 1
	}
	return 0
}

// The report's block in -out.
const (
	beginMarker = "<!-- faults:begin -->"
	endMarker   = "<!-- faults:end -->"
)

// rerender prints the report of a saved run, and writes it to -out when
// -out was given.
func rerender(path string) int {
	sv, err := load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	md := sv.markdown()
	fmt.Print(md)
	outGiven := false
	flag.Visit(func(f *flag.Flag) { outGiven = outGiven || f.Name == "out" })
	if outGiven && *outFile != "" {
		if err := mdblock.Write(*outFile, beginMarker, endMarker, md); err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			return 1
		}
	}
	return 0
}

// pick splits a comma-separated list and checks every name is known.
func pick(list string, known []string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown name %q (known: %s)", s, strings.Join(known, ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list %q", list)
	}
	return out, nil
}

// parseCounts parses "1,32" into [1 32]: positive, no repeats.
func parseCounts(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", s)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%d twice", n)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list %q", list)
	}
	return out, nil
}

// build compiles one server into dir. A failed build is not fatal: the
// report shows it in the server's rows.
func build(name, dir string) serverSpec {
	spec := serverSpec{serverInfo: serverInfo{Name: name}, bin: filepath.Join(dir, name)}
	var src string
	switch name {
	case "wsloop":
		src, spec.Package = *repo, "./examples/echo"
	case "wsloop-before":
		src, spec.Package = *before, "./examples/echo"
		if *before == "" {
			spec.BuildErr = "no -before tree given"
			return spec
		}
	default:
		src, spec.Package = filepath.Join(*repo, "benchmarks"), "./servers/"+name
	}
	spec.Tree = runinfo.GitTree(src)
	if strings.HasPrefix(name, "wsloop") {
		spec.Args = []string{"-handshake-timeout", handshake.String()}
	}
	cmd := exec.Command("go", "build", "-o", spec.bin, spec.Package)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		spec.BuildErr = fmt.Sprintf("%v: %s", err, lastN(strings.TrimSpace(string(out)), 3))
	}
	return spec
}

// lastN returns the last n lines of s, joined with " / ".
func lastN(s string, n int) string {
	ls := strings.Split(s, "\n")
	return strings.Join(ls[max(0, len(ls)-n):], " / ")
}

// commandLine is how this run was started, as a user would type it.
func commandLine() string {
	quoted := make([]string, len(os.Args)-1)
	for i, a := range os.Args[1:] {
		quoted[i] = shellQuote(a)
	}
	args := strings.Join(quoted, " ")
	exe, _ := os.Executable()
	if strings.Contains(exe, "go-build") { // go run
		return strings.TrimSpace("cd benchmarks && go run ./cmd/faults " + args)
	}
	return strings.TrimSpace(os.Args[0] + " " + args)
}

// shellQuote quotes s for sh when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+,./:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// loadAvg returns the 1, 5 and 15 minute load averages: other work on the
// machine shows in the figures.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
