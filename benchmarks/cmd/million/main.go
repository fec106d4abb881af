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
//	cd benchmarks && go run ./cmd/million -quick                                  # 20,000 viewers, 3 nodes, 2 clients, every phase, under a minute
//	cd benchmarks && go run ./cmd/million -conns 200000                           # every phase at the default heartbeat, about 15 minutes
//	cd benchmarks && go run ./cmd/million -conns 1000000 -ping 2m -idle 5m -window 1   # a million (RESULTS.md says what 2 cores cannot carry at that size)
//
// One port, shared with SO_REUSEPORT (engine.WithReusePort), rather than
// a port a node: the viewers dial one address, as browsers behind one
// name do, and the kernel spreads them over the nodes (by a hash of the
// address pair, so a node's share varies by a few standard deviations:
// perNodeSlack). Every viewer joins the one room; a publish on any node
// reaches the viewers on every node through NATS (broker/nats).
//
// It ramps to -conns, printing a progress line every 2 s (connections,
// rate, the nodes' total RSS), holds every viewer idle for -hold (the
// heartbeats' CPU, nodes and clients apart; no viewer may be evicted),
// then publishes -broadcasts messages, one at a time, from a publisher
// connection of its own (dialled first, so that its node is known), and
// times each from the write to the last viewer's copy (p50,
// p99, max over every viewer); every viewer checks every message (bytes,
// sequence, so no duplicates or gaps) and every viewer must have each.
// Memory: the nodes' RSS in all, per connection over their baseline at
// READY; the kernel's (Slab, SUnreclaim, sockstat) before and after the
// ramp, per connection; the clients' RSS apart.
// Then -danmaku: one message a second, at most -window not yet at every
// viewer (the publisher waits past that), the lag of each kept; then the
// faults (-faults): with messages going on, SIGKILL a node that is not the
// publisher's (its viewers reconnect with jittered backoff; every other
// viewer must get every message), then NATS killed and started again
// -nats-down later (viewers may then miss what the bus lost: counted, with
// how long delivery across nodes stopped, from the nodes' BUS lines). Nodes
// and clients run with GOMAXPROCS=1 (-gomaxprocs): dozens of processes
// share the machine's cores. The nodes print their counters every 2 s
// (STATS), and the report adds up their drops and refusals.
//
// It refuses to start when the machine lacks memory, descriptors or ports
// for -conns (preflight), stops by itself after -timeout, and kills every
// process it started (each in a process group of its own) on every exit.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsloop/wsloop/engine"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

