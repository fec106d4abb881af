package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/engine"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

// faultMsgs bounds the messages of the faults phase (one a second).
const faultMsgs = 150

// messages is the number of messages a run publishes in all: the
// broadcasts, the danmaku, the faults phase at most.
func (p plan) messages() int {
	n := p.Broadcasts + int(p.Danmaku/time.Second)
	if p.Faults {
		n += faultMsgs
	}
	return n
}

// run runs plan p: preflight, build, processes, ramp, heartbeats,
// broadcasts, danmaku, faults, figures. Every process it started is dead
// when it returns.
func (r *runner) run(p plan) (res *result, err error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if err := preflight(p); err != nil {
		return nil, err
	}
	res = &result{Plan: p, Date: time.Now().UTC()}
	r.killed = -1
	r.stats = make([]engine.Stats, p.Nodes)
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
	// Static binaries (no cgo): each of the dozens of processes then maps
	// no libc, whose pages (1.2 MiB a process) RSS would count each time.
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	r.bin = func(name string) string { return filepath.Join(tmp, name) }

	// NATS, then the nodes on one port.
	if err := r.startNATS("127.0.0.1:0"); err != nil {
		return nil, err
	}
	port, err := proc.FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := range p.Nodes {
		n, err := r.start(fmt.Sprintf("node%d", i+1), r.bin("wsloop-room"), "-addr", addr, "-loops", "1", "-reuseport", "-heartbeat",
			"-ping", p.Ping.String(), "-idle", p.Idle.String(), "-nats", r.natsURL, "-bus", "-bus-ping", p.BusPing.String(), "-tick", p.Tick.String(), "-stats", "2s")
		if err != nil {
			return nil, err
		}
		r.watchBus(i, n)
		if _, err := n.Expect("READY ", 10*time.Second); err != nil {
			return nil, err
		}
		r.nodes = append(r.nodes, n)
	}
	// Let the nodes' brokers settle (subscriptions on the bus) before
	// anyone joins; then their baselines.
	time.Sleep(500 * time.Millisecond)
	var nodeFDs []int
	if res.NodeBaseRSS, nodeFDs, err = rssFDs(r.nodes); err != nil {
		return nil, err
	}
	// The nodes' CPU with no viewer: timers, the runtime, the bus.
	c0, w0 := r.nodesCPU(), time.Now()
	time.Sleep(2 * time.Second)
	res.FloorCPU = (r.nodesCPU() - c0).Seconds() / time.Since(w0).Seconds()

	// The publisher first, alone, so that its node is known (the one
	// whose descriptors grew by one): the faults phase kills another.
	pub, err := dialPublisher(addr, p.Size)
	if err != nil {
		return nil, err
	}
	defer pub.close()
	r.pubNode = -1
	for end := time.Now().Add(5 * time.Second); r.pubNode < 0 && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for i, n := range r.nodes {
			if k, err := proc.FDs(n.Pid()); err == nil && k == nodeFDs[i]+1 {
				r.pubNode = i
			}
		}
	}
	if r.pubNode < 0 {
		return nil, errors.New("the publisher's node not found (no node's descriptors grew by one)")
	}
	nodeFDs[r.pubNode]++
	res.PublisherNode = r.pubNode + 1

	// The client processes, each with its share and its source addresses.
	dialLimit := max(2*time.Minute, time.Duration(p.Conns/2000)*time.Second)
	conc := *dialConc
	if conc <= 0 {
		conc = min(256, max(8, 2048/p.Clients)) // in flight over all: within the nodes' backlogs
	}
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
		c, err := r.start(fmt.Sprintf("client%d", i+1), r.bin("million"), "-client", "-addr", addr, "-src", strings.Join(srcs, ","),
			"-n", fmt.Sprint(n), "-size", fmt.Sprint(p.Size), "-seed", fmt.Sprint(*seed), "-messages", fmt.Sprint(p.messages()),
			"-dial-concurrency", fmt.Sprint(conc), "-dial-limit", dialLimit.String(), "-await", awaitLimit.String(),
			fmt.Sprintf("-reconnect=%v", p.Faults), "-jitter", p.Jitter.String())
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
		r.cls = append(r.cls, newClient(c, n, events))
	}
	if res.KernelBefore, err = readKmem(); err != nil {
		return nil, err
	}

	// The ramp.
	r.logf("%d nodes on %s, %d client processes: ramping to %d viewers", p.Nodes, addr, p.Clients, p.Conns)
	ramp0 := time.Now()
	for _, c := range r.cls {
		c.Send("DIAL")
	}
	tick := time.NewTicker(progressIv)
	last, lastT := int64(0), ramp0
	pending := len(r.cls)
	var conn []connected
	progress := func(up int64) {
		now := time.Now()
		rate := float64(up-last) / now.Sub(lastT).Seconds()
		res.PeakPerS = max(res.PeakPerS, rate)
		last, lastT = up, now
		r.logf("%7d/%d viewers  %6.0f/s  nodes' RSS %s", up, p.Conns, rate, mib(rssOf(r.nodes)))
	}
	for pending > 0 {
		select {
		case <-tick.C:
			progress(r.sum().Upgraded)
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
		res.Retries += c.Retries
	}
	progress(int64(res.Viewers))
	res.RampPerS = float64(res.Viewers) / res.RampS
	r.logf("%d viewers connected in %.1f s (%.0f/s), %d errors", res.Viewers, res.RampS, res.RampPerS, res.Errors)
	if res.Viewers != p.Conns {
		return res, fmt.Errorf("%d of %d viewers connected (%d errors); %s", res.Viewers, p.Conns, res.Errors, r.errSamples())
	}
	// Memory with every viewer connected and idle.
	time.Sleep(time.Second)
	if res.KernelAfter, err = readKmem(); err != nil {
		return nil, err
	}
	var fds []int
	if res.NodeRSS, fds, err = rssFDs(r.nodes); err != nil {
		return nil, err
	}
	for i := range fds {
		res.NodeConns = append(res.NodeConns, fds[i]-nodeFDs[i])
	}
	for _, n := range r.nodes {
		pss, err := proc.PSS(n.Pid())
		if err != nil {
			return nil, err
		}
		res.NodePSS += pss
	}
	res.NATSRSS, _ = proc.RSS(r.nats.Pid())
	var clientProcs []*proc.Child
	for _, c := range r.cls {
		clientProcs = append(clientProcs, c.Child)
	}
	if res.ClientRSS, _, err = rssFDs(clientProcs); err != nil {
		return nil, err
	}

	// The nodes' counters after each phase, so that a drop or an eviction
	// is placed in time.
	if err := r.heartbeats(p, res); err != nil {
		return res, err
	}
	r.logf("after the hold: %s", r.losses())
	if err := r.broadcasts(p, res, pub); err != nil {
		return res, err
	}
	r.logf("after the broadcasts: %s", r.losses())
	seq := p.Broadcasts
	if p.Danmaku > 0 {
		if seq, err = r.danmaku(p, res, pub, seq); err != nil {
			return res, err
		}
		r.logf("after the danmaku: %s", r.losses())
	}
	if p.Faults {
		if err := r.faults(p, res, pub, seq); err != nil {
			return res, err
		}
	}

	// Every client's own count of errors, then the end.
	for _, c := range r.cls {
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
	time.Sleep(2100 * time.Millisecond) // a last STATS line from every node
	res.Losses = r.losses()
	res.Took = time.Since(t0)
	return res, nil
}

// startNATS starts (or restarts) the NATS server on addr.
func (r *runner) startNATS(addr string) error {
	ns, err := r.start("nats", r.bin("nats"), "-addr", addr)
	if err != nil {
		return err
	}
	line, err := ns.Expect("READY ", 10*time.Second)
	if err != nil {
		return err
	}
	r.nats, r.natsAddr = ns, strings.Fields(line)[0]
	r.natsURL = "nats://" + r.natsAddr
	return nil
}

// busEvent is a node's broker connecting (up) or disconnecting.
type busEvent struct {
	node int
	up   bool
	t    int64 // CLOCK_MONOTONIC ns
}

// busAddrs matches the addresses in a broker's reason for losing NATS.
var busAddrs = regexp.MustCompile(` [0-9.]+:[0-9]+->[0-9.]+:[0-9]+`)

// watchBus keeps node i's BUS lines, and its last STATS line.
func (r *runner) watchBus(i int, n *proc.Child) {
	st := n.Divert("STATS ", 4)
	go func() {
		for l := range st {
			var s engine.Stats
			if json.Unmarshal([]byte(l[len("STATS "):]), &s) == nil {
				r.mu.Lock()
				r.stats[i] = s
				r.mu.Unlock()
			}
		}
	}()
	errs := n.Divert("BUSERR ", 16)
	go func() {
		for l := range errs {
			// "read tcp 127.0.0.1:45668->127.0.0.1:39963: read: connection
			// reset by peer": the addresses apart, so that reasons add up.
			reason := busAddrs.ReplaceAllString(strings.TrimSpace(l[len("BUSERR "):]), "")
			r.mu.Lock()
			if r.busErrs == nil {
				r.busErrs = map[string]int{}
			}
			r.busErrs[reason]++
			r.mu.Unlock()
		}
	}()
	ch := n.Divert("BUS ", 16)
	go func() {
		for l := range ch {
			f := strings.Fields(l)
			if len(f) != 3 {
				continue
			}
			t, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				continue
			}
			r.mu.Lock()
			r.bus = append(r.bus, busEvent{i, f[1] == "1", t})
			r.mu.Unlock()
		}
	}()
}

