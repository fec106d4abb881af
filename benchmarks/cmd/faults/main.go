// Command faults measures how WebSocket servers bear two faults a client
// can cause on purpose, and prints the figures as markdown:
//
//   - fdflood: more silent TCP connections (-conns) than the server has
//     descriptors (-nofile). Reported: dials that failed, sockets the
//     server refused or closed, the server's peak descriptor count, whether
//     it survived, whether a fresh upgrade+echo works during the flood, and
//     how long after the flood ends one works again.
//   - pingflood: one client writes -ping-bytes of 125-byte pings and never
//     reads. Reported: the server's VmRSS before, at the last byte and after
//     -settle, and whether it still serves a fresh upgrade+echo.
//
// Usage, from the benchmarks module:
//
//	go run ./cmd/faults [-servers wsloop,gorilla] [-scenarios fdflood]
//
// It builds wsloop's examples/echo from the repository (-repo), and from
// an older tree for "wsloop-before" (-before, e.g. a worktree made with
// git worktree add /tmp/before 069d9f7), and the peers from
// benchmarks/servers, into a temporary directory. Every scenario starts a
// fresh server as sh -c 'ulimit -n N && exec BIN -addr 127.0.0.1:PORT'.
// The flood's client sockets are spread over worker processes (this
// binary, re-executed with a hidden first argument), each holding at most
// -per-worker sockets from a source address of its own (127.0.0.2, ...).
// The report goes to stdout and to -out.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

var (
	serversArg     = flag.String("servers", "wsloop,gorilla,gws,nbio", "comma-separated servers: wsloop, wsloop-before (needs -before), gorilla, gws, nbio")
	scenariosArg   = flag.String("scenarios", "fdflood,pingflood", "comma-separated scenarios: fdflood, pingflood")
	repo           = flag.String("repo", "..", "the wsloop repository (wsloop is built from its examples/echo, the peers from its benchmarks/servers)")
	before         = flag.String("before", "", "the older wsloop tree (a git worktree) that wsloop-before is built from")
	outFile        = flag.String("out", "/tmp/faults-results.md", "file the markdown report is also written to (empty: none)")
	nofile         = flag.Int("nofile", 20000, "descriptor limit the servers run with (ulimit -n)")
	handshake      = flag.Duration("handshake-timeout", time.Minute, "wsloop's -handshake-timeout, kept past the flood so that it does not evict the silent sockets (the peers have none)")
	conns          = flag.Int("conns", 25000, "fdflood: silent connections to open")
	perWorker      = flag.Int("per-worker", 10000, "fdflood: most sockets one worker process holds")
	dialConc       = flag.Int("dial-concurrency", 256, "fdflood: dials in flight over all workers")
	dialTimeout    = flag.Duration("dial-timeout", 2*time.Second, "fdflood: timeout of one dial (2 s: one SYN retransmission)")
	dialPhase      = flag.Duration("dial-phase", 30*time.Second, "fdflood: no dial starts after this")
	hold           = flag.Duration("hold", 3*time.Second, "fdflood: how long the flood is held before the probe")
	recoverTimeout = flag.Duration("recover-timeout", 30*time.Second, "fdflood: how long to retry an upgrade+echo after the flood closes")
	probeTimeout   = flag.Duration("probe-timeout", 3*time.Second, "timeout of the upgrade+echo probe during a flood")
	pingBytes      = flag.Int64("ping-bytes", 128<<20, "pingflood: bytes of ping frames to write")
	pingBatchSize  = flag.Int("ping-batch", 1<<20, "pingflood: bytes per write")
	pingTimeout    = flag.Duration("ping-timeout", 30*time.Second, "pingflood: bound on the whole write")
	stall          = flag.Duration("stall", 5*time.Second, "pingflood: stop writing after this long without progress")
	settle         = flag.Duration("settle", 2*time.Second, "pingflood: wait before the last VmRSS reading")
)

var (
	knownServers   = []string{"wsloop", "wsloop-before", "gorilla", "gws", "nbio"}
	knownScenarios = []string{"fdflood", "pingflood"}
)

// serverSpec is a server to run: its binary and arguments after -addr.
type serverSpec struct {
	name     string
	bin      string
	args     []string
	tree     string // wsloop, wsloop-before: where and from which commit it was built
	buildErr string // set when the build failed
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == workerFlag {
		os.Exit(workerMain(os.Args[2:]))
	}
	flag.Parse()
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

	started, load := time.Now(), loadAvg()
	binDir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(binDir)
	var specs []serverSpec
	for _, name := range servers {
		fmt.Fprintf(os.Stderr, "building %s\n", name)
		specs = append(specs, build(name, binDir))
	}

	rep := report{command: commandLine(), date: started, load: load, specs: specs}
	for _, sc := range scenarios {
		for _, spec := range specs {
			fmt.Fprintf(os.Stderr, "%s %s\n", sc, spec.name)
			switch sc {
			case "fdflood":
				rep.fd = append(rep.fd, runFDFlood(spec))
			case "pingflood":
				rep.ping = append(rep.ping, runPingFlood(spec))
			}
			killAll() // nothing of one run may linger into the next
		}
	}
	rep.elapsed = time.Since(started)
	md := rep.markdown()
	fmt.Print(md)
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(md), 0o644); err != nil {
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

// build compiles one server into dir. A failed build is not fatal: the
// report shows it in the server's rows.
func build(name, dir string) serverSpec {
	spec := serverSpec{name: name, bin: filepath.Join(dir, name)}
	var src, pkg string
	switch name {
	case "wsloop":
		src, pkg = *repo, "./examples/echo"
	case "wsloop-before":
		if *before == "" {
			spec.buildErr = "no -before tree given"
			return spec
		}
		src, pkg = *before, "./examples/echo"
	default:
		src, pkg = filepath.Join(*repo, "benchmarks"), "./servers/"+name
	}
	if strings.HasPrefix(name, "wsloop") {
		spec.args = []string{"-handshake-timeout", handshake.String()}
		abs, _ := filepath.Abs(src)
		spec.tree = abs + " at " + treeDescription(src)
	}
	cmd := exec.Command("go", "build", "-o", spec.bin, pkg)
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		spec.buildErr = fmt.Sprintf("%v: %s", err, lastN(strings.TrimSpace(string(out)), 3))
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
		cmd := "go run ./cmd/faults"
		if wd, err := os.Getwd(); err == nil {
			cmd = "cd " + wd + " && " + cmd
		}
		return strings.TrimSpace(cmd + " " + args)
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

// treeDescription is "069d9f7 + 20 uncommitted paths" for a git tree (paths
// as git status --porcelain counts them, untracked ones included).
func treeDescription(dir string) string {
	head, err := exec.Command("git", "-C", dir, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "not a git tree"
	}
	s := string(bytes.TrimSpace(head))
	st, err := exec.Command("git", "-C", dir, "status", "--porcelain").Output()
	if st = bytes.TrimSpace(st); err == nil && len(st) > 0 {
		s += fmt.Sprintf(" + %d uncommitted paths", bytes.Count(st, []byte("\n"))+1)
	}
	return s
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

// machine is the host line of the report.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kv, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%s, %d cores, Linux %s, %s", cpu, runtime.NumCPU(), bytes.TrimSpace(kv), runtime.Version())
}
