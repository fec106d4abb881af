package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// The accept loop. wsloop owns its listening socket (gnet's own acceptor
// stops the whole engine on the first accept error it does not know,
// EMFILE included, and cannot be changed from outside; and gnet's balancer
// would send every socket to a stalled loop: stall.go), and does what
// gnet's acceptor does otherwise: accept4(2) on a non-blocking listener
// that Go's poller does not watch, no net.Conn and no dup(2) per socket,
// and the socket registered on its loop by the loop itself (gnetlink.go).
//
// One goroutine accepts, until accept4 says the kernel's queue is empty,
// then waits in poll(2) (see waitReadable). For every connection it:
//   - takes a slot of the socket cap (WithMaxConnections, by default the
//     descriptor limit less a reserve), atomically; past the cap, or while
//     Shutdown drains, it answers 503 and closes the socket at once, so that
//     refused sockets never hold descriptors;
//   - picks the least loaded live loop (stall.go) and adds the socket to
//     that loop's queue of accepted sockets.
//
// At the end of a burst (the kernel's queue is empty, or 64 sockets were
// taken) it wakes each loop with new sockets once: the loop registers the
// whole queue in one task and runs OnOpen for each. The accept goroutine
// never waits for a loop; sockets queued for a loop that stalls (stall.go)
// are taken back and given to the others.
//
// When the process runs out of descriptors (EMFILE, ENFILE), accept fails
// while connections wait in the kernel's backlog. The acceptor then frees
// the one descriptor it holds in reserve, accepts every waiting connection
// with it, one at a time, answers each with 503 and closes it, and takes the
// reserve back: the backlog is drained instead of filling with clients that
// hang, and the next connection after a descriptor frees up is served at
// once. If even the reserve cannot be taken back, it backs off (5 ms,
// doubling to 1 s) as net/http does. Either way it never stops serving;
// every failure is counted (Stats.AcceptErrors, Stats.Shed) and logged at
// error level, at most once a second.

// descriptorReserve is how many descriptors the default socket cap leaves
// to the rest of the process: its listener, the loops' pollers, the runtime,
// files the application opens. 1/64 of the limit, at least 32, at most 1024.
func descriptorReserve(limit uint64) uint64 {
	return min(max(limit/64, 32), 1024)
}

// nofileLimit returns the soft RLIMIT_NOFILE, or false when there is none
// to go by.
func nofileLimit() (uint64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	cur := uint64(lim.Cur) // int64 on some BSDs
	return cur, cur > 0 && cur < 1<<31
}

// defaultSocketCap derives the socket cap from RLIMIT_NOFILE.
func defaultSocketCap() int {
	limit, ok := nofileLimit()
	if !ok {
		return 1 << 20
	}
	r := descriptorReserve(limit)
	if limit <= 2*r {
		return max(int(limit/2), 1)
	}
	return int(limit - r)
}

// listen opens the listening socket for addr: "host:port", or gnet style
// "tcp://host:port", "tcp4://", "tcp6://", "unix:///path/to/socket";
// with SO_REUSEPORT when reusePort is set (TCP only).
func listen(ctx context.Context, addr string, reusePort bool) (net.Listener, error) {
	network, address := "tcp", addr
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		network, address = scheme, rest
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	case "unix":
		// A socket file left by a previous run would make bind fail.
		if fi, err := os.Lstat(address); err == nil && fi.Mode().Type() == fs.ModeSocket {
			_ = os.Remove(address)
		}
	default:
		return nil, fmt.Errorf("wsloop: ListenAndServe(%q): unsupported network %q (tcp, tcp4, tcp6 or unix)", addr, network)
	}
	lc := net.ListenConfig{}
	if reusePort && network != "unix" {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(ctx, network, address)
}