// losses adds up what the nodes' last STATS lines say they dropped or
// refused: the first suspects when a viewer misses a message.
func (r *runner) losses() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t engine.Stats
	for _, s := range r.stats {
		t.Dropped += s.Dropped
		t.SlowCloses += s.SlowCloses
		t.Evictions += s.Evictions
		t.HandshakeTimeouts += s.HandshakeTimeouts
		t.QueueFull += s.QueueFull
		t.Shed += s.Shed
		t.LoopStalls += s.LoopStalls
		t.Broker.Dropped += s.Broker.Dropped
		t.Broker.Partial += s.Broker.Partial
		t.Broker.Failed += s.Broker.Failed
		t.Broker.Received += s.Broker.Received
		t.Broker.Sent += s.Broker.Sent
	}
	downs := 0
	for _, e := range r.bus {
		if !e.up {
			downs++
		}
	}
	why := ""
	if len(r.busErrs) > 0 {
		reasons := make([]string, 0, len(r.busErrs))
		for k, v := range r.busErrs {
			reasons = append(reasons, fmt.Sprintf("%d× %q", v, k))
		}
		sort.Strings(reasons)
		why = " (" + strings.Join(reasons, ", ") + ")"
	}
	return fmt.Sprintf("the nodes' brokers lost NATS %d times in all%s; the nodes' counters (every 2 s): slow-consumer drops %d, slow closes %d, evictions %d, handshake timeouts %d, queue-full refusals %d, shed %d, loop stalls %d; bus: sent %d, received %d, dropped %d, partial %d, failed %d",
		downs, why, t.Dropped, t.SlowCloses, t.Evictions, t.HandshakeTimeouts, t.QueueFull, t.Shed, t.LoopStalls, t.Broker.Sent, t.Broker.Received, t.Broker.Dropped, t.Broker.Partial, t.Broker.Failed)
}

