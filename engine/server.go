package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/shard"
)

// Server is a WebSocket server on a few gnet event loops. Create it with
// New, run it with ListenAndServe, stop it with Shutdown. Its methods are
// safe for concurrent use.
type Server struct {
	h     Handler
	opts  options
	epoch time.Time // Server.clock counts from here

	socketCap atomic.Int64  // WithMaxConnections, or derived from RLIMIT_NOFILE
	ready     chan struct{} // closed once listening
	stop      chan struct{} // closed when ListenAndServe must stop (Shutdown drained, or a failure)
	stopOnce  sync.Once
	done      chan struct{}         // closed when ListenAndServe has stopped the loops
	failure   atomic.Pointer[error] // why the server stopped on its own, if it did
	addr      net.Addr
	started   atomic.Bool
	draining  atomic.Bool // Shutdown (or the end of a Drain) has sent every connection its close frame
	drainSt   drainState  // Drain (drain.go)

	acc          *acceptor // nil for Run; set before ready closes
	accStopOnce  sync.Once
	accStopped   atomic.Bool                  // stopAccepting was called
	restarting   atomic.Bool                  // Restart is handing the listener over (restart.go)
	handoff      atomic.Pointer[net.UnixConn] // the socket to the process that took over, once it serves
	inherit      *inheritance                 // what this process got from the one it replaced, if any
	handing      atomic.Pointer[handOffState] // Restart is handing connections over (handoff.go)
	adopting     atomic.Bool                  // connections from the old process may still come (handoff.go)
	handOffs     atomic.Uint64
	handOffBytes atomic.Uint64 // output that travelled with them
	frozenFloods atomic.Uint64 // connections closed past maxFrozen (handoff.go)
	adopted      atomic.Uint64

	loopsMu  sync.Mutex
	loops    []*loop
	wakers   []*loopWaker // one per loop (stall.go)
	loopByEL sync.Map     // gnet.EventLoop -> *loop

	nextID          atomic.Uint64
	sockets         atomic.Int64 // accepted sockets, from admission to close; bounded by socketCap
	upgraded        atomic.Int64 // connections between OnOpen and OnClose
	rejected        atomic.Uint64
	dropped         atomic.Uint64
	slowCloses      atomic.Uint64
	rateLimitCloses atomic.Uint64
	evictions       atomic.Uint64
	hsTimeouts      atomic.Uint64
	closeTimeouts   atomic.Uint64
	acceptErrors    atomic.Uint64
	shed            atomic.Uint64
	queueFull       atomic.Uint64
	loopStalls      atomic.Uint64
	tlsFailures     atomic.Uint64
	tlsOverflows    atomic.Uint64
	tlsHeld         atomic.Int64 // bytes of TLS handshake input buffers (WithMaxTLSHandshakeBytes)
	proxyRejected   atomic.Uint64
	handshakes      handshakePool // TLS handshakes in progress (WithTLS)
	mounted         mountState    // connections handed over by net/http (ServeHTTP)
	httpPool        httpWorkers   // goroutines running WithHTTPHandler (httpworkers.go)
	httpBusy        atomic.Uint64
	httpTooLarge    atomic.Uint64

	conns *shard.Map[uint64, *Conn] // upgraded connections by id
	keys  *shard.Map[string, *Conn] // connections by bound key
	hist  histories                 // rooms with history (history.go)
	// histBroker is the broker when it keeps the cluster's history
	// (HistoryBroker) and the server keeps history: the bus then gives
	// positions.
	histBroker HistoryBroker

	outPool sync.Pool // *[]byte for writes from outside the loop

	deflaters sync.Pool    // *deflater (deflate.go)
	pmdConns  atomic.Int64 // open connections that negotiated permessage-deflate
	deflated  atomic.Uint64
	inflated  atomic.Uint64
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
	s := &Server{h: h, opts: o, epoch: time.Now(), ready: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		conns: shard.NewMap[uint64, *Conn](o.shards), keys: shard.NewMap[string, *Conn](o.shards)}
	s.outPool.New = func() any { b := make([]byte, 0, 1024); return &b }
	if o.historyRule != nil {
		s.hist.rooms = shard.NewMap[string, *roomHistory](o.shards)
		if hb, ok := o.broker.(HistoryBroker); ok && hb.KeepsHistory() {
			s.histBroker = hb
		}
	}
	s.mounted.slots = make(chan struct{}, 2*o.eventLoops)
	s.httpPool.init(o.httpWorkers)
	return s, nil
}