// acceptor is the accept loop's state; the accept goroutine owns it.
type acceptor struct {
	s      *Server
	lfd    int      // the listening socket, non-blocking, outside Go's poller
	laddr  net.Addr // its address
	proto  string   // "tcp" or "unix", for gnet
	unlink string   // a Unix socket's path, removed on close
	closed atomic.Bool
	// handedOver: another process serves the listening socket now.
	handedOver atomic.Bool
	paused     atomic.Bool   // a hand-off runs: the other process accepts (handoff.go)
	exited     chan struct{} // closed when run returns

	reserve *os.File // one descriptor kept free for shedding
	scratch []byte   // the request of a refused socket, discarded
	burst   []*loop  // loops given sockets since the last flush
	pollFD  [1]unix.PollFd

	logMu    sync.Mutex // loops log too
	lastLog  time.Time
	unlogged int // failures since the last log line

	linked bool // sockets are registered through gnetlink.go, not Enroll
	slow   sync.WaitGroup

	noReserve bool // tests: behave as if the reserve could never be taken back
}

// newAcceptor takes over ln's socket: it keeps a duplicate of the
// descriptor, which Go's poller does not watch, and closes ln.
func newAcceptor(s *Server, ln net.Listener) (*acceptor, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("wsloop: listener %T has no descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	lfd := -1
	cerr := rc.Control(func(fd uintptr) {
		lfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	laddr := ln.Addr()
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the acceptor's descriptor still listens
	}
	_ = ln.Close()
	if err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.SetNonblock(lfd, true)
	}
	if err != nil {
		if lfd >= 0 {
			_ = unix.Close(lfd)
		}
		return nil, fmt.Errorf("wsloop: taking over the listening socket: %w", err)
	}
	if _, ok := laddr.(*net.TCPAddr); ok {
		// Accepted sockets inherit TCP_NODELAY from the listener (as with
		// gnet's own listeners): one setsockopt, not one per connection.
		_ = unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	return newAcceptorFD(s, lfd, laddr), nil
}

// newAcceptorFD makes an acceptor of a non-blocking listening descriptor,
// which it owns from then on.
func newAcceptorFD(s *Server, lfd int, laddr net.Addr) *acceptor {
	a := &acceptor{s: s, lfd: lfd, laddr: laddr, proto: "tcp", scratch: make([]byte, 4096), exited: make(chan struct{}),
		noReserve: s.opts.noReserve}
	if ua, ok := laddr.(*net.UnixAddr); ok {
		a.proto, a.unlink = "unix", ua.Name
	}
	a.linked = gnetLinkOK() && !s.opts.enrollOnly
	s.eachLoop(func(l *loop) { a.linked = a.linked && l.elp != nil })
	a.reserve, _ = os.Open(os.DevNull) // without it, exhaustion falls back to backing off
	return a
}

// maxBurst is how many sockets the acceptor takes before it hands them to
// their loops, when they keep coming.
const maxBurst = 64

// run accepts until the listener is closed (nil) or fails for good (the
// error).
func (a *acceptor) run(closing func() bool) error {
	defer close(a.exited)
	defer func() {
		a.flush()
		if a.reserve != nil {
			a.reserve.Close()
		}
		_ = unix.Close(a.lfd)
		if a.unlink != "" && !a.handedOver.Load() {
			_ = os.Remove(a.unlink)
		}
	}()
	var delay time.Duration
	n := 0
	yielded := false
	for {
		if n == 0 && closing() {
			return nil
		}
		if a.paused.Load() {
			if n > 0 { // what this burst took goes to the loops now
				a.flush()
				n = 0
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		fd, remote, err := acceptPeer(a.lfd)
		if err == nil {
			delay = 0
			a.admit(fd, remote)
			if n++; n >= maxBurst {
				a.flush()
				n = 0
			}
			continue
		}
		a.flush()
		n = 0
		if closing() {
			return nil
		}
		errno, _ := err.(syscall.Errno)
		switch errno {
		case syscall.EAGAIN:
			// Yield once before sleeping in poll(2): the loops this burst
			// woke run first (with one P, the server pinned to a core, they
			// wait for it), and connections that arrive meanwhile are taken
			// without a sleep and a wake-up. 10,000 connects, server pinned
			// to one core: 0.2 to 0.6 context switches per connection
			// instead of 1.5 to 1.8, and 39 to 46 µs of CPU per upgrade
			// instead of 60 to 62 (gnet's own acceptor, whose loops yield
			// the same way before blocking in epoll_wait: 43 to 49).
			if !yielded {
				yielded = true
				runtime.Gosched()
				continue
			}
			yielded = false
			a.waitReadable(250)
			continue
		case syscall.EINTR, syscall.ECONNABORTED:
			continue // a connection reset while it waited in the queue
		}
		a.s.acceptErrors.Add(1)
		switch errno {
		case syscall.EMFILE, syscall.ENFILE:
			a.logFailure(err)
			if a.shed() {
				delay = 0
				continue
			}
		case syscall.ENOBUFS, syscall.ENOMEM, syscall.EPROTO, syscall.EPERM, syscall.ECONNRESET,
			syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH:
			a.logFailure(err)
		default:
			return fmt.Errorf("wsloop: accept: %w", os.NewSyscallError("accept4", err))
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		time.Sleep(delay)
	}
}

// admit takes a slot of the socket cap for fd and queues it for a loop,
// or refuses it with 503.
func (a *acceptor) admit(fd int, remote net.Addr) {
	s := a.s
	if !s.takeSocket() {
		s.rejected.Add(1)
		answerBusy(fd, a.scratch)
		_ = unix.Close(fd)
		return
	}
	a.queue(s.pickLoop(), accepted{fd: fd, remote: remote})
}

// tcpPeer is a *net.TCPAddr and the bytes of its IP in one block.
type tcpPeer struct {
	addr net.TCPAddr
	ip   [16]byte
}

// accepted is a socket on its way to a loop.
type accepted struct {
	fd     int
	remote net.Addr
	adopt  *adoption // handed over by the old process (handoff.go)
}

// acceptQueue is a loop's queue of accepted sockets: the acceptor appends
// to it, the loop takes it whole (it is a gnet.Runnable: Run is the task).
type acceptQueue struct {
	mu        sync.Mutex
	items     []accepted
	spare     []accepted
	scheduled bool // a task that will take the queue is on the loop's queue
	flushing  bool // the acceptor has the loop in its burst
}

// push adds a socket to l's queue and reports whether the caller must
// wake the loop: no wake-up is on its way. It then marks one as arranged:
// at the accept goroutine's next flush (later), or by the caller at once.
func (a *acceptor) push(l *loop, it accepted, later bool) bool {
	q := &l.accq
	if l.hb.pending.Add(1) == 1 {
		l.hb.progress.Store(a.s.clock())
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, it)
	if q.scheduled || q.flushing {
		return false
	}
	if later {
		q.flushing = true
	} else {
		q.scheduled = true
	}
	return true
}

// queue adds a socket to l's queue; the loop is woken at the next flush.
// The accept goroutine.
func (a *acceptor) queue(l *loop, it accepted) {
	if a.push(l, it, true) {
		a.burst = append(a.burst, l)
	}
}

// queueNow adds a socket to l's queue from another goroutine and wakes
// the loop unless a wake-up is on its way.
func (a *acceptor) queueNow(l *loop, it accepted) {
	if a.push(l, it, false) {
		l.wakeAccepted()
	}
}

// wakeAccepted queues the loop's accept task, its queue marked scheduled;
// when the loop is gone it clears the mark and reports false.
func (l *loop) wakeAccepted() bool {
	if l.el.Execute(context.Background(), l.runAccepted()) == nil {
		return true
	}
	l.accq.mu.Lock()
	l.accq.scheduled = false
	l.accq.mu.Unlock()
	return false
}

// flush wakes every loop given sockets since the last flush, once, and
// takes back the sockets queued for loops that stalled.
func (a *acceptor) flush() {
	for round := 0; round < 4 && len(a.burst) > 0; round++ {
		for i := 0; i < len(a.burst); i++ { // rescue may append
			l := a.burst[i]
			q := &l.accq
			q.mu.Lock()
			q.flushing = false
			wake := !q.scheduled && len(q.items) > 0
			q.scheduled = q.scheduled || wake
			q.mu.Unlock()
			if wake && !l.wakeAccepted() {
				a.rescue(l) // the loop is gone: the others take its sockets
			}
		}
		clear(a.burst)
		a.burst = a.burst[:0]
		now := a.s.clock()
		a.s.eachLoop(func(l *loop) {
			if l.hb.pending.Load() > 0 && l.health(now) == 2 {
				a.rescue(l)
			}
		})
	}
}

// rescue takes the sockets queued for l, a loop that stalled or died,
// and gives them to live loops, if there are any. Those l already took
// are its own.
func (a *acceptor) rescue(l *loop) {
	q := &l.accq
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	l.hb.pending.Add(-int32(len(items)))
	now := a.s.clock()
	for _, it := range items {
		to := a.s.pickLoop()
		if to == l || to.health(now) == 2 {
			to = l
		}
		a.queue(to, it)
	}
}

// abandon closes the sockets still queued for loops that will never take
// them (the server stops after a loop died), and releases their slots.
func (a *acceptor) abandon() {
	a.s.eachLoop(func(l *loop) {
		q := &l.accq
		q.mu.Lock()
		items := q.items
		q.items = nil
		q.mu.Unlock()
		for _, it := range items {
			_ = unix.Close(it.fd)
			a.s.sockets.Add(-1)
		}
		l.hb.pending.Add(-int32(len(items)))
	})
}

// runAccepted is l's accept task: l itself as a gnet.Runnable.
func (l *loop) runAccepted() gnet.Runnable { return (*acceptTask)(l) }

type acceptTask loop

// Run registers every socket queued for the loop, on the loop: gnet adds
// it to the loop's poller and runs OnOpen.
func (t *acceptTask) Run(context.Context) error {
	l := (*loop)(t)
	q := &l.accq
	q.mu.Lock()
	items := q.items
	q.items, q.spare = q.spare[:0], items
	q.scheduled = false
	q.mu.Unlock()
	s := l.srv
	a := s.acc // set before any socket is queued
	for i := range items {
		it := items[i]
		items[i] = accepted{}
		if s.draining.Load() || s.failure.Load() != nil {
			// Shutdown has begun, or the server failed. (A socket accepted
			// before a Drain began is served, and closed with the drain's
			// stragglers at the end of its window.)
			s.sockets.Add(-1)
			s.rejected.Add(1)
			answerBusy(it.fd, l.scratch[:cap(l.scratch)])
			_ = unix.Close(it.fd)
			continue
		}
		if !a.linked {
			a.enroll(l, it)
			continue
		}
		l.opening, l.adoptNext = false, it.adopt
		err := gnetRegister0(l.elp, gnetNewStreamConn(a.proto, it.fd, l.elp, nil, a.laddr, it.remote))
		if !l.opening {
			// gnet closed the socket (its poller refused it) without OnOpen.
			if err == nil {
				err = errNotOpened
			}
			a.notOpened(err)
		}
	}
	l.hb.progress.Store(s.clock())
	l.hb.pending.Add(-int32(len(items)))
	return nil
}

var errNotOpened = errors.New("the loop did not open it")

// enroll hands a socket to l through gnet's public Enroll, for a gnet the
// link was not checked against (gnetlink.go): a net.Conn around a
// duplicate of the descriptor, which gnet duplicates again for the loop
// and closes, on a goroutine of gnet's pool that waits for the loop (this
// one: the task returns first).
func (a *acceptor) enroll(l *loop, it accepted) {
	f := os.NewFile(uintptr(it.fd), "wsloop-accepted")
	conn, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		a.notOpened(err)
		return
	}
	tok := &enrollToken{adopt: it.adopt}
	res, err := l.el.Enroll(gnet.NewContext(context.Background(), tok), conn)
	if err != nil {
		_ = conn.Close()
		a.notOpened(err)
		return
	}
	a.slow.Add(1)
	go func() {
		defer a.slow.Done()
		r := <-res
		if err := r.Err; err != nil || !tok.opened.Load() {
			if err == nil {
				err = errNotOpened
			}
			a.notOpened(err)
		}
	}()
}

// enrollToken is the gnet context of a socket handed over with Enroll:
// OnOpen marks it.
type enrollToken struct {
	opened atomic.Bool
	adopt  *adoption // handed over by the old process (handoff.go)
}

// notOpened releases the slot of a socket no loop opened.
func (a *acceptor) notOpened(err error) {
	s := a.s
	s.sockets.Add(-1)
	s.acceptErrors.Add(1)
	s.shed.Add(1)
	a.logFailure(fmt.Errorf("handing a connection to an event loop: %w", err))
}

// close stops accepting: the listener's read side is shut down, which
// wakes the accept goroutine from poll(2) at once; the accept goroutine
// closes the descriptor on its way out. A listener handed to another
// process (restart.go) is not shut down, since shutdown(2) acts on the
// socket, which that process now serves: the accept goroutine notices
// within one wait (250 ms) and only closes its own descriptor.
func (a *acceptor) close() {
	if a.closed.CompareAndSwap(false, true) && !a.handedOver.Load() {
		_ = unix.Shutdown(a.lfd, unix.SHUT_RD)
	}
}

// answerBusy reads what has arrived on a fresh, non-blocking socket and
// writes the 503 response (it fits in an empty socket buffer). What the
// client sent is read first, so that closing sends FIN, not the RST that
// closing with unread input would send, which can destroy the response in
// flight.
func answerBusy(fd int, scratch []byte) {
	_, _ = syscall.Read(fd, scratch)
	_, _ = syscall.Write(fd, busyResponse)
}

// shed frees the reserved descriptor, uses it to accept and close every
// connection waiting in the backlog, and takes it back. It reports false
// when the reserve cannot be had, and the caller backs off. When the
// backlog was empty it waits until a connection arrives (accept fails at
// once while no descriptor is free, whether or not one is waiting).
func (a *acceptor) shed() bool {
	if a.noReserve {
		return false
	}
	if a.reserve == nil {
		if a.reserve, _ = os.Open(os.DevNull); a.reserve == nil {
			return false
		}
	}
	a.reserve.Close()
	a.reserve = nil
	n := 0
	exhausted := false
	for n < 1024 {
		fd, err := acceptRaw(a.lfd)
		if err != nil {
			exhausted = err == syscall.EMFILE || err == syscall.ENFILE
			break
		}
		answerBusy(fd, a.scratch)
		_ = syscall.Close(fd)
		n++
	}
	a.s.shed.Add(uint64(n))
	a.reserve, _ = os.Open(os.DevNull)
	if a.reserve == nil || exhausted {
		return false
	}
	if n == 0 {
		a.waitReadable(100)
	}
	return true
}

// waitReadable blocks in poll(2) until a connection waits on the
// listener, for at most ms milliseconds, and reports whether one does.
//
// The accept goroutine waits here, in the kernel, rather than in Go's
// poller: the kernel wakes a thread blocked in a system call at once,
// while Go's poller is consulted only when a P is idle, or by the runtime's
// monitor every 10 ms. With the server pinned to one core (one P), which
// the event loops hold between their epoll_waits, waiting in Go's poller
// gave 10,000 to 12,100 upgrades/s at a median of 11 to 15 ms with 200
// connects in flight; waiting in poll(2), 15,200 to 15,600 at 6.9 to
// 7.6 ms (benchmarks/RESULTS.md). poll(2) also needs no descriptor, which
// matters when none is left. It is called only once accept4 has found the
// queue empty.
func (a *acceptor) waitReadable(ms int) bool {
	a.pollFD[0] = unix.PollFd{Fd: int32(a.lfd), Events: unix.POLLIN}
	n, _ := unix.Poll(a.pollFD[:], ms)
	return n > 0
}

// logFailure logs an accept failure at error level, at most once a second.
func (a *acceptor) logFailure(err error) {
	l := a.s.opts.logger
	if l == nil {
		return
	}
	a.logMu.Lock()
	defer a.logMu.Unlock()
	a.unlogged++
	if now := time.Now(); now.Sub(a.lastLog) >= time.Second {
		l.Error("wsloop: accepting connections failed; the server keeps serving",
			"err", err, "failures", a.unlogged, "sockets", a.s.sockets.Load(), "cap", a.s.socketCap.Load())
		a.lastLog, a.unlogged = now, 0
	}
}

// takeSocket takes a slot of the socket cap, atomically, unless the cap is
// reached or the server is draining.
func (s *Server) takeSocket() bool {
	limit := s.socketCap.Load()
	for {
		n := s.sockets.Load()
		if n >= limit || s.refusing() {
			return false
		}
		if s.sockets.CompareAndSwap(n, n+1) {
			return true
		}
	}
}
