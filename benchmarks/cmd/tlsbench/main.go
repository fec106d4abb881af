// Command tlsbench measures WebSocket servers over wss:// against the same
// servers over ws://, side by side in one run, and reports the figures as
// markdown:
//
//	cd benchmarks && go run ./cmd/tlsbench -out RESULTS.md   # the full run (about 10 minutes)
//	cd benchmarks && go run ./cmd/tlsbench -quick            # CI smoke test
//
// Scenarios:
//
//   - idle: -idle-conns connections (over -procs client processes), then
//     the server's VmRSS growth per connection, read twice: as it stands
//     once the connections are up, and after the server has collected its
//     garbage and returned free memory (runtime/debug.FreeOSMemory, on
//     SIGUSR2; see internal/mallocs). Then every connection echoes one
//     message, so only live connections count.
//   - echo: -echo-conns connections in a closed loop, one 64 B message in
//     flight on each, for -duration; server CPU per message.
//   - handshake: -churn workers, each dialing, upgrading and closing one
//     connection after another for -duration: full TLS handshakes (no
//     session resumption) plus the upgrade; server CPU per connection.
//   - resume: the same over wss only, with a client session cache, as
//     clients that reconnect (after a deploy, a network change) do: the
//     report says how many handshakes resumed.
//
// Every server gets the same certificate (ECDSA P-256, made for the run)
// and every client the same TLS settings: TLS 1.3, X25519, ALPN http/1.1,
// no session cache; what was negotiated is in the report. The servers are
// ./servers/<name> with -tls-cert and -tls-key: wsloop (engine.WithTLS),
// gorilla and gws (net/http's ServeTLS, crypto/tls), nbio (its non-blocking
// engine with its own fork of crypto/tls, lesismal/llib). Each job starts a
// fresh server pinned with taskset to -server-cpu, and clients (this
// binary, re-executed as "tlsbench client ...": Go's crypto/tls, a
// goroutine per connection) pinned to -load-cpus; CPU comes from
// /proc/PID/stat over the measured phase, memory from VmRSS. Echo and
// handshake run -rounds times, servers and modes interleaved; the report
// shows medians. Every echoed byte is checked; any error fails the run.
//
// With -out, the text between <!-- tls:begin --> and <!-- tls:end --> in
// the file is replaced with the report.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
	"github.com/wsloop/wsloop/benchmarks/internal/mdblock"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

var (
	out        = flag.String("out", "", "markdown file to update between its tls markers; none: print to stdout")
	quick      = flag.Bool("quick", false, "smoke test: tiny sizes, wsloop and gorilla, one round; fails only on errors")
	serverArg  = flag.String("servers", "wsloop,gorilla,gws,nbio", "comma-separated servers (./servers/<name>, each taking -tls-cert and -tls-key)")
	scenArg    = flag.String("scenarios", "idle,echo,handshake,resume", "comma-separated scenarios")
	idleConns  = flag.Int("idle-conns", 10000, "idle: connections")
	warmup     = flag.Int("idle-warmup", 256, "idle: connections opened and closed before the baseline")
	idleRounds = flag.Int("idle-rounds", 1, "idle: runs of each server and mode, interleaved (the table gives medians)")
	nprocs     = flag.Int("procs", 2, "idle: client processes")
	echoConns  = flag.Int("echo-conns", 1000, "echo: connections")
	size       = flag.Int("size", 64, "echo: payload bytes (12..125)")
	churn      = flag.Int("churn", 64, "handshake: connections being set up at once")
	duration   = flag.Duration("duration", 10*time.Second, "echo and handshake: measured phase")
	rounds     = flag.Int("rounds", 3, "echo and handshake: runs of each server and mode, interleaved")
	serverCPU  = flag.String("server-cpu", "0", "taskset CPU list for the server (empty: no pinning)")
	loadCPUs   = flag.String("load-cpus", "1", "taskset CPU list for the clients (empty: no pinning)")
	render     = flag.String("render", "", "print the report of a saved run (the .json -out wrote) instead of running; with -out, write it there")
	modesOrder = []bool{false, true} // plain, then TLS
)

