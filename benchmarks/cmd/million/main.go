// Command million holds many live viewers of one room on this machine
// and measures a broadcast to all of them (issue 25: one million live
// viewers on one machine). It starts a NATS server (./servers/nats),
// -nodes wsloop nodes (./servers/wsloop-room -reuseport -heartbeat -nats
// URL) sharing one port, and -clients client processes (this binary with
// -client), each holding its share of the viewers on one epoll loop
// (internal/wsload's viewers: no goroutine per connection, pings answered
// with pongs), dialling from source addresses of its own (127.1.C.1 to
// 127.1.C.-srcs) so that no address pair runs out of ports:
//
//	cd benchmarks && go run ./cmd/million -quick            # 20,000 viewers, 2 nodes, 2 clients, under 2 minutes
//	cd benchmarks && go run ./cmd/million -conns 1000000    # the full run (later: see the issue)
//
// One port, shared with SO_REUSEPORT (engine.WithReusePort), rather than
// a port a node: the viewers dial one address, as browsers behind one
// name do, and the kernel spreads them over the nodes (by a hash of the
// address pair, so a node's share varies by a few standard deviations:
// perNodeSlack). Every viewer joins the one room; a publish on any node
// reaches the viewers on every node through NATS (broker/nats).
//
// It ramps to -conns, printing a progress line every 2 s (connections,
// rate, the nodes' total RSS), then publishes -broadcasts messages, one at
// a time, from a publisher connection of its own (landing on one of the
// nodes), and times each from the write to the last viewer's copy (p50,
// p99, max over every viewer); every viewer checks every message (bytes,
// sequence, so no duplicates or gaps) and every viewer must have each.
// Memory: the nodes' RSS in all, per connection over their baseline at
// READY; the kernel's (Slab, SUnreclaim, sockstat) before and after the
// ramp, per connection; the clients' RSS apart.
//
// It refuses to start when the machine lacks memory, descriptors or ports
// for -conns (preflight), stops by itself after -timeout, and kills every
// process it started (each in a process group of its own) on every exit.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

var (
	quick      = flag.Bool("quick", false, "20,000 viewers over 2 nodes and 2 client processes, bounded by 2 minutes")
	conns      = flag.Int("conns", 20000, "viewers in all")
	nodes      = flag.Int("nodes", 0, "node processes (0: enough for 18,000 viewers each)")
	clients    = flag.Int("clients", 0, "client processes (0: enough for 19,500 viewers each)")
	srcsFlag   = flag.Int("srcs", 4, "loopback source addresses a client process")
	broadcasts = flag.Int("broadcasts", 5, "messages published to all viewers, one at a time")
	size       = flag.Int("size", 64, "message bytes")
	dialConc   = flag.Int("dial-concurrency", 256, "dials in flight a client process")
	timeout    = flag.Duration("timeout", 30*time.Minute, "bound on the whole run: past it every process is killed and the run fails")
	awaitLimit = flag.Duration("await", 30*time.Second, "bound on one broadcast reaching every viewer")
	hold       = flag.Duration("hold", 0, "hold every viewer idle this long after the ramp, before the broadcasts (past the idle timeout, a viewer that does not answer pings is evicted)")
	pingIv     = flag.Duration("ping", 0, "the nodes' ping interval (0: the engine's default, 25 s)")
	idleTO     = flag.Duration("idle", 0, "the nodes' idle timeout (0: the engine's default, 60 s)")
	dry        = flag.Bool("plan", false, "print the run's shape and whether this machine can hold it, and start nothing")
	jsonOut    = flag.String("json", "", "also write the run's figures to this file")

	// Client mode (the orchestrator re-executes this binary).
	client = flag.Bool("client", false, "client mode (started by the orchestrator)")
	cAddr  = flag.String("addr", "", "client mode: the nodes' address")
	cSrcs  = flag.String("src", "", "client mode: source addresses, comma-separated")
	cN     = flag.Int("n", 0, "client mode: viewers")
	seed   = flag.Uint64("seed", 1, "payload seed (client mode: the orchestrator's)")
)

// publisherID is the Payload id of the publisher's messages.
const publisherID = 0x7fffffff

const (
	maxConns   = 1_000_000
	nodeShare  = 18000 // viewers a node, by default
	clientCap  = 19500 // viewers a client process at most
	progressIv = 2 * time.Second
)

// plan is a run's shape.
type plan struct {
	Conns, Nodes, Clients, Srcs, Broadcasts, Size int
	Timeout                                       time.Duration
	Hold, Ping, Idle                              time.Duration
}