// ListenAndServe listens on addr ("host:port"; "tcp://host:port",
// "tcp4://", "tcp6://" or "unix:///path" name the network) and serves until
// Shutdown is called or ctx is done; then it shuts down gracefully (within
// the close timeout, for ctx) and returns ErrServerClosed after every
// OnClose has run.
//
// It returns at once with an error if it cannot listen, or if it was
// already called. If the server stops for any other reason (the listening
// socket fails for good, an event loop dies), it closes the connections
// with 1001 as Shutdown does (a dead loop's own connections are lost, with
// 1006) and returns an error that says why; running out of file
// descriptors is not such a reason: the server keeps serving (see
// WithMaxConnections).
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrServerClosed
	}
	defer close(s.done)
	in, err := takeInheritance()
	if err != nil {
		return err
	}
	var ln net.Listener
	if in != nil {
		// A restarted process: the listener is the old process's (restart.go).
		s.inherit, ln = in, in.ln
	} else if ln, err = listen(ctx, addr, s.opts.reusePort); err != nil {
		return err
	}
	err = s.serve(ctx, ln)
	if s.inherit != nil {
		select {
		case <-s.ready:
		default:
			s.inherit.failed(err) // the old process keeps serving
		}
	}
	if hc := s.handoff.Load(); hc != nil {
		hc.Close()
	}
	return err
}

// Run runs the server's event loops without a listener of its own, for a
// server that takes its connections only from net/http (ServeHTTP): it
// serves until Shutdown is called or ctx is done, then shuts down as
// ListenAndServe does and returns ErrServerClosed after every OnClose has
// run. Ready is closed once the loops run; Addr stays nil. Call Run or
// ListenAndServe, not both (the second call returns ErrServerClosed at
// once); a server started with ListenAndServe serves ServeHTTP too.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return ErrServerClosed
	}
	defer close(s.done)
	return s.serve(ctx, nil)
}

// serve runs the loops, and the accept loop on ln unless it is nil.
func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	closeLn := func() {
		if ln != nil {
			_ = ln.Close()
		}
	}
	socketCap := s.opts.maxConns
	if socketCap == 0 {
		socketCap = defaultSocketCap()
	}
	s.socketCap.Store(int64(socketCap))
	cli, err := gnet.NewClient(&events{s: s}, s.gnetOptions()...)
	if err == nil {
		err = cli.Start()
	}
	if err == nil {
		if err = s.discoverLoops(cli); err != nil {
			_ = cli.Stop()
		}
	}
	if err == nil {
		defer s.closeWakers() // after cli.Stop, below
	}
	if err != nil {
		closeLn()
		return fmt.Errorf("wsloop: starting the event loops: %w", err)
	}
	if b := s.opts.broker; b != nil {
		if err := b.Start(s.Local()); err != nil {
			closeLn()
			_ = cli.Stop()
			return fmt.Errorf("wsloop: starting the broker: %w", err)
		}
		defer b.Close()
	}
	var acc *acceptor
	if ln != nil {
		if acc, err = newAcceptor(s, ln); err != nil {
			_ = cli.Stop()
			return err
		}
		s.addr = acc.laddr
		s.acc = acc
	}
	close(s.ready)
	if s.opts.historyRule != nil {
		go s.sweepHistories(s.stop)
	}
	if s.inherit != nil {
		s.adopting.Store(true)
		s.inherit.served(s) // the acceptor starts below; the kernel queues meanwhile
	}

	// The accept goroutine ends when the listener closes; an error before
	// that makes the server fail.
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if acc == nil {
			return
		}
		if err := acc.run(func() bool { return s.stopping() || s.accStopped.Load() }); err != nil {
			s.fail(err)
		}
	}()
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), s.opts.closeTimeout)
			defer cancel()
			_ = s.Shutdown(sctx)
		case <-s.stop:
		}
	}()

	<-s.stop // Shutdown has drained, or the server failed
	if p := s.failure.Load(); p != nil {
		// Stopped on its own: close every connection as Shutdown would.
		sctx, cancel := context.WithTimeout(context.Background(), s.opts.closeTimeout)
		s.drain(sctx)
		cancel()
	}
	s.stopAccepting()
	<-accepted
	if acc != nil {
		// Sockets still queued for a loop: only a dead loop leaves them.
		acc.abandon()
		acc.slow.Wait()
	}
	s.mounted.wait(s.opts.closeTimeout)
	_ = cli.Stop() // closes what is left; OnClose runs for each
	s.httpPool.close()
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return ErrServerClosed
}

