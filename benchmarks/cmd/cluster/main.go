// Command cluster measures fan-out across a wsloop cluster on this
// machine: a NATS server (./servers/nats) and -nodes wsloop nodes
// (./servers/wsloop-room -nats URL), one room with -subs subscribers on
// every node and one publisher on the first, against the same load per
// node on a single node without a broker:
//
//	cd benchmarks && go run ./cmd/cluster -out RESULTS.md   # the full run (about 2 minutes)
//	cd benchmarks && go run ./cmd/cluster -quick            # CI smoke test
//
// Each node's subscribers come from one fan-out client process
// (./cmd/fanout) with its own source address; the first holds the
// publisher too and counts the others as subscribers of every publish
// (-peers, -done-to), so that a publish is outstanding until every
// subscriber on every node has it, and its latency runs to the last of
// them. Every message is checked byte for byte, in order, by every
// subscriber. The servers (NATS and the nodes) are pinned to -server-cpu,
// the clients to -load-cpus; server CPU is summed over all of them from
// /proc/PID/stat over the measured phase. The bus traffic comes from the
// NATS server's own monitoring (/varz): messages and bytes in and out.
//
// With -out, the text between <!-- cluster:begin --> and
// <!-- cluster:end --> in the file is replaced with the report, and every
// figure of the run (with each client process's RESULT, and the run's
// setup: machine, commit, flags) goes to a .json beside it, named after it
// (RESULTS.md: RESULTS-cluster.json, as cmd/tlsbench's RESULTS-tls.json;
// RESULTS.json is cmd/bench's), so that
//
//	cd benchmarks && go run ./cmd/cluster -render RESULTS-cluster.json [-out RESULTS.md]
//
// prints (or writes) the same report again from the file.
//
// With -history N it compares instead what keeping a room's history costs,
// in -rounds rounds, each running four setups one after the other (the
// order rotating from round to round), with the same -subs and -inflight:
// the cluster without history (core NATS), the cluster with the room's
// last N messages kept in a JetStream stream (natsbroker.WithHistory: a
// publish goes to the stream, and every node delivers it from there), a
// single node without history and a single node keeping the same history
// locally. NATS runs JetStream in both cluster setups (servers/nats -js,
// its store on disk in the run's temporary directory), the nodes run
// servers/wsloop-room -history N -history-plain: no envelope, so that
// every subscriber gets, and checks, the bytes it gets without history.
// Each round runs the four with two subscribers a node too (but with
// -quick), where a publish's own cost shows, apart from its deliveries.
// The report gives each setup's medians and the ratio of each setup with
// history to the same without; with -out it goes between
// <!-- cluster-history:begin --> and <!-- cluster-history:end -->, and
// the run to FILE-cluster-history.json:
//
//	cd benchmarks && go run ./cmd/cluster -history 100 -subs 2000 -duration 3s -out RESULTS.md   # about 2.5 minutes
//	cd benchmarks && go run ./cmd/cluster -quick -history 100   # CI smoke test
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/mdblock"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

var (
	out       = flag.String("out", "", "markdown file to update between its cluster markers (and FILE-cluster.json beside it); none: print to stdout")
	render    = flag.String("render", "", "print the report of a run saved by -out (its -cluster.json) instead of running; with -out, write it there")
	quick     = flag.Bool("quick", false, "smoke test: 200 subscribers a node, 2 s; fails only on errors")
	nodes     = flag.Int("nodes", 3, "wsloop nodes in the cluster")
	subs      = flag.Int("subs", 15000, "subscribers on each node")
	size      = flag.Int("size", 64, "payload bytes")
	inflight  = flag.Int("inflight", 16, "publishes outstanding")
	duration  = flag.Duration("duration", 10*time.Second, "measured publishing")
	serverCPU = flag.String("server-cpu", "0", "taskset CPU list for NATS and the nodes (empty: no pinning)")
	loadCPUs  = flag.String("load-cpus", "1", "taskset CPU list for the clients (empty: no pinning)")
	history   = flag.Int("history", 0, "compare a room keeping its last N messages (through JetStream on the cluster, locally on one node) with one keeping none, instead of the usual runs (0: the usual runs)")
	rounds    = flag.Int("rounds", 3, "with -history: rounds of the four setups (-quick: 1)")
)

var children proc.Children