var children proc.Children

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		clientMain(os.Args[2:])
		return
	}
	flag.Parse()
	servers := strings.Split(*serverArg, ",")
	if *quick {
		if !flagSet("servers") {
			servers = []string{"wsloop", "gorilla"}
		}
		*idleConns, *nprocs, *echoConns, *churn, *duration, *rounds = 200, 2, 50, 8, time.Second, 1
		if !flagSet("idle-warmup") {
			*warmup = 16
		}
	}
	scenarios := strings.Split(*scenArg, ",")
	if *render != "" {
		if err := rerender(*render, servers, scenarios); err != nil {
			fatal(err)
		}
		return
	}
	for _, s := range scenarios {
		if !slices.Contains([]string{"idle", "echo", "handshake", "resume"}, s) {
			fatal(fmt.Errorf("unknown scenario %q", s))
		}
	}
	tmp, err := proc.WorkDir("tlsbench", &children)
	if err != nil {
		fatal(err)
	}
	workDir = tmp
	defer os.RemoveAll(tmp)

	fmt.Fprintln(os.Stderr, "tlsbench: building")
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	for _, s := range servers {
		args = append(args, "./servers/"+s)
	}
	if b, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fatal(fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b))
	}
	certFile, keyFile, err := benchcert.Write(tmp)
	if err != nil {
		fatal(err)
	}
	env := runEnv{tmp: tmp, self: self, cert: certFile, key: keyFile}

	var jobs []job
	for _, sc := range scenarios {
		n := *rounds
		if sc == "idle" {
			n = *idleRounds
		}
		for r := range n {
			for _, s := range servers {
				for _, t := range modesOrder {
					if sc == "resume" && !t {
						continue // no TLS, nothing to resume
					}
					jobs = append(jobs, job{scenario: sc, server: s, tls: t, round: r})
				}
			}
		}
	}
	start := time.Now()
	var runs []run
	failed := 0
	for i, j := range jobs {
		r := env.runJob(j)
		fmt.Fprintf(os.Stderr, "tlsbench: [%d/%d] %s\n", i+1, len(jobs), r.summary())
		if r.Failure != "" {
			failed++
		}
		runs = append(runs, r)
	}
	cmd := "go run ./cmd/tlsbench"
	if len(os.Args) > 1 {
		cmd += " " + strings.Join(os.Args[1:], " ")
	}
	sv := saved{Command: cmd, Took: time.Since(start), When: time.Now().UTC(), Setup: thisSetup(), Runs: runs}
	md := report(sv, servers, scenarios)
	if *out != "" {
		if err := mdblock.Write(*out, "<!-- tls:begin -->", "<!-- tls:end -->", md); err != nil {
			fatal(err)
		}
		raw, _ := json.MarshalIndent(sv, "", "  ")
		if err := os.WriteFile(strings.TrimSuffix(*out, filepath.Ext(*out))+"-tls.json", raw, 0o644); err != nil {
			fatal(err)
		}
	}
	fmt.Print(md)
	if failed > 0 {
		fatal(fmt.Errorf("%d of %d runs failed", failed, len(runs)))
	}
}

// saved is what -out writes beside the markdown: the runs and what the
// report needs to be rendered again.
type saved struct {
	Command string        `json:"command"`
	Took    time.Duration `json:"took"`
	When    time.Time     `json:"when"`
	Setup   *setup        `json:"setup"`
	Runs    []run         `json:"runs"`
}

// setup is what the report says of the machine and the sizes.
type setup struct {
	CPU                  string `json:"cpu"`
	Cores                int    `json:"cores"`
	Go                   string `json:"go"`
	ServerCPU, LoadCPUs  string
	IdleConns, EchoConns int
	Size, Churn, Rounds  int
	IdleRounds           int `json:",omitempty"` // 0: one
	IdleWarmup           int `json:",omitempty"` // connections opened and closed before the idle baseline
}