// busBack is when the last live node's broker was connected again after
// t, or 0 if one is not yet.
func (r *runner) busBack(t int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := int64(0)
	for i := range r.nodes {
		if i == r.killed {
			continue
		}
		back := int64(0)
		for _, e := range r.bus {
			if e.node == i && e.t >= t {
				if e.up {
					back = e.t
				} else {
					back = 0
				}
			}
		}
		if back == 0 {
			return 0
		}
		last = max(last, back)
	}
	return last
}

// alive are the nodes not killed.
func (r *runner) alive() []*proc.Child {
	var a []*proc.Child
	for i, n := range r.nodes {
		if i != r.killed {
			a = append(a, n)
		}
	}
	return a
}

// nodesCPU is the CPU time the live nodes have used so far.
func (r *runner) nodesCPU() time.Duration { return cpuOf(r.alive()) }

// cpuOf is the CPU time the processes have used so far.
func cpuOf(ps []*proc.Child) (t time.Duration) {
	for _, p := range ps {
		if d, err := proc.CPU(p.Pid()); err == nil {
			t += d
		}
	}
	return t
}

// clientsCPU is the CPU time the client processes have used so far.
func (r *runner) clientsCPU() time.Duration {
	ps := make([]*proc.Child, len(r.cls))
	for i, c := range r.cls {
		ps[i] = c.Child
	}
	return cpuOf(ps)
}