func main() {
	flag.Parse()
	if *client {
		if err := clientMain(); err != nil {
			fmt.Fprintln(os.Stderr, "million client:", err)
			os.Exit(1)
		}
		return
	}
	p := plan{Conns: *conns, Nodes: *nodes, Clients: *clients, Srcs: *srcsFlag, Broadcasts: *broadcasts, Size: *size, Timeout: *timeout,
		Hold: *hold, Ping: *pingIv, Idle: *idleTO}
	if *quick {
		// Held past the default idle timeout (60 s): every viewer is
		// pinged at least once and must have answered to stay.
		p.Conns, p.Nodes, p.Clients, p.Timeout, p.Hold = 20000, 2, 2, 2*time.Minute, 65*time.Second
	}
	if p.Nodes == 0 {
		p.Nodes = ceilDiv(p.Conns, nodeShare)
	}
	if p.Clients == 0 {
		p.Clients = ceilDiv(p.Conns, clientCap)
	}
	if *dry {
		fmt.Println(p.describe())
		if err := p.validate(); err != nil {
			fmt.Fprintln(os.Stderr, "million:", err)
			os.Exit(1)
		}
		if err := preflight(p); err != nil {
			fmt.Fprintln(os.Stderr, "million:", err)
			os.Exit(1)
		}
		fmt.Println("this machine can hold it")
		return
	}
	r := &runner{logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "million: "+f+"\n", a...) }}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		r.abort(fmt.Sprintf("%v", s))
	}()
	res, err := r.run(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "million:", err)
		os.Exit(1)
	}
	fmt.Print(res.text())
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "million:", err)
			os.Exit(1)
		}
	}
}

// describe says what the plan starts and what it should cost.
func (p plan) describe() string {
	est := int64(p.Conns)*(kernelPerConn+nodePerConn+clientPerConn) + int64(p.Nodes+p.Clients+1)*perProcess
	return fmt.Sprintf("%d viewers: NATS, %d nodes (about %d viewers each), %d client processes (up to %d each, %d source addresses each); about %.1f GiB of memory; %d broadcasts of %d bytes; held %v; bounded by %v",
		p.Conns, p.Nodes, ceilDiv(p.Conns, p.Nodes), p.Clients, ceilDiv(p.Conns, p.Clients), p.Srcs, gib(est), p.Broadcasts, p.Size, p.Hold, p.Timeout)
}

// validate checks the plan's bounds.
func (p plan) validate() error {
	switch {
	case p.Conns < 1 || p.Conns > maxConns:
		return fmt.Errorf("-conns %d: between 1 and %d", p.Conns, maxConns)
	case p.Nodes < 1 || p.Clients < 1 || p.Srcs < 1 || p.Srcs > 250 || p.Clients > 250:
		return fmt.Errorf("need at least one node, one client and one source address (at most 250 clients and 250 addresses each)")
	case ceilDiv(p.Conns, p.Clients) > clientCap:
		return fmt.Errorf("%d viewers a client process: at most %d (more -clients)", ceilDiv(p.Conns, p.Clients), clientCap)
	case p.Broadcasts < 1 || p.Broadcasts > 1000:
		return fmt.Errorf("-broadcasts %d: between 1 and 1000", p.Broadcasts)
	case p.Size < 1 || p.Size > 64<<10:
		return fmt.Errorf("-size %d: between 1 and 65536", p.Size)
	}
	return nil
}

// runner runs one plan and owns the processes it starts.
type runner struct {
	logf     func(string, ...any)
	mu       sync.Mutex
	children []*proc.Child
	tracked  proc.Children
	aborted  atomic.Value // string: why the run was cut short
}

// start starts bin in a process group of its own, which killAll kills
// whole; the child is also killed if this process dies first.
func (r *runner) start(name, bin string, args ...string) (*proc.Child, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c, err := proc.Start(name, cmd, &r.tracked, true)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.children = append(r.children, c)
	r.mu.Unlock()
	return c, nil
}

// killAll kills every process group started, and reaps them.
func (r *runner) killAll() {
	r.mu.Lock()
	cs := append([]*proc.Child(nil), r.children...)
	r.mu.Unlock()
	for _, c := range cs {
		_ = syscall.Kill(-c.Pid(), syscall.SIGKILL)
	}
	for _, c := range cs {
		c.Wait(5 * time.Second)
	}
}