var (
	quick      = flag.Bool("quick", false, "20,000 viewers over 3 nodes and 2 client processes, heartbeats every 2 s, 10 s of danmaku and the faults, bounded by 3 minutes")
	conns      = flag.Int("conns", 20000, "viewers in all")
	nodes      = flag.Int("nodes", 0, "node processes (0: enough for 18,000 viewers each)")
	clients    = flag.Int("clients", 0, "client processes (0: enough for 19,500 viewers each)")
	srcsFlag   = flag.Int("srcs", 4, "loopback source addresses a client process")
	broadcasts = flag.Int("broadcasts", 5, "messages published to all viewers, one at a time")
	size       = flag.Int("size", 64, "message bytes")
	dialConc   = flag.Int("dial-concurrency", 0, "dials in flight a client process (0: 2,048 over all of them, 8 to 256 each)")
	timeout    = flag.Duration("timeout", 45*time.Minute, "bound on the whole run: past it every process is killed and the run fails")
	awaitLimit = flag.Duration("await", 2*time.Minute, "bound on one message reaching every viewer")
	hold       = flag.Duration("hold", 10*time.Minute, "hold every viewer idle this long after the ramp, before the broadcasts, measuring the heartbeats' CPU (past the idle timeout, a viewer that does not answer pings is evicted)")
	danmakuD   = flag.Duration("danmaku", time.Minute, "after the broadcasts, one message a second into the room for this long (0: none)")
	faultsOn   = flag.Bool("faults", true, "after the danmaku, with one message a second going on: SIGKILL one node (its viewers reconnect to the others) and restart NATS")
	reconnLim  = flag.Duration("reconnect-limit", 2*time.Minute, "faults: bound on the killed node's viewers all being back")
	tick       = flag.Duration("tick", 0, "the nodes' timing wheel tick (0: the engine's default, 100 ms)")
	procs      = flag.Int("gomaxprocs", 1, "GOMAXPROCS of every node and client process (0: Go's default, the machine's cores): dozens of processes share this machine's cores")
	window     = flag.Int("window", 2, "danmaku and faults: messages published and not yet at every viewer, at most (past it the next publish waits)")
	busPing    = flag.Duration("bus-ping", 0, "the nodes' NATS client ping interval (0: the broker's, 2 s; it gives up after two unanswered)")
	natsDown   = flag.Duration("nats-down", 3*time.Second, "the faults phase keeps NATS down this long before starting it again")
	jitter     = flag.Duration("jitter", 2*time.Second, "viewers' reconnect backoff: the first attempt after a uniform random delay below this, doubling on each failure")
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

	cMessages  = flag.Int("messages", 0, "client mode: messages the run may publish in all")
	cReconnect = flag.Bool("reconnect", false, "client mode: viewers whose node dies reconnect (-jitter)")
	cDialLimit = flag.Duration("dial-limit", 0, "client mode: bound on dialling every viewer")
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
	Danmaku                                       time.Duration
	Faults                                        bool
	Jitter                                        time.Duration
	NATSDown                                      time.Duration
	Window                                        int
	Tick                                          time.Duration
	BusPing                                       time.Duration
	ReconnectLimit                                time.Duration
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
		Hold: *hold, Ping: *pingIv, Idle: *idleTO, Danmaku: *danmakuD, Faults: *faultsOn, Jitter: *jitter, NATSDown: *natsDown, Window: *window, Tick: *tick, BusPing: *busPing, ReconnectLimit: *reconnLim}
	if *quick {
		// Pings every 2 s, eviction after 5 s of silence, held 8 s: every
		// viewer is pinged and must answer to stay. Three nodes, so that
		// one can die and the other two hold its viewers.
		p.Conns, p.Nodes, p.Clients, p.Timeout = 20000, 3, 2, 3*time.Minute
		p.Hold, p.Ping, p.Idle, p.Danmaku = 8*time.Second, 2*time.Second, 5*time.Second, 10*time.Second
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
	if res != nil && res.Viewers > 0 {
		// What was measured before a failure is kept: a run at scale
		// takes half an hour.
		if err != nil {
			fmt.Println("million: the run FAILED (see the end); what it measured until then:")
			res.Losses = r.losses()
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
	if err != nil {
		fmt.Fprintln(os.Stderr, "million:", err)
		os.Exit(1)
	}
}

// describe says what the plan starts and what it should cost.
func (p plan) describe() string {
	est := int64(p.Conns)*(kernelPerConn+nodePerConn+clientPerConn) + int64(p.Nodes+p.Clients+1)*perProcess
	return fmt.Sprintf("%d viewers: NATS, %d nodes (about %d viewers each), %d client processes (up to %d each, %d source addresses each); about %.1f GiB of memory; held %v; %d broadcasts of %d bytes; danmaku for %v; faults %v; bounded by %v",
		p.Conns, p.Nodes, ceilDiv(p.Conns, p.Nodes), p.Clients, ceilDiv(p.Conns, p.Clients), p.Srcs, gib(est), p.Hold, p.Broadcasts, p.Size, p.Danmaku, p.Faults, p.Timeout)
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
	case p.Size < 16 || p.Size > 64<<10:
		return fmt.Errorf("-size %d: between 16 and 65536 (a viewer back from a reconnect reads where it is from the first 16)", p.Size)
	case p.Faults && p.Nodes < 2:
		return fmt.Errorf("-faults needs 2 nodes or more (one is killed)")
	case p.Window < 1 || p.Window > 60:
		return fmt.Errorf("-window %d: between 1 and 60", p.Window)
	case p.NATSDown < 0 || p.NATSDown > 30*time.Second:
		return fmt.Errorf("-nats-down %v: at most 30 s", p.NATSDown)
	case p.Danmaku < 0 || p.Danmaku > time.Hour:
		return fmt.Errorf("-danmaku %v: at most an hour", p.Danmaku)
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

	bin      func(name string) string // the built binaries
	nats     *proc.Child
	natsAddr string
	natsURL  string
	nodes    []*proc.Child
	pubNode  int // the publisher's node (index)
	killed   int // the node the faults killed (index), or -1
	cls      []*client_
	bus      []busEvent     // the nodes' BUS lines
	busErrs  map[string]int // the nodes' BUSERR lines: why a broker lost NATS
	stats    []engine.Stats // each node's last STATS line
	gaps     atomic.Bool    // the viewers may miss messages (the bus is restarted): the publisher's window is off
}

// start starts bin in a process group of its own, which killAll kills
// whole; the child is also killed if this process dies first.
func (r *runner) start(name, bin string, args ...string) (*proc.Child, error) {
	cmd := exec.Command(bin, args...)
	if *procs > 0 {
		cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", *procs))
	}
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
	Plan           plan          `json:"plan"`
	Date           time.Time     `json:"date"`
	Viewers        int           `json:"viewers"` // connected at the end of the ramp
	RampS          float64       `json:"ramp_s"`  // from DIAL to the last client's CONNECTED
	RampPerS       float64       `json:"ramp_per_s"`
	PeakPerS       float64       `json:"peak_per_s"` // over one progress interval
	NodeConns      []int         `json:"node_conns"` // sockets each node holds (its open descriptors less its baseline)
	NodeBaseRSS    []int64       `json:"node_base_rss"`
	NodeRSS        []int64       `json:"node_rss"`
	NATSRSS        int64         `json:"nats_rss"`
	ClientBase     []int64       `json:"client_base_rss"`
	ClientRSS      []int64       `json:"client_rss"`
	ClientCPUS     float64       `json:"client_cpu_s"`
	KernelBefore   kmem          `json:"kernel_before"`
	KernelAfter    kmem          `json:"kernel_after"`
	PublisherNode  int           `json:"publisher_node"` // 1-based
	HoldS          float64       `json:"hold_s"`
	HoldCPUS       float64       `json:"hold_cpu_s"` // the nodes', over the hold
	NodePSS        int64         `json:"node_pss"`   // the nodes' PSS in all, with every viewer connected: their shared binary counted once
	FloorCPU       float64       `json:"floor_cpu"`  // the nodes' CPU a second before any viewer (timers, runtime, bus), in all
	HoldClientCPUS float64       `json:"hold_client_cpu_s"`
	HoldPongs      int64         `json:"hold_pongs"`
	Broadcasts     []message     `json:"broadcasts"`
	All            summary       `json:"all"`              // over every delivery of every broadcast
	BroadcastCPUus float64       `json:"broadcast_cpu_us"` // the nodes' CPU a delivery, heartbeats set apart
	Danmaku        []message     `json:"danmaku"`
	DanmakuS       float64       `json:"danmaku_s"`
	DanmakuCPUus   float64       `json:"danmaku_cpu_us"`
	Faults         faultResult   `json:"faults"`
	Losses         string        `json:"losses"`  // the nodes' drop and refusal counters at the end
	Retries        int64         `json:"retries"` // dial attempts repeated in the ramp (reset, refused, no 101 within 10 s)
	Errors         int64         `json:"errors"`
	Pongs          int64         `json:"pongs"` // pings the viewers answered
	Took           time.Duration `json:"took_ns"`
}

// faultResult is what the faults phase measured.
type faultResult struct {
	KilledNode         int       `json:"killed_node"` // 1-based
	KilledViewers      int       `json:"killed_viewers"`
	Dropped            int64     `json:"dropped"`
	ReconnectS         float64   `json:"reconnect_s"` // from the SIGKILL until every dropped viewer was back (1 s resolution)
	PeakReconnectsPerS float64   `json:"peak_reconnects_per_s"`
	MissedWhileAway    int64     `json:"missed_while_away"` // deliveries the dropped viewers missed while away
	NATSDownS          float64   `json:"nats_down_s"`       // from its SIGKILL until the new one was ready
	BusBackS           float64   `json:"bus_back_s"`        // from its SIGKILL until every live node's broker was connected again (50 ms polling)
	LostMessages       int       `json:"lost_messages"`     // messages some viewer missed while the bus was down
	LostOnBus          int       `json:"lost_deliveries"`
	LastLostT          float64   `json:"last_lost_s"`   // the last such message, published this long after the bus was killed
	FirstWholeT        float64   `json:"first_whole_s"` // the first message every viewer had again, published this long after
	Messages           []message `json:"messages"`
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

// client_ is a client process seen from the orchestrator: its last UP
// line kept, CONNECTED (or its end before it) sent to events.
type client_ struct {
	*proc.Child
	n  int
	mu sync.Mutex
	up up
}

func (c *client_) last() up {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.up
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
			var u up
			if json.Unmarshal([]byte(l[len("UP "):]), &u) == nil {
				cl.mu.Lock()
				cl.up = u
				cl.mu.Unlock()
			}
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

func rssOf(ps []*proc.Child) (total int64) {
	for _, p := range ps {
		if rss, err := proc.RSS(p.Pid()); err == nil {
			total += rss
		}
	}
	return total
}

func orDefault(d time.Duration, def string) string {
	if d == 0 {
		return def
	}
	return d.String()
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
	t0 := monoNow()
	if _, err := p.Write(p.buf); err != nil {
		return 0, fmt.Errorf("publish %d: %w", seq, err)
	}
	return t0, nil
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
	fmt.Fprintf(&b, "ramp: %.1f s, %.0f upgrades/s on average, %.0f/s at the peak (%v intervals), %d dials repeated; viewers a node: %v\n",
		r.RampS, r.RampPerS, r.PeakPerS, progressIv, r.Retries, r.NodeConns)
	fmt.Fprintf(&b, "nodes' RSS: %s in all (%s NATS apart); baseline %s a node; %.0f B a viewer over the baselines; PSS %s in all (the binary's shared pages counted once, not once a node)\n",
		mib(nodeRSS), mib(r.NATSRSS), mib(nodeBase/int64(len(r.NodeBaseRSS))), float64(nodeRSS-nodeBase)/n, mib(r.NodePSS))
	kb, ka := r.KernelBefore, r.KernelAfter
	fmt.Fprintf(&b, "kernel: Slab %+.1f MiB (%.0f B a viewer, both its sockets), SUnreclaim %+.1f MiB (%.0f B a viewer); TCP sockets in use %d -> %d, socket buffers %+d pages\n",
		float64(ka.SlabKB-kb.SlabKB)/1024, float64(ka.SlabKB-kb.SlabKB)*1024/n, float64(ka.SUnreclaimKB-kb.SUnreclaimKB)/1024,
		float64(ka.SUnreclaimKB-kb.SUnreclaimKB)*1024/n, kb.TCPInuse, ka.TCPInuse, ka.TCPMemPages-kb.TCPMemPages)
	fmt.Fprintf(&b, "clients (apart): RSS %s in all, %.0f B a viewer over their baselines, %.1f s CPU\n",
		mib(cRSS), float64(cRSS-cBase)/n, r.ClientCPUS)
	fmt.Fprintf(&b, "heartbeats: %d viewers held %.0f s with pings every %v, %d pings answered (%.0f/s), none evicted; the nodes' CPU %.1f ms/s in all, %.2f µs a ping and its pong (the clients' apart: %.1f ms/s, %.2f µs)\n",
		r.Viewers, r.HoldS, orDefault(p.Ping, "25s"), r.HoldPongs, float64(r.HoldPongs)/max(r.HoldS, 1e-9), 1e3*r.idleCPU(), 1e6*r.HoldCPUS/max(float64(r.HoldPongs), 1),
		1e3*r.HoldClientCPUS/max(r.HoldS, 1e-9), 1e6*r.HoldClientCPUS/max(float64(r.HoldPongs), 1))
	fmt.Fprintf(&b, "heartbeats, the nodes' floor set apart: %.1f ms/s with no viewer (%d processes' timers, runtime and bus), so %.2f µs a ping and its pong over it\n",
		1e3*r.FloorCPU, p.Nodes, 1e6*(r.HoldCPUS-r.FloorCPU*r.HoldS)/max(float64(r.HoldPongs), 1))
	for _, x := range r.Broadcasts {
		fmt.Fprintf(&b, "broadcast %d: %d viewers, every copy checked; publish to viewer p50 %.1f ms, p99 %.1f ms, last %.1f ms\n",
			x.Seq, x.Delivered, x.P50ms, x.P99ms, x.MaxMs)
	}
	fmt.Fprintf(&b, "all %d broadcasts: p50 %.1f ms, p99 %.1f ms, max %.1f ms; the nodes' CPU %.3f µs a delivery (heartbeats set apart)\n",
		len(r.Broadcasts), r.All.P50ms, r.All.P99ms, r.All.MaxMs, r.BroadcastCPUus)
	if len(r.Danmaku) > 0 {
		first, last := lagTrend(r.Danmaku)
		verdict := "steady"
		if last > 2*first+50 {
			verdict = "GREW"
		}
		var worst message
		for _, m := range r.Danmaku {
			if m.MaxMs > worst.MaxMs {
				worst = m
			}
		}
		ds := r.Danmaku
		rate := 1.0
		if k := len(ds); k > 1 {
			rate = float64(k-1) / (float64(ds[k-1].T0-ds[0].T0) / 1e9)
		}
		fmt.Fprintf(&b, "danmaku: %d messages over %.0f s, published at %.2f a second (one asked, at most %d not yet at every viewer), %.0f deliveries/s, every copy checked; lag p99 %.1f ms over the first third, %.1f ms over the last (%s); worst message %d: p50 %.1f, p99 %.1f, last %.1f ms; the nodes' CPU %.3f µs a delivery\n",
			len(ds), r.DanmakuS, rate, p.Window, rate*float64(r.Viewers), first, last, verdict, worst.Seq, worst.P50ms, worst.P99ms, worst.MaxMs, r.DanmakuCPUus)
		fmt.Fprintf(&b, "danmaku lag p99 a message, ms:")
		for _, m := range r.Danmaku {
			fmt.Fprintf(&b, " %.0f", m.P99ms)
		}
		b.WriteString("\n")
	}
	if f := r.Faults; f.KilledNode > 0 {
		var steady hist.Hist
		for _, m := range f.Messages {
			if m.Phase == "kill" {
				steady.Record(int64(m.P99ms * 1e6))
			}
		}
		fmt.Fprintf(&b, "faults: SIGKILL node%d (%d viewers): %d dropped, all back on the other nodes %.0f s later (1 s resolution), at most %.0f reconnects/s; they missed %d deliveries while away; every other viewer had every message (lag p99 at most %.1f ms meanwhile)\n",
			f.KilledNode, f.KilledViewers, f.Dropped, f.ReconnectS, f.PeakReconnectsPerS, f.MissedWhileAway, float64(steady.Max())/1e6)
		fmt.Fprintf(&b, "faults: NATS killed and started again %.2f s later; every node's broker back on it %.2f s after the kill, so delivery across nodes stopped for %.2f s after NATS was up; %d messages missed by the viewers on other nodes (%d deliveries), the last published %+.1f s from the kill; every viewer had every message again from one published %.1f s after it (messages one a second)\n",
			f.NATSDownS, f.BusBackS, f.BusBackS-f.NATSDownS, f.LostMessages, f.LostOnBus, f.LastLostT, f.FirstWholeT)
	}
	fmt.Fprintf(&b, "%s\n", r.Losses)
	fmt.Fprintf(&b, "errors %d; run took %.1f s\n", r.Errors, r.Took.Seconds())
	return b.String()
}