// stopAccepting closes the listener, if the server has one, and ends the
// accept loop; the server goes on serving the connections it has (a drain,
// or a restart that handed the listener to a new process). Safe to call
// more than once, from any goroutine.
func (s *Server) stopAccepting() {
	if s.acc == nil {
		return
	}
	s.accStopOnce.Do(func() {
		s.accStopped.Store(true)
		s.acc.close()
	})
}

// fail records why the server must stop on its own and makes
// ListenAndServe stop; no socket is admitted from then on. The first cause
// wins.
func (s *Server) fail(err error) {
	s.failure.CompareAndSwap(nil, &err)
	s.stopOnce.Do(func() { close(s.stop) })
}

// stopping reports whether ListenAndServe has been told to stop.
func (s *Server) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// refusing reports whether new sockets and upgrades are refused, and
// plain HTTP answers end their connections: once Shutdown or Drain has
// begun, or once the server has failed.
func (s *Server) refusing() bool {
	return s.draining.Load() || s.drainSt.begun.Load() || s.failure.Load() != nil
}

// refusingUpgrade reports whether c's upgrade request is refused with 503:
// while Shutdown runs or after a failure, always; during a Drain, only on a
// socket kept alive after plain HTTP requests. A fresh socket the server
// accepted before the drain began is upgraded, and closed with the drain's
// stragglers at the end of its window: refusing it would fail a client
// that dialed before the restart (TestRestartKeepsListener).
func (s *Server) refusingUpgrade(c *Conn) bool {
	if s.draining.Load() || s.failure.Load() != nil {
		return true
	}
	return s.drainSt.begun.Load() && c.lflags&lfServedHTTP != 0
}

// refusal is the reason given with the 503 that refuses an upgrade.
func (s *Server) refusal() string {
	if s.drainSt.begun.Load() && !s.draining.Load() {
		return "server restarting"
	}
	return "server shutting down"
}

func (s *Server) gnetOptions() []gnet.Option {
	o := &s.opts
	return []gnet.Option{
		// Level-triggered epoll (gnet's default), one read per socket
		// per round of the loop: a socket with more input than one read
		// takes is reported again at the next poll, with the others that
		// are ready. Edge-triggered (as the engine ran before) served busy
		// connections in arrival order, but gnet queues the next read of
		// a socket whose read filled the buffer among the tasks it runs
		// until none is left before polling again, so a client that kept
		// its socket full held its loop for as long as it sent
		// (TestFloodingClientDoesNotStarveItsLoop).
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(o.eventLoops),
		gnet.WithReadBufferCap(o.readBufferCap),
		gnet.WithWriteBufferCap(o.writeBufferCap),
		// Accepted sockets inherit TCP_NODELAY from the listener (accept.go),
		// and hijacked ones have it from Go: TCPDelay only spares gnet a
		// second setsockopt.
		gnet.WithTCPNoDelay(gnet.TCPDelay),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{s}),
	}
}

