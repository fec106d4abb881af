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
// <!-- cluster:end --> in the file is replaced with the report.
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
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/mdblock"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

var (
	out       = flag.String("out", "", "markdown file to update between its cluster markers; none: print to stdout")
	quick     = flag.Bool("quick", false, "smoke test: 200 subscribers a node, 2 s; fails only on errors")
	nodes     = flag.Int("nodes", 3, "wsloop nodes in the cluster")
	subs      = flag.Int("subs", 15000, "subscribers on each node")
	size      = flag.Int("size", 64, "payload bytes")
	inflight  = flag.Int("inflight", 16, "publishes outstanding")
	duration  = flag.Duration("duration", 10*time.Second, "measured publishing")
	serverCPU = flag.String("server-cpu", "0", "taskset CPU list for NATS and the nodes (empty: no pinning)")
	loadCPUs  = flag.String("load-cpus", "1", "taskset CPU list for the clients (empty: no pinning)")
)

var children proc.Children

func main() {
	flag.Parse()
	if *quick {
		*subs, *duration = 200, 2*time.Second
	}
	if *nodes < 2 || *subs < 2 || *subs > 19000 {
		fatal(errors.New("need -nodes >= 2 and 2 <= -subs <= 19000 (one client process per node)"))
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

	// Throughput with -inflight publishes outstanding; latency with one at
	// a time (no queueing behind other publishes), with every subscriber,
	// then with two a node: the time the bus hop adds.
	var rs []result
	for _, c := range []struct{ inflight, subs int }{{*inflight, *subs}, {1, *subs}, {1, 2}} {
		for _, n := range []int{1, *nodes} {
			r, err := run(bin, n, n > 1, c.inflight, c.subs)
			if err != nil {
				fatal(fmt.Errorf("%d node(s), %d in flight: %w", n, c.inflight, err))
			}
			rs = append(rs, r)
		}
	}
	md := report(rs)
	if *out == "" {
		fmt.Print(md)
		return
	}
	if err := writeBetweenMarkers(*out, md); err != nil {
		fatal(err)
	}
	fmt.Fprintln(os.Stderr, "cluster: wrote", *out)
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
	Nodes         int
	Inflight      int
	Subscribers   int // over all nodes
	Publishes     uint64
	Deliveries    uint64
	DurationS     float64
	DeliveredPerS float64
	P50us, P99us  float64
	ServerCPUS    float64            // NATS and the nodes together
	CPUByProc     map[string]float64 // seconds
	RSSByProc     map[string]int64   // bytes, after the run
	Bus           varz               // NATS counters over the measured phase (cluster only)
	BusPresence   varz               // of which presence reports: their rate before GO times the phase's length
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

// fanoutResult is the part of cmd/fanout's RESULT line used here.
type fanoutResult struct {
	Subscribers int     `json:"subscribers"`
	Publishes   uint64  `json:"publishes"`
	Delivered   uint64  `json:"delivered"`
	DurationS   float64 `json:"duration_s"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	Errors      uint64  `json:"errors"`
	Sent        uint64  `json:"sent"`
	NextMin     uint64  `json:"next_min"`
	NextMax     uint64  `json:"next_max"`
}

// run measures n nodes (with a broker when clustered).
func run(bin func(string) string, n int, clustered bool, inflight, subs int) (res result, err error) {
	res = result{Nodes: n, Inflight: inflight, CPUByProc: map[string]float64{}, RSSByProc: map[string]int64{}}
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
		ns, err := start("nats", *serverCPU, bin("nats"), "-addr", "127.0.0.1:0")
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
		"-src", "127.0.0.2", "-peers", fmt.Sprint(n-1))...)
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
			"-src", fmt.Sprintf("127.0.0.%d", i+2), "-done-to", listen)...)
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
		secs := time.Since(t0).Seconds()
		res.BusPresence = varz{InMsgs: int64(presencePerS[0]*secs + 0.5), OutMsgs: int64(presencePerS[1]*secs + 0.5)}
	}
	var pr fanoutResult
	if err := json.Unmarshal([]byte(line), &pr); err != nil {
		return res, err
	}
	if pr.Errors > 0 {
		return res, fmt.Errorf("publisher's process: %d errors:\n%s", pr.Errors, pub.Tail())
	}
	res.Subscribers = pr.Subscribers
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
	fmt.Fprintf(os.Stderr, "cluster: %d node(s), %d in flight: %.0f deliveries/s, %.3f µs server CPU per delivery, p50 %.1f ms, p99 %.1f ms\n",
		n, inflight, res.DeliveredPerS, res.ServerCPUS*1e6/float64(res.Deliveries), res.P50us/1e3, res.P99us/1e3)
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

func report(rs []result) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "### Cluster fan-out over NATS\n\n")
	fmt.Fprintf(&b, "`cd benchmarks && go run ./cmd/cluster -out RESULTS.md`, run of %s, %s, %d CPUs, %s; servers (NATS and every node, one event loop each) pinned to CPU %q, clients to %q. ",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), runtime.Version(), *serverCPU, *loadCPUs)
	fmt.Fprintf(&b, "One room, %d B binary messages, one publisher on node 1 publishing for %v; %d subscribers on every node (the publisher's connection is one of node 1's), one client process a node. "+
		"A publish is done when every subscriber of every node has it, and its latency runs from its send to that moment. Every message was checked byte for byte and in order by every subscriber. "+
		"Server CPU is summed over NATS and every node. The single node gets the same load per node: one process here holds at most about 19,900 sockets. "+
		"With one publish in flight and thousands of subscribers, latency is the time this machine's one client core takes to read every copy (a loopback read costs microseconds); "+
		"the rows with two subscribers a node show what crossing the bus adds.\n\n",
		*size, *duration, *subs)
	fmt.Fprintf(&b, "| setup | subscribers | in flight | deliveries/s | publishes/s | server CPU per delivery | latency p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		name := "single node, no broker"
		if r.Nodes > 1 {
			name = fmt.Sprintf("%d nodes + NATS", r.Nodes)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %.0f | %.3f µs | %.2f ms | %.2f ms |\n", name, r.Subscribers, r.Inflight, r.DeliveredPerS,
			float64(r.Publishes)/r.DurationS, r.ServerCPUS*1e6/float64(r.Deliveries), r.P50us/1e3, r.P99us/1e3)
	}
	// The bus's traffic: every cluster run's figures; the one with the
	// most publishes gives the figure per publish (presence reports,
	// subtracted at the rate measured on the idle bus, weigh little there).
	var most result
	for _, r := range rs {
		if r.Nodes == 1 {
			continue
		}
		if r.Publishes > most.Publishes {
			most = r
		}
		var parts []string
		for _, name := range append([]string{"nats"}, nodeNames(r.Nodes)...) {
			parts = append(parts, fmt.Sprintf("%s %.2f s (RSS %.0f MiB)", name, r.CPUByProc[name], float64(r.RSSByProc[name])/(1<<20)))
		}
		fmt.Fprintf(&b, "\n%d subscribers, %d in flight, %d publishes: server CPU over the measured phase by process: %s; NATS (its /varz): %d messages in, %d out (%d and %d bytes), of which presence reports about %d in and %d out.\n",
			r.Subscribers, r.Inflight, r.Publishes, strings.Join(parts, ", "), r.Bus.InMsgs, r.Bus.OutMsgs, r.Bus.InBytes, r.Bus.OutBytes, r.BusPresence.InMsgs, r.BusPresence.OutMsgs)
	}
	if most.Publishes > 0 {
		p := float64(most.Publishes)
		bus, pres := most.Bus, most.BusPresence
		fmt.Fprintf(&b, "\n**Bus traffic per publish: %.3f messages in and %.3f out** (%.0f and %.0f bytes; %d publishes, %d nodes interested besides the publisher's; presence reports subtracted).",
			float64(bus.InMsgs-pres.InMsgs)/p, float64(bus.OutMsgs-pres.OutMsgs)/p, float64(bus.InBytes)/p, float64(bus.OutBytes)/p, most.Publishes, most.Nodes-1)
	}
	fmt.Fprintf(&b, " The bus carries one message per publish in, and one out per interested node, whatever the number of subscribers (%d B of payload plus one opcode byte each).\n", *size)
	return b.String()
}

func nodeNames(n int) []string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("node%d", i+1))
	}
	return s
}

const beginMarker, endMarker = "<!-- cluster:begin -->", "<!-- cluster:end -->"

func writeBetweenMarkers(path, body string) error {
	return mdblock.Write(path, beginMarker, endMarker, body)
}
