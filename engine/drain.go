package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// A drain closes a server's connections a few at a time, so that their
// clients do not all come back at once to whatever replaces it. Closing
// every connection at once (Shutdown) sends every client to the new server
// within the spread of their reconnect backoff: the chat page's first retry
// comes 375 to 625 ms after the close, so 100,000 clients would arrive
// within a quarter of a second. Spread over a window, the arrivals follow
// the closes: TestDrainSpreadsReconnects (examples/chat) drains 3,000 chat
// clients over 6 s and counts them arriving at a second server: at most
// 630 in a second against an average of 500 (with Shutdown instead, 1,661
// in one second: on a loaded 2-core machine the burst itself took two).
//
// The pace is set by the clock, not by the ticker: at each tick the drain
// closes the connections whose turn has come (connection i of n at
// i*span/n), so a tick that comes late is made up by the next one and the
// drain ends on time. Connections are taken from a shuffled snapshot:
// the order of the closes has nothing to do with the order of the
// connections (nor with their rooms or loops). A connection of the
// snapshot that closed on its own meanwhile is skipped at its turn.

// statusServiceRestart is the close code of a drain (RFC 6455 7.4.1,
// registered in the IANA WebSocket close code registry as Service
// Restart); gobwas/ws v1.5.0 has no name for it.
const statusServiceRestart ws.StatusCode = 1012

// defaultDrainReason is the reason a drain's close frames carry unless
// DrainReason says otherwise.
const defaultDrainReason = "server restarting, reconnect"

// Bounds of the drain's tick: the batch it closes per tick is what is due
// since the last one. At 100,000 connections over 30 s a 10 ms tick closes
// about 33 connections at a time; below 10 ms a tick would mostly find
// nothing due, above 100 ms the batches would show as bursts.
const (
	minDrainTick = 10 * time.Millisecond
	maxDrainTick = 100 * time.Millisecond
)

// drainProgressEvery is how often a drain logs its progress.
const drainProgressEvery = 5 * time.Second

// drainState is a drain's progress, read by Stats.
type drainState struct {
	begun     atomic.Bool   // Drain was called (for the whole server's life)
	active    atomic.Bool   // a drain is closing connections: from Drain's start to its return
	closed    atomic.Uint64 // connections sent 1012 at their turn
	remaining atomic.Int64  // connections of the snapshot whose turn has not come
}

// DrainOption configures Drain.
type DrainOption func(*drainConfig)

type drainConfig struct {
	rate   int
	reason string
}

// DrainRate caps a drain's pace at perSecond connections a second (the
// default, 0, sets no cap: the window alone sets the pace). When the cap
// makes the drain longer than its window, the cap wins and the drain logs
// how long it will take.
func DrainRate(perSecond int) DrainOption { return func(c *drainConfig) { c.rate = perSecond } }

// DrainReason sets the reason carried by the drain's close frames, which
// a client may show or act on (default "server restarting, reconnect");
// valid UTF-8 of at most 123 bytes.
func DrainReason(reason string) DrainOption { return func(c *drainConfig) { c.reason = reason } }

// Drain stops the server for a restart without sending all its clients
// back at once. It stops accepting (the listening socket is closed, so a
// new server may listen on the same address; ServeHTTP answers 503), then
// closes the open connections one by one in a random order, at an even
// pace over window (DrainRate may cap the pace), each with close code 1012
// (service restart) and a reason (DrainReason); OnClose gets
// ErrServerRestart. Until its turn a connection works as before: it gets
// what is published, sends, is pinged. A request that arrives on a socket
// that has not upgraded is answered and the socket closed after the
// answer (an upgrade gets 503); idle sockets of that kind are closed at
// the end of the window. Stats (Draining, DrainClosed, DrainRemaining) and
// the logger (WithLogger: at the start, every 5 s and at the end) show the
// progress.
//
// At the end of the window the drain finishes as Shutdown does, with 1012
// for any connection it has not closed yet, and Drain returns nil once
// every OnClose has run and ListenAndServe has returned ErrServerClosed.
// Give ctx a deadline past the window by the close timeout
// (WithCloseTimeout), for the last clients to answer. If ctx ends first,
// the connections left are sent 1012 at once and Drain returns ctx.Err()
// (the server then stops as Shutdown does when its ctx ends). Shutdown
// called during a drain closes the connections left at once, with 1001;
// Drain then returns once the server has stopped. A Drain called after
// Shutdown or another Drain waits as Shutdown does.
//
// Called from a callback on an event loop, Drain starts the drain on a
// goroutine of its own, with ctx's deadline but not its cancellation, and
// returns nil at once (as Shutdown does). It returns an error at once for
// a negative window or a bad option.
func (s *Server) Drain(ctx context.Context, window time.Duration, opts ...DrainOption) error {
	cfg := drainConfig{reason: defaultDrainReason}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case window < 0:
		return fmt.Errorf("wsloop: Drain: negative window %v", window)
	case cfg.rate < 0:
		return fmt.Errorf("wsloop: DrainRate(%d): negative", cfg.rate)
	case len(cfg.reason) > 123 || !utf8.ValidString(cfg.reason):
		return fmt.Errorf("wsloop: DrainReason(%q): not valid UTF-8 of at most 123 bytes", cfg.reason)
	}
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
			bg, cancel := detach(ctx, 0)
			defer cancel()
			_ = s.Drain(bg, window, opts...)
		}()
		return nil
	}
	if s.draining.Load() || !s.drainSt.begun.CompareAndSwap(false, true) {
		return s.waitStopped(ctx) // a Shutdown or another Drain is under way
	}
	s.drainSt.active.Store(true)
	defer s.drainSt.active.Store(false)
	s.stopAccepting()
	err := s.pace(ctx, window, &cfg)
	if err == nil {
		// The end of the window: the stragglers (a connection upgraded
		// after the snapshot, idle sockets that never upgraded). Sockets
		// accepted just before the drain began may still be on their way
		// to an upgrade (with a short window, or none): they get a moment
		// to finish it, and are then closed with 1012 like the others,
		// rather than answered 503 or reset, which a client takes for a
		// failed dial.
		s.settleHandshakes(ctx)
		first, werr := s.closeAll(ctx, statusServiceRestart, cfg.reason, ErrServerRestart)
		if !first {
			return s.waitStopped(ctx) // Shutdown took over
		}
		err = werr
	} else if errors.Is(err, errDrainOverridden) {
		return s.waitStopped(ctx)
	} else {
		// ctx ended: the rest at once, and stop as Shutdown does.
		if first, _ := s.closeAll(ctx, statusServiceRestart, cfg.reason, ErrServerRestart); !first {
			return s.waitStopped(ctx)
		}
	}
	s.stopOnce.Do(func() { close(s.stop) })
	if werr := s.waitStopped(ctx); err == nil {
		err = werr
	}
	return err
}