// sum adds up the clients' last UP lines.
func (r *runner) sum() (u up) {
	for _, c := range r.cls {
		x := c.last()
		u.Upgraded += x.Upgraded
		u.Drops += x.Drops
		u.Reconnects += x.Reconnects
		u.Pongs += x.Pongs
		u.Skips += x.Skips
	}
	return u
}

// heartbeats holds every viewer idle for p.Hold (the nodes ping at their
// interval; a viewer that did not answer would be evicted), and measures
// the nodes' CPU meanwhile: the cost of pings and pongs.
func (r *runner) heartbeats(p plan, res *result) error {
	if p.Hold <= 0 {
		return nil
	}
	r.logf("holding %d viewers for %v (pings at the nodes' interval)", res.Viewers, p.Hold)
	time.Sleep(1100 * time.Millisecond) // a fresh UP line from every client
	u0, cpu0, ccpu0, t0 := r.sum(), r.nodesCPU(), r.clientsCPU(), time.Now()
	next := t0.Add(time.Minute)
	for end := t0.Add(p.Hold); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if _, ok := r.aborted.Load().(string); ok {
			return errors.New("stopped while holding the viewers")
		}
		if err := r.clientsAlive("holding"); err != nil {
			return err
		}
		if time.Now().After(next) {
			u := r.sum()
			r.logf("held %v: %d pings answered, %d viewers dropped, nodes' CPU %.1f s, RSS %s",
				time.Since(t0).Round(time.Second), u.Pongs-u0.Pongs, u.Drops-u0.Drops, (r.nodesCPU() - cpu0).Seconds(), mib(rssOf(r.nodes)))
			next = next.Add(time.Minute)
		}
	}
	u, cpu := r.sum(), r.nodesCPU()
	res.HoldS = time.Since(t0).Seconds()
	res.HoldCPUS = (cpu - cpu0).Seconds()
	res.HoldClientCPUS = (r.clientsCPU() - ccpu0).Seconds()
	res.HoldPongs = u.Pongs - u0.Pongs
	if u.Drops > 0 {
		return fmt.Errorf("%d viewers evicted or dropped while idle for %v (each answers every ping)", u.Drops, p.Hold)
	}
	r.logf("held %.0f s: %d pings answered (%.0f/s), nodes' CPU %.2f s (%.1f ms/s), none evicted",
		res.HoldS, res.HoldPongs, float64(res.HoldPongs)/res.HoldS, res.HoldCPUS, 1e3*res.HoldCPUS/res.HoldS)
	return nil
}

func (r *runner) clientsAlive(doing string) error {
	for _, c := range r.cls {
		if !c.Alive() {
			return fmt.Errorf("%s ended while %s (%v):\n%s", c.Name, doing, c.Err, c.Tail())
		}
	}
	return nil
}

// idleCPU is the nodes' CPU a second with nothing published (heartbeats),
// from the hold; 0 without one.
func (res *result) idleCPU() float64 {
	if res.HoldS <= 0 {
		return 0
	}
	return res.HoldCPUS / res.HoldS
}

// perDelivery is the nodes' CPU a delivery over a phase of d that used
// cpu, less what the heartbeats cost meanwhile, in µs.
func (res *result) perDelivery(cpu time.Duration, d time.Duration, deliveries int) float64 {
	if deliveries == 0 {
		return 0
	}
	return 1e6 * (cpu.Seconds() - res.idleCPU()*d.Seconds()) / float64(deliveries)
}

// awaitAll asks every client for message seq, published at t0 (CLOCK_
// MONOTONIC ns), and adds up what they saw.
func (r *runner) awaitAll(seq int, t0 int64) (message, *hist.Hist, error) {
	m := message{Seq: seq, T0: t0}
	var h hist.Hist
	for _, c := range r.cls {
		c.Send(fmt.Sprintf("AWAIT %d %d", seq, t0))
	}
	for _, c := range r.cls {
		l, err := c.Expect("GOT ", *awaitLimit+30*time.Second)
		if err != nil {
			return m, nil, err
		}
		var g got
		if err := json.Unmarshal([]byte(l), &g); err != nil {
			return m, nil, err
		}
		m.Delivered += g.Got
		m.Open += g.Open
		m.Skipped += g.Skipped
		m.Fresh += g.Fresh
		h.Merge(&g.Lat)
	}
	m.summary = summarize(&h)
	return m, &h, nil
}

