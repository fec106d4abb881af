package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// The accept loop. wsloop owns its listening socket and hands each accepted
// connection to the least loaded live event loop with that loop's gnet
// Enroll (gnet's own acceptor stops the whole engine on the first accept
// error it does not know, EMFILE included, and cannot be changed from
// outside; and gnet's balancer would send every socket to a stalled loop:
// stall.go).
//
// One goroutine accepts, blocked in poll(2) between connections (see
// waitReadable). For every connection it:
//   - takes a slot of the socket cap (WithMaxConnections, by default the
//     descriptor limit less a reserve), atomically; past the cap, or while
//     Shutdown drains, it answers 503 and closes the socket at once, so that
//     refused sockets never hold descriptors;
//   - queues it for a short-lived goroutine that enrolls it on a loop and
//     waits (at most enrollPatience) until the loop has run OnOpen.
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
// "tcp://host:port", "tcp4://", "tcp6://", "unix:///path/to/socket".
func listen(ctx context.Context, addr string) (net.Listener, error) {
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
	// KeepAlive -1: no TCP keepalive probes; the WebSocket heartbeat finds
	// dead peers, and keepalive timers would add a packet per idle
	// connection every 15 s.
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, network, address)
}

// acceptor is the accept loop's state; the accept goroutine owns it.
type acceptor struct {
	s  *Server
	ln net.Listener
	rc syscall.RawConn // the listener's descriptor, for shedding

	reserve *os.File // one descriptor kept free for shedding
	scratch []byte   // the request of a refused socket, discarded

	logMu    sync.Mutex // enrolling goroutines log too
	lastLog  time.Time
	unlogged int // failures since the last log line

	// Enrolling waits until the loop has opened the connection, so it runs
	// on goroutines of their own, and the accept goroutine never waits for
	// a loop: it takes connections off the kernel's backlog as fast as they
	// come, and they queue here, holding one descriptor each and counted
	// against the cap, until a loop has them (as gnet's own acceptor queues
	// them in the loops' task queues). An acceptor that waited for the loops
	// let a storm of 9,000 connects overflow the backlog: SYNs were dropped
	// and clients timed out (engine TestChurn under -race). At most
	// maxEnrolling goroutines enroll at once, started on demand: each holds
	// two descriptors while it waits (gnet's duplicate and the original).
	enrollMu     sync.Mutex
	toEnroll     []net.Conn // FIFO from enrollHead
	enrollHead   int
	enrollers    int
	maxEnrolling int
	enrolled     sync.WaitGroup

	noReserve bool // tests: behave as if the reserve could never be taken back
}

func newAcceptor(s *Server, ln net.Listener) (*acceptor, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("wsloop: listener %T has no descriptor", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	inflight := 2 * s.opts.eventLoops
	if limit, ok := nofileLimit(); ok {
		inflight = int(min(uint64(inflight), max(descriptorReserve(limit)/4, 1)))
	}
	a := &acceptor{s: s, ln: ln, rc: rc, scratch: make([]byte, 4096), maxEnrolling: inflight,
		noReserve: s.opts.noReserve}
	a.reserve, _ = os.Open(os.DevNull) // without it, exhaustion falls back to backing off
	return a, nil
}

// run accepts until the listener is closed (nil) or fails for good (the
// error), then waits for the connections it is still handing to loops.
func (a *acceptor) run(closing func() bool) error {
	defer func() {
		if a.reserve != nil {
			a.reserve.Close()
		}
	}()
	var delay time.Duration
	for {
		if !a.waitReadable(250) {
			if closing() {
				return nil
			}
			continue
		}
		conn, err := a.ln.Accept()
		if err == nil {
			delay = 0
			a.admit(conn)
			continue
		}
		if closing() {
			return nil
		}
		if errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("wsloop: listener closed: %w", err)
		}
		a.s.acceptErrors.Add(1)
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			return fmt.Errorf("wsloop: accept: %w", err)
		}
		switch errno {
		case syscall.EMFILE, syscall.ENFILE:
			a.logFailure(err)
			if a.shed() {
				delay = 0
				continue
			}
		case syscall.ENOBUFS, syscall.ENOMEM, syscall.EPROTO, syscall.EPERM, syscall.ECONNRESET,
			syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EINTR, syscall.EAGAIN:
			a.logFailure(err)
		default:
			return fmt.Errorf("wsloop: accept: %w", err)
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		time.Sleep(delay)
	}
}

// admit takes a slot of the socket cap for conn and queues it for a loop,
// or refuses it with 503.
func (a *acceptor) admit(conn net.Conn) {
	s := a.s
	if !s.takeSocket() {
		s.rejected.Add(1)
		refuse(conn, a.scratch)
		return
	}
	a.enrollMu.Lock()
	if h := a.enrollHead; h > 0 && h >= len(a.toEnroll)/2 {
		// Drop the taken half, so that a queue that never empties (a
		// stalled loop, a long storm) does not grow by one slot per
		// socket ever queued.
		n := copy(a.toEnroll, a.toEnroll[h:])
		clear(a.toEnroll[n:])
		a.toEnroll, a.enrollHead = a.toEnroll[:n], 0
	}
	a.toEnroll = append(a.toEnroll, conn)
	spawn := a.enrollers < a.maxEnrolling
	if spawn {
		a.enrollers++
		a.enrolled.Add(1)
	}
	a.enrollMu.Unlock()
	if spawn {
		go a.enrollQueued()
	}
}

