package wsload

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
)

// Engine drives many client connections from a few epoll loops (one per
// GOMAXPROCS by default, so one when the process is pinned to one CPU):
// raw non-blocking sockets, level-triggered epoll, one read per readiness
// event into the loop's buffer, frames built into the loop's buffer and
// written with one write call. Per connection it keeps a small struct and
// nothing else: no goroutine, no read buffer (the Verifier checks bytes as
// they arrive). An echo costs the client one write, one read and a share
// of an epoll_wait, so that one client core outruns one server core.
//
// The main goroutine drives the loops with commands (Dial, Run, Check)
// and reads their figures once every loop has finished the command.
type Engine struct {
	cfg     Config
	payload *Payload
	op      ws.OpCode
	host    string
	ps      []*poller
	base    time.Time

	nextDial  atomic.Int64
	dialN     int64
	dialLimit int

	errs    atomic.Int64
	retries atomic.Int64
	upgrd   atomic.Int64 // upgrades so far, for progress reports
	pongs   atomic.Int64 // viewers: pings answered
	drops   atomic.Int64 // viewers (Reconnect): connections the server ended
	reconns atomic.Int64 // viewers (Reconnect): upgraded again after a drop
	skips   atomic.Int64 // viewers: messages passed over (Jump, JumpAll)
	gaps    atomic.Bool  // viewers: every message may skip ahead (SetGaps)
	mu      sync.Mutex
	samples []string
	broken  bool
	closed  bool
}

// Config is an Engine's configuration.
type Config struct {
	Addr            netip.AddrPort // the server: must be in 127.0.0.0/8
	Srcs            []netip.Addr   // local source addresses used round robin (none: the kernel's choice)
	Size            int            // payload bytes
	Text            bool           // text messages instead of binary
	Depth           int            // messages per batch in Run (1: one in flight)
	DialConcurrency int            // dials in flight, over all loops
	Pollers         int            // epoll loops (0: GOMAXPROCS)
	Timeout         time.Duration  // bound on one dial+upgrade attempt and on one round trip
	DialAttempts    int            // attempts per connection on connect errors (0: 3)
	Seed            uint64         // payload pool seed (0: random)
	JSON            bool           // chat-like JSON payloads (compressible) instead of random characters
	Deflate         bool           // offer permessage-deflate, send every message compressed, accept compressed echoes
	// Viewers > 0 makes every connection a viewer (Dial with neither
	// measure nor verify): it sends nothing, answers the server's pings
	// with pongs as browsers do, and expects the messages of one
	// publisher, Payload id ViewerID, in sequence from 0, at most Viewers
	// of them; every one is checked byte for byte, and the CLOCK_MONOTONIC
	// time it completed is kept for Await.
	Viewers  int
	ViewerID uint32
	// Reconnect (viewers) makes a viewer whose connection the server ends
	// (a close frame, a reset, end of file) dial again, as a page does:
	// the first attempt after a uniform random delay in [0,
	// ReconnectJitter) (0: 2 s), the span doubling on each failed attempt
	// up to 8 times, giving up (an error) after ReconnectFor (0: 2 min).
	// Its first message after the new upgrade may be any later one (it
	// missed what was published while away; the messages passed over are
	// counted, Skips), then strict again.
	Reconnect       bool
	ReconnectJitter time.Duration
	ReconnectFor    time.Duration
	// DialLimit bounds Dial as a whole (0: attempts × Timeout + 1 ms a
	// connection + 30 s); a client process among many dials more slowly.
	DialLimit time.Duration
	Logf      func(format string, args ...any)
}

// IsLoopback4 reports whether a is in 127.0.0.0/8, the only range the
// load generator may send to.
func IsLoopback4(a netip.Addr) bool { return a.Is4() && a.As4()[0] == 127 }

// New starts the engine's loops.
func New(cfg Config) (*Engine, error) {
	if !IsLoopback4(cfg.Addr.Addr()) {
		return nil, fmt.Errorf("wsload: server address %v is not in 127.0.0.0/8", cfg.Addr)
	}
	for _, s := range cfg.Srcs {
		if !IsLoopback4(s) {
			return nil, fmt.Errorf("wsload: source address %v is not in 127.0.0.0/8", s)
		}
	}
	if cfg.Size < 0 || cfg.Size > 16<<20 {
		return nil, fmt.Errorf("wsload: payload size %d out of range", cfg.Size)
	}
	if cfg.Depth < 1 {
		cfg.Depth = 1
	}
	if cfg.DialConcurrency < 1 {
		cfg.DialConcurrency = 1
	}
	if cfg.Pollers < 1 {
		cfg.Pollers = runtime.GOMAXPROCS(0)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.DialAttempts < 1 {
		cfg.DialAttempts = 3
	}
	if cfg.ReconnectJitter <= 0 {
		cfg.ReconnectJitter = 2 * time.Second
	}
	if cfg.ReconnectFor <= 0 {
		cfg.ReconnectFor = 2 * time.Minute
	}
	if cfg.Reconnect && (cfg.Viewers == 0 || cfg.Size < 16 || cfg.Deflate) {
		return nil, fmt.Errorf("wsload: Reconnect needs viewers, uncompressed, of 16 bytes or more")
	}
	if cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		for _, x := range b {
			cfg.Seed = cfg.Seed<<8 | uint64(x)
		}
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	e := &Engine{
		cfg:       cfg,
		payload:   NewPayload(cfg.Size, cfg.Seed),
		op:        ws.OpBinary,
		host:      cfg.Addr.String(),
		base:      time.Now(),
		dialLimit: (cfg.DialConcurrency + cfg.Pollers - 1) / cfg.Pollers,
	}
	if cfg.Text {
		e.op = ws.OpText
	}
	if cfg.JSON {
		e.payload = NewJSONPayload(cfg.Size, cfg.Seed)
	}
	for i := 0; i < cfg.Pollers; i++ {
		p, err := newPoller(e)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.ps = append(e.ps, p)
		go p.loop()
	}
	return e, nil
}

func (e *Engine) mono() int64 { return int64(time.Since(e.base)) }

// errorf counts an error; the first ones are logged and kept.
func (e *Engine) errorf(format string, args ...any) {
	n := e.errs.Add(1)
	if n <= 10 {
		msg := fmt.Sprintf(format, args...)
		e.cfg.Logf("%s", msg)
		e.mu.Lock()
		e.samples = append(e.samples, msg)
		e.mu.Unlock()
	}
}

// Errors is the number of errors so far.
func (e *Engine) Errors() int64 { return e.errs.Load() }

// ErrorSamples returns the first errors' descriptions.
func (e *Engine) ErrorSamples() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.samples...)
}