// settleHandshakes waits until every socket is upgraded, at most
// handshakeGrace (300 ms) or until ctx ends, Shutdown takes over or the
// accept goroutine has not ended.
func (s *Server) settleHandshakes(ctx context.Context) {
	end := time.Now().Add(handshakeGrace)
	if a := s.acc; a != nil {
		select {
		case <-a.exited: // no socket comes after this
		case <-time.After(handshakeGrace):
		case <-ctx.Done():
		}
	}
	for s.sockets.Load() > s.upgraded.Load() && time.Now().Before(end) && ctx.Err() == nil && !s.draining.Load() && !s.stopping() {
		time.Sleep(5 * time.Millisecond)
	}
}

// errDrainOverridden ends a drain's pacing when Shutdown took over or the
// server failed.
var errDrainOverridden = errors.New("wsloop: drain overridden")

// waitStopped waits until ListenAndServe (or Run) has returned, or ctx is
// done.
func (s *Server) waitStopped(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pace closes the connections open now, shuffled, at an even pace over
// window (longer if cfg.rate says so). It returns nil when every one has
// had its turn, ctx.Err() if ctx ends first, errDrainOverridden if
// Shutdown took over or the server failed.
func (s *Server) pace(ctx context.Context, window time.Duration, cfg *drainConfig) error {
	var conns []*Conn
	s.conns.Range(func(_ uint64, c *Conn) bool {
		conns = append(conns, c)
		return true
	})
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	n := len(conns)
	s.drainSt.remaining.Store(int64(n))
	span := window
	capped := false
	if cfg.rate > 0 {
		if least := time.Duration(float64(n) / float64(cfg.rate) * float64(time.Second)); least > span {
			span, capped = least, true
		}
	}
	tick := minDrainTick
	if n > 0 {
		tick = min(max(span/time.Duration(n), minDrainTick), maxDrainTick)
	}
	log := s.opts.logger
	if log != nil {
		log.Info("wsloop: draining: closing connections with 1012 in a random order",
			"connections", n, "window", window, "rate_cap", cfg.rate, "takes", span, "reason", cfg.reason)
		if capped {
			log.Info("wsloop: draining: the rate cap makes the drain longer than its window",
				"window", window, "takes", span, "rate_cap", cfg.rate)
		}
	}
	start := time.Now()
	lastLog := start
	closedBefore := s.drainSt.closed.Load()
	t := time.NewTicker(tick)
	defer t.Stop()
	var err error
	for next := 0; ; {
		if s.draining.Load() || s.stopping() {
			err = errDrainOverridden
			break
		}
		elapsed := time.Since(start)
		due := n
		if elapsed < span {
			due = int(float64(n) * float64(elapsed) / float64(span))
		}
		for ; next < due; next++ {
			c := conns[next]
			conns[next] = nil
			if c.requestClose(statusServiceRestart, cfg.reason, ErrServerRestart) == nil {
				s.drainSt.closed.Add(1)
			}
			s.drainSt.remaining.Add(-1)
		}
		if next == n {
			break
		}
		if log != nil && time.Since(lastLog) >= drainProgressEvery {
			lastLog = time.Now()
			log.Info("wsloop: draining", "closed", s.drainSt.closed.Load()-closedBefore, "remaining", n-next,
				"elapsed", elapsed.Round(time.Millisecond), "connections", s.upgraded.Load())
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	if log != nil {
		closed := s.drainSt.closed.Load() - closedBefore
		switch {
		case err == nil:
			log.Info("wsloop: drained: every connection had its turn; stopping",
				"closed", closed, "closed_on_their_own", uint64(n)-closed, "took", time.Since(start).Round(time.Millisecond))
		case errors.Is(err, errDrainOverridden):
			log.Info("wsloop: drain cut short by Shutdown (or a failure): the rest are closed at once",
				"closed", closed, "remaining", s.drainSt.remaining.Load())
		default:
			log.Warn("wsloop: drain cut short by its ctx: the rest are closed at once",
				"err", err, "closed", closed, "remaining", s.drainSt.remaining.Load())
		}
	}
	if err != nil {
		s.drainSt.remaining.Store(0)
	}
	return err
}
