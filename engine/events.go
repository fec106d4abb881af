package engine

import (
	"fmt"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// events adapts a Server to gnet's EventHandler; it is a separate type so
// that gnet's callbacks are not part of Server's API.
type events struct {
	gnet.BuiltinEventEngine
	s *Server
}

// busyResponse answers sockets refused at accept time (connection cap,
// descriptors exhausted, or shutdown), before any per-connection state
// exists.
var busyResponse = []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 20\r\nRetry-After: 1\r\n\r\nserver at capacity\r\n")

// OnOpen runs on the loop for every socket the acceptor gave it (or
// net/http handed over); it was counted against the socket cap.
func (e *events) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := e.s
	l := s.loopFor(gc.EventLoop())
	var h *handoff
	var adopted *adoption // handed over by the old process (handoff.go)
	switch tok := gc.Context().(type) {
	case nil: // registered by the acceptor's task (accept.go)
		l.opening = true
		adopted, l.adoptNext = l.adoptNext, nil
	case *enrollToken:
		tok.opened.Store(true)
		adopted = tok.adopt
	case *handoff: // from net/http, upgraded (mount.go)
		tok.opened.Store(true)
		h = tok
	case *loopWaker:
		tok.loop, l.waker = l, tok
		return nil, gnet.None
	}
	c := &Conn{gc: gc, loop: l, id: s.nextID.Add(1), remote: remoteAddr(gc)}
	c.timer.Owner = c
	l.add(c)
	gc.SetContext(c)
	switch {
	case adopted != nil:
		return nil, c.adoptConn(adopted)
	case h != nil:
		return nil, c.adopt(h)
	}
	l.arm(c, s.opts.handshakeTimeout)
	if s.opts.proxyTrusted != nil {
		if s.trustedProxy(c.remote) {
			c.lflags |= lfProxyWait
		} else {
			c.lflags |= lfProxyCheck
		}
	}
	if s.opts.tls != nil && c.lflags&lfProxyWait == 0 {
		s.newTLS(c, gc) // behind a balancer, once its header has named the client
	}
	return nil, gnet.None
}

// remoteAddr is gc's peer address, never nil: a peer on a Unix socket
// usually has no name, and then gnet may have no address for it.
func remoteAddr(gc gnet.Conn) net.Addr {
	if a := gc.RemoteAddr(); a != nil {
		return a
	}
	return &net.UnixAddr{Net: "unix"}
}

func (e *events) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*Conn)
	if !ok {
		if w, ok := gc.Context().(*loopWaker); ok {
			w.woken(gc)
		}
		return gnet.None
	}
	c.stampRead()
	if c.lflags&lfFrozen != 0 {
		c.checkFrozen() // handed over: parsed once the hand-off ends (handoff.go)
		return gnet.None
	}
	if c.lflags&(lfProxyWait|lfProxyCheck) != 0 {
		if proceed, refuse := c.readProxy(gc); refuse {
			return gnet.Close
		} else if !proceed {
			return gnet.None
		}
	}
	st := c.tlsOf()
	if pc, ok := c.gc.(*prefixConn); ok {
		return c.trafficPrefixed(pc)
	}
	if st != nil {
		if handshaking, overflow := st.pushHandshake(gc); overflow {
			return gnet.Close
		} else if handshaking {
			return gnet.None // the TLS handshake's goroutine reads it
		}
	}
	c.beginDispatch()
	c.readInput(st)
	c.endDispatch()
	if c.afterDispatch(st) {
		return gnet.Close
	}
	return gnet.None
}

// readInput handles what has arrived: the upgrade request or frames, from
// gnet's buffer, or for TLS (st, c's TLS state) from the records decrypted
// a chunk at a time.
func (c *Conn) readInput(st *tlsState) {
	if st == nil {
		c.readSome()
		return
	}
	for {
		got, err := st.decrypt()
		c.readSome()
		if err != nil {
			st.err = err
			return
		}
		if !got {
			return
		}
	}
}

func (c *Conn) readSome() {
	if c.state.Load() == stateHandshake {
		c.readHandshake()
	} else {
		c.readFrames()
	}
}

// afterDispatch shuts down the write side of a failed connection once its
// last bytes are out; it reports whether the socket must close now (st is
// c's TLS state, nil without TLS).
func (c *Conn) afterDispatch(st *tlsState) bool {
	switch c.state.Load() {
	case stateDone:
		return true
	case stateFailed:
		c.shutdownWrite()
	}
	return st != nil && st.err != nil
}

func (e *events) OnClose(gc gnet.Conn, err error) gnet.Action {
	if c, ok := gc.Context().(*Conn); ok {
		c.closed(err)
	}
	return gnet.None
}

func (e *events) OnTick() (time.Duration, gnet.Action) {
	e.s.eachLoop((*loop).tick)
	e.s.watchLoops()
	return e.s.opts.tick, gnet.None
}

// closed releases c after its socket closed and runs OnClose if OnOpen ran.
func (c *Conn) closed(err error) {
	l := c.loop
	c.mu.Lock()
	c.state.Store(stateClosed)
	ce := c.closeErr
	c.mu.Unlock()
	l.wheel.Cancel(&c.timer)
	l.remove(c)
	if len(l.httpx) > 0 {
		c.abortExchange()
	}
	if st := c.tlsOf(); st != nil {
		st.kill()
		st.releasePlain()
		if err == nil {
			err = st.err
		}
	}
	c.rd.release(l)
	c.releasePong()
	c.dropOut()
	c.sockBuffered.Store(0)
	l.srv.sockets.Add(-1)
	if c.lflags&lfOpened == 0 {
		return
	}
	if ce == nil {
		cause := ErrConnectionLost
		if err != nil {
			cause = fmt.Errorf("%w: %v", ErrConnectionLost, err)
		}
		ce = &CloseError{Code: 1006, Err: cause}
	}
	l.srv.upgraded.Add(-1)
	if c.lflags&lfHandedOver != 0 {
		if c.pmd != 0 {
			l.srv.pmdConns.Add(-1)
			delete(l.clientHist, c)
		}
		l.srv.unregister(c)
		return // alive in the new process: no OnClose
	}
	if c.pmd != 0 {
		l.srv.pmdConns.Add(-1)
		delete(l.clientHist, c)
	}
	l.srv.unregister(c)
	c.callOnClose(ce)
}