// Retries is the number of dial attempts repeated after a connect error.
func (e *Engine) Retries() int64 { return e.retries.Load() }

// Drops is the number of viewer connections the server ended (Reconnect).
func (e *Engine) Drops() int64 { return e.drops.Load() }

// Reconnects is the number of viewers upgraded again after a drop.
func (e *Engine) Reconnects() int64 { return e.reconns.Load() }

// Skips is the number of messages viewers passed over (after a
// reconnect, or any while SetGaps is on).
func (e *Engine) Skips() int64 { return e.skips.Load() }

// SetGaps lets every viewer's messages skip ahead (on) or not (off): a
// bus that lost messages. Duplicates and wrong bytes stay errors.
func (e *Engine) SetGaps(on bool) { e.gaps.Store(on) }

const (
	cmdDial = iota
	cmdRun
	cmdCheck
	cmdAwait
	cmdCount
)

type command struct {
	kind   int
	record bool  // record latencies and count messages
	verify bool  // dial: echo one message on each new connection
	churn  bool  // dial: after the echo, close the connection (Churn)
	until  int64 // run: no new batch after this (mono ns); await: give up after this
	seq    int   // await: the message every open viewer must have
	wg     sync.WaitGroup

	// What each loop reports as it finishes the command: read once every
	// loop has (viewers keep a loop busy between commands, so that its
	// own fields are not the main goroutine's to read).
	mu       sync.Mutex
	open     int
	arrivals []int64 // await: times of the viewers' copies of message seq
	skipped  int     // await: open viewers that passed over message seq
	fresh    int     // await: open viewers back from a reconnect with no message since
}

// do hands cmd to every loop and waits until all have finished it. On
// timeout it stops the loops, counts an error and breaks the engine.
func (e *Engine) do(cmd *command, limit time.Duration) bool {
	if e.broken {
		return false
	}
	cmd.wg.Add(len(e.ps))
	for _, p := range e.ps {
		p.post(cmd)
	}
	done := make(chan struct{})
	go func() { cmd.wg.Wait(); close(done) }()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		e.errorf("load generator stuck: command not finished within %v", limit)
		e.stopLoops()
		e.broken = true
		return false
	}
}

func (e *Engine) stopLoops() {
	for _, p := range e.ps {
		p.quit.Store(true)
		p.wake()
	}
	for _, p := range e.ps {
		<-p.exited
	}
}

// DialResult describes a Dial.
type DialResult struct {
	Open        int           // connections upgraded and still open
	Upgrades    int           // measured dial: upgrades completed
	Alive       int           // measured dial with verify: echoes verified
	Elapsed     time.Duration // until the last dial finished
	LastUpgrade time.Duration // measured dial: until the last upgrade completed
}

// Dial opens n connections, DialConcurrency at a time, each upgraded and
// its 101 checked. With measure, each upgrade's latency (socket() to the
// checked 101, retries included) goes to the histogram; with verify, each
// new connection then echoes one message.
func (e *Engine) Dial(n int, measure, verify bool) DialResult {
	e.nextDial.Store(0)
	e.dialN = int64(n)
	start := e.mono()
	cmd := &command{kind: cmdDial, record: measure, verify: verify}
	limit := time.Duration(e.cfg.DialAttempts)*e.cfg.Timeout + time.Duration(n)*time.Millisecond + 30*time.Second
	if e.cfg.DialLimit > 0 {
		limit = e.cfg.DialLimit
	}
	e.do(cmd, limit)
	r := DialResult{Elapsed: time.Duration(e.mono() - start), Open: cmd.open}
	for _, p := range e.ps {
		r.Upgrades += p.upgrades
		r.Alive += p.alive
		if d := time.Duration(p.lastUpgrade - start); d > r.LastUpgrade {
			r.LastUpgrade = d
		}
	}
	return r
}