func main() {
	flag.Parse()
	if *render != "" {
		if err := rerender(*render, *out, os.Stdout); err != nil {
			fatal(err)
		}
		return
	}
	if *quick {
		*subs, *duration, *rounds = 200, 2*time.Second, 1
	}
	if *nodes < 2 || *subs < 2 || *subs > 19000 {
		fatal(errors.New("need -nodes >= 2 and 2 <= -subs <= 19000 (one client process per node)"))
	}
	if *history < 0 || (*history > 0 && *rounds < 1) {
		fatal(errors.New("need -history >= 0 and, with -history, -rounds >= 1"))
	}
	tmp, err := proc.WorkDir("cluster", &children)
	if err != nil {
		fatal(err)
	}
	workDir = tmp
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "cluster: building")
	build := exec.Command("go", "build", "-o", tmp+string(filepath.Separator), "./servers/nats", "./servers/wsloop-room", "./cmd/fanout")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fatal(fmt.Errorf("build: %w", err))
	}
	bin := func(name string) string { return filepath.Join(tmp, name) }

	sv := &saved{Tool: savedTool, Args: os.Args[1:], Date: time.Now().UTC(), Load: loadAvg(), Machine: runinfo.This(), Tree: runinfo.GitTree(".."), Setup: thisSetup()}
	if *history > 0 {
		sv.Runs = historyRuns(bin)
	}
	// Throughput with -inflight publishes outstanding; latency with one at
	// a time (no queueing behind other publishes), with every subscriber,
	// then with two a node: the time the bus hop adds.
	for _, c := range []struct{ inflight, subs int }{{*inflight, *subs}, {1, *subs}, {1, 2}} {
		if *history > 0 {
			break
		}
		for _, n := range []int{1, *nodes} {
			r, err := run(bin, n, n > 1, c.inflight, c.subs, 0, false)
			if err != nil {
				fatal(fmt.Errorf("%d node(s), %d in flight: %w", n, c.inflight, err))
			}
			sv.Runs = append(sv.Runs, r)
		}
	}
	sv.Took = dur(time.Since(sv.Date))
	md := sv.markdown()
	if *out == "" {
		fmt.Print(md)
		return
	}
	jsonPath := jsonBeside(*out, sv.Setup.History > 0)
	if err := sv.write(jsonPath); err != nil {
		fatal(err)
	}
	begin, end := sv.markers()
	if err := mdblock.Write(*out, begin, end, md); err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "cluster: wrote %s and %s\n", *out, jsonPath)
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

// workDir is the run's temporary directory, removed by fatal too.
var workDir string

func fatal(err error) {
	children.KillAll()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}

// result is one run's figures.
type result struct {
	Nodes         int                `json:"nodes"`
	Inflight      int                `json:"inflight"`
	SubsPerNode   int                `json:"subs_per_node"` // the publisher's connection is one of node 1's
	Subscribers   int                `json:"subscribers"`   // over all nodes
	Publishes     uint64             `json:"publishes"`
	Deliveries    uint64             `json:"deliveries"` // publishes times subscribers
	DurationS     float64            `json:"duration_s"` // the publisher's measured phase
	DeliveredPerS float64            `json:"delivered_per_s"`
	P50us         float64            `json:"p50_us"`
	P99us         float64            `json:"p99_us"`
	PhaseS        float64            `json:"phase_s"`      // wall time the CPU and bus figures span: from just before GO to the last reading
	ServerCPUS    float64            `json:"server_cpu_s"` // NATS and the nodes together
	CPUByProc     map[string]float64 `json:"cpu_s_by_process"`
	RSSByProc     map[string]int64   `json:"rss_by_process"` // bytes, after the run
	Bus           varz               `json:"bus"`            // NATS counters over the measured phase (cluster only)
	// PresencePerS is the bus's messages per second, in and out, with
	// nobody publishing (presence reports), measured for 3 s before GO;
	// BusPresence is that rate times the phase's length.
	PresencePerS [2]float64     `json:"presence_per_s"`
	BusPresence  varz           `json:"bus_presence"`
	Clients      []fanoutResult `json:"clients"` // each client process's RESULT, node 1's (the publisher's) first
	// With -history: the messages the room kept (0: none), the run's
	// round (from 1), and JetStream's counters over the measured phase
	// (the cluster with history).
	History   int  `json:"history,omitempty"`
	Round     int  `json:"round,omitempty"`
	JetStream *jsz `json:"jetstream,omitempty"`
}

