// Command recoverstorm measures a reconnect storm with room history
// (issue 27): -clients clients, all in one room, lose their connections
// at once, the room gets -missed messages meanwhile, and they all come
// back at once, each with the position of the last message it got; each
// must be sent exactly what it missed, in order, and be told it recovered.
//
//	cd benchmarks && go run ./cmd/recoverstorm                        # 10,000 clients, storms with 100 and 0 missed
//	cd benchmarks && go run ./cmd/recoverstorm -quick                 # 500 clients, 10 and 0 missed: a smoke run
//
// For each value of -missed (a comma-separated list) it builds and starts
// a fresh servers/wsloop-room -loops 1 -history H (pinned with taskset to
// -server-cpu; this process re-executes itself pinned to -load-cpus, as
// cmd/bench pins its load generators) and runs:
//
//	(a) connect: every client dials (at most -dials in flight, from source
//	    addresses 127.0.0.2 up, -srcs of them) with no position, and keeps
//	    the room's position from its welcome;
//	(b) drop: every client closes its socket with SO_LINGER 0 (a reset, no
//	    close frame); the run waits until the server holds no descriptor
//	    more than before (a)
//	(c) publish: a publisher connection sends -missed messages of -size
//	    bytes, which the server publishes to the room (servers/wsloop-room
//	    publishes every message a connection sends), and reads them back;
//	(d) storm: every client dials again, at once, at most -dials in flight,
//	    with its position (?epoch=E&offset=N), and reads until it has its
//	    welcome (recovered, missed = -missed, the room's position) and every
//	    missed message, each with the offset after the last (the
//	    envelope's "N " prefix) and the bytes published: it has caught up.
//	    Meanwhile the server's VmRSS is sampled every 50 ms;
//	(e) check: the publisher sends one more message, which every client
//	    must get next (so nothing was sent twice or extra), and the
//	    clients reset their connections.
//
// The clients are goroutines in this process, with a WebSocket client of
// their own (conn.go: a handshake written by hand, frames read from a
// bufio.Reader); every dial sets IP_BIND_ADDRESS_NO_PORT and every
// connection ends with a reset, so that no port is left in TIME_WAIT for
// the next storm or run.
//
// Any client error fails the run. The report, per storm: the time from
// the first dial of (d) to the last client caught up, per client from its
// dial to its last missed message (p50, p99, max), reconnects per second,
// the server's RSS before (d) (after (c)), its peak during (d) and 1 s
// after the last client caught up, the server's CPU time (utime+stime)
// over (d), and this process's own CPU over (d) (the clients: when it is
// near the wall time, the clients' core was the limit, not the server).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// config is one invocation's settings.
type config struct {
	clients   int
	missed    []int
	size      int
	history   int
	dials     int
	srcs      int
	serverCPU string
	server    string // a built servers/wsloop-room; empty: build it
	timeout   time.Duration
	logf      func(format string, args ...any)
}

// storm is what one storm measured.
type storm struct {
	Clients int `json:"clients"`
	Missed  int `json:"missed"`
	Size    int `json:"size"`
	History int `json:"history"`
	Dials   int `json:"dials_in_flight"`

	ConnectSeconds float64 `json:"connect_seconds"` // phase (a)
	DropSeconds    float64 `json:"drop_seconds"`    // phase (b), until the server closed them all

	Seconds        float64 `json:"seconds"` // first dial to last caught up
	PerSecond      float64 `json:"reconnects_per_second"`
	P50ms          float64 `json:"client_p50_ms"`
	P99ms          float64 `json:"client_p99_ms"`
	Maxms          float64 `json:"client_max_ms"`
	RSSIdleMiB     float64 `json:"rss_idle_mib"`      // at READY
	RSSConnMiB     float64 `json:"rss_connected_mib"` // after (a)
	RSSBeforeMiB   float64 `json:"rss_before_mib"`    // after (c)
	RSSPeakMiB     float64 `json:"rss_peak_mib"`      // during (d)
	RSSAfterMiB    float64 `json:"rss_after_mib"`     // 1 s after the last caught up
	ServerCPUms    float64 `json:"server_cpu_ms"`     // over (d)
	ServerSysms    float64 `json:"server_sys_ms"`     // of which in the kernel
	ClientCPUms    float64 `json:"client_cpu_ms"`     // this process over (d)
	ClientSysms    float64 `json:"client_sys_ms"`     // of which in the kernel
	MessagesPerSec float64 `json:"missed_messages_per_second"`
}