// ChurnResult describes a Churn.
type ChurnResult struct {
	Cycles    int           // cycles completed without an error
	Elapsed   time.Duration // until the last cycle finished
	LastCycle time.Duration // until the last completed cycle finished
	Open      int           // connections still open at the end (0 unless a cycle failed midway)
}

// Churn runs n connect/upgrade/echo/close cycles, DialConcurrency in
// flight. Each cycle dials, upgrades (the 101 checked), echoes one checked
// message, then closes: an even cycle sends a close frame (status 1000)
// and waits for the server's close frame and then for the server to close
// the TCP connection (read returns 0); an odd cycle closes its socket at
// once, without a close frame. A server that echoes the client's masked
// close frame back instead of answering it (the floor, which does not
// parse frames) never closes: on its masked close frame the client closes
// instead. Each cycle's time, socket() to the end of the close, goes to
// the histogram.
func (e *Engine) Churn(n int) ChurnResult {
	e.nextDial.Store(0)
	e.dialN = int64(n)
	start := e.mono()
	cmd := &command{kind: cmdDial, record: true, verify: true, churn: true}
	limit := time.Duration(e.cfg.DialAttempts)*e.cfg.Timeout + time.Duration(n)*time.Millisecond + 30*time.Second
	e.do(cmd, limit)
	r := ChurnResult{Elapsed: time.Duration(e.mono() - start)}
	for _, p := range e.ps {
		r.Cycles += p.cycles
		r.Open += p.open
		if d := time.Duration(p.lastUpgrade - start); d > r.LastCycle {
			r.LastCycle = d
		}
	}
	return r
}

// Run sends on every open connection for d: a batch of Depth messages,
// then, once every echo of it is checked, the next, until d has passed.
// It returns when every connection is quiet, with the time from the start
// to the last batch's completion.
func (e *Engine) Run(d time.Duration, record bool) time.Duration {
	start := e.mono()
	cmd := &command{kind: cmdRun, record: record, until: start + int64(d)}
	e.do(cmd, d+2*e.cfg.Timeout+10*time.Second)
	var last int64
	for _, p := range e.ps {
		last = max(last, p.lastDone)
	}
	if last < start {
		return time.Duration(e.mono() - start)
	}
	return time.Duration(last - start)
}

// Check echoes one message on every open connection and returns how many
// answered correctly (their round trips go to the histogram).
func (e *Engine) Check() int {
	for _, p := range e.ps {
		p.alive = 0
	}
	cmd := &command{kind: cmdCheck, record: true}
	e.do(cmd, 2*e.cfg.Timeout+10*time.Second)
	alive := 0
	for _, p := range e.ps {
		alive += p.alive
	}
	return alive
}

// Upgraded is the number of upgrades so far; safe at any time (progress
// reports during a Dial).
func (e *Engine) Upgraded() int64 { return e.upgrd.Load() }

// Pongs is the number of pings viewers have answered so far.
func (e *Engine) Pongs() int64 { return e.pongs.Load() }

// Awaited is what Await returns.
type Awaited struct {
	Arrivals []int64 // CLOCK_MONOTONIC times, in ns, of the viewers' copies
	Open     int     // viewers open
	Skipped  int     // open viewers that passed over the message
	Fresh    int     // open viewers back from a reconnect with no message since
}

// Await waits (at most limit) until every open viewer has message seq
// (Config.Viewers) or has passed over it (Reconnect, SetGaps), and returns
// the times at which each viewer that has it completed it. Viewers back
// from a reconnect that have had no message since are not waited for.
func (e *Engine) Await(seq int, limit time.Duration) Awaited {
	if seq < 0 || seq >= e.cfg.Viewers {
		return Awaited{}
	}
	cmd := &command{kind: cmdAwait, seq: seq, until: e.mono() + int64(limit)}
	if !e.do(cmd, limit+10*time.Second) {
		return Awaited{}
	}
	return Awaited{cmd.arrivals, cmd.open, cmd.skipped, cmd.fresh}
}

// Open is the number of connections open now (at any time, unlike Stats).
func (e *Engine) Open() int {
	cmd := &command{kind: cmdCount}
	if !e.do(cmd, 10*time.Second) {
		return 0
	}
	return cmd.open
}

// Stats are the recorded figures so far.
type Stats struct {
	Messages uint64    // echoes checked while recording
	Wire     uint64    // bytes written and read while recording, frames and headers
	Open     int       // connections open
	Batch    hist.Hist // round trips of batches (or upgrade latencies of a measured Dial)
	PerMsg   hist.Hist // per message: from its batch's write to its echo (Depth > 1)
	PerConn  Spread    // batches each open connection completed in the recorded Run
}

// Stats merges the loops' figures. Call it between commands.
func (e *Engine) Stats() *Stats {
	s := &Stats{}
	for _, p := range e.ps {
		s.Messages += p.msgs
		s.Wire += p.wire
		s.Open += p.open
		s.Batch.Merge(&p.hist)
		s.PerMsg.Merge(&p.msgHist)
		for _, c := range p.conns {
			if c.state == stOpen {
				s.PerConn.Add(c.rts)
			}
		}
	}
	return s
}

// Close stops the loops and closes every socket.
func (e *Engine) Close() {
	if e.closed {
		return
	}
	e.closed = true
	if !e.broken {
		e.stopLoops()
	}
	for _, p := range e.ps {
		p.close()
	}
}

