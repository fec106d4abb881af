package engine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Stalled loops. A handler that blocks (forbidden, but it happens) stops
// its loop, and with it every connection of that loop; it must not stop
// the others. Two things follow from that:
//
//   - New sockets go to the loops that are live. The acceptor picks the
//     loop for each socket itself (the least loaded of the live ones,
//     counting sockets on their way to it), rather than leaving it to
//     gnet's balancer, which counts only registered connections: a
//     stalled loop registers none, looks least loaded, and would draw
//     every new socket to itself. A loop is live while its heartbeat (the
//     tick task, which the loop runs once it is back at its poller) is
//     recent, and while no socket queued for it has waited longer than
//     enrollPatience; once one has, the acceptor takes back the sockets
//     the loop has not taken and gives them to the live loops (accept.go:
//     rescue), so that the stalled loop loses none but its own.
//   - A watchdog on the ticker's goroutine finds a loop whose heartbeat is
//     older than WithStallThreshold, counts it (Stats.LoopStalls) and logs
//     it at error level, once per stall, with the loop goroutine's stack:
//     the callback that blocks is on it. When the loop comes back, that is
//     logged too, with how long it was away.

// enrollPatience is how long a socket may wait for its loop to take it
// before the loop counts as stalled (registering a socket takes
// microseconds on a live loop; a long fan-out, milliseconds).
const enrollPatience = 50 * time.Millisecond

// WithStallThreshold sets how long an event loop may go without coming
// back to its poller (a callback that blocks, a fan-out that runs long)
// before it is counted in Stats.LoopStalls and logged at error level with
// the stack of the goroutine that runs it. New sockets go to other loops
// sooner than that, as soon as the loop misses its heartbeats. At least
// two ticks (WithTick). Default: 500 ms, or two ticks if that is more.
func WithStallThreshold(d time.Duration) Option { return func(o *options) { o.stallThreshold = d } }

// heartbeat is a loop's liveness, shared with the acceptor and the
// watchdog.
type heartbeat struct {
	beat     atomic.Int64  // server clock (Server.clock) at the loop's last tick
	queued   atomic.Bool   // a tick task is queued and has not run yet
	pending  atomic.Int32  // sockets on their way to the loop
	progress atomic.Int64  // server clock when the loop last took a socket, or when one set off to it with none on the way
	gid      atomic.Uint64 // the loop goroutine's id, for its stack (set when the loop is created, on it)
	stalled  atomic.Bool   // the watchdog has reported the current stall
	stallsAt int64         // watchdog only: when the reported stall began
}

// clock is the server's monotonic clock in nanoseconds.
func (s *Server) clock() int64 { return int64(time.Since(s.epoch)) }

// tick queues the loop's tick task unless the last one has not run yet:
// a stalled loop's queue does not grow with ticks. The ticker's goroutine.
func (l *loop) tick() {
	if l.hb.queued.CompareAndSwap(false, true) {
		if l.el.Execute(context.Background(), l) != nil {
			l.hb.queued.Store(false)
		}
	}
}

// health ranks the loop for a new socket: 0 when it is live (its
// heartbeat is recent, no socket waits on it past enrollPatience, and
// none has waited for a tenth of that without it taking one), 1 when only
// that last test fails (it may just be busy), 2 when it is stalled.
func (l *loop) health(now int64) int64 {
	switch {
	case now-l.hb.beat.Load() > l.srv.routeStall():
		return 2
	case l.hb.pending.Load() == 0:
		return 0
	}
	switch waited := now - l.hb.progress.Load(); {
	case waited > int64(enrollPatience):
		return 2
	case waited > int64(enrollPatience/10):
		return 1
	}
	return 0
}

// routeStall is how old a heartbeat may be before new sockets avoid its
// loop: two ticks (a live loop beats once a tick).
func (s *Server) routeStall() int64 { return int64(2 * s.opts.tick) }

// pendingWeight is what a socket on its way to a loop adds to its load,
// besides itself: a live loop takes it in microseconds, while one that has
// not may be stalling, so the others get the sockets that follow until it
// has (or until it is found out: see health).
const pendingWeight = 16

// pickLoop returns the loop a new socket goes to: the healthiest, and of
// those the one with the fewest sockets, counting those on their way (and
// pendingWeight more for a loop with any on its way).
func (s *Server) pickLoop() *loop {
	now := s.clock()
	var best *loop
	var bestN int64
	s.eachLoop(func(l *loop) {
		pending := int64(l.hb.pending.Load())
		n := l.stats.conns.Load() + pending
		if pending > 0 {
			n += pendingWeight
		}
		n += l.health(now) << 48
		if best == nil || n < bestN {
			best, bestN = l, n
		}
	})
	return best
}