func main() {
	clients := flag.Int("clients", 10000, "clients in the room")
	missedS := flag.String("missed", "100,0", "messages published while the clients are away, one storm (on a fresh server) for each value")
	size := flag.Int("size", 200, "message bytes, as published (each is delivered with its offset before it)")
	history := flag.Int("history", 1000, "the server's -history: messages the room keeps (at least every -missed)")
	dials := flag.Int("dials", 500, "dials in flight at most (a dial: from its start until its handshake is done)")
	srcs := flag.Int("srcs", 0, "loopback source addresses for the clients, 127.0.0.2 up (0: one per 2,500 clients)")
	serverCPU := flag.String("server-cpu", "0", "taskset CPU list for the server (empty: no pinning)")
	loadCPUs := flag.String("load-cpus", "1", "taskset CPU list for this process, the clients (empty: no pinning)")
	server := flag.String("server", "", "a servers/wsloop-room binary (empty: go build it)")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound on each phase")
	jsonOut := flag.String("json", "", "also write the figures to this file")
	quick := flag.Bool("quick", false, "a smoke run: 500 clients, storms with 10 and 0 missed")
	flag.Parse()
	if *quick {
		*clients, *missedS = 500, "10,0"
	}

	pin(*loadCPUs)
	cfg := config{clients: *clients, size: *size, history: *history, dials: *dials, srcs: *srcs,
		serverCPU: *serverCPU, server: *server, timeout: *timeout,
		logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, "recoverstorm: "+f+"\n", a...) }}
	for _, s := range strings.Split(*missedS, ",") {
		m, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || m < 0 {
			fail(fmt.Errorf("bad -missed %q", *missedS))
		}
		cfg.missed = append(cfg.missed, m)
	}
	machine := runinfo.This()
	machine.Cores = cores() // NumCPU is this process's affinity: 1, pinned
	start := time.Now().UTC()
	res, err := run(cfg)
	if err != nil {
		fail(err)
	}
	fmt.Printf("recoverstorm %s, %s, started %s\n", runinfo.QuoteArgs(os.Args[1:]), machine, start.Format("2006-01-02 15:04 UTC"))
	report(os.Stdout, res)
	if *jsonOut != "" {
		if err := runinfo.WriteJSON(*jsonOut, map[string]any{"machine": machine, "started": start, "args": os.Args[1:], "storms": res}); err != nil {
			fail(err)
		}
	}
}

// cores counts the machine's processors in /proc/cpuinfo.
func cores() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\nprocessor")) + bytes.Count(b[:min(len(b), 9)], []byte("processor"))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "recoverstorm:", err)
	os.Exit(1)
}