// Connection states.
const (
	stConnecting = iota
	stHandshake
	stOpen
	stRetry
	stDead
	stWait    // viewer (Reconnect): waiting out its backoff before the next dial
	stClosing // churn: close frame sent, waiting for the server's close frame and its FIN
	stDone    // churn: the cycle ended; the slot may be reused
)

type conn struct {
	fd       int
	idx      int32
	id       uint32
	state    uint8
	epOut    bool // EPOLLOUT is in the interest set
	busy     bool // a batch is in flight
	dialing  bool // counted in poller.dialing
	verify   bool // echo once after the upgrade, then stop dialing
	churn    bool // after that echo, close (Churn)
	gotClose bool // churn: the server's close frame has been read
	record   bool // record the upgrade latency
	reconn   bool // viewer (Reconnect): dialling again after a drop
	fresh    bool // viewer (Reconnect): upgraded again, no message since
	due      int64
	giveUp   int64
	attempts int
	mask     [4]byte
	key      string
	hs       []byte // upgrade response so far
	pend     []byte // bytes a short write left
	tx, rx   uint64 // next message to send; next echo expected
	t0       int64  // the batch in flight was written at
	rts      uint64 // batches completed in the recorded Run
	dialT0   int64
	tryT0    int64
	v        Verifier
}

type poller struct {
	e         *Engine
	epfd      int
	wakefd    int
	sa        unix.SockaddrInet4
	srcs      []unix.SockaddrInet4
	conns     []*conn
	free      []int32 // churn: slots of conns whose cycle ended
	rbuf      []byte
	wbuf      []byte
	retryQ    []*conn
	quit      atomic.Bool
	exited    chan struct{}
	posted    atomic.Bool
	mu        sync.Mutex
	inbox     *command
	cur       *command
	counting  bool
	exhausted bool
	nextScan  int64

	busy    int // connections with a batch in flight
	dialing int // connections between socket() and the end of their dial
	open    int

	// Figures, read by the main goroutine between commands.
	hist    hist.Hist
	msgHist hist.Hist
	msgs    uint64
	wire    uint64

	// permessage-deflate (Config.Deflate)
	inf         Inflater
	plain       []byte // a message before compression
	zd          Deflater
	alive       int
	upgrades    int
	cycles      int
	lastUpgrade int64
	lastDone    int64

	// Viewers: arrived[seq] holds the CLOCK_MONOTONIC time each viewer
	// completed message seq (len Config.Viewers, allocated up front so
	// that Await's reader never races a growing slice); skipped[seq] how
	// many passed over it; fresh the viewers back from a reconnect with
	// no message since; waitQ those waiting out a backoff.
	arrived [][]int64
	skipped []int32
	fresh   int
	waitQ   []*conn
	now     int64  // Feed's Sink: the clock at the read
	fseq    uint64 // Feed's Sink: the next message of the viewer being fed
}

const wakeIdx = -1

func newPoller(e *Engine) (*poller, error) {
	p := &poller{e: e, epfd: -1, wakefd: -1, exited: make(chan struct{}), rbuf: make([]byte, 64<<10)}
	if e.cfg.Viewers > 0 {
		p.arrived = make([][]int64, e.cfg.Viewers)
		p.skipped = make([]int32, e.cfg.Viewers)
	}
	p.sa.Port = int(e.cfg.Addr.Port())
	p.sa.Addr = e.cfg.Addr.Addr().As4()
	for _, s := range e.cfg.Srcs {
		p.srcs = append(p.srcs, unix.SockaddrInet4{Addr: s.As4()})
	}
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("wsload: epoll_create: %w", err)
	}
	if p.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		unix.Close(p.epfd)
		return nil, fmt.Errorf("wsload: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: wakeIdx}
	if err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.wakefd, &ev); err != nil {
		unix.Close(p.epfd)
		unix.Close(p.wakefd)
		return nil, fmt.Errorf("wsload: epoll_ctl: %w", err)
	}
	return p, nil
}

func (p *poller) post(cmd *command) {
	p.mu.Lock()
	p.inbox = cmd
	p.mu.Unlock()
	p.posted.Store(true)
	p.wake()
}

func (p *poller) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.wakefd, one[:])
}

func (p *poller) close() {
	for _, c := range p.conns {
		if c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
	}
	unix.Close(p.epfd)
	unix.Close(p.wakefd)
}

func (p *poller) loop() {
	defer close(p.exited)
	events := make([]unix.EpollEvent, 512)
	var drain [8]byte
	for !p.quit.Load() {
		timeout := 100
		if p.cur != nil && p.cur.kind == cmdRun {
			if left := p.cur.until - p.e.mono(); left > 0 {
				timeout = min(timeout, int((left+999_999)/1_000_000))
			}
		}
		n, err := pollNow(p.epfd, events)
		if n == 0 && err == nil {
			n, err = unix.EpollWait(p.epfd, events, timeout)
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			p.e.errorf("epoll_wait: %v", err)
			return
		}
		for i := 0; i < n; i++ {
			ev := &events[i]
			if ev.Fd == wakeIdx {
				_, _ = unix.Read(p.wakefd, drain[:])
				continue
			}
			p.handle(p.conns[ev.Fd], ev.Events)
		}
		p.after()
	}
}