// abort ends the run from outside (time bound, signal): every process is
// killed, so that whatever the run waits for fails at once.
func (r *runner) abort(why string) {
	r.aborted.CompareAndSwap(nil, why)
	r.logf("%s: killing every process", why)
	r.killAll()
}

// result is a run's figures.
type result struct {
	Plan         plan          `json:"plan"`
	Date         time.Time     `json:"date"`
	Viewers      int           `json:"viewers"` // connected at the end of the ramp
	RampS        float64       `json:"ramp_s"`  // from DIAL to the last client's CONNECTED
	RampPerS     float64       `json:"ramp_per_s"`
	PeakPerS     float64       `json:"peak_per_s"` // over one progress interval
	NodeConns    []int         `json:"node_conns"` // sockets each node holds (its open descriptors less its baseline)
	NodeBaseRSS  []int64       `json:"node_base_rss"`
	NodeRSS      []int64       `json:"node_rss"`
	NATSRSS      int64         `json:"nats_rss"`
	ClientBase   []int64       `json:"client_base_rss"`
	ClientRSS    []int64       `json:"client_rss"`
	ClientCPUS   float64       `json:"client_cpu_s"`
	KernelBefore kmem          `json:"kernel_before"`
	KernelAfter  kmem          `json:"kernel_after"`
	Broadcasts   []broadcast   `json:"broadcasts"`
	All          summary       `json:"all"` // over every delivery of every broadcast
	Errors       int64         `json:"errors"`
	Pongs        int64         `json:"pongs"` // pings the viewers answered
	Took         time.Duration `json:"took_ns"`
}

type broadcast struct {
	Seq       int `json:"seq"`
	Delivered int `json:"delivered"`
	summary
}

type summary struct {
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

func summarize(h *hist.Hist) summary {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	return summary{ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max())}
}

func sum(v []int64) (s int64) {
	for _, x := range v {
		s += x
	}
	return s
}

