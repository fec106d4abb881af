package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/shard"
)

// Server is a WebSocket server on a few gnet event loops. Create it with
// New, run it with ListenAndServe, stop it with Shutdown. Its methods are
// safe for concurrent use.
type Server struct {
	h    Handler
	opts options

	eng      gnet.Engine
	ready    chan struct{} // closed once listening
	done     chan struct{} // closed when ListenAndServe's engine has stopped
	addr     net.Addr
	started  atomic.Bool
	draining atomic.Bool

	loopsMu  sync.Mutex
	loops    []*loop
	loopByEL sync.Map // gnet.EventLoop -> *loop

	nextID     atomic.Uint64
	sockets    atomic.Int64 // sockets with per-connection state
	upgraded   atomic.Int64 // connections between OnOpen and OnClose
	rejected   atomic.Uint64
	dropped    atomic.Uint64
	slowCloses atomic.Uint64
	evictions  atomic.Uint64

	conns *shard.Map[uint64, *Conn] // upgraded connections by id
	keys  *shard.Map[string, *Conn] // connections by bound key

	outPool sync.Pool // *[]byte for writes from outside the loop
}

// New returns a Server that sends every connection's events to h.
// It returns an error naming the first invalid option.
func New(h Handler, opts ...Option) (*Server, error) {
	if h == nil {
		return nil, errors.New("wsloop: New: nil Handler")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	s := &Server{h: h, opts: o, ready: make(chan struct{}), done: make(chan struct{}),
		conns: shard.NewMap[uint64, *Conn](o.shards), keys: shard.NewMap[string, *Conn](o.shards)}
	s.outPool.New = func() any { b := make([]byte, 0, 1024); return &b }
	return s, nil
}

// ListenAndServe listens on addr ("host:port", or gnet's "tcp://host:port")
// and serves until Shutdown is called or ctx is done; then it shuts down
// gracefully (within the close timeout, for ctx) and returns ErrServerClosed
// after every OnClose has run. It returns at once with an error if it cannot
// listen, or if it was already called.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrServerClosed
	}
	if !strings.Contains(addr, "://") {
		addr = "tcp://" + addr
	}
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), s.opts.closeTimeout)
			defer cancel()
			_ = s.Shutdown(sctx)
		case <-s.done:
		}
	}()
	err := gnet.Run(&events{s: s}, addr, s.gnetOptions()...)
	close(s.done)
	if err != nil {
		return err
	}
	return ErrServerClosed
}

func (s *Server) gnetOptions() []gnet.Option {
	o := &s.opts
	return []gnet.Option{
		// Edge-triggered epoll, one read per readiness event. Under load
		// this serves connections in the order their data arrived: with
		// level-triggered epoll the kernel puts each reported socket back
		// on its ready list ahead of sockets that became ready while the
		// loop worked through the batch, so a connection served recently
		// is polled again before connections that have waited longer.
		// With 1,000 busy connections that spread the latency of a closed
		// loop to twice its median (benchmarks/RESULTS.md). A chunk of 1
		// byte makes gnet read once per event instead of reading again
		// until EAGAIN: a read that fills the read buffer is followed by
		// another one queued behind the other ready sockets, and one that
		// does not has drained the socket, so whatever arrives later
		// raises a new edge. The engine always consumes what gnet reads,
		// which is what edge-triggered I/O requires.
		gnet.WithEdgeTriggeredIOChunk(1),
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(o.eventLoops),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithReadBufferCap(o.readBufferCap),
		gnet.WithWriteBufferCap(o.writeBufferCap),
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{o.logger}),
	}
}

// Ready returns a channel closed once the server is listening.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the listening address once Ready is closed, else nil.
func (s *Server) Addr() net.Addr {
	select {
	case <-s.ready:
		return s.addr
	default:
		return nil
	}
}

// Connections returns the number of upgraded connections.
func (s *Server) Connections() int { return int(s.upgraded.Load()) }

// Shutdown stops the server gracefully: new sockets are refused (503),
// every open connection gets a close frame with 1001 (going away) and is
// closed when its peer answers; at ctx's deadline whatever remains is closed.
// Shutdown returns after every OnClose has run and ListenAndServe has
// returned: nil, or ctx.Err() if the deadline cut the wait short.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.started.Load() {
		s.started.Store(true)
		return nil
	}
	select {
	case <-s.ready:
	case <-s.done:
		return nil
	}
	var waitErr error
	if s.draining.CompareAndSwap(false, true) {
		s.eachLoop(func(l *loop) { _ = l.el.Execute(ctx, shutdownTask{l}) })
		waitErr = s.waitDrained(ctx)
		go func() { _ = s.eng.Stop(context.Background()) }()
	}
	<-s.done
	return waitErr
}

// waitDrained polls until every socket is closed or ctx is done.
func (s *Server) waitDrained(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.sockets.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

type shutdownTask struct{ l *loop }

func (t shutdownTask) Run(context.Context) error {
	t.l.each(func(c *Conn) {
		if c.state.Load() == stateHandshake {
			t.l.closeSocket(c)
			return
		}
		c.beginDispatch()
		_ = c.startClose(1001, "server shutting down", ErrServerShutdown)
		c.endDispatch()
	})
	return nil
}

func (s *Server) eachLoop(fn func(*loop)) {
	s.loopsMu.Lock()
	loops := s.loops
	s.loopsMu.Unlock()
	for _, l := range loops {
		fn(l)
	}
}

// loopFor returns wsloop's state for a gnet loop, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	if l, ok := s.loopByEL.Load(el); ok {
		return l.(*loop)
	}
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	if l, ok := s.loopByEL.Load(el); ok {
		return l.(*loop)
	}
	l := newLoop(s, el)
	s.loops = append(s.loops[:len(s.loops):len(s.loops)], l)
	s.loopByEL.Store(el, l)
	return l
}

func (s *Server) boot(eng gnet.Engine) {
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			s.addr = sockaddrToTCP(sa)
		}
		_ = syscall.Close(fd)
	}
	close(s.ready)
}

func sockaddrToTCP(sa syscall.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// gnetLogger passes gnet's own logs to the user's logger at debug level
// (errors at error level), and drops them when there is none.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) logf(format string, args ...any) {
	if g.l != nil {
		g.l.Debug(fmt.Sprintf("gnet: "+format, args...))
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.logf(format, args...) }
func (g gnetLogger) Infof(format string, args ...any)  { g.logf(format, args...) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.logf(format, args...) }
func (g gnetLogger) Errorf(format string, args ...any) { g.logf(format, args...) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.logf(format, args...) }