// after runs after each batch of events: retries, commands, new dials,
// stall checks, completion.
func (p *poller) after() {
	now := p.e.mono()
	if len(p.retryQ) > 0 {
		q := p.retryQ
		p.retryQ = nil
		for _, c := range q {
			if c.state == stRetry {
				p.startDial(c)
			}
		}
	}
	if p.posted.Load() {
		p.mu.Lock()
		cmd := p.inbox
		p.inbox = nil
		p.posted.Store(false)
		p.mu.Unlock()
		if cmd != nil {
			p.begin(cmd, now)
		}
	}
	if p.cur != nil && p.cur.kind == cmdDial && !p.exhausted {
		for p.dialing < p.e.dialLimit {
			i := p.e.nextDial.Add(1) - 1
			if i >= p.e.dialN {
				p.exhausted = true
				break
			}
			p.newConn(uint32(i))
		}
	}
	if now >= p.nextScan {
		p.scan(now)
		p.nextScan = now + int64(100*time.Millisecond)
	}
	if p.cur != nil && p.finished(now) {
		p.cur.mu.Lock()
		p.cur.open += p.open
		if p.cur.kind == cmdAwait {
			p.cur.arrivals = append(p.cur.arrivals, p.arrived[p.cur.seq]...)
			p.cur.skipped += int(p.skipped[p.cur.seq])
			p.cur.fresh += p.fresh
			p.arrived[p.cur.seq] = nil
		}
		p.cur.mu.Unlock()
		p.cur.wg.Done()
		p.cur = nil
		p.counting = false
	}
}

func (p *poller) begin(cmd *command, now int64) {
	p.cur = cmd
	p.counting = cmd.record
	switch cmd.kind {
	case cmdDial:
		p.exhausted = false
	case cmdRun:
		for _, c := range p.conns {
			if cmd.record {
				c.rts = 0
			}
			if c.state == stOpen && !c.busy {
				p.send(c, p.e.cfg.Depth)
			}
		}
	case cmdCheck:
		for _, c := range p.conns {
			if c.state == stOpen && !c.busy {
				p.send(c, 1)
			}
		}
	}
}

func (p *poller) finished(now int64) bool {
	switch p.cur.kind {
	case cmdDial:
		return p.exhausted && p.dialing == 0
	case cmdRun:
		return now >= p.cur.until && p.busy == 0
	case cmdAwait:
		if now >= p.cur.until || len(p.arrived[p.cur.seq])+int(p.skipped[p.cur.seq])+p.fresh < p.open {
			return now >= p.cur.until
		}
		for _, c := range p.conns { // every open viewer has it (not only as many)
			if c.state == stOpen && !c.fresh && c.rx <= uint64(p.cur.seq) {
				return false
			}
		}
		return true
	default:
		return p.busy == 0
	}
}

// scan fails the connections whose dial or round trip takes too long.
func (p *poller) scan(now int64) {
	if len(p.waitQ) > 0 {
		q := p.waitQ[:0]
		for _, c := range p.waitQ {
			if c.state != stWait {
				continue
			}
			if now < c.due {
				q = append(q, c)
				continue
			}
			p.dialing++
			c.dialing = true
			p.startDial(c)
		}
		p.waitQ = q
	}
	if p.dialing == 0 && p.busy == 0 {
		return // nothing has a deadline (idle viewers): no walk over every connection
	}
	t := p.e.cfg.Timeout
	for _, c := range p.conns {
		switch c.state {
		case stConnecting, stHandshake:
			if now-c.tryT0 > int64(t) {
				p.dialFailed(c, fmt.Errorf("no upgrade within %v", t), true)
			}
		case stOpen:
			if c.busy && now-c.t0 > int64(t) {
				p.fail(c, fmt.Errorf("no echo within %v (%d messages unanswered)", t, c.tx-c.rx))
			}
		case stClosing:
			if now-c.t0 > int64(t) {
				what := "close frame"
				if c.gotClose {
					what = "TCP close after its close frame"
				}
				p.fail(c, fmt.Errorf("no %s from the server within %v of the client's close frame", what, t))
			}
		}
	}
}

func (p *poller) newConn(id uint32) {
	c := &conn{fd: -1, idx: int32(len(p.conns)), id: id, dialing: true, verify: p.cur.verify, churn: p.cur.churn, record: p.cur.record}
	c.v = Verifier{P: p.e.payload, Op: p.e.op, ID: id}
	if p.e.cfg.Viewers > 0 {
		c.v.ID = p.e.cfg.ViewerID
		c.v.Pongs = true
		c.v.Sink = p
	}
	if p.e.cfg.Deflate {
		c.v.Inf = &p.inf
	}
	_, _ = rand.Read(c.mask[:])
	if k := len(p.free); k > 0 {
		c.idx = p.free[k-1]
		p.free = p.free[:k-1]
		p.conns[c.idx] = c
	} else {
		p.conns = append(p.conns, c)
	}
	p.dialing++
	c.dialT0 = p.e.mono()
	p.startDial(c)
}