// enrollQueued hands queued connections to the loops until none is left.
func (a *acceptor) enrollQueued() {
	defer a.enrolled.Done()
	e := newEnroller()
	defer e.patience.Stop()
	var scratch []byte
	for {
		a.enrollMu.Lock()
		if a.enrollHead == len(a.toEnroll) {
			clear(a.toEnroll)
			a.toEnroll, a.enrollHead = a.toEnroll[:0], 0
			a.enrollers--
			a.enrollMu.Unlock()
			return
		}
		conn := a.toEnroll[a.enrollHead]
		a.toEnroll[a.enrollHead] = nil
		a.enrollHead++
		a.enrollMu.Unlock()
		if a.s.refusing() {
			a.s.sockets.Add(-1)
			a.s.rejected.Add(1)
			if scratch == nil {
				scratch = make([]byte, 4096)
			}
			refuse(conn, scratch)
			continue
		}
		a.enroll(conn, e)
	}
}

// enrollToken travels to OnOpen as the gnet connection's first context:
// OnOpen marks it, so that the enrolling goroutine knows the loop really
// opened the socket (gnet also releases the waiter when it failed to add the
// socket to its poller, and closes it without OnOpen).
type enrollToken struct{ opened atomic.Bool }

var errNotOpened = errors.New("the loop did not open it")

// enroller is an enrolling goroutine's state: the token of the socket it
// hands over, in the context gnet takes it from, and its patience.
type enroller struct {
	tok      *enrollToken
	ctx      context.Context
	patience *time.Timer
}

func newEnroller() *enroller {
	e := &enroller{patience: time.NewTimer(time.Hour)}
	e.patience.Stop()
	e.renew()
	return e
}

// renew gives e a token of its own again, after it left one with a loop.
func (e *enroller) renew() {
	e.tok = new(enrollToken)
	e.ctx = gnet.NewContext(context.Background(), e.tok)
}

// enroll hands conn to the least loaded live loop (stall.go). gnet's
// Enroll duplicates the descriptor for the loop, registers it there
// (OnOpen runs), closes conn, and then answers. If the loop does not
// answer within enrollPatience it is counted as stalled, the socket is
// left to it, and a goroutine of its own waits for the answer, so that
// the enrolling goroutines keep serving the live loops.
func (a *acceptor) enroll(conn net.Conn, e *enroller) {
	l := a.s.pickLoop()
	e.tok.opened.Store(false)
	if l.hb.pending.Add(1) == 1 {
		l.hb.progress.Store(a.s.clock())
	}
	res, err := l.el.Enroll(e.ctx, conn)
	if err != nil {
		l.hb.pending.Add(-1)
		_ = conn.Close()
		a.enrollFailed(err)
		return
	}
	e.patience.Reset(enrollPatience)
	select {
	case r := <-res:
		e.patience.Stop()
		a.settle(l, r, e.tok)
	case <-e.patience.C:
		l.hb.stuck.Add(1)
		tok := e.tok
		e.renew()
		a.enrolled.Add(1)
		go func() {
			defer a.enrolled.Done()
			r := <-res
			l.hb.stuck.Add(-1)
			a.settle(l, r, tok)
		}()
	}
}

// settle accounts for a loop's answer to an enrolled socket.
func (a *acceptor) settle(l *loop, r gnet.RegisteredResult, tok *enrollToken) {
	l.hb.progress.Store(a.s.clock())
	l.hb.pending.Add(-1)
	err := r.Err
	if err == nil && !tok.opened.Load() {
		err = errNotOpened
	}
	if err != nil {
		a.enrollFailed(err)
	}
}

// enrollFailed releases the slot of a socket no loop took.
func (a *acceptor) enrollFailed(err error) {
	s := a.s
	s.sockets.Add(-1)
	s.acceptErrors.Add(1)
	s.shed.Add(1)
	a.logFailure(fmt.Errorf("handing a connection to an event loop: %w", err))
}

// waitEnrolled waits until no socket is on its way to a loop, for at most
// d, and reports whether none is.
func (a *acceptor) waitEnrolled(d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		a.enrolled.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// close stops accepting: the listener's read side is shut down first,
// which wakes the accept goroutine from poll(2) at once, then it is
// closed.
func (a *acceptor) close() {
	_ = a.rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RD) })
	_ = a.ln.Close()
}

// refuse answers 503 on a connection that was not enrolled and closes it.
// What the client already sent is read first, so that closing sends FIN,
// not the RST that closing with unread input would send, which can destroy
// the response in flight.
func refuse(conn net.Conn, scratch []byte) {
	if sc, ok := conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { answerBusy(int(fd), scratch) })
		}
	}
	_ = conn.Close()
}

// answerBusy reads what has arrived on a fresh, non-blocking socket and
// writes the 503 response (it fits in an empty socket buffer).
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
	_ = a.rc.Control(func(lfd uintptr) {
		for n < 1024 {
			fd, err := acceptRaw(int(lfd))
			if err != nil {
				exhausted = err == syscall.EMFILE || err == syscall.ENFILE
				return
			}
			answerBusy(fd, a.scratch)
			_ = syscall.Close(fd)
			n++
		}
	})
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
// matters when none is left.
func (a *acceptor) waitReadable(ms int) bool {
	ready := false
	_ = a.rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, ms)
		ready = n > 0
	})
	return ready
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
