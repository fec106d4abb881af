package engine

import (
	"errors"
	"strings"
	"time"

	"github.com/wsloop/wsloop/codec"
)

// The handshake: the request is parsed from gnet's inbound buffer as it
// arrives (FindHeaderEnd resumes where it stopped), validated, passed to the
// hooks, and answered with a 101 written into the same buffer as whatever
// the handler sends from OnOpen and the echoes of frames that arrived with
// the request: one write for all of it.

// readHandshake runs on the loop during a dispatch. A plain HTTP request
// answered with keep-alive leaves the connection waiting for its next
// request, which may already be buffered.
func (c *Conn) readHandshake() {
	if ex := c.loop.exchangeOf(c); ex != nil && !c.httpInput(ex) {
		return
	}
	for c.readRequest() && c.gc.InboundBuffered() > 0 {
	}
}

// readRequest handles one request, if all of it has arrived; it reports
// whether a plain HTTP request was answered and the connection stays open
// for the next one.
func (c *Conn) readRequest() (again bool) {
	gc, l := c.gc, c.loop
	o := &l.srv.opts
	buf, _ := gc.Peek(min(gc.InboundBuffered(), o.maxHeaderBytes))
	end, next := codec.FindHeaderEnd(buf, int(c.rd.scanned))
	if len(buf) > 0 {
		c.lflags &^= lfKeptAlive // a request has begun: its deadline is a handshake deadline again
	}
	if end == 0 {
		if len(buf) >= o.maxHeaderBytes {
			c.refuse(431, "request header block too large")
		}
		c.rd.scanned = int32(next)
		return false
	}
	err := codec.ParseRequest(buf[:end], &l.req)
	l.hreq.reset(&l.req, c.remote, c.tlsOf())
	var ue *codec.UpgradeError
	switch {
	case errors.Is(err, codec.ErrNotUpgrade):
		return c.plainHTTP(end)
	case errors.As(err, &ue):
		c.refuse(ue.Status, ue.Reason)
		return false
	case err != nil:
		c.refuse(400, err.Error())
		return false
	case l.srv.refusingUpgrade(c):
		c.refuse(503, l.srv.refusal())
		return false
	}
	if !c.checkOrigin() {
		if c.state.Load() == stateHandshake { // not already refused by a panic
			c.refuse(403, "origin not allowed")
		}
		return false
	}
	proto := l.srv.selectSubprotocol(&l.req)
	if proto > 0 {
		l.hreq.subprotocol = l.srv.opts.subprotocols[proto-1]
	}
	ext, err := c.negotiateDeflate()
	if err != nil {
		c.refuse(400, err.(*codec.UpgradeError).Reason)
		return false
	}
	value, ok := c.runUpgradeHook()
	if !ok {
		return false
	}
	c.accept(end, proto, value, ext)
	c.readFrames() // frames that came with the request
	return false
}

// accept writes the 101 response and opens the connection.
func (c *Conn) accept(end int, proto uint8, value any, ext []byte) {
	l := c.loop
	extra := append(append(l.hdrs[:0], l.srv.opts.responseHeaders...), l.hreq.respHeaders...)
	c.openConn(l.req.Key, proto, value, ext, extra, end)
	l.hdrs = extra[:0]
}

// openConn writes the 101 response (key is the client's
// Sec-WebSocket-Key, extra the response's further fields), discards the
// request's end bytes, and opens the connection: OnOpen runs. On the loop,
// during a dispatch.
func (c *Conn) openConn(key []byte, proto uint8, value any, ext []byte, extra []HeaderField, end int) {
	l := c.loop
	s := l.srv
	subprotocol := ""
	if proto > 0 {
		subprotocol = s.opts.subprotocols[proto-1]
	}
	c.mu.Lock()
	c.out = codec.AppendSwitchingProtocols(c.out, key, subprotocol, ext, extra)
	c.proto, c.value = proto, value
	c.state.Store(stateOpen)
	c.mu.Unlock()
	_, _ = c.gc.Discard(end)
	c.rd.scanned = 0
	c.opened()
	c.callOnOpen()
}

// opened does the bookkeeping of a connection that has just become open
// (upgraded here, or handed over by the old process): its heartbeat, the
// counts, the registry. OnOpen (or OnAdopt) is owed from now on.
func (c *Conn) opened() {
	l := c.loop
	s := l.srv
	c.lflags |= lfOpened
	c.lastRead, c.lastPing = l.stamp, l.stamp
	l.schedule(c, time.Duration(c.lastRead+int64(s.opts.pingInterval)-l.now))
	s.upgraded.Add(1)
	if c.pmd != 0 {
		s.pmdConns.Add(1)
	}
	s.register(c)
}

// refuse answers the request with an error status; the socket closes after
// it (endRequest).
func (c *Conn) refuse(status int, reason string) {
	c.loop.srv.rejected.Add(1)
	c.mu.Lock()
	c.out = codec.AppendErrorResponse(c.out, status, reason, nil)
	c.mu.Unlock()
	c.endRequest()
}

