package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// A reader owns the subscriber connections once they are upgraded.
type reader interface {
	add(s *sub, c net.Conn) error // s.buf already holds what followed the 101
	stop()                        // stop reading (bounded); then closeAll
	closeAll()
}

// readLoop reads c into s until an error; the goroutine reader runs one
// per subscriber, and the publisher's own messages are read this way too.
func readLoop(b *bench, s *sub) {
	for {
		n, err := s.nc.Read(s.buf[s.w:])
		s.reads++
		s.w += n
		if n > 0 {
			if cerr := s.consume(b); cerr != nil {
				if !errors.Is(cerr, errClosing) {
					b.fail("%s: %v", s.name(), cerr)
				}
				s.nc.Close()
				return
			}
		}
		if err != nil {
			if !b.closing.Load() {
				if err == io.EOF {
					err = errors.New("server closed the connection (EOF)")
				}
				b.fail("%s: %v", s.name(), err)
			}
			s.nc.Close()
			return
		}
	}
}

func (s *sub) name() string {
	if s.self {
		return "publisher"
	}
	return fmt.Sprintf("subscriber %d", s.id)
}

// goReader is a goroutine per subscriber reading a net.Conn into the
// connection's buffer.
type goReader struct {
	b     *bench
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func (g *goReader) add(s *sub, c net.Conn) error {
	s.nc = c
	g.mu.Lock()
	g.conns = append(g.conns, c)
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if s.w > 0 {
			if err := s.consume(g.b); err != nil {
				g.b.fail("%s: %v", s.name(), err)
				c.Close()
				return
			}
		}
		readLoop(g.b, s)
	}()
	return nil
}

// stop closes the sockets, which ends the goroutines.
func (g *goReader) stop() {
	g.closeAll()
	waitBounded(&g.wg, "subscriber goroutines")
}

func (g *goReader) closeAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

// epollReader is a few goroutines, each with its own epoll instance and a
// share of the subscribers' sockets, taken from the runtime's poller and
// read with plain read(2) when epoll (level-triggered) reports them.
type epollReader struct {
	b       *bench
	pollers []*poller
	next    atomic.Uint64
	quit    atomic.Bool
	wg      sync.WaitGroup
}

type poller struct {
	epfd  int
	mu    sync.Mutex
	subs  []*sub // by index, which is the epoll event's data
	extra func() // called for the event whose data is -1 (see watch)
}

// watch makes the first poller call fn whenever fd is readable: a socket
// read on the poller's thread, since with one P a goroutine woken by the
// runtime's netpoller may wait for sysmon (up to 10 ms) while the poller
// threads sit in epoll_wait.
func (e *epollReader) watch(fd int, fn func()) error {
	p := e.pollers[0]
	p.mu.Lock()
	p.extra = fn
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

func newEpollReader(b *bench, n int) (*epollReader, error) {
	e := &epollReader{b: b}
	for range n {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			e.closeAll()
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		p := &poller{epfd: fd}
		e.pollers = append(e.pollers, p)
	}
	for _, p := range e.pollers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.run(p)
		}()
	}
	return e, nil
}

// add takes the socket from the runtime: a duplicate of the descriptor
// (still non-blocking, O_NONBLOCK belongs to the open file) outlives the
// net.Conn, whose Close removes the original from the runtime's epoll.
func (e *epollReader) add(s *sub, nc net.Conn) error {
	c, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return fmt.Errorf("the epoll reader reads plain TCP sockets only, not a %T (-tls needs -reader goroutine)", nc)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	c.Close()
	if cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("dup: %w", err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return err
	}
	s.fd = nfd
	p := e.pollers[e.next.Add(1)%uint64(len(e.pollers))]
	p.mu.Lock()
	idx := len(p.subs)
	p.subs = append(p.subs, s)
	p.mu.Unlock()
	if s.w > 0 {
		// Safe: the poller sees s only after the EpollCtl below.
		if err := s.consume(e.b); err != nil {
			e.b.fail("%s: %v", s.name(), err)
			s.dead = true
			return nil
		}
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(idx)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, nfd, &ev); err != nil {
		s.dead = true
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (e *epollReader) run(p *poller) {
	b := e.b
	evs := make([]unix.EpollEvent, 1024)
	for !e.quit.Load() {
		n, err := unix.EpollWait(p.epfd, evs, 0)
		if n == 0 && err == nil {
			// Nothing ready: let the publisher run before this thread
			// blocks in epoll_wait (with one P it would otherwise wait
			// for the runtime to take the P back), then block, briefly.
			runtime.Gosched()
			n, err = unix.EpollWait(p.epfd, evs, 50)
		}
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			b.fail("epoll_wait: %v", err)
			return
		}
		if n == 0 {
			continue
		}
		p.mu.Lock()
		subs, extra := p.subs, p.extra
		p.mu.Unlock()
		for i := range evs[:n] {
			if evs[i].Fd == -1 {
				extra()
				continue
			}
			s := subs[evs[i].Fd]
			if s.dead {
				continue
			}
			if err := readOnce(b, s); err != nil {
				s.dead = true
				_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
				if !errors.Is(err, errClosing) && !b.closing.Load() {
					b.fail("%s: %v", s.name(), err)
				}
			}
		}
	}
}

// readOnce reads what the socket has (up to twice the buffer) and handles
// it; epoll is level-triggered, so anything left is reported again.
func readOnce(b *bench, s *sub) error {
	for range 2 {
		free := len(s.buf) - s.w
		n, err := unix.Read(s.fd, s.buf[s.w:])
		s.reads++
		switch {
		case err == syscall.EAGAIN:
			return nil
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return errors.New("server closed the connection (EOF)")
		}
		s.w += n
		if err := s.consume(b); err != nil {
			return err
		}
		if n < free {
			return nil
		}
	}
	return nil
}

func (e *epollReader) stop() {
	e.quit.Store(true)
	waitBounded(&e.wg, "epoll goroutines")
}

// closeAll closes every socket and epoll instance; call it after stop.
func (e *epollReader) closeAll() {
	for _, p := range e.pollers {
		p.mu.Lock()
		for _, s := range p.subs {
			if s.fd >= 0 {
				unix.Close(s.fd)
				s.fd = -1
			}
		}
		p.subs = nil
		p.mu.Unlock()
		unix.Close(p.epfd)
	}
	e.pollers = nil
}