// run runs plan p: preflight, build, processes, ramp, broadcasts,
// figures. Every process it started is dead when it returns.
func (r *runner) run(p plan) (res *result, err error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := preflight(p); err != nil {
		return nil, err
	}
	res = &result{Plan: p, Date: time.Now().UTC()}
	t0 := time.Now()
	bound := time.AfterFunc(p.Timeout, func() { r.abort(fmt.Sprintf("time bound of %v reached", p.Timeout)) })
	defer bound.Stop()
	defer r.killAll()
	defer func() {
		if why, ok := r.aborted.Load().(string); ok && err != nil {
			err = fmt.Errorf("%s: %w", why, err)
		}
	}()

	tmp, err := os.MkdirTemp("", "wsloop-million-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	r.logf("building")
	const mod = "github.com/wsloop/wsloop/benchmarks/"
	build := exec.Command("go", "build", "-o", tmp+string(filepath.Separator), mod+"servers/nats", mod+"servers/wsloop-room", mod+"cmd/million")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	bin := func(name string) string { return filepath.Join(tmp, name) }

	// NATS, then the nodes on one port.
	ns, err := r.start("nats", bin("nats"), "-addr", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	line, err := ns.Expect("READY ", 10*time.Second)
	if err != nil {
		return nil, err
	}
	natsURL := "nats://" + strings.Fields(line)[0]
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var nodeProcs []*proc.Child
	var nodeFDs []int
	for i := range p.Nodes {
		n, err := r.start(fmt.Sprintf("node%d", i+1), bin("wsloop-room"), "-addr", addr, "-loops", "1", "-reuseport", "-heartbeat",
			"-ping", p.Ping.String(), "-idle", p.Idle.String(), "-nats", natsURL)
		if err != nil {
			return nil, err
		}
		if _, err := n.Expect("READY ", 10*time.Second); err != nil {
			return nil, err
		}
		nodeProcs = append(nodeProcs, n)
	}
	// Let the nodes' brokers settle (subscriptions on the bus) before
	// anyone joins; then their baselines.
	time.Sleep(500 * time.Millisecond)
	if res.NodeBaseRSS, nodeFDs, err = rssFDs(nodeProcs); err != nil {
		return nil, err
	}

	// The client processes, each with its share and its source addresses.
	var cls []*client_
	events := make(chan clientEvent, 2*p.Clients)
	for i := range p.Clients {
		n := p.Conns / p.Clients
		if i < p.Conns%p.Clients {
			n++
		}
		var srcs []string
		for j := range p.Srcs {
			srcs = append(srcs, fmt.Sprintf("127.1.%d.%d", i+1, j+1))
		}
		c, err := r.start(fmt.Sprintf("client%d", i+1), bin("million"), "-client", "-addr", addr, "-src", strings.Join(srcs, ","),
			"-n", fmt.Sprint(n), "-size", fmt.Sprint(p.Size), "-seed", fmt.Sprint(*seed), "-broadcasts", fmt.Sprint(p.Broadcasts),
			"-dial-concurrency", fmt.Sprint(*dialConc), "-await", awaitLimit.String())
		if err != nil {
			return nil, err
		}
		if _, err := c.Expect("READY", 10*time.Second); err != nil {
			return nil, err
		}
		rss, err := proc.RSS(c.Pid())
		if err != nil {
			return nil, err
		}
		res.ClientBase = append(res.ClientBase, rss)
		cls = append(cls, newClient(c, n, events))
	}
	if res.KernelBefore, err = readKmem(); err != nil {
		return nil, err
	}

	// The ramp.
	r.logf("%d nodes on %s, %d client processes: ramping to %d viewers", p.Nodes, addr, p.Clients, p.Conns)
	ramp0 := time.Now()
	for _, c := range cls {
		c.Send("DIAL")
	}
	tick := time.NewTicker(progressIv)
	last, lastT := int64(0), ramp0
	pending := len(cls)
	var conn []connected
	progress := func(up int64) {
		now := time.Now()
		rate := float64(up-last) / now.Sub(lastT).Seconds()
		res.PeakPerS = max(res.PeakPerS, rate)
		last, lastT = up, now
		r.logf("%7d/%d viewers  %6.0f/s  nodes' RSS %s", up, p.Conns, rate, mib(rssOf(nodeProcs)))
	}
	for pending > 0 {
		select {
		case <-tick.C:
			up := int64(0)
			for _, c := range cls {
				up += c.up.Load()
			}
			progress(up)
		case ev := <-events:
			if ev.err != nil {
				return nil, ev.err
			}
			var c connected
			if err := json.Unmarshal([]byte(ev.rest), &c); err != nil {
				return nil, err
			}
			conn = append(conn, c)
			pending--
		}
	}
	tick.Stop()
	res.RampS = time.Since(ramp0).Seconds()
	for _, c := range conn {
		res.Viewers += c.Open
		res.Errors += c.Errors
	}
	progress(int64(res.Viewers))
	res.RampPerS = float64(res.Viewers) / res.RampS
	r.logf("%d viewers connected in %.1f s (%.0f/s), %d errors", res.Viewers, res.RampS, res.RampPerS, res.Errors)
	if res.Viewers != p.Conns {
		return res, fmt.Errorf("%d of %d viewers connected (%d errors); %s", res.Viewers, p.Conns, res.Errors, errSamples(cls))
	}
	// Memory with every viewer connected and idle.
	time.Sleep(time.Second)
	if res.KernelAfter, err = readKmem(); err != nil {
		return nil, err
	}
	var fds []int
	if res.NodeRSS, fds, err = rssFDs(nodeProcs); err != nil {
		return nil, err
	}
	for i := range fds {
		res.NodeConns = append(res.NodeConns, fds[i]-nodeFDs[i])
	}
	res.NATSRSS, _ = proc.RSS(ns.Pid())
	var clientProcs []*proc.Child
	for _, c := range cls {
		clientProcs = append(clientProcs, c.Child)
	}
	if res.ClientRSS, _, err = rssFDs(clientProcs); err != nil {
		return nil, err
	}

	if p.Hold > 0 {
		r.logf("holding %d viewers for %v (pings at the nodes' interval)", res.Viewers, p.Hold)
		for end := time.Now().Add(p.Hold); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			if _, ok := r.aborted.Load().(string); ok {
				return res, errors.New("stopped while holding the viewers")
			}
			for _, c := range cls {
				if !c.Alive() {
					return res, fmt.Errorf("%s ended while holding (%v):\n%s", c.Name, c.Err, c.Tail())
				}
			}
		}
	}

	// The broadcasts.
	pub, err := dialPublisher(addr, p.Size)
	if err != nil {
		return nil, err
	}
	defer pub.close()
	var all hist.Hist
	for seq := range p.Broadcasts {
		time.Sleep(200 * time.Millisecond)
		t0, err := pub.publish(seq)
		if err != nil {
			return res, err
		}
		for _, c := range cls {
			c.Send(fmt.Sprintf("AWAIT %d %d", seq, t0))
		}
		var h hist.Hist
		b := broadcast{Seq: seq}
		for _, c := range cls {
			l, err := c.Expect("GOT ", *awaitLimit+30*time.Second)
			if err != nil {
				return res, err
			}
			var g got
			if err := json.Unmarshal([]byte(l), &g); err != nil {
				return res, err
			}
			if g.Got < c.n {
				return res, fmt.Errorf("broadcast %d: %s's viewers: %d of %d have it (%d open); %s", seq, c.Name, g.Got, c.n, g.Open, errSamples(cls))
			}
			b.Delivered += g.Got
			h.Merge(&g.Lat)
		}
		if err := pub.await(seq, *awaitLimit); err != nil {
			return res, err
		}
		b.summary = summarize(&h)
		all.Merge(&h)
		res.Broadcasts = append(res.Broadcasts, b)
		r.logf("broadcast %d: %d viewers, p50 %.1f ms, p99 %.1f ms, last %.1f ms", seq, b.Delivered, b.P50ms, b.P99ms, b.MaxMs)
	}
	res.All = summarize(&all)

	// Every client's own count of errors, then the end.
	for _, c := range cls {
		c.Send("STOP")
		l, err := c.Expect("RESULT ", 30*time.Second)
		if err != nil {
			return res, err
		}
		var cr clientResult
		if err := json.Unmarshal([]byte(l), &cr); err != nil {
			return res, err
		}
		res.ClientCPUS += cr.CPUS
		res.Pongs += cr.Pongs
		if cr.Errors > 0 || cr.Open != c.n {
			return res, fmt.Errorf("%s: %d errors, %d of %d viewers open at the end: %s", c.Name, cr.Errors, cr.Open, c.n, strings.Join(cr.Samples, "; "))
		}
	}
	res.Took = time.Since(t0)
	return res, nil
}

// client_ is a client process seen from the orchestrator: its UP lines
// kept as a count, CONNECTED (or its end before it) sent to events.
type client_ struct {
	*proc.Child
	n  int
	up atomic.Int64
}

type clientEvent struct {
	rest string
	err  error
}

func newClient(c *proc.Child, n int, events chan<- clientEvent) *client_ {
	cl := &client_{Child: c, n: n}
	ups, conn := c.Divert("UP ", 16), c.Divert("CONNECTED ", 1)
	go func() {
		for l := range ups {
			v, _ := strconv.ParseInt(l[len("UP "):], 10, 64)
			cl.up.Store(v)
		}
	}()
	go func() {
		if l, ok := <-conn; ok {
			events <- clientEvent{rest: l[len("CONNECTED "):]}
			return
		}
		<-c.Exited
		events <- clientEvent{err: fmt.Errorf("%s ended while dialling (%v):\n%s", c.Name, c.Err, c.Tail())}
	}()
	return cl
}

// errSamples is what the clients logged last, for an error message.
func errSamples(cls []*client_) string {
	var b strings.Builder
	for _, c := range cls {
		if t := c.Tail(); t != "" {
			fmt.Fprintf(&b, "\n%s:\n%s", c.Name, t)
		}
	}
	return b.String()
}

func rssOf(ps []*proc.Child) (total int64) {
	for _, p := range ps {
		if rss, err := proc.RSS(p.Pid()); err == nil {
			total += rss
		}
	}
	return total
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rssFDs returns the processes' RSS and open descriptors.
func rssFDs(ps []*proc.Child) (rss []int64, fds []int, err error) {
	for _, p := range ps {
		r, err := proc.RSS(p.Pid())
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		n, err := proc.FDs(p.Pid())
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		rss, fds = append(rss, r), append(fds, n)
	}
	return rss, fds, nil
}

// publisher is the orchestrator's own WebSocket connection, a member of
// the room like the viewers (the room server echoes to the sender too):
// it sends message seq of Payload id publisherID and checks its own copy.
type publisher struct {
	conn net.Conn
	pl   *wsload.Payload
	mu   sync.Mutex // writes: publishes and the reader's pongs
	got  chan int
	errc chan error
	buf  []byte
}

func (p *publisher) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn.Write(b)
}

func dialPublisher(addr string, size int) (*publisher, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, "ws://"+addr+"/")
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	p := &publisher{conn: conn, pl: wsload.NewPayload(size, *seed), got: make(chan int, 1024), errc: make(chan error, 1)}
	var rd io.Reader = conn
	if br != nil {
		rd = br
	}
	go func() {
		want := make([]byte, size)
		for seq := 0; ; seq++ {
			data, _, err := wsutil.ReadServerData(struct {
				io.Reader
				io.Writer
			}{rd, p})
			if err != nil {
				p.errc <- err
				return
			}
			p.pl.Fill(want, publisherID, uint64(seq))
			if string(data) != string(want) {
				p.errc <- fmt.Errorf("publisher's own copy of message %d differs", seq)
				return
			}
			p.got <- seq
		}
	}()
	return p, nil
}