// closeField ends a response to a HEAD request after which the connection
// closes; keepAliveField keeps an HTTP/1.0 client's connection open.
var (
	closeField     = HeaderField{Name: "Connection", Value: "close"}
	keepAliveField = HeaderField{Name: "Connection", Value: "keep-alive"}
)

// closeRequested reports whether the handler's header says Connection:
// close.
func closeRequested(h []HeaderField) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, "Connection") && strings.Contains(strings.ToLower(f.Value), "close") {
			return true
		}
	}
	return false
}

// plainHTTP answers a request that does not ask for an upgrade; end is the
// length of its header block: with the loop's handler
// (WithLoopHTTPHandler), else, or when it passes, with the http.Handler
// (WithHTTPHandler, nethttp.go). It reports whether the connection is
// ready for its next request at once.
func (c *Conn) plainHTTP(end int) (kept bool) {
	o := &c.loop.srv.opts
	if fn := o.loopHTTP; fn != nil {
		resp, ok := c.runHTTPHandler(fn)
		if !ok {
			if c.state.Load() == stateHandshake {
				c.refuse(500, "internal server error")
			}
			return false
		}
		if !resp.Pass {
			return c.loopHTTPAnswer(end, resp)
		}
	}
	if o.httpHandler != nil {
		return c.startExchange(end)
	}
	c.refuse(426, "this is a WebSocket endpoint; upgrade required")
	return false
}

// loopHTTPAnswer writes the loop handler's answer. The connection stays
// open for the next request when the client allows it
// (codec.Request.KeepAlive) and the server is not shutting down: it is
// then back where it was at accept, with a fresh handshake deadline, which
// is also how long an idle keep-alive connection is kept. It reports
// whether it stayed open.
func (c *Conn) loopHTTPAnswer(end int, resp HTTPResponse) (kept bool) {
	l := c.loop
	if resp.Status == 0 {
		resp.Status = 200
	}
	// Keep the connection when the client allows it, unless the server is
	// shutting down, the handler said Connection: close, the status is
	// informational (not a final answer), or the responses the client has
	// not read yet reach the outbound cap: a client that pipelines requests
	// and never reads cannot grow the server.
	keep := l.req.KeepAlive() && !l.srv.refusing() && resp.Status >= 200 && !closeRequested(resp.Header)
	head := string(l.req.Method) == "HEAD"
	extra := append(append(l.hdrs[:0], resp.Header...), l.hreq.respHeaders...)
	c.mu.Lock()
	if keep && c.gc.OutboundBuffered()+len(c.out) >= l.srv.opts.maxOutbound {
		keep = false
	}
	switch {
	case keep:
		if l.req.ProtoMinor == 0 {
			extra = append(extra, keepAliveField) // HTTP/1.0 closes without it
		}
		c.out = codec.AppendKeepAliveResponse(c.out, resp.Status, extra, resp.Body, head)
	case head:
		if !closeRequested(resp.Header) {
			extra = append(extra, closeField)
		}
		c.out = codec.AppendKeepAliveResponse(c.out, resp.Status, extra, resp.Body, true)
	default:
		c.out = codec.AppendResponse(c.out, resp.Status, extra, resp.Body)
	}
	c.mu.Unlock()
	clear(extra)
	l.hdrs = extra[:0]
	if keep {
		_, _ = c.gc.Discard(end)
	}
	return c.keepOrEnd(keep)
}

// httpLinger bounds how long a socket whose HTTP answer ends the
// connection waits for the client to close once the answer and the FIN
// have left (as net/http's rstAvoidanceDelay; WithCloseTimeout when that
// is shorter).
const httpLinger = 500 * time.Millisecond

// endRequest ends an HTTP exchange after which the connection closes: the
// rest of the request is discarded, and the socket enters the failed
// state, so that its write side is shut down once the answer has left
// (within the close timeout) and whatever the client still sends is
// discarded, until the client closes or httpLinger passes after the FIN.
// Closing at once while the client's bytes wait unread would make the
// kernel reset the connection, which can destroy the answer before the
// client reads it (RFC 9112 9.6). On the loop.
func (c *Conn) endRequest() {
	_, _ = c.gc.Discard(-1)
	c.mu.Lock()
	c.state.Store(stateFailed)
	c.mu.Unlock()
	c.rd.frameLeft = skipAll // skipUntilClose discards everything
	c.lflags |= lfFinPending | lfLinger
	c.loop.arm(c, c.loop.srv.opts.closeTimeout) // for the answer to leave; shutdownWrite re-arms
}

// selectSubprotocol returns 1 + the index of the first of the server's
// subprotocols that the client offers, or 0 when there is none.
func (s *Server) selectSubprotocol(r *codec.Request) uint8 {
	for i, p := range s.opts.subprotocols {
		found := false
		r.VisitProtocols(func(offered []byte) bool {
			found = string(offered) == p
			return !found
		})
		if found {
			return uint8(i + 1)
		}
	}
	return 0
}
