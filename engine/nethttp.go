package engine

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/wsloop/wsloop/codec"
)

// Plain HTTP through a standard http.Handler (WithHTTPHandler), the loop's
// side. A request that does not upgrade becomes an exchange:
//
//	body     the loop copies the request head and reads the body (Content-Length
//	         or chunked, at most WithMaxRequestBody) out of gnet's buffer, under
//	         the handshake deadline;
//	running  a worker goroutine (httpworkers.go) runs the handler; the loop keeps
//	         what the client pipelines behind it in gnet's buffer, at most
//	         WithReadBufferCap (past it the rest is discarded and the
//	         connection closes after the answer); the connection has no timer;
//	done     the worker has queued the whole answer on the connection and hands
//	         the exchange back (exchangeDone): the loop writes, and either waits
//	         for the next request under a fresh handshake deadline, parsing what
//	         was pipelined, or ends the connection as endRequest does.
//
// The connection stays in the handshake state throughout; the loop keeps
// its exchange in loop.httpx (not a flag in Conn: lflags' eight bits are
// taken, and a wider field would move Conn past its 288-byte size class). Only the loop
// changes the phase. A connection that closes meanwhile aborts its
// exchange: the handler's context is cancelled and its writes fail.

// Exchange phases, owned by the loop.
const (
	exBody uint8 = iota
	exRunning
)

// exchange is one request to the http.Handler and its answer.
type exchange struct {
	c  *Conn
	lx exchangeLoop // owned by the loop

	// set by the loop before the worker starts, read-only afterwards
	head   []byte // the request line and headers, copied
	body   []byte
	keep   bool // the client allows keep-alive
	isHead bool // a HEAD request: an answer on the loop has no body
	http10 bool // HTTP/1.0: keeping it alive takes Connection: keep-alive
	ctx    context.Context
	cancel context.CancelFunc
	local  net.Addr // the socket's local address (gnet's is the loop's to read)

	gone atomic.Bool   // the connection closed: writes fail
	room chan struct{} // a waiting writer's wake-up (capacity 1)

	// set by the worker before it hands the exchange back
	keepAfter bool // the answer leaves the connection usable
	abort     bool // the handler panicked mid-answer: close the socket
}

// exchangeLoop is the part of an exchange only the loop touches.
type exchangeLoop struct {
	phase    uint8
	chunked  bool
	cs       uint8 // chunked: cs* below
	need     int64 // body bytes still to read (Content-Length, or the current chunk)
	trailer  int   // chunked: trailer bytes read
	overflow bool  // running: pipelined input passed its bound and was discarded
}

// startExchange begins an exchange for the plain request whose head (end
// bytes, parsed into l.req) is at the start of gnet's buffer. It reports
// whether the connection is ready for its next request at once (the
// request was answered on the loop and kept alive).
func (c *Conn) startExchange(end int) (again bool) {
	l := c.loop
	s := l.srv
	r := &l.req
	length, chunked, status, reason := bodyFraming(r)
	switch {
	case status != 0:
		c.answerAndEnd(status, reason)
		return false
	case !chunked && length > int64(s.opts.maxRequestBody):
		s.httpTooLarge.Add(1)
		c.answerAndEnd(413, "request body too large")
		return false
	}
	expect := r.Header("Expect")
	if expect != nil && !codec.EqualFold(expect, "100-continue") {
		c.answerAndEnd(417, "unsupported expectation")
		return false
	}
	gc := c.gc
	buf, _ := gc.Peek(end)
	ex := &exchange{c: c, head: bytes.Clone(buf), keep: r.KeepAliveReadingBody(), room: make(chan struct{}, 1),
		isHead: string(r.Method) == "HEAD", http10: r.ProtoMinor == 0}
	_, _ = gc.Discard(end)
	c.rd.scanned = 0
	ex.lx.chunked, ex.lx.need = chunked, length
	if expect != nil && r.ProtoMinor >= 1 && (chunked || length > 0) && gc.InboundBuffered() == 0 {
		c.mu.Lock()
		c.ensureOutLocked()
		c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
		c.mu.Unlock()
	}
	if l.httpx == nil {
		l.httpx = make(map[*Conn]*exchange)
	}
	l.httpx[c] = ex
	return c.readBody(ex)
}