// jsz is what the report takes of the NATS server's /jsz?streams=true:
// the messages its streams took in (the sum of their last sequences),
// what they hold, their consumers, and the JetStream API requests
// served. In a result, Taken and the API counts are over the measured
// phase, the rest at its end.
type jsz struct {
	Taken     int64 `json:"taken"`    // messages stored
	Messages  int64 `json:"messages"` // held (the stream's limits drop the oldest)
	Bytes     int64 `json:"bytes"`
	Consumers int   `json:"consumers"`
	APITotal  int64 `json:"api_total"`
	APIErrors int64 `json:"api_errors"`
}

func (v jsz) since(w jsz) jsz {
	v.Taken -= w.Taken
	v.APITotal -= w.APITotal
	v.APIErrors -= w.APIErrors
	return v
}

func getJsz(monitor string) (jsz, error) {
	var raw struct {
		Messages  int64 `json:"messages"`
		Bytes     int64 `json:"bytes"`
		Consumers int   `json:"consumers"`
		API       struct {
			Total  int64 `json:"total"`
			Errors int64 `json:"errors"`
		} `json:"api"`
		Accounts []struct {
			Streams []struct {
				State struct {
					LastSeq int64 `json:"last_seq"`
				} `json:"state"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(monitor + "/jsz?streams=true")
	if err != nil {
		return jsz{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return jsz{}, err
	}
	v := jsz{Messages: raw.Messages, Bytes: raw.Bytes, Consumers: raw.Consumers, APITotal: raw.API.Total, APIErrors: raw.API.Errors}
	for _, a := range raw.Accounts {
		for _, st := range a.Streams {
			v.Taken += st.State.LastSeq
		}
	}
	return v, nil
}

type varz struct {
	InMsgs   int64 `json:"in_msgs"`
	OutMsgs  int64 `json:"out_msgs"`
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
}

func (v varz) minus(w varz) varz {
	return varz{v.InMsgs - w.InMsgs, v.OutMsgs - w.OutMsgs, v.InBytes - w.InBytes, v.OutBytes - w.OutBytes}
}

func getVarz(monitor string) (varz, error) {
	var v varz
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(monitor + "/varz")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

func start(name, cpus, bin string, args ...string) (*proc.Child, error) {
	return proc.Start(name, proc.Taskset(cpus, bin, args...), &children, true)
}

// stop ends a process with SIGTERM, then SIGKILL after 5 s.
func stop(c *proc.Child) {
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	c.Wait(5 * time.Second)
}

// fanoutResult is cmd/fanout's RESULT line (its Result, less the
// compression counters, which a run without -deflate does not set).
type fanoutResult struct {
	Subscribers   int     `json:"subscribers"`
	Size          int     `json:"size"`
	Inflight      int     `json:"inflight"`
	Publishes     uint64  `json:"publishes"`
	Delivered     uint64  `json:"delivered"`
	DurationS     float64 `json:"duration_s"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	PublishesPerS float64 `json:"publishes_per_s"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	MaxUs         float64 `json:"max_us"`
	Errors        uint64  `json:"errors"`
	LoadgenCPUS   float64 `json:"loadgen_cpu_s"`
	Reader        string  `json:"reader"`
	Sent          uint64  `json:"sent,omitempty"`
	NextMin       uint64  `json:"next_min,omitempty"`
	NextMax       uint64  `json:"next_max,omitempty"`
}

// run measures n nodes (with a broker when clustered).
// srcNext is the last octet of the next run's first loopback source
// address: each run dials from addresses of its own, so that the sockets
// an earlier run left in TIME_WAIT (15,000 a process) never leave a run
// without ports.
var srcNext = 2

// hist > 0 makes the room keep its last hist messages, with no envelope
// (servers/wsloop-room -history hist -history-plain): through JetStream
// when clustered; jetStream runs NATS with JetStream (as it must then).
func run(bin func(string) string, n int, clustered bool, inflight, subs, hist int, jetStream bool) (res result, err error) {
	src := srcNext
	srcNext += n
	res = result{Nodes: n, Inflight: inflight, SubsPerNode: subs, History: hist, CPUByProc: map[string]float64{}, RSSByProc: map[string]int64{}}
	var servers []*proc.Child
	var clients []*proc.Child
	defer func() {
		for _, c := range clients {
			if c.Alive() {
				_ = c.Cmd.Process.Kill()
				<-c.Exited
			}
		}
		for _, s := range servers {
			stop(s)
		}
	}()
	var natsURL, monitor string
	if clustered {
		nargs := []string{"-addr", "127.0.0.1:0"}
		if jetStream || hist > 0 {
			nargs = append(nargs, "-js", "-js-dir", workDir)
		}
		ns, err := start("nats", *serverCPU, bin("nats"), nargs...)
		if err != nil {
			return res, err
		}
		servers = append(servers, ns)
		line, err := ns.Expect("READY ", 10*time.Second)
		if err != nil {
			return res, err
		}
		f := strings.Fields(line)
		natsURL, monitor = "nats://"+f[0], f[1]
	}
	var addrs []string
	for i := range n {
		args := []string{"-addr", "127.0.0.1:0", "-loops", "1"}
		if clustered {
			args = append(args, "-nats", natsURL)
		}
		if hist > 0 {
			args = append(args, "-history", fmt.Sprint(hist), "-history-plain")
		}
		s, err := start(fmt.Sprintf("node%d", i+1), *serverCPU, bin("wsloop-room"), args...)
		if err != nil {
			return res, err
		}
		servers = append(servers, s)
		a, err := s.Expect("READY ", 10*time.Second)
		if err != nil {
			return res, err
		}
		addrs = append(addrs, a)
	}
	common := []string{"-size", fmt.Sprint(*size), "-duration", duration.String(), "-inflight", fmt.Sprint(inflight), "-dial-concurrency", "100"}
	// The publisher's process (node 1), then one subscriber-only process a node.
	pub, err := start("fanout1", *loadCPUs, bin("fanout"), append(common, "-addr", addrs[0], "-subs", fmt.Sprint(subs-1),
		"-src", fmt.Sprintf("127.0.0.%d", src), "-peers", fmt.Sprint(n-1))...)
	if err != nil {
		return res, err
	}
	clients = append(clients, pub)
	listen := ""
	if n > 1 {
		if listen, err = pub.Expect("LISTEN ", 10*time.Second); err != nil {
			return res, err
		}
	}
	for i := 1; i < n; i++ {
		c, err := start(fmt.Sprintf("fanout%d", i+1), *loadCPUs, bin("fanout"), append(common, "-addr", addrs[i], "-subs", fmt.Sprint(subs),
			"-src", fmt.Sprintf("127.0.0.%d", src+i), "-done-to", listen)...)
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		if _, err := c.Expect("CONNECTED ", 5*time.Minute); err != nil {
			return res, err
		}
	}
	fmt.Fprintf(os.Stderr, "cluster: %d node(s), %d subscribers each, connected; measuring %v with %d in flight\n", n, subs, *duration, inflight)
	var v0 varz
	var j0 jsz
	var presencePerS [2]float64 // in, out
	if clustered {
		// The bus's traffic with nobody publishing: presence reports.
		va, err := getVarz(monitor)
		if err != nil {
			return res, err
		}
		time.Sleep(3 * time.Second)
		vb, err := getVarz(monitor)
		if err != nil {
			return res, err
		}
		d := vb.minus(va)
		presencePerS = [2]float64{float64(d.InMsgs) / 3, float64(d.OutMsgs) / 3}
	}
	cpu0, err := cpuOf(servers)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	if clustered {
		if v0, err = getVarz(monitor); err != nil {
			return res, err
		}
		if hist > 0 {
			if j0, err = getJsz(monitor); err != nil {
				return res, err
			}
		}
	}
	for _, c := range clients[1:] {
		c.Send("GO")
	}
	pub.Send("GO")
	line, err := pub.Expect("RESULT ", *duration+5*time.Minute)
	if err != nil {
		return res, err
	}
	cpu1, err := cpuOf(servers)
	if err != nil {
		return res, err
	}
	if clustered {
		v1, err := getVarz(monitor)
		if err != nil {
			return res, err
		}
		res.Bus = v1.minus(v0)
		if hist > 0 {
			j1, err := getJsz(monitor)
			if err != nil {
				return res, err
			}
			d := j1.since(j0)
			res.JetStream = &d
		}
	}
	res.PhaseS = time.Since(t0).Seconds()
	if clustered {
		res.PresencePerS = presencePerS
		res.BusPresence = varz{InMsgs: int64(presencePerS[0]*res.PhaseS + 0.5), OutMsgs: int64(presencePerS[1]*res.PhaseS + 0.5)}
	}
	var pr fanoutResult
	if err := json.Unmarshal([]byte(line), &pr); err != nil {
		return res, err
	}
	if pr.Errors > 0 {
		return res, fmt.Errorf("publisher's process: %d errors:\n%s", pr.Errors, pub.Tail())
	}
	res.Subscribers = pr.Subscribers
	res.Clients = append(res.Clients, pr)
	for i, c := range clients[1:] {
		c.Send("STOP")
		l, err := c.Expect("RESULT ", time.Minute)
		if err != nil {
			return res, err
		}
		var r fanoutResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return res, err
		}
		if r.Errors > 0 || r.NextMin != pr.Sent || r.NextMax != pr.Sent {
			return res, fmt.Errorf("node %d's subscribers: %d errors, received %d to %d of %d messages:\n%s", i+2, r.Errors, r.NextMin, r.NextMax, pr.Sent, c.Tail())
		}
		res.Subscribers += r.Subscribers
		res.Clients = append(res.Clients, r)
	}
	for name, c := range cpu1 {
		res.CPUByProc[name] = (c - cpu0[name]).Seconds()
		res.ServerCPUS += res.CPUByProc[name]
	}
	for _, s := range servers {
		if rss, err := proc.RSS(s.Pid()); err == nil {
			res.RSSByProc[s.Name] = rss
		}
	}
	res.Publishes = pr.Publishes
	res.Deliveries = pr.Publishes * uint64(res.Subscribers)
	res.DurationS = pr.DurationS
	res.DeliveredPerS = float64(res.Deliveries) / pr.DurationS
	res.P50us, res.P99us = pr.P50us, pr.P99us
	fmt.Fprintf(os.Stderr, "cluster: %d node(s), history %d, %d in flight: %.0f deliveries/s, %.3f µs server CPU per delivery, p50 %.1f ms, p99 %.1f ms\n",
		n, hist, inflight, res.DeliveredPerS, res.ServerCPUS*1e6/float64(res.Deliveries), res.P50us/1e3, res.P99us/1e3)
	return res, nil
}

func cpuOf(ps []*proc.Child) (map[string]time.Duration, error) {
	m := map[string]time.Duration{}
	for _, p := range ps {
		c, err := proc.CPU(p.Pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		m[p.Name] = c
	}
	return m, nil
}

const beginMarker, endMarker = "<!-- cluster:begin -->", "<!-- cluster:end -->"

// The markers of -history's report.
const histBeginMarker, histEndMarker = "<!-- cluster-history:begin -->", "<!-- cluster-history:end -->"

// markers are the markers sv's report goes between.
func (sv *saved) markers() (begin, end string) {
	if sv.Setup.History > 0 {
		return histBeginMarker, histEndMarker
	}
	return beginMarker, endMarker
}

// histSetup is one of -history's four setups.
type histSetup struct {
	nodes int
	hist  int
}

// historyRuns runs -history's four setups in -rounds rounds, the order
// rotating by one each round: with -subs subscribers a node, then (but
// with -quick) with two, where a publish's own cost is not drowned in
// its deliveries.
func historyRuns(bin func(string) string) []result {
	setups := []histSetup{{*nodes, 0}, {*nodes, *history}, {1, 0}, {1, *history}}
	counts := []int{*subs}
	if !*quick && *subs != 2 {
		counts = append(counts, 2)
	}
	var runs []result
	for round := range *rounds {
		for _, n := range counts {
			for i := range setups {
				su := setups[(i+round)%len(setups)]
				fmt.Fprintf(os.Stderr, "cluster: round %d of %d: %d node(s), %d subscribers each, history %d\n", round+1, *rounds, su.nodes, n, su.hist)
				r, err := run(bin, su.nodes, su.nodes > 1, *inflight, n, su.hist, su.nodes > 1)
				if err != nil {
					fatal(fmt.Errorf("round %d, %d node(s), %d subscribers each, history %d: %w", round+1, su.nodes, n, su.hist, err))
				}
				r.Round = round + 1
				runs = append(runs, r)
			}
		}
	}
	return runs
}