// Ready returns a channel closed once the server is listening (Run: once
// its loops run).
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
// returned: nil, or ctx.Err() if ctx ended first (the shutdown then goes
// on: ListenAndServe returns once every socket is closed). Called during
// a Drain, it sends 1001 at once to the connections the drain has not
// closed yet. For a restart behind a load balancer, Drain spreads the
// closes (and the clients' reconnects) over a window instead.
//
// Called from a callback on an event loop (a handler that stops the server
// on an admin's message), Shutdown cannot wait: the loop it runs on is
// one it would wait for. It then starts the shutdown on a goroutine of its
// own, with ctx's deadline (or WithCloseTimeout) but not its cancellation,
// since a handler's ctx usually ends when the handler returns, and returns
// nil at once.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.started.CompareAndSwap(false, true) {
		return nil // never started, and now it never will
	}
	select {
	case <-s.ready:
	case <-s.done:
		return nil
	}
	if s.onLoop() {
		go func() {
			bg, cancel := detach(ctx, s.opts.closeTimeout)
			defer cancel()
			_ = s.Shutdown(bg)
		}()
		return nil
	}
	var waitErr error
	if !s.draining.Load() {
		waitErr = s.drain(ctx)
		s.stopOnce.Do(func() { close(s.stop) })
	}
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return waitErr
}

// detach returns a context with ctx's values and deadline (or, without
// one, a deadline of orTimeout from now, unless that is 0) but not its
// cancellation: for what a callback on a loop starts on a goroutine of its
// own, since a handler's ctx usually ends when the handler returns.
func detach(ctx context.Context, orTimeout time.Duration) (context.Context, context.CancelFunc) {
	bg := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(bg, d)
	}
	if orTimeout > 0 {
		return context.WithTimeout(bg, orTimeout)
	}
	return bg, func() {}
}

// onLoop reports whether the caller runs on one of s's event loops.
func (s *Server) onLoop() bool {
	id := goroutineID()
	for _, l := range s.allLoops() {
		if l.hb.gid.Load() == id {
			return true
		}
	}
	return false
}

// drain sends 1001 to every connection and waits until every socket is
// closed or ctx is done. Only the first call does anything.
func (s *Server) drain(ctx context.Context) error {
	_, err := s.closeAll(ctx, ws.StatusGoingAway, "server shutting down", ErrServerShutdown)
	return err
}

// closeAll sends every connection a close frame with code and reason
// (cause for OnClose), closes idle sockets that have not upgraded, and
// waits until every socket is closed or ctx is done. Only the first call
// (of Shutdown's, or the one that ends a Drain) does anything; the others
// report first false and return nil at once.
func (s *Server) closeAll(ctx context.Context, code ws.StatusCode, reason string, cause error) (first bool, err error) {
	if !s.draining.CompareAndSwap(false, true) {
		return false, nil
	}
	// Through each loop's queue, behind what was published before.
	s.eachLoop(func(l *loop) {
		_ = l.enqueue(pubItem{kind: pubShutdown, code: uint16(code), room: reason, cause: cause})
	})
	return true, s.waitDrained(ctx)
}

// waitDrained polls until every socket is closed and every http.Handler
// call has returned, or ctx is done.
func (s *Server) waitDrained(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.sockets.Load() > 0 || s.httpInProgress() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// httpInProgress is the number of http.Handler calls running.
func (s *Server) httpInProgress() int {
	busy, _ := s.httpPool.counts()
	return busy
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
	l.idx = len(s.loops)
	s.loops = append(s.loops[:len(s.loops):len(s.loops)], l)
	s.loopByEL.Store(el, l)
	return l
}

// gnetLogger passes gnet's own logs to the user's logger: errors at error
// level, warnings at warn, the rest at debug. An event loop that exits
// with an error (gnet logs it and stops the loop; its ticker stops with
// it) makes the server stop: ListenAndServe returns the error.
type gnetLogger struct{ s *Server }

// gnetLoopExit is the format of gnet's message for a loop that stops on
// an error (gnet v2.9.7, reactor_default.go).
const gnetLoopExit = "event-loop(%d) is exiting due to error: %v"

func (g gnetLogger) log(level slog.Level, format string, args ...any) {
	if l := g.s.opts.logger; l != nil && l.Enabled(context.Background(), level) {
		l.Log(context.Background(), level, "gnet: "+fmt.Sprintf(format, args...))
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args...) }
func (g gnetLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args...) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args...) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.Errorf(format, args...) }

func (g gnetLogger) Errorf(format string, args ...any) {
	if format == gnetLoopExit { // before logging, which may be slow: stop admitting sockets at once
		g.s.fail(fmt.Errorf("wsloop: an event loop stopped: "+format, args...))
	}
	g.log(slog.LevelError, format, args...)
}