// thisSetup describes this machine and the flags.
func thisSetup() *setup {
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	model := "unknown CPU"
	for _, l := range strings.Split(string(cpu), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	return &setup{CPU: model, Cores: runtime.NumCPU(), Go: runtime.Version(), ServerCPU: *serverCPU, LoadCPUs: *loadCPUs,
		IdleConns: *idleConns, EchoConns: *echoConns, Size: *size, Churn: *churn, Rounds: *rounds,
		IdleRounds: *idleRounds, IdleWarmup: *warmup}
}

func rerender(path string, servers, scenarios []string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var sv saved
	if err := json.Unmarshal(b, &sv); err != nil {
		return err
	}
	if sv.Setup == nil { // saved before the setup was: this machine's, and the flags
		sv.Setup = thisSetup()
	}
	md := report(sv, servers, scenarios)
	fmt.Print(md)
	if *out != "" {
		return mdblock.Write(*out, "<!-- tls:begin -->", "<!-- tls:end -->", md)
	}
	return nil
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// workDir is the run's temporary directory, removed by fatal too.
var workDir string

func fatal(err error) {
	children.KillAll()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	fmt.Fprintln(os.Stderr, "tlsbench:", err)
	os.Exit(1)
}

// clientMain parses a client process's flags (its own flag set).
func clientMain(argv []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	var a clientArgs
	var src string
	fs.StringVar(&a.Addr, "addr", "", "server address")
	fs.StringVar(&a.CA, "ca", "", "server certificate (PEM); empty: plain TCP")
	fs.StringVar(&a.Mode, "mode", "", "idle, echo or handshake")
	fs.IntVar(&a.Conns, "conns", 0, "connections (handshake: in flight)")
	fs.IntVar(&a.Size, "size", 64, "payload bytes")
	fs.DurationVar(&a.Duration, "duration", time.Second, "measured phase")
	fs.StringVar(&src, "src", "", "comma-separated source addresses in 127.0.0.0/8")
	_ = fs.Parse(argv)
	if !strings.HasPrefix(a.Addr, "127.") {
		fmt.Fprintln(os.Stderr, "client: -addr must be in 127.0.0.0/8")
		os.Exit(2)
	}
	if src != "" {
		a.Src = strings.Split(src, ",")
	}
	if err := client(a); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		os.Exit(1)
	}
}

type job struct {
	scenario, server string
	tls              bool
	round            int
}

// run is one job's figures.
type run struct {
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	TLS      bool   `json:"tls"`
	Round    int    `json:"round"`
	Conns    int    `json:"conns"`
	RSS0     int64  `json:"rss_before"` // after start (and FreeOSMemory)
	RSSUp    int64  `json:"rss_up"`     // idle: once the connections are up
	RSSFreed int64  `json:"rss_freed"`  // idle: after FreeOSMemory
	// Freed is the server's FREED lines, before and after (goroutines,
	// then runtime.MemStats figures: heap, stack, other, objects, and
	// its threads).
	Freed   []string `json:"freed,omitempty"`
	G0      int      `json:"goroutines_before"` // the server's goroutines after start
	GUp     int      `json:"goroutines_up"`     // idle: once the connections are up
	Done    uint64   `json:"done"`              // echo: messages; handshake: connections; idle: checked
	Resumed uint64   `json:"resumed,omitempty"` // handshake, resume: TLS sessions resumed
	Elapsed float64  `json:"elapsed"`           // s
	CPU     float64  `json:"server_cpu"`        // s over the measured phase
	P50     float64  `json:"p50_ms,omitempty"`
	P99     float64  `json:"p99_ms,omitempty"`
	Neg     string   `json:"negotiated,omitempty"`
	Failure string   `json:"failure,omitempty"`
}

func (r run) mode() string {
	if r.TLS {
		return "wss"
	}
	return "ws"
}

func (r run) summary() string {
	s := fmt.Sprintf("%-9s %-8s %-3s round %d: ", r.Scenario, r.Server, r.mode(), r.Round+1)
	switch r.Scenario {
	case "idle":
		s += fmt.Sprintf("%d conns, %.0f B/conn (%.0f after FreeOSMemory), goroutines %d -> %d", r.Conns, r.perConn(r.RSSUp), r.perConn(r.RSSFreed), r.G0, r.GUp)
	default:
		s += fmt.Sprintf("%.0f/s, %.2f µs server CPU each, p50 %.2f ms", r.rate(), r.cpuPer(), r.P50)
	}
	if r.Neg != "" {
		s += " [" + r.Neg + "]"
	}
	if r.Failure != "" {
		s += "  FAILED: " + strings.Join(strings.Fields(r.Failure), " ")
	}
	return s
}

func (r run) perConn(rss int64) float64 { return float64(rss-r.RSS0) / float64(r.Conns) }
func (r run) rate() float64 {
	if r.Elapsed == 0 {
		return 0
	}
	return float64(r.Done) / r.Elapsed
}
func (r run) cpuPer() float64 {
	if r.Done == 0 {
		return 0
	}
	return r.CPU / float64(r.Done) * 1e6
}

type runEnv struct{ tmp, self, cert, key string }

// srcSeq rotates the clients' source addresses over 127.0.0.2 to
// 127.0.0.254 from job to job, so that one job's TIME_WAIT sockets never
// take the ports the next one binds.
var srcSeq int

func nextSrc(n int) string {
	var a []string
	for range n {
		a = append(a, fmt.Sprintf("127.0.0.%d", 2+srcSeq%253))
		srcSeq++
	}
	return strings.Join(a, ",")
}

func (e runEnv) runJob(j job) (r run) {
	r = run{Scenario: j.scenario, Server: j.server, TLS: j.tls, Round: j.round}
	var failures []string
	failf := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	defer func() { r.Failure = strings.Join(failures, "\n") }()

	sargs := []string{"-addr", "127.0.0.1:0", "-loops", "1"}
	if j.tls {
		sargs = append(sargs, "-tls-cert", e.cert, "-tls-key", e.key)
	}
	srv, err := proc.Start(j.server, proc.Taskset(*serverCPU, filepath.Join(e.tmp, j.server), sargs...), &children, true)
	if err != nil {
		failf("%v", err)
		return r
	}
	addr, err := srv.Expect("READY ", 10*time.Second)
	if err != nil {
		_ = srv.Cmd.Process.Kill()
		failf("%v", err)
		return r
	}
	var clients []*proc.Child
	defer func() {
		for _, c := range clients {
			c.Stdin.Close()
			if c.Wait(30 * time.Second) {
				failf("%s did not exit within 30 s (killed)", c.Name)
			}
		}
		_ = srv.Cmd.Process.Signal(syscall.SIGTERM)
		if srv.Wait(5 * time.Second) {
			failf("%s did not exit within 5 s of SIGTERM (killed)", j.server)
		}
	}()
	time.Sleep(time.Second)
	if j.scenario == "idle" && *warmup > 0 {
		// A warm-up before the baseline: the first connections touch the
		// server's code pages (net/http's, crypto/tls's) and fill the
		// runtime's caches (stacks, spans), a cost paid once per process,
		// not per connection; in the baseline, it stays out of B/conn.
		wargs := []string{"client", "-addr", addr, "-mode", "idle", "-conns", fmt.Sprint(*warmup),
			"-size", fmt.Sprint(*size), "-src", nextSrc(4)}
		if j.tls {
			wargs = append(wargs, "-ca", e.cert)
		}
		w, err := proc.Start("warm-up client", proc.Taskset(*loadCPUs, e.self, wargs...), &children, true)
		if err != nil {
			failf("%v", err)
			return r
		}
		if _, err := w.Expect("CONNECTED ", time.Minute); err != nil {
			failf("%v", err)
		}
		w.Stdin.Close()
		if w.Wait(30 * time.Second) {
			failf("the warm-up client did not exit within 30 s (killed)")
		}
		time.Sleep(time.Second)
	}
	freed := func(g *int) int64 {
		if err := srv.Cmd.Process.Signal(syscall.SIGUSR2); err != nil {
			failf("SIGUSR2: %v", err)
			return 0
		}
		line, err := srv.Expect(mallocs.Freed, 30*time.Second)
		r.Freed = append(r.Freed, line)
		if err != nil {
			failf("%v", err)
			return 0
		}
		_, _ = fmt.Sscan(strings.TrimPrefix(line, mallocs.Freed), g)
		time.Sleep(200 * time.Millisecond)
		rss, _, err := proc.Status(srv.Pid())
		if err != nil {
			failf("%v", err)
		}
		return rss
	}
	r.RSS0 = freed(&r.G0)

	procs, conns := 1, 0
	switch j.scenario {
	case "idle":
		procs, conns = *nprocs, *idleConns
	case "echo":
		conns = *echoConns
	case "handshake", "resume":
		conns = *churn
	}
	r.Conns = conns
	for p := range procs {
		n := conns / procs
		if p < conns%procs {
			n++
		}
		cargs := []string{"client", "-addr", addr, "-mode", j.scenario, "-conns", fmt.Sprint(n),
			"-size", fmt.Sprint(*size), "-duration", duration.String(), "-src", nextSrc(4)}
		if j.tls {
			cargs = append(cargs, "-ca", e.cert)
		}
		c, err := proc.Start(fmt.Sprintf("client %d", p), proc.Taskset(*loadCPUs, e.self, cargs...), &children, true)
		if err != nil {
			failf("%v", err)
			return r
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		if _, err := c.Expect("CONNECTED ", 3*time.Minute); err != nil {
			failf("%v", err)
			return r
		}
	}
	cmd := "GO"
	if j.scenario == "idle" {
		time.Sleep(3 * time.Second)
		if r.RSSUp, _, err = proc.Status(srv.Pid()); err != nil {
			failf("%v", err)
		}
		r.RSSFreed = freed(&r.GUp)
		cmd = "CHECK"
	}
	cpu0, err := proc.CPU(srv.Pid())
	if err != nil {
		failf("%v", err)
		return r
	}
	for _, c := range clients {
		c.Send(cmd)
	}
	var lat hist.Hist
	for _, c := range clients {
		line, err := c.Expect("RESULT ", *duration+3*time.Minute)
		if err != nil {
			failf("%v", err)
			return r
		}
		var res result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			failf("%s: bad RESULT: %v", c.Name, err)
			return r
		}
		if res.Errors > 0 {
			failf("%s: %d errors, the first: %s", c.Name, res.Errors, res.First)
		}
		r.Done += res.Done
		r.Resumed += res.Resumed
		r.Elapsed = max(r.Elapsed, res.Elapsed)
		if r.Neg == "" {
			r.Neg = res.TLS
		}
		lat.Merge(res.Latency)
	}
	cpu1, err := proc.CPU(srv.Pid())
	if err != nil {
		failf("%v", err)
	}
	r.CPU = (cpu1 - cpu0).Seconds()
	if lat.Count() > 0 {
		r.P50, r.P99 = float64(lat.Quantile(0.5))/1e6, float64(lat.Quantile(0.99))/1e6
	}
	if j.scenario == "idle" && r.Done != uint64(conns) {
		failf("%d of %d connections echoed", r.Done, conns)
	}
	if j.scenario != "idle" && r.Done == 0 {
		failf("nothing done")
	}
	return r
}

// report renders the runs as markdown.
func report(sv saved, servers, scenarios []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	runs, su := sv.Runs, sv.Setup
	p("## Run of %s UTC\n\n", sv.When.Format("2006-01-02 15:04"))
	p("`cd benchmarks && %s` on %s, %d cores, %s; %d jobs in %s. Server on CPU %s, clients on CPU %s.", sv.Command, su.CPU, su.Cores, su.Go, len(runs), sv.Took.Round(time.Second), su.ServerCPU, su.LoadCPUs)
	// What each server negotiated (the client offers the same to all; a
	// TLS 1.3 server picks the cipher suite).
	neg := map[string][]string{}
	var negs []string
	for _, s := range servers {
		for _, r := range runs {
			if r.Server == s && r.Neg != "" {
				if neg[r.Neg] == nil {
					negs = append(negs, r.Neg)
				}
				neg[r.Neg] = append(neg[r.Neg], s)
				break
			}
		}
	}
	for i, n := range negs {
		if i == 0 {
			p(" Negotiated (ECDSA P-256 certificate; full handshakes except in the resume scenario):")
		}
		p(" %s with %s", n, strings.Join(neg[n], ", "))
		if i < len(negs)-1 {
			p(";")
		} else {
			p(".")
		}
	}
	p("\n\n")
	get := func(sc, srv string, tls bool) []run {
		var rs []run
		for _, r := range runs {
			if r.Scenario == sc && r.Server == srv && r.TLS == tls && r.Failure == "" {
				rs = append(rs, r)
			}
		}
		return rs
	}
	med := func(rs []run, f func(run) float64) float64 {
		if len(rs) == 0 {
			return 0
		}
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	// label names a server, with the rounds its medians come from when
	// some failed.
	label := func(s string, sets ...[]run) string {
		for _, rs := range sets {
			if len(rs) < su.Rounds {
				return fmt.Sprintf("%s (%d of %d rounds)", s, len(rs), su.Rounds)
			}
		}
		return s
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	for _, sc := range scenarios {
		switch sc {
		case "idle":
			p("### Idle memory: %d connections\n\n", su.IdleConns)
			p("Server VmRSS growth per connection, once they are all up, and after the server returned its free memory (FreeOSMemory); the server's goroutines per connection (runtime.NumGoroutine, after less before, over the connections).")
			if su.IdleWarmup > 0 {
				p(" The baseline is taken after %d connections were opened and closed (code pages and the runtime's caches are then in it).", su.IdleWarmup)
			}
			if su.IdleRounds > 1 {
				p(" Medians of %d rounds.", su.IdleRounds)
			}
			p("\n\n")
			p("| server | ws B/conn | wss B/conn | wss/ws | ws, freed | wss, freed | wss/ws, freed | wss against wsloop's | ws goroutines/conn | wss goroutines/conn |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			wl := med(get(sc, "wsloop", true), func(r run) float64 { return r.perConn(r.RSSFreed) })
			for _, s := range servers {
				pl, tl := get(sc, s, false), get(sc, s, true)
				if len(pl) == 0 || len(tl) == 0 {
					p("| %s | no good run: see the failed runs below |\n", s)
					continue
				}
				up := func(r run) float64 { return r.perConn(r.RSSUp) }
				fr := func(r run) float64 { return r.perConn(r.RSSFreed) }
				gs := func(r run) float64 { return float64(r.GUp-r.G0) / float64(max(r.Conns, 1)) }
				p("| %s | %.0f | %.0f | %s | %.0f | %.0f | %s | %s | %.3f | %.3f |\n", s, med(pl, up), med(tl, up), ratio(med(tl, up), med(pl, up)),
					med(pl, fr), med(tl, fr), ratio(med(tl, fr), med(pl, fr)), ratio(med(tl, fr), wl), med(pl, gs), med(tl, gs))
			}
		case "echo":
			p("\n### Echo, closed loop: %d connections, %d B, one message in flight\n\n", su.EchoConns, su.Size)
			p("Medians of %d rounds (a server with fewer good rounds is marked). Server CPU per message from /proc/PID/stat.\n\n", su.Rounds)
			p("| server | ws msg/s | ws µs CPU/msg | wss msg/s | wss µs CPU/msg | wss p50 ms | wss p99 ms | wss/ws CPU | wss CPU against wsloop's |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			wl := med(get(sc, "wsloop", true), run.cpuPer)
			for _, s := range servers {
				pl, tl := get(sc, s, false), get(sc, s, true)
				if len(pl) == 0 || len(tl) == 0 {
					p("| %s | no good run: see the failed runs below |\n", s)
					continue
				}
				p("| %s | %.0f | %.2f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", label(s, pl, tl), med(pl, run.rate), med(pl, run.cpuPer),
					med(tl, run.rate), med(tl, run.cpuPer), med(tl, func(r run) float64 { return r.P50 }), med(tl, func(r run) float64 { return r.P99 }),
					ratio(med(tl, run.cpuPer), med(pl, run.cpuPer)), ratio(med(tl, run.cpuPer), wl))
			}
		case "handshake":
			p("\n### Connection setup: %d dials in flight, each upgraded and closed\n\n", su.Churn)
			p("Over wss every connection is a full TLS handshake. Medians of %d rounds.\n\n", su.Rounds)
			p("| server | ws conn/s | ws µs CPU/conn | wss conn/s | wss µs CPU/conn | wss p50 ms | wss p99 ms | wss CPU against wsloop's |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
			wl := med(get(sc, "wsloop", true), run.cpuPer)
			for _, s := range servers {
				pl, tl := get(sc, s, false), get(sc, s, true)
				if len(pl) == 0 || len(tl) == 0 {
					p("| %s | no good run: see the failed runs below |\n", s)
					continue
				}
				p("| %s | %.0f | %.1f | %.0f | %.1f | %.2f | %.2f | %s |\n", label(s, pl, tl), med(pl, run.rate), med(pl, run.cpuPer),
					med(tl, run.rate), med(tl, run.cpuPer), med(tl, func(r run) float64 { return r.P50 }), med(tl, func(r run) float64 { return r.P99 }),
					ratio(med(tl, run.cpuPer), wl))
			}
		case "resume":
			p("\n### Connection setup with session resumption: %d dials in flight, each upgraded and closed\n\n", su.Churn)
			p("The client keeps a session cache, as a reconnecting browser does: after each worker's first connection, the handshakes resume (TLS 1.3 PSK with a fresh X25519 exchange; no certificate). Medians of %d rounds.\n\n", su.Rounds)
			p("| server | wss conn/s | wss µs CPU/conn | resumed | wss p50 ms | wss p99 ms | CPU against a full handshake | wss CPU against wsloop's |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
			wl := med(get(sc, "wsloop", true), run.cpuPer)
			for _, s := range servers {
				tl := get(sc, s, true)
				if len(tl) == 0 {
					p("| %s | no good run: see the failed runs below |\n", s)
					continue
				}
				full := med(get("handshake", s, true), run.cpuPer)
				p("| %s | %.0f | %.1f | %.1f%% | %.2f | %.2f | %s | %s |\n", label(s, tl), med(tl, run.rate), med(tl, run.cpuPer),
					med(tl, func(r run) float64 { return 100 * float64(r.Resumed) / max(1, float64(r.Done)) }),
					med(tl, func(r run) float64 { return r.P50 }), med(tl, func(r run) float64 { return r.P99 }),
					ratio(med(tl, run.cpuPer), full), ratio(med(tl, run.cpuPer), wl))
			}
		}
	}
	var failed []string
	for _, r := range runs {
		if r.Failure != "" {
			failed = append(failed, r.summary())
		}
	}
	if len(failed) > 0 {
		p("\nFailed runs (left out of the medians):\n\n")
		for _, f := range failed {
			p("- %s\n", strings.Join(strings.Fields(f), " "))
		}
	}
	return b.String()
}