// publish sends message seq and returns the CLOCK_MONOTONIC time, in ns,
// just before the write.
func (p *publisher) publish(seq int) (int64, error) {
	var mask [4]byte
	p.buf = p.pl.AppendFrame(p.buf[:0], ws.OpBinary, mask, publisherID, uint64(seq))
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	if _, err := p.Write(p.buf); err != nil {
		return 0, fmt.Errorf("publish %d: %w", seq, err)
	}
	return ts.Nano(), nil
}

// await waits for the publisher's own copy of message seq.
func (p *publisher) await(seq int, d time.Duration) error {
	select {
	case s := <-p.got:
		if s != seq {
			return fmt.Errorf("publisher got message %d, expected %d", s, seq)
		}
		return nil
	case err := <-p.errc:
		return fmt.Errorf("publisher: %w", err)
	case <-time.After(d):
		return fmt.Errorf("publisher: no copy of message %d within %v", seq, d)
	}
}

func (p *publisher) close() { _ = p.conn.Close() }

// text is the run's report.
func (r *result) text() string {
	var b strings.Builder
	p := r.Plan
	n := float64(r.Viewers)
	nodeRSS, nodeBase := sum(r.NodeRSS), sum(r.NodeBaseRSS)
	cRSS, cBase := sum(r.ClientRSS), sum(r.ClientBase)
	fmt.Fprintf(&b, "million: %d viewers of one room over %d nodes (SO_REUSEPORT, one port; NATS between them) and %d client processes, %d-byte messages\n",
		r.Viewers, p.Nodes, p.Clients, p.Size)
	fmt.Fprintf(&b, "ramp: %.1f s, %.0f upgrades/s on average, %.0f/s at the peak (%v intervals); viewers a node: %v\n",
		r.RampS, r.RampPerS, r.PeakPerS, progressIv, r.NodeConns)
	fmt.Fprintf(&b, "nodes' RSS: %s in all (%s NATS apart); baseline %s a node; %.0f B a viewer over the baselines\n",
		mib(nodeRSS), mib(r.NATSRSS), mib(nodeBase/int64(len(r.NodeBaseRSS))), float64(nodeRSS-nodeBase)/n)
	kb, ka := r.KernelBefore, r.KernelAfter
	fmt.Fprintf(&b, "kernel: Slab %+.1f MiB (%.0f B a viewer, both its sockets), SUnreclaim %+.1f MiB (%.0f B a viewer); TCP sockets in use %d -> %d, socket buffers %+d pages\n",
		float64(ka.SlabKB-kb.SlabKB)/1024, float64(ka.SlabKB-kb.SlabKB)*1024/n, float64(ka.SUnreclaimKB-kb.SUnreclaimKB)/1024,
		float64(ka.SUnreclaimKB-kb.SUnreclaimKB)*1024/n, kb.TCPInuse, ka.TCPInuse, ka.TCPMemPages-kb.TCPMemPages)
	fmt.Fprintf(&b, "clients (apart): RSS %s in all, %.0f B a viewer over their baselines, %.1f s CPU\n",
		mib(cRSS), float64(cRSS-cBase)/n, r.ClientCPUS)
	for _, x := range r.Broadcasts {
		fmt.Fprintf(&b, "broadcast %d: %d viewers, every copy checked; publish to viewer p50 %.1f ms, p99 %.1f ms, last %.1f ms\n",
			x.Seq, x.Delivered, x.P50ms, x.P99ms, x.MaxMs)
	}
	fmt.Fprintf(&b, "heartbeats: viewers held %v after the ramp, %d pings answered, none evicted (every viewer open to the end)\n", p.Hold, r.Pongs)
	fmt.Fprintf(&b, "all %d broadcasts: p50 %.1f ms, p99 %.1f ms, max %.1f ms; errors %d; run took %.1f s\n",
		len(r.Broadcasts), r.All.P50ms, r.All.P99ms, r.All.MaxMs, r.Errors, r.Took.Seconds())
	return b.String()
}