func (p *poller) startDial(c *conn) {
	c.attempts++
	c.tryT0 = p.e.mono()
	c.hs = c.hs[:0]
	c.v.Reset()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		p.fail(c, fmt.Errorf("socket: %w", err))
		return
	}
	c.fd = fd
	if len(p.srcs) > 0 {
		// Let connect pick the port, so that a source address serves
		// every server port (bind alone would reserve a port for good).
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		src := p.srcs[int(c.id)%len(p.srcs)]
		if err := unix.Bind(fd, &src); err != nil {
			p.fail(c, fmt.Errorf("bind %v: %w", netip.AddrFrom4(src.Addr), err))
			return
		}
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, &p.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		p.dialFailed(c, fmt.Errorf("connect: %w", err), true)
		return
	}
	c.state = stConnecting
	c.epOut = true
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: c.idx}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.fail(c, fmt.Errorf("epoll_ctl: %w", err))
	}
}

// dialFailed closes the socket and tries again, or fails the connection.
func (p *poller) dialFailed(c *conn, err error, retry bool) {
	if c.reconn && p.e.mono() < c.giveUp {
		p.backoff(c)
		return
	}
	if !retry || c.attempts >= p.e.cfg.DialAttempts {
		if c.attempts > 1 {
			err = fmt.Errorf("%w (attempt %d)", err, c.attempts)
		}
		p.fail(c, err)
		return
	}
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	c.state = stRetry
	p.e.retries.Add(1)
	p.retryQ = append(p.retryQ, c)
}

// dropped ends a viewer's connection that the server ended: with
// Reconnect it dials again after a backoff, else it is an error.
func (p *poller) dropped(c *conn, err error) {
	if !p.e.cfg.Reconnect {
		p.fail(c, err)
		return
	}
	if p.e.drops.Add(1) <= 3 {
		p.e.cfg.Logf("viewer %d dropped: %v", c.id, err) // the first few, for the record
	}
	p.open--
	if c.fresh {
		c.fresh = false
		p.fresh--
	}
	c.reconn, c.attempts = true, 0
	c.giveUp = p.e.mono() + int64(p.e.cfg.ReconnectFor)
	p.backoff(c)
}

// backoff closes a reconnecting viewer's socket and schedules its next
// dial: a uniform random delay in a span of ReconnectJitter, doubled on
// each failed attempt up to 8 times (full jitter, as pages back off).
func (p *poller) backoff(c *conn) {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	if c.dialing {
		c.dialing = false
		p.dialing--
	}
	span := int64(p.e.cfg.ReconnectJitter) << min(c.attempts, 3)
	var r [8]byte
	_, _ = rand.Read(r[:])
	c.due = p.e.mono() + int64(binary.LittleEndian.Uint64(r[:])%uint64(span))
	c.state = stWait
	c.hs, c.pend, c.key = nil, nil, ""
	p.waitQ = append(p.waitQ, c)
}

// fail counts an error and closes the connection for good.
func (p *poller) fail(c *conn, err error) {
	if c.state == stDead {
		return
	}
	if c.fresh {
		c.fresh = false
		p.fresh--
	}
	p.e.errorf("conn %d: %v", c.id, err)
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	if c.state == stOpen || c.state == stClosing {
		p.open--
	}
	c.state = stDead
	if c.busy {
		c.busy = false
		p.busy--
	}
	if c.dialing {
		c.dialing = false
		p.dialing--
	}
	c.hs, c.pend = nil, nil
}

func (p *poller) setOut(c *conn, on bool) {
	if c.epOut == on {
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.idx}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		p.fail(c, fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	c.epOut = on
}

func (p *poller) handle(c *conn, ev uint32) {
	switch c.state {
	case stConnecting:
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 || ev&unix.EPOLLOUT == 0 {
			// Only a failed connect pays for asking why.
			soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil {
				err = errors.New("hang-up")
				if soerr != 0 {
					err = syscall.Errno(soerr)
				}
			}
			p.dialFailed(c, fmt.Errorf("connect: %w", err), true)
			return
		}
		c.key = NewKey()
		req := AppendRequest(p.wbuf[:0], p.e.host, c.key)
		if p.e.cfg.Deflate {
			req = AppendRequestDeflate(p.wbuf[:0], p.e.host, c.key)
		}
		p.wbuf = req[:0]
		if n, err := unix.Write(c.fd, req); err != nil || n < len(req) {
			p.dialFailed(c, fmt.Errorf("writing the upgrade request: %d of %d bytes: %v", n, len(req), err), true)
			return
		}
		c.state = stHandshake
		p.setOut(c, false)
	case stHandshake:
		n, err := unix.Read(c.fd, p.rbuf)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			p.dialFailed(c, fmt.Errorf("reading the upgrade response: %w", err), true)
			return
		case n == 0:
			p.dialFailed(c, errors.New("closed before answering the upgrade request"), true)
			return
		}
		c.hs = append(c.hs, p.rbuf[:n]...)
		hl, err := checkResponse(c.hs, c.key, p.e.cfg.Deflate)
		if errors.Is(err, ErrIncomplete) {
			return
		}
		if err != nil {
			p.dialFailed(c, err, false) // a reconnecting viewer tries again (a node shedding load answers 503)
			return
		}
		rest := c.hs[hl:]
		c.hs, c.key = nil, ""
		c.state = stOpen
		p.open++
		p.upgraded(c)
		if len(rest) > 0 && c.state == stOpen {
			p.feed(c, rest, p.e.mono())
		}
	case stOpen:
		if ev&unix.EPOLLOUT != 0 && len(c.pend) > 0 {
			p.flush(c)
			if c.state != stOpen {
				return
			}
		}
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
			return
		}
		n, err := rawRead(c.fd, p.rbuf)
		switch {
		case errors.Is(err, unix.EAGAIN):
		case err != nil:
			p.dropped(c, fmt.Errorf("read: %w", err))
		case n == 0:
			p.dropped(c, errors.New("server closed the connection"))
		default:
			if p.counting {
				p.wire += uint64(n)
			}
			p.feed(c, p.rbuf[:n], p.e.mono())
		}
	case stClosing:
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
			return
		}
		n, err := rawRead(c.fd, p.rbuf)
		switch {
		case errors.Is(err, unix.EAGAIN):
		case err != nil:
			p.fail(c, fmt.Errorf("read while closing: %w", err))
		case n == 0:
			if !c.gotClose {
				p.fail(c, errors.New("server closed the TCP connection without answering the close frame"))
				return
			}
			p.cycleDone(c)
		default:
			p.closeFrame(c, p.rbuf[:n])
		}
	}
}