// broadcasts publishes p.Broadcasts messages one at a time, each awaited
// at every viewer, checked, before the next.
func (r *runner) broadcasts(p plan, res *result, pub *publisher) error {
	var all hist.Hist
	var cpu time.Duration
	var took time.Duration
	for seq := range p.Broadcasts {
		time.Sleep(200 * time.Millisecond)
		cpu0, w0 := r.nodesCPU(), time.Now()
		t0, err := pub.publish(seq)
		if err != nil {
			return err
		}
		m, h, err := r.awaitAll(seq, t0)
		if err != nil {
			return err
		}
		if m.Delivered < res.Viewers {
			return fmt.Errorf("broadcast %d: %d of %d viewers have it (%d open); %s", seq, m.Delivered, res.Viewers, m.Open, r.errSamples())
		}
		if err := pub.await(seq, *awaitLimit); err != nil {
			return err
		}
		cpu += r.nodesCPU() - cpu0
		took += time.Since(w0)
		all.Merge(h)
		res.Broadcasts = append(res.Broadcasts, m)
		r.logf("broadcast %d: %d viewers, p50 %.1f ms, p99 %.1f ms, last %.1f ms", seq, m.Delivered, m.P50ms, m.P99ms, m.MaxMs)
	}
	res.All = summarize(&all)
	res.BroadcastCPUus = res.perDelivery(cpu, took, p.Broadcasts*res.Viewers)
	return nil
}

// pubEvent is one message published.
type pubEvent struct {
	seq int
	t0  int64
	err error
}

// stream publishes one message a second from seq on, until stop is
// closed or n are out, with at most window of them not yet at every
// viewer (past it, the next publish waits: a machine that cannot deliver
// a message a second holds its lag and its queues bounded instead of
// growing them); the collector awaits each at every viewer in turn and
// sends what it saw on the channel it returns (closed at the end).
func (r *runner) stream(pub *publisher, seq, n, window int, stop <-chan struct{}) <-chan message {
	evs := make(chan pubEvent, n+1)
	var done atomic.Int64
	var lastWhole atomic.Int64 // ns from publish to the last viewer, of the last message that reached every viewer
	wake := make(chan struct{}, 1)
	go func() {
		defer close(evs)
		var last time.Time
		for i := range n {
			if i > 0 {
				select {
				case <-stop:
					return
				case <-time.After(time.Until(last.Add(time.Second))):
				}
			}
			// While the bus is down (gaps), a message lost to some
			// viewers is known lost only once they have a later one:
			// the window would wait for them for ever. It then waits at
			// most one and a half times as long as the last whole
			// delivery took (2 s at least), so that the viewers learn of
			// a loss without the publisher outrunning the machine (at a
			// million viewers a message takes the better part of a
			// minute to reach them all).
			for int64(i)-done.Load() >= int64(window) {
				if r.gaps.Load() && time.Since(last) >= max(2*time.Second, time.Duration(lastWhole.Load())*3/2) {
					break
				}
				select {
				case <-stop:
					return
				case <-wake:
				case <-time.After(100 * time.Millisecond):
				}
			}
			last = time.Now()
			t0, err := pub.publish(seq + i)
			evs <- pubEvent{seq + i, t0, err}
			if err != nil {
				return
			}
		}
	}()
	out := make(chan message, n+1)
	go func() {
		defer close(out)
		for ev := range evs {
			if ev.err != nil {
				out <- message{Seq: ev.seq, err: ev.err}
				return
			}
			m, _, err := r.awaitAll(ev.seq, ev.t0)
			if err == nil {
				err = pub.await(ev.seq, *awaitLimit)
			}
			if err == nil && m.Skipped == 0 {
				lastWhole.Store(int64(m.MaxMs * 1e6))
			}
			done.Add(1)
			select {
			case wake <- struct{}{}:
			default:
			}
			m.err = err
			out <- m
			if err != nil {
				return
			}
		}
	}()
	return out
}