// watchLoops is the watchdog: it reports a loop whose heartbeat is older
// than the stall threshold, once per stall, and its return. The ticker's
// goroutine.
func (s *Server) watchLoops() {
	now := s.clock()
	threshold := int64(s.opts.stallThreshold)
	s.eachLoop(func(l *loop) {
		beat := l.hb.beat.Load()
		switch {
		case now-beat > threshold && !l.hb.stalled.Load():
			l.hb.stalled.Store(true)
			l.hb.stallsAt = beat
			s.loopStalls.Add(1)
			if lg := s.opts.logger; lg != nil {
				lg.Error("wsloop: an event loop is stalled: a callback on it blocks or runs long, and its connections wait",
					"loop", l.idx, "for", time.Duration(now-beat), "sockets", l.stats.conns.Load(),
					"stack", string(goroutineStack(l.hb.gid.Load())))
			}
		case now-beat <= threshold && l.hb.stalled.Load():
			l.hb.stalled.Store(false)
			if lg := s.opts.logger; lg != nil {
				lg.Warn("wsloop: a stalled event loop is back", "loop", l.idx, "after", time.Duration(beat-l.hb.stallsAt))
			}
		}
	})
}

// goroutineID returns the calling goroutine's id, as its stack trace
// names it.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		id, _ := strconv.ParseUint(string(b[:i]), 10, 64)
		return id
	}
	return 0
}

// goroutineStack returns the stack of goroutine id, or a note saying why
// there is none. It dumps every goroutine's stack (which stops the world
// briefly), so it runs only when a stall is found.
func goroutineStack(id uint64) []byte {
	if id == 0 {
		return []byte("(unknown goroutine)")
	}
	// Start small (a server has few goroutines: the loops, the acceptor,
	// the broker's) and grow only when the dump fills the buffer, so a
	// stall on a busy machine does not cost every process a megabyte.
	var all []byte
	for size := 64 << 10; ; size *= 4 {
		buf := make([]byte, size)
		n := runtime.Stack(buf, true)
		if all = buf[:n]; n < size || size >= 16<<20 {
			break
		}
	}
	head := fmt.Appendf(nil, "goroutine %d [", id)
	for len(all) > 0 {
		block, rest, _ := bytes.Cut(all, []byte("\n\n"))
		if bytes.HasPrefix(block, head) {
			return block
		}
		all = rest
	}
	return []byte("(its stack was not found)")
}

// loopWaker is the gnet context of the socket pair ListenAndServe enrolls
// for each event loop at start: first to learn the loops (gnet has no
// other way to enumerate a client's loops; its balancer puts each on a
// different loop, since each stays registered until all are), then to
// wake its loop after the sockets that are ready now: a fan-out that
// stopped after a slice writes a byte to peer and goes on when the loop
// reads it (fanout.go). A task queued with Execute would run before the
// loop polls again (gnet runs queued tasks until none is left).
type loopWaker struct {
	peer  int   // the server's end, written to
	loop  *loop // set by OnOpen
	armed bool  // a byte is on its way (owned by the loop)
}

// wakeByte is what a loopWaker's peer writes.
var wakeByte = []byte{1}

// discoverLoops enrolls one end of a socket pair per event loop, so that
// every loop has opened one (OnOpen creates its state); the server keeps
// them as the loops' wakers, and closes its ends once the loops stopped.
func (s *Server) discoverLoops(cli *gnet.Client) (err error) {
	defer func() {
		if err != nil {
			s.closeWakers()
		}
	}()
	for range s.opts.eventLoops {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("wsloop: a socket pair to find the event loops: %w", err)
		}
		if err := syscall.SetNonblock(fds[1], true); err != nil {
			_ = syscall.Close(fds[0])
			_ = syscall.Close(fds[1])
			return fmt.Errorf("wsloop: a socket pair to find the event loops: %w", err)
		}
		w := &loopWaker{peer: fds[1]}
		s.wakers = append(s.wakers, w)
		f := os.NewFile(uintptr(fds[0]), "wsloop-waker")
		conn, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("wsloop: a socket pair to find the event loops: %w", err)
		}
		if _, err := cli.EnrollContext(conn, w); err != nil {
			return fmt.Errorf("wsloop: finding the event loops: %w", err)
		}
	}
	if n := len(s.allLoops()); n != s.opts.eventLoops {
		return fmt.Errorf("wsloop: found %d of %d event loops", n, s.opts.eventLoops)
	}
	return nil
}

// closeWakers closes the server's ends of the wakers, once the loops have
// stopped (or never started).
func (s *Server) closeWakers() {
	for _, w := range s.wakers {
		_ = syscall.Close(w.peer)
	}
	s.wakers = nil
}

// allLoops returns the loops known so far.
func (s *Server) allLoops() []*loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	return s.loops
}