// closeFrame reads the server's answer to the client's close frame: one
// close frame, nothing else.
func (p *poller) closeFrame(c *conn, data []byte) {
	if c.gotClose {
		p.fail(c, fmt.Errorf("%d bytes after the server's close frame", len(data)))
		return
	}
	c.hs = append(c.hs, data...)
	b := c.hs
	if len(b) < 2 {
		return
	}
	masked := b[1]&0x80 != 0
	need := 2 + int(b[1]&0x7f)
	if masked {
		need += 4
	}
	switch {
	case b[0] != 0x88 || b[1]&0x7f > 125:
		p.fail(c, fmt.Errorf("server answered the close frame with a frame starting %#02x %#02x", b[0], b[1]))
		return
	case len(b) < need:
		return
	case len(b) > need:
		p.fail(c, fmt.Errorf("%d bytes after the server's close frame", len(b)-need))
		return
	}
	c.gotClose, c.hs = true, nil
	if masked {
		// The floor echoing the client's own close frame: it never
		// closes, so the client does.
		p.cycleDone(c)
	}
}

// closeCycle ends a churn cycle once its echo is checked: a close frame
// on even cycles, the socket closed at once on odd ones.
func (p *poller) closeCycle(c *conn) {
	if c.id%2 == 1 {
		p.cycleDone(c)
		return
	}
	// Close frame, status 1000, masked.
	b := append(p.wbuf[:0], 0x88, 0x80|2)
	b = append(b, c.mask[:]...)
	off := len(b)
	b = append(b, 0x03, 0xe8)
	ws.Cipher(b[off:], c.mask, 0)
	p.wbuf = b[:0]
	c.state = stClosing
	c.t0 = p.e.mono()
	if n, err := rawWrite(c.fd, b); err != nil || n < len(b) {
		p.fail(c, fmt.Errorf("writing the close frame: %d of %d bytes: %v", n, len(b), err))
	}
}

// cycleDone closes c's socket and ends its cycle.
func (p *poller) cycleDone(c *conn) {
	unix.Close(c.fd)
	c.fd = -1
	now := p.e.mono()
	p.open--
	c.state = stDone
	c.dialing = false
	p.dialing--
	p.alive++
	p.cycles++
	p.hist.Record(now - c.dialT0)
	p.lastUpgrade = now
	p.free = append(p.free, c.idx)
}

// upgraded runs when c's 101 has been checked.
func (p *poller) upgraded(c *conn) {
	now := p.e.mono()
	p.e.upgrd.Add(1)
	if c.reconn {
		// Back after a drop: its first message may be any later one.
		p.e.reconns.Add(1)
		c.reconn, c.fresh, c.v.Jump = false, true, true
		p.fresh++
	}
	if c.record && !c.churn {
		p.hist.Record(now - c.dialT0)
		p.upgrades++
		p.lastUpgrade = now
	}
	if c.verify {
		p.send(c, 1) // the dial ends when the echo is checked
		return
	}
	c.dialing = false
	p.dialing--
}

// appendDeflated appends message seq of c compressed, as one final frame
// with RSV1.
func (p *poller) appendDeflated(b []byte, c *conn, seq uint64) []byte {
	pl := p.e.payload
	if cap(p.plain) < pl.Size() {
		p.plain = make([]byte, pl.Size())
	}
	p.plain = p.plain[:pl.Size()]
	pl.Fill(p.plain, c.id, seq)
	z := p.zd.Deflate(p.plain)
	start := len(b)
	b = appendHeader(b, p.e.op, len(z), c.mask)
	b[start] |= 0x40 // RSV1: compressed
	off := len(b)
	b = append(b, z...)
	ws.Cipher(b[off:], c.mask, 0)
	return b
}