// exchangeOf returns c's exchange, or nil. On the loop.
func (l *loop) exchangeOf(c *Conn) *exchange {
	if len(l.httpx) == 0 {
		return nil
	}
	return l.httpx[c]
}

// httpInput handles input that arrives while c has an exchange; it
// reports whether the connection is ready for its next request.
func (c *Conn) httpInput(ex *exchange) (again bool) {
	if ex.lx.phase == exBody {
		return c.readBody(ex)
	}
	// Running: pipelined requests wait in gnet's buffer for the answer,
	// up to one read buffer; past it they are dropped, and the connection
	// closes once the answer has left.
	if ex.lx.overflow || c.gc.InboundBuffered() > c.loop.srv.opts.readBufferCap {
		ex.lx.overflow = true
		_, _ = c.gc.Discard(-1)
	}
	return false
}

// readBody moves the body's bytes that have arrived into ex.body, and
// hands the exchange to a worker once all of it is in.
func (c *Conn) readBody(ex *exchange) (again bool) {
	max := c.loop.srv.opts.maxRequestBody
	var status int
	complete := false
	if ex.lx.chunked {
		complete, status = c.readChunked(ex, max)
	} else {
		gc := c.gc
		for ex.lx.need > 0 {
			avail := gc.InboundBuffered()
			if avail == 0 {
				break
			}
			n := int(min(int64(avail), ex.lx.need, 64<<10))
			p, _ := gc.Peek(n)
			ex.body = appendBounded(ex.body, p, int(ex.lx.need)+len(ex.body))
			_, _ = gc.Discard(n)
			ex.lx.need -= int64(n)
		}
		complete = ex.lx.need == 0
	}
	switch {
	case status == 413:
		c.loop.srv.httpTooLarge.Add(1)
		fallthrough
	case status != 0:
		c.dropExchange()
		c.answerAndEnd(status, "bad request body")
		return false
	case !complete:
		return false
	}
	return c.runExchange(ex)
}

// runExchange hands a complete request to a worker, or answers 503 when
// every worker is busy. It reports whether the connection is ready for
// its next request at once (after a 503 kept alive).
func (c *Conn) runExchange(ex *exchange) (again bool) {
	l := c.loop
	s := l.srv
	ex.lx.phase = exRunning
	ex.ctx, ex.cancel = context.WithCancel(context.Background())
	ex.local = c.gc.LocalAddr()
	l.wheel.Cancel(&c.timer) // no deadline while the handler runs
	if s.httpPool.submit(ex) {
		return false
	}
	ex.cancel()
	c.dropExchange()
	s.httpBusy.Add(1)
	keep := ex.keep && !s.refusing()
	extra := append(l.hdrs[:0], retryAfterField)
	// ex's own request, not l.req: when the body came in a later read,
	// l.req holds whatever request the loop parsed last.
	if keep && ex.http10 {
		extra = append(extra, keepAliveField)
	}
	if !keep {
		extra = append(extra, closeField)
	}
	c.mu.Lock()
	c.ensureOutLocked()
	c.out = codec.AppendKeepAliveResponse(c.out, 503, extra, busyBody, ex.isHead)
	c.mu.Unlock()
	clear(extra)
	l.hdrs = extra[:0]
	return c.keepOrEnd(keep)
}

var (
	retryAfterField = HeaderField{Name: "Retry-After", Value: "1"}
	busyBody        = []byte("all HTTP workers are busy\n")
)