// pin re-executes this process under taskset -c cpus, once.
func pin(cpus string) {
	const env = "RECOVERSTORM_PINNED"
	if cpus == "" || os.Getenv(env) == cpus {
		return
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		fail(fmt.Errorf("-load-cpus: %w", err))
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	fail(syscall.Exec(ts, append([]string{"taskset", "-c", cpus, self}, os.Args[1:]...), append(os.Environ(), env+"="+cpus)))
}

// report prints the storms as a Markdown table.
func report(w io.Writer, res []storm) {
	fmt.Fprintln(w, "| missed | clients | all caught up | reconnects/s | client p50 / p99 / max | server CPU (kernel) | clients' CPU (kernel) | server RSS before / peak / after |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range res {
		fmt.Fprintf(w, "| %d × %d B | %d | %.2f s | %.0f | %.0f / %.0f / %.0f ms | %.2f s (%.2f) | %.2f s (%.2f) | %.1f / %.1f / %.1f MiB |\n",
			s.Missed, s.Size, s.Clients, s.Seconds, s.PerSecond, s.P50ms, s.P99ms, s.Maxms,
			s.ServerCPUms/1000, s.ServerSysms/1000, s.ClientCPUms/1000, s.ClientSysms/1000, s.RSSBeforeMiB, s.RSSPeakMiB, s.RSSAfterMiB)
	}
	for _, s := range res {
		fmt.Fprintf(w, "\nmissed %d: connect (a) %.2f s, drop (b) %.2f s; server RSS idle %.1f MiB, %d connected %.1f MiB; missed messages delivered %.0f/s\n",
			s.Missed, s.ConnectSeconds, s.DropSeconds, s.RSSIdleMiB, s.Clients, s.RSSConnMiB, s.MessagesPerSec)
	}
}

// run runs one storm for each cfg.missed, each on a fresh server.
func run(cfg config) ([]storm, error) {
	for _, m := range cfg.missed {
		if m > cfg.history {
			return nil, fmt.Errorf("-missed %d is more than the -history %d the room keeps", m, cfg.history)
		}
	}
	if cfg.srcs <= 0 {
		cfg.srcs = (cfg.clients + 2499) / 2500
	}
	bin := cfg.server
	if bin == "" {
		tmp, err := os.MkdirTemp("", "wsloop-recoverstorm-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		bin = filepath.Join(tmp, "wsloop-room")
		cfg.logf("building servers/wsloop-room")
		b := exec.Command("go", "build", "-o", bin, "github.com/wsloop/wsloop/benchmarks/servers/wsloop-room")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	var res []storm
	for _, m := range cfg.missed {
		s, err := runStorm(cfg, bin, m)
		if err != nil {
			return res, fmt.Errorf("storm with %d missed: %w", m, err)
		}
		res = append(res, *s)
	}
	return res, nil
}

// position is a client's place in the room's history.
type position struct {
	epoch  string
	offset uint64
}

// welcome is the server's first word after a (re)connect.
type welcome struct {
	Recovered bool   `json:"recovered"`
	Missed    int    `json:"missed"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
}

// client is one of the storm's clients.
type client struct {
	id   int
	src  net.IP
	pos  position
	conn *wsConn
	buf  []byte
	took time.Duration // (d): from its dial to its last missed message
	done time.Time
}

// payloads are the messages of one storm, made once for every client's
// checks: message base+1 is p[0].
type payloads struct {
	base uint64
	p    [][]byte
}

func newPayloads(base uint64, n, size int) *payloads {
	w := &payloads{base: base, p: make([][]byte, n)}
	for i := range w.p {
		w.p[i] = payload(base+1+uint64(i), size)
	}
	return w
}

func (w *payloads) of(offset uint64) []byte { return w.p[offset-w.base-1] }

// payload is message i's bytes (i from 1): text, its number then letters
// that depend on it.
func payload(i uint64, size int) []byte {
	p := fmt.Appendf(make([]byte, 0, size), "m%08d ", i)
	x := i*0x9e3779b97f4a7c15 + 1
	for len(p) < size {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p = append(p, 'a'+byte(x%26))
	}
	return p[:size]
}

func runStorm(cfg config, bin string, missed int) (st *storm, err error) {
	var children proc.Children
	defer children.KillAll()
	cmd := proc.Taskset(cfg.serverCPU, bin, "-addr", "127.0.0.1:0", "-loops", "1", "-history", strconv.Itoa(cfg.history))
	srv, err := proc.Start("wsloop-room", cmd, &children, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = srv.Cmd.Process.Signal(syscall.SIGTERM)
		srv.Wait(5 * time.Second)
	}()
	addr, err := srv.Expect("READY", 30*time.Second)
	if err != nil {
		return nil, err
	}
	go func() { // the server's later lines, unread otherwise
		for range srv.Lines {
		}
	}()
	pid := srv.Pid()
	st = &storm{Clients: cfg.clients, Missed: missed, Size: cfg.size, History: cfg.history, Dials: cfg.dials}
	mib := func() float64 {
		rss, err := proc.RSS(pid)
		if err != nil {
			return -1
		}
		return float64(rss) / (1 << 20)
	}
	time.Sleep(200 * time.Millisecond)
	st.RSSIdleMiB = mib()
	fds0, err := proc.FDs(pid)
	if err != nil {
		return nil, err
	}

	cs := make([]*client, cfg.clients)
	for i := range cs {
		cs[i] = &client{id: i, src: net.IPv4(127, 0, 0, byte(2+i%cfg.srcs)), buf: make([]byte, 0, cfg.size+32)}
	}
	defer func() { // resets: no TIME_WAIT left for the next storm's ports
		for _, c := range cs {
			if c.conn != nil {
				c.conn.abort()
			}
		}
	}()

	// (a) connect, no position.
	cfg.logf("missed %d: (a) connecting %d clients to %s", missed, cfg.clients, addr)
	t := time.Now()
	var room position
	var roomMu sync.Mutex
	err = each(cs, cfg.dials, cfg.timeout, func(c *client, release func()) error {
		conn, err := dial(c.src, addr, position{}, cfg.timeout)
		release()
		if err != nil {
			return err
		}
		c.conn = conn
		w, err := readWelcome(conn, cfg.timeout)
		if err != nil {
			return err
		}
		if w.Recovered || w.Missed != 0 || w.Epoch == "" || w.Offset != 0 {
			return fmt.Errorf("first welcome %+v: want not recovered, 0 missed, an epoch, offset 0", w)
		}
		c.pos = position{w.Epoch, w.Offset}
		roomMu.Lock()
		defer roomMu.Unlock()
		if room.epoch == "" {
			room = c.pos
		} else if room != c.pos {
			return fmt.Errorf("position %+v, another client got %+v", c.pos, room)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("(a) connect: %w", err)
	}
	st.ConnectSeconds = time.Since(t).Seconds()
	time.Sleep(500 * time.Millisecond)
	st.RSSConnMiB = mib()

	// (b) drop: a reset each, no close frame.
	cfg.logf("missed %d: (b) dropping them", missed)
	t = time.Now()
	for _, c := range cs {
		c.conn.abort()
		c.conn = nil
	}
	for {
		n, err := proc.FDs(pid)
		if err != nil {
			return nil, err
		}
		if n <= fds0 {
			break
		}
		if time.Since(t) > cfg.timeout {
			return nil, fmt.Errorf("(b) the server still holds %d descriptors (%d before the clients) after %v", n, fds0, cfg.timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.DropSeconds = time.Since(t).Seconds()

	// (c) publish what they miss.
	cfg.logf("missed %d: (c) publishing %d messages", missed, missed)
	pub, err := dial(net.IPv4(127, 0, 0, 1), addr, position{}, cfg.timeout)
	if err != nil {
		return nil, fmt.Errorf("(c) publisher: %w", err)
	}
	defer pub.abort()
	pw, err := readWelcome(pub, cfg.timeout)
	if err != nil {
		return nil, fmt.Errorf("(c) publisher: %w", err)
	}
	if pw.Epoch != room.epoch || pw.Offset != room.offset {
		return nil, fmt.Errorf("(c) publisher's welcome %+v: the room was at %+v", pw, room)
	}
	want := newPayloads(room.offset, missed+1, cfg.size) // and one more for (e)
	pbuf := make([]byte, 0, cfg.size+32)
	for i := 1; i <= missed; i++ {
		if err := pub.writeText(want.of(room.offset + uint64(i))); err != nil {
			return nil, fmt.Errorf("(c) publish: %w", err)
		}
	}
	for i := 1; i <= missed; i++ {
		if pbuf, err = expect(pub, pbuf, room.offset+uint64(i), want, cfg.timeout); err != nil {
			return nil, fmt.Errorf("(c) publisher's copy: %w", err)
		}
	}
	top := room.offset + uint64(missed)
	time.Sleep(500 * time.Millisecond)
	st.RSSBeforeMiB = mib()

	// (d) the storm.
	cfg.logf("missed %d: (d) %d clients reconnecting", missed, cfg.clients)
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			if rss, err := proc.RSS(pid); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stopSampling:
				return
			case <-tk.C:
			}
		}
	}()
	cpu0, sys0, err := cpuTimes(pid)
	if err != nil {
		return nil, err
	}
	self0, selfSys0 := selfCPU()
	t0 := time.Now()
	err = each(cs, cfg.dials, cfg.timeout, func(c *client, release func()) error {
		start := time.Now()
		conn, err := dial(c.src, addr, c.pos, cfg.timeout)
		release()
		if err != nil {
			return err
		}
		c.conn = conn
		var w *welcome
		for got := 0; w == nil || got < missed; {
			op, buf, err := conn.read(c.buf, cfg.timeout)
			c.buf = buf
			if err != nil {
				return fmt.Errorf("after %d of %d missed messages: %w", got, missed, err)
			}
			if w == nil && op == opText && bytes.HasPrefix(c.buf, []byte(`{"recovered"`)) {
				w = new(welcome)
				if err := json.Unmarshal(c.buf, w); err != nil {
					return fmt.Errorf("welcome %q: %w", c.buf, err)
				}
				if !w.Recovered || w.Missed != missed || w.Epoch != c.pos.epoch || w.Offset != top {
					return fmt.Errorf("welcome %+v: want recovered, %d missed, at %s/%d", w, missed, c.pos.epoch, top)
				}
				continue
			}
			if got == missed {
				return fmt.Errorf("a message past the %d missed: %.40q", missed, c.buf)
			}
			got++
			if err := check(op, c.buf, c.pos.offset+uint64(got), want); err != nil {
				return fmt.Errorf("missed message %d: %w", got, err)
			}
		}
		c.done = time.Now()
		c.took = c.done.Sub(start)
		c.pos.offset = top
		return nil
	})
	if err != nil {
		close(stopSampling)
		return nil, fmt.Errorf("(d) storm: %w", err)
	}
	var last time.Time
	took := make([]time.Duration, len(cs))
	for i, c := range cs {
		if c.done.After(last) {
			last = c.done
		}
		took[i] = c.took
	}
	cpu1, sys1, err := cpuTimes(pid)
	if err != nil {
		return nil, err
	}
	self1, selfSys1 := selfCPU()
	time.Sleep(time.Second)
	close(stopSampling)
	<-sampled
	st.RSSAfterMiB = mib()
	st.RSSPeakMiB = float64(peak.Load()) / (1 << 20)
	st.Seconds = last.Sub(t0).Seconds()
	st.PerSecond = float64(cfg.clients) / st.Seconds
	st.MessagesPerSec = float64(cfg.clients*missed) / st.Seconds
	slices.Sort(took)
	q := func(p float64) float64 {
		return float64(took[min(len(took)-1, int(p*float64(len(took))))]) / float64(time.Millisecond)
	}
	st.P50ms, st.P99ms, st.Maxms = q(0.50), q(0.99), float64(took[len(took)-1])/float64(time.Millisecond)
	st.ServerCPUms = float64(cpu1-cpu0) / float64(time.Millisecond)
	st.ClientCPUms = float64(self1-self0) / float64(time.Millisecond)
	st.ServerSysms = float64(sys1-sys0) / float64(time.Millisecond)
	st.ClientSysms = float64(selfSys1-selfSys0) / float64(time.Millisecond)

	// (e) nothing more, nothing twice: the next message is the next one.
	cfg.logf("missed %d: (e) checking that each gets the next message next", missed)
	if err := pub.writeText(want.of(top + 1)); err != nil {
		return nil, fmt.Errorf("(e) publish: %w", err)
	}
	if _, err := expect(pub, pbuf, top+1, want, cfg.timeout); err != nil {
		return nil, fmt.Errorf("(e) publisher's copy: %w", err)
	}
	err = each(cs, len(cs), cfg.timeout, func(c *client, release func()) error {
		release()
		var err error
		c.buf, err = expect(c.conn, c.buf, top+1, want, cfg.timeout)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("(e) the message after the storm: %w", err)
	}
	return st, nil
}

// each runs fn for every client, on a goroutine each, at most limit of
// them before they call release. It returns the first error (with its
// client) at once, without waiting for the others (the caller's closing
// of every connection ends them), or an error past timeout.
func each(cs []*client, limit int, timeout time.Duration, fn func(c *client, release func()) error) error {
	sem := make(chan struct{}, limit)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	deadline := time.After(timeout)
	for _, c := range cs {
		select {
		case sem <- struct{}{}:
		case err := <-errc:
			return err
		case <-deadline:
			return fmt.Errorf("dials not all started within %v", timeout)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			release := func() { once.Do(func() { <-sem }) }
			defer release()
			if err := fn(c, release); err != nil {
				select {
				case errc <- fmt.Errorf("client %d (from %v): %w", c.id, c.src, err):
				default:
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errc:
		return err
	case <-deadline:
		return fmt.Errorf("not all done within %v", timeout)
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// readWelcome reads a connection's first message, its welcome.
func readWelcome(conn *wsConn, timeout time.Duration) (*welcome, error) {
	op, p, err := conn.read(nil, timeout)
	if err != nil {
		return nil, fmt.Errorf("welcome: %w", err)
	}
	var w welcome
	if op != opText || json.Unmarshal(p, &w) != nil {
		return nil, fmt.Errorf("first message %.60q: not a welcome", p)
	}
	return &w, nil
}

// expect reads the next message and checks it is message offset.
func expect(conn *wsConn, buf []byte, offset uint64, want *payloads, timeout time.Duration) ([]byte, error) {
	op, buf, err := conn.read(buf, timeout)
	if err != nil {
		return buf, fmt.Errorf("waiting for message %d: %w", offset, err)
	}
	return buf, check(op, buf, offset, want)
}

// check checks that p is message offset as the envelope delivers it,
// "offset payload", with want[offset-base] its payload.
func check(op int, p []byte, offset uint64, want *payloads) error {
	if op != opText {
		return fmt.Errorf("opcode %d, want text", op)
	}
	sp := bytes.IndexByte(p, ' ')
	if sp < 0 {
		return fmt.Errorf("%.40q: no offset", p)
	}
	got, err := strconv.ParseUint(string(p[:sp]), 10, 64)
	if err != nil {
		return fmt.Errorf("%.40q: bad offset", p)
	}
	if got != offset {
		return fmt.Errorf("offset %d, want %d", got, offset)
	}
	if !bytes.Equal(p[sp+1:], want.of(offset)) {
		return fmt.Errorf("offset %d: %.40q…, not the bytes published", offset, p[sp+1:])
	}
	return nil
}

// selfCPU is this process's user+system CPU time so far, and the system
// part.
func selfCPU() (all, sys time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
}

// cpuTimes is pid's utime+stime so far, and stime, from /proc/PID/stat.
func cpuTimes(pid int) (all, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)  // field 14: utime
	stt, err2 := strconv.ParseInt(f[12], 10, 64) // field 15: stime
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad times in /proc/%d/stat", pid)
	}
	tick := time.Second / time.Duration(proc.ClockTicks())
	return time.Duration(ut+stt) * tick, time.Duration(stt) * tick, nil
}