// danmaku publishes one message a second for p.Danmaku: every viewer
// must have every one; the lag of each is kept, and must not grow.
func (r *runner) danmaku(p plan, res *result, pub *publisher, seq int) (int, error) {
	n := int(p.Danmaku / time.Second)
	r.logf("danmaku: one message a second for %v, to %d viewers", p.Danmaku, res.Viewers)
	cpu0, w0 := r.nodesCPU(), time.Now()
	stop := make(chan struct{})
	end := time.AfterFunc(p.Danmaku, func() { close(stop) })
	defer end.Stop()
	for m := range r.stream(pub, seq, n, p.Window, stop) {
		if m.err != nil {
			return 0, fmt.Errorf("%w; %s", m.err, r.errSamples())
		}
		if m.Delivered < res.Viewers {
			return 0, fmt.Errorf("danmaku message %d: %d of %d viewers have it (%d open); %s", m.Seq, m.Delivered, res.Viewers, m.Open, r.errSamples())
		}
		res.Danmaku = append(res.Danmaku, m)
		if len(res.Danmaku)%10 == 0 {
			r.logf("danmaku %d/%d: lag p50 %.1f ms, p99 %.1f ms, last %.1f ms", len(res.Danmaku), n, m.P50ms, m.P99ms, m.MaxMs)
		}
	}
	n = len(res.Danmaku)
	res.DanmakuCPUus = res.perDelivery(r.nodesCPU()-cpu0, time.Since(w0), n*res.Viewers)
	res.DanmakuS = time.Since(w0).Seconds()
	return seq + n, nil
}

// faults keeps one message a second going while it SIGKILLs one node (not
// the publisher's: its viewers reconnect to the others, and every other
// viewer must keep getting every message), then, once they are all back,
// kills NATS and starts it again on its port (the viewers may then miss
// messages published on another node: counted).
func (r *runner) faults(p plan, res *result, pub *publisher, seq int) error {
	f := &res.Faults
	victim := 0
	if victim == r.pubNode {
		victim = 1
	}
	f.KilledNode, f.KilledViewers = victim+1, res.NodeConns[victim]
	stop := make(chan struct{})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	r.logf("faults: one message a second; SIGKILL node%d (%d viewers) in 3 s", victim+1, f.KilledViewers)
	msgs := r.stream(pub, seq, faultMsgs, p.Window, stop)
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		killT, backT, natsT, okT     time.Time
		killMono, backMono, natsMono int64
		lastUp                       = r.sum()
		lastTick                     = time.Now()
		skips0                       = lastUp.Skips
		after                        int // messages fully delivered after the bus came back
	)
	for {
		select {
		case <-tick.C:
			now := time.Now()
			u := r.sum()
			if !killT.IsZero() && backT.IsZero() {
				f.PeakReconnectsPerS = max(f.PeakReconnectsPerS, float64(u.Reconnects-lastUp.Reconnects)/now.Sub(lastTick).Seconds())
			}
			lastUp, lastTick = u, now
			switch {
			case killT.IsZero() && now.Sub(start) >= 3*time.Second:
				killMono = monoNow()
				_ = syscall.Kill(-r.nodes[victim].Pid(), syscall.SIGKILL)
				killT = time.Now()
				r.killed = victim
				go r.nodes[victim].Wait(time.Minute) // a process with 18,000 sockets takes a while to go
			case !killT.IsZero() && backT.IsZero():
				r.logf("faults: %.0f s after the kill: %d viewers dropped, %d back", now.Sub(killT).Seconds(), u.Drops, u.Reconnects)
				if u.Drops >= int64(f.KilledViewers) && u.Reconnects >= u.Drops {
					backT, backMono = now, monoNow()
					f.Dropped, f.ReconnectS = u.Drops, backT.Sub(killT).Seconds()
					r.logf("faults: all %d viewers back within %.1f s, at most %.0f upgrades/s; %s", u.Drops, f.ReconnectS, f.PeakReconnectsPerS, r.losses())
				} else if now.Sub(killT) > p.ReconnectLimit {
					return fmt.Errorf("faults: %d of %d dropped viewers back %v after the kill; %s", u.Reconnects, u.Drops, now.Sub(killT).Round(time.Second), r.errSamples())
				}
			case !backT.IsZero() && natsT.IsZero() && now.Sub(backT) >= 3*time.Second:
				// Let every viewer skip what the bus loses, then restart it.
				// The dropped viewers' skips are all counted by now (each has
				// had a message since it came back).
				f.MissedWhileAway = r.sum().Skips - skips0
				r.gaps.Store(true)
				for _, c := range r.cls {
					c.Send("GAPS 1")
				}
				time.Sleep(300 * time.Millisecond)
				natsMono = monoNow()
				natsT = time.Now()
				_ = syscall.Kill(-r.nats.Pid(), syscall.SIGKILL)
				r.nats.Wait(5 * time.Second)
				time.Sleep(p.NATSDown - time.Since(natsT))
				if err := r.startNATS(r.natsAddr); err != nil {
					return fmt.Errorf("restarting NATS: %w", err)
				}
				f.NATSDownS = time.Since(natsT).Seconds()
				r.logf("faults: NATS killed, and started again on %s %.2f s later", r.natsAddr, f.NATSDownS)
			}
		case m, ok := <-msgs:
			if !ok {
				return fmt.Errorf("faults: %d messages published and the bus not back", faultMsgs)
			}
			if m.err != nil {
				return fmt.Errorf("%w; %s", m.err, r.errSamples())
			}
			switch {
			case natsMono != 0 || r.gaps.Load():
				// Judged once the bus is being restarted: a message still in
				// flight when NATS died may be lost too, however early it
				// was published.
				m.Phase = "nats"
			case killMono != 0 && m.T0 >= killMono && (backMono == 0 || m.T0 < backMono):
				m.Phase = "kill"
			default:
				m.Phase = "steady"
			}
			f.Messages = append(f.Messages, m)
			switch m.Phase {
			case "nats":
				if m.Skipped > 0 || m.Delivered+m.Fresh < m.Open {
					if !okT.IsZero() {
						return fmt.Errorf("faults: message %d lost to %d viewers after the bus was whole again; %s", m.Seq, m.Open-m.Delivered, r.errSamples())
					}
					f.LostOnBus += m.Open - m.Delivered
					f.LostMessages++
					f.LastLostT = float64(m.T0-natsMono) / 1e9
				} else if okT.IsZero() && natsMono != 0 && m.T0 >= natsMono {
					okT = time.Now()
					f.FirstWholeT = float64(m.T0-natsMono) / 1e9
				}
				if !okT.IsZero() {
					after++
				}
			}
			if m.Phase == "steady" && (m.Skipped > 0 || m.Delivered+m.Fresh < m.Open) {
				return fmt.Errorf("faults: message %d reached %d of %d open viewers (%d passed over it) outside a fault", m.Seq, m.Delivered, m.Open, m.Skipped)
			}
			if after >= 3 {
				if back := r.busBack(natsMono); back > 0 {
					f.BusBackS = float64(back-natsMono) / 1e9
				} else {
					return fmt.Errorf("faults: messages cross the nodes again, yet a node's broker did not report being back on NATS")
				}
				for _, c := range r.cls {
					c.Send("GAPS 0")
				}
				r.gaps.Store(false)
				close(stop)
				for m := range msgs {
					if m.err != nil {
						return m.err
					}
					m.Phase = "after"
					f.Messages = append(f.Messages, m)
				}
				r.logf("faults: the bus lost %d messages (%d deliveries); whole again %.1f s after the kill", f.LostMessages, f.LostOnBus, f.FirstWholeT)
				return nil
			}
		}
	}
}