// send writes the next k messages of c in one write call.
func (p *poller) send(c *conn, k int) {
	b := p.wbuf[:0]
	for i := 0; i < k; i++ {
		if p.e.cfg.Deflate {
			b = p.appendDeflated(b, c, c.tx+uint64(i))
			continue
		}
		b = p.e.payload.AppendFrame(b, p.e.op, c.mask, c.id, c.tx+uint64(i))
	}
	if p.counting {
		p.wire += uint64(len(b))
	}
	p.wbuf = b[:0]
	c.tx += uint64(k)
	c.busy = true
	p.busy++
	c.t0 = p.e.mono()
	p.write(c, b)
}

// write writes b on c, keeping what the socket does not take for EPOLLOUT
// (after what is pending already).
func (p *poller) write(c *conn, b []byte) {
	if len(c.pend) > 0 {
		c.pend = append(c.pend, b...)
		return
	}
	n, err := rawWrite(c.fd, b)
	if errors.Is(err, unix.EAGAIN) {
		n, err = 0, nil
	}
	if err != nil {
		p.writeFailed(c, err)
		return
	}
	if n < len(b) {
		c.pend = append(c.pend[:0], b[n:]...)
		p.setOut(c, true)
	}
}

// writeFailed ends c after a failed write: a viewer's server is gone
// (dropped: with Reconnect it dials again), anyone else's is an error.
func (p *poller) writeFailed(c *conn, err error) {
	if p.e.cfg.Viewers > 0 {
		p.dropped(c, fmt.Errorf("write: %w", err))
		return
	}
	p.fail(c, fmt.Errorf("write: %w", err))
}

func (p *poller) flush(c *conn) {
	n, err := rawWrite(c.fd, c.pend)
	if errors.Is(err, unix.EAGAIN) {
		return
	}
	if err != nil {
		p.writeFailed(c, err)
		return
	}
	c.pend = c.pend[:copy(c.pend, c.pend[n:])]
	if len(c.pend) == 0 {
		p.setOut(c, false)
	}
}

// feed checks bytes read from c.
func (p *poller) feed(c *conn, data []byte, now int64) {
	if p.e.cfg.Viewers > 0 {
		p.feedViewer(c, data)
		return
	}
	inflight := int(c.tx - c.rx)
	done, err := c.v.Feed(data, c.rx, inflight)
	if done > 0 {
		c.rx += uint64(done)
		if p.counting {
			p.msgs += uint64(done)
			if p.cur != nil && p.cur.kind == cmdRun && p.e.cfg.Depth > 1 {
				p.msgHist.RecordN(now-c.t0, uint64(done))
			}
		}
		if c.rx == c.tx && err == nil {
			p.batchDone(c, now)
		}
	}
	if err != nil {
		p.fail(c, err)
	}
}

func (p *poller) batchDone(c *conn, now int64) {
	c.busy = false
	p.busy--
	rtt := now - c.t0
	switch {
	case c.churn && c.dialing: // the echo of a churn cycle
		p.closeCycle(c)
	case c.dialing: // the echo after a measured upgrade
		c.dialing = false
		p.dialing--
		p.alive++
	case p.cur == nil:
	case p.cur.kind == cmdCheck:
		p.alive++
		p.hist.Record(rtt)
	case p.cur.kind == cmdRun:
		if p.cur.record {
			p.hist.Record(rtt)
			p.lastDone = now
			c.rts++
		}
		if now < p.cur.until {
			p.send(c, p.e.cfg.Depth)
		}
	}
}

// feedViewer checks bytes read by a viewer: broadcast messages, in
// sequence, and pings, answered with a pong carrying the last ping's
// payload (RFC 6455 5.5.3 lets a pong answer only the most recent ping).
func (p *poller) feedViewer(c *conn, data []byte) {
	p.now, p.fseq = 0, c.rx // the clock is read once a message completes (not for a ping)
	c.v.JumpAll = p.e.gaps.Load()
	done, err := c.v.Feed(data, c.rx, p.e.cfg.Viewers-int(c.rx))
	rx := c.rx + uint64(done) + c.v.Skipped()
	p.passOver(rx) // a jump into a message not yet complete
	c.rx = rx
	if c.fresh && !c.v.Jump {
		c.fresh = false // its first message has begun, and told where it is
		p.fresh--
	}
	if errors.Is(err, ErrServerClose) {
		p.dropped(c, err)
		return
	}
	if err != nil {
		p.fail(c, err)
		return
	}
	if ping, ok := c.v.TakePing(); ok && c.state == stOpen {
		p.e.pongs.Add(1)
		b := append(p.wbuf[:0], 0x80|byte(ws.OpPong), 0x80|byte(len(ping)))
		b = append(b, c.mask[:]...)
		off := len(b)
		b = append(b, ping...)
		ws.Cipher(b[off:], c.mask, 0)
		p.wbuf = b[:0]
		p.write(c, b)
	}
}

// Message is the viewers' Verifier Sink: message seq completed, read at
// p.now, by the viewer being fed.
func (p *poller) Message(seq uint64) {
	if p.now == 0 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		p.now = ts.Nano()
	}
	p.passOver(seq)
	p.arrived[seq] = append(p.arrived[seq], p.now)
	p.fseq = seq + 1
}

// passOver counts the messages before seq that the viewer being fed
// passed over.
func (p *poller) passOver(seq uint64) {
	if seq > p.fseq {
		p.e.skips.Add(int64(seq - p.fseq))
		for s := p.fseq; s < seq; s++ {
			p.skipped[s]++
		}
		p.fseq = seq
	}
}