// keepOrEnd leaves c waiting for its next request under a fresh handshake
// deadline, or ends it (endRequest). It reports whether it kept it.
func (c *Conn) keepOrEnd(keep bool) bool {
	if !keep {
		c.endRequest()
		return false
	}
	c.rd.scanned = 0
	c.lflags |= lfKeptAlive | lfServedHTTP
	c.loop.arm(c, c.loop.srv.opts.handshakeTimeout)
	return true
}

// answerAndEnd answers with an error status and ends the connection.
func (c *Conn) answerAndEnd(status int, reason string) {
	c.mu.Lock()
	c.ensureOutLocked()
	c.out = codec.AppendErrorResponse(c.out, status, reason, nil)
	c.mu.Unlock()
	c.endRequest()
}

// dropExchange forgets c's exchange. On the loop.
func (c *Conn) dropExchange() {
	delete(c.loop.httpx, c)
}

// abortExchange ends c's exchange when its socket has closed: the
// handler's context is cancelled and its writes fail. On the loop.
func (c *Conn) abortExchange() {
	ex := c.loop.exchangeOf(c)
	if ex == nil {
		return
	}
	c.dropExchange()
	ex.gone.Store(true)
	if ex.cancel != nil {
		ex.cancel()
	}
	ex.wake()
}

// wake tells a writer waiting for room to look again. Any goroutine.
func (ex *exchange) wake() {
	select {
	case ex.room <- struct{}{}:
	default:
	}
}

// exchangeDone is queued on the loop by the worker once the whole answer
// is in c.out: the loop writes it, then keeps the connection for the next
// request (parsing what was pipelined meanwhile) or ends it.
type exchangeDone exchange

func (t *exchangeDone) Run(context.Context) error {
	ex := (*exchange)(t)
	c := ex.c
	l := c.loop
	if c.state.Load() != stateHandshake || l.httpx[c] != ex {
		return nil // closed meanwhile
	}
	c.dropExchange()
	c.beginDispatch()
	if ex.abort {
		c.endDispatch()
		l.closeSocket(c)
		return nil
	}
	if c.keepOrEnd(ex.keepAfter && !ex.lx.overflow && !l.srv.refusing()) && c.gc.InboundBuffered() > 0 {
		c.readHandshake()
	}
	c.endDispatch()
	if c.afterDispatch(c.tlsOf()) {
		l.closeSocket(c)
	}
	return nil
}

// roomTask refreshes what waits in gnet's buffer for a writer blocked on
// backpressure, and wakes it. (Only the loop may read gnet's figure.)
type roomTask exchange

func (t *roomTask) Run(context.Context) error {
	ex := (*exchange)(t)
	if c := ex.c; c.state.Load() != stateClosed {
		c.sockBuffered.Store(int64(c.gc.OutboundBuffered()))
	}
	ex.wake()
	return nil
}

// bodyFraming reads how the request's body is delimited (RFC 9112 6):
// chunked, or Content-Length bytes (0 without either). A status other
// than 0 refuses the request: both headers at once (a smuggling vector),
// a transfer coding other than chunked, or a bad or conflicting length.
func bodyFraming(r *codec.Request) (length int64, chunked bool, status int, reason string) {
	te, cl := false, false
	r.VisitHeaders(func(name, value []byte) bool {
		switch {
		case codec.EqualFold(name, "transfer-encoding"):
			if te || !codec.EqualFold(value, "chunked") {
				status, reason = 501, "unsupported transfer coding"
				return false
			}
			te, chunked = true, true
		case codec.EqualFold(name, "content-length"):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (cl && n != length) {
				status, reason = 400, "bad Content-Length"
				return false
			}
			cl, length = true, n
		}
		return true
	})
	if status == 0 && te && cl {
		status, reason = 400, "both Transfer-Encoding and Content-Length"
	}
	if status == 0 && te && r.ProtoMinor == 0 {
		status, reason = 400, "chunked body in an HTTP/1.0 request"
	}
	return
}