// monoNow is CLOCK_MONOTONIC in ns, as the publisher stamps messages.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// errSamples is what the clients logged last, for an error message.
func (r *runner) errSamples() string {
	var b strings.Builder
	b.WriteString(r.losses())
	for i, n := range r.nodes {
		if i != r.killed && !n.Alive() {
			fmt.Fprintf(&b, "\n%s ended (%v):\n%s", n.Name, n.Err, n.Tail())
		}
	}
	for _, c := range r.cls {
		if t := c.Tail(); t != "" {
			fmt.Fprintf(&b, "\n%s:\n%s", c.Name, t)
		}
	}
	return b.String()
}

// message is one published message as the viewers saw it.
type message struct {
	Seq       int    `json:"seq"`
	T0        int64  `json:"t0_ns"` // CLOCK_MONOTONIC at the publish
	Phase     string `json:"phase,omitempty"`
	Delivered int    `json:"delivered"`
	Open      int    `json:"open"`
	Skipped   int    `json:"skipped,omitempty"`
	Fresh     int    `json:"fresh,omitempty"`
	summary
	err error
}

// lagTrend is the danmaku's lag p99 over its first and last thirds.
func lagTrend(ms []message) (first, last float64) {
	if len(ms) < 3 {
		return 0, 0
	}
	k := len(ms) / 3
	p99 := func(s []message) float64 {
		v := make([]float64, len(s))
		for i, m := range s {
			v[i] = m.P99ms
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return p99(ms[:k]), p99(ms[len(ms)-k:])
}
