package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
)

// Mounted on net/http: a Server is an http.Handler. ServeHTTP checks an
// upgrade request as wsloop's own listener does (the request is written
// back into HTTP/1.1 form and parsed by the same codec.ParseRequest, so
// both paths accept and refuse exactly the same requests), runs the
// origin check and the upgrade hook on net/http's goroutine (where they
// may block: a token lookup, say), hijacks the connection and hands its
// socket to the least loaded event loop, exactly as the acceptor hands
// over one it accepted. The loop writes the 101 and from then on the
// connection is like any other: no goroutine, the same ring buffers,
// rooms, heartbeats, backpressure, compression and Shutdown. net/http's
// goroutine returns once the loop has the socket.
//
// What net/http had read past the request (a client may send its first
// frames right behind it, without waiting for the 101) is handed over
// too, and parsed before anything the socket brings.
//
// Over TLS configured on http.Server, hijacking yields a *tls.Conn whose
// handshake is done. The loop takes it over as it takes a connection whose
// handshake ran on wsloop's own listener: crypto/tls's record layer stays
// where it is, and only the transport under it changes, from net/http's
// socket to the loop's view of the same descriptor (tls.Conn has no API
// for that, so the field is set through its offset, found by reflection
// once and checked by type, as tls.go's idle trimming does; on a Go whose
// tls.Conn differs, ServeHTTP answers TLS upgrades with 500 and says why,
// and TestMountTLS fails).

// mountState counts the connections net/http hands over.
type mountState struct {
	inflight atomic.Int64  // hand-offs between the hijack and the loop's answer
	upgrades atomic.Uint64 // connections upgraded through ServeHTTP

	// slots bounds the hand-offs running at once (2 per loop). gnet's
	// Enroll runs on its ants worker pool, which keeps an idle worker for
	// 10 s; unbounded, 10,000 clients upgrading together left about 320
	// workers behind (2.6 MB of stacks, 240 B per connection, until they
	// expired). With the bound the pool never grows past it and the
	// net/http goroutines wait here instead, each ending as soon as its
	// connection is on a loop.
	slots chan struct{}
}

// wait waits until no hand-off is in flight, for at most d.
func (m *mountState) wait(d time.Duration) {
	for end := time.Now().Add(d); m.inflight.Load() > 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
}

// handoff is an upgraded connection on its way from net/http to a loop:
// the first context of its gnet connection, as enrollToken is for an
// accepted one.
type handoff struct {
	opened atomic.Bool // the loop's OnOpen took it

	key    []byte // Sec-WebSocket-Key, for the 101
	proto  uint8
	pmd    uint8
	win    uint8
	ext    []byte // the permessage-deflate response, or nil
	value  any    // the upgrade hook's value
	header []HeaderField
	prefix []byte    // bytes net/http read past the request
	tc     *tls.Conn // the TLS connection, nil for plain TCP
}

// mountBufs holds the buffers requests are written back into.
var mountBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// ServeHTTP makes s an http.Handler, to be mounted on the net/http server
// an application already runs, behind its router and middleware:
//
//	mux.Handle("/ws", srv)
//	go srv.Run(ctx) // the event loops, without a listener of wsloop's own
//	<-srv.Ready()
//	http.ListenAndServe(":8080", mux)
//
// An upgrade request is checked as on wsloop's own listener (version, key,
// WithCheckOrigin, WithSubprotocols, compression, the upgrade hook, the
// connection cap); the hooks run on net/http's goroutine and see the
// *http.Request through Request.HTTPRequest and Request.Context, with the
// values middleware put in its context. An accepted request is hijacked
// and its socket handed to one of s's event loops, which answers 101;
// ServeHTTP returns once the loop has it, and the connection then holds no
// goroutine. A refused one gets its status through w (426 with Upgrade:
// websocket for a request that does not ask for an upgrade, as on wsloop's
// listener), before any hijack.
//
// Before Run or ListenAndServe has started the loops, and once Shutdown
// has begun, ServeHTTP answers 503. http.Server.Shutdown does not close
// hijacked connections: shut s down too (http.Server.RegisterOnShutdown
// can chain it).
//
// It composes with handlers that pass the ResponseWriter on or wrap it
// with an Unwrap method (http.StripPrefix, most logging middleware; see
// http.ResponseController). A writer that cannot be hijacked gets 500 with
// a message that says so: http.TimeoutHandler's, and HTTP/2's (WebSockets
// over HTTP/2, RFC 8441, are not supported: an HTTP/2 request gets 505, so
// a client retries over HTTP/1.1). The connection must be a *net.TCPConn
// or *net.UnixConn, or a *tls.Conn over one (what http.Server's listeners
// give); a listener wrapper whose connections are not gets 500.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		http.Error(w, "wsloop: WebSocket upgrades need HTTP/1.1 (RFC 8441 over HTTP/2 is not supported)",
			http.StatusHTTPVersionNotSupported)
		return
	}
	bp := mountBufs.Get().(*[]byte)
	defer func() { *bp = (*bp)[:0]; mountBufs.Put(bp) }()
	*bp = appendRequestHead((*bp)[:0], r)
	var creq codec.Request
	err := codec.ParseRequest(*bp, &creq)
	var ue *codec.UpgradeError
	switch {
	case errors.As(err, &ue):
		mountRefuse(w, ue.Status, ue.Reason)
		return
	case err != nil:
		mountRefuse(w, 400, err.Error())
		return
	}
	select {
	case <-s.ready:
	default:
		mountRefuse(w, 503, "server not running")
		return
	}
	if s.refusing() {
		s.rejected.Add(1)
		mountRefuse(w, 503, s.refusal())
		return
	}
	req := &Request{srv: s, r: &creq, remote: addrOf(r.RemoteAddr), hr: r}
	h, status, reason := s.upgradeChecks(req)
	if status != 0 {
		s.rejected.Add(1)
		mountRefuse(w, status, reason)
		return
	}
	if r.TLS != nil && !tlsTransportSettable {
		mountRefuse(w, 500, "wsloop: this Go's crypto/tls cannot be handed to an event loop")
		return
	}
	if !s.takeSocket() {
		s.rejected.Add(1)
		w.Header().Set("Retry-After", "1")
		mountRefuse(w, 503, "server at capacity")
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.sockets.Add(-1)
		mountRefuse(w, 500, fmt.Sprintf("wsloop: cannot take the connection over from net/http (%v); "+
			"mount the server where the ResponseWriter can be hijacked (not behind http.TimeoutHandler)", err))
		return
	}
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		h.tc, raw = tc, tc.NetConn()
	}
	switch raw.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		s.sockets.Add(-1)
		_, _ = conn.Write(codec.AppendErrorResponse(nil, 500,
			fmt.Sprintf("wsloop: cannot hand a %T to an event loop", raw), nil))
		_ = conn.Close()
		s.logMountFailure(fmt.Errorf("a hijacked %T has no descriptor to hand to an event loop", raw))
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		h.prefix = bytes.Clone(b)
	}
	h.key = bytes.Clone(creq.Key)
	s.handOver(h, raw)
}

// upgradeChecks runs the origin check, selects the subprotocol and the
// compression, and runs the upgrade hook, for an upgrade request that came
// through net/http. It returns the hand-off to fill in, or the status and
// reason of a refusal.
func (s *Server) upgradeChecks(req *Request) (h *handoff, status int, reason string) {
	defer func() {
		if r := recover(); r != nil {
			if l := s.opts.logger; l != nil {
				l.Error("wsloop: panic in an upgrade callback", "panic", r, "stack", string(debug.Stack()))
			}
			h, status, reason = nil, 500, "internal server error"
		}
	}()
	if !s.opts.checkOrigin(req) {
		return nil, 403, "origin not allowed"
	}
	h = &handoff{proto: s.selectSubprotocol(req.r)}
	if h.proto > 0 {
		req.subprotocol = s.opts.subprotocols[h.proto-1]
	}
	ext, pmd, win, err := s.negotiateDeflate(req.r, nil)
	if err != nil {
		return nil, 400, err.(*codec.UpgradeError).Reason
	}
	h.ext, h.pmd, h.win = ext, pmd, win
	if hook := s.opts.upgradeHook; hook != nil {
		value, err := hook(req)
		if err != nil {
			status, reason := 403, "forbidden"
			if re, isReject := err.(*RejectError); isReject {
				status, reason = re.Status, re.Reason
			}
			return nil, status, reason
		}
		h.value = value
	}
	h.header = append(append([]HeaderField(nil), s.opts.responseHeaders...), req.respHeaders...)
	return h, 0, ""
}

// handOver enrolls a hijacked socket on the least loaded live loop and
// waits for the loop's answer. gnet's Enroll duplicates the descriptor for
// the loop and closes raw.
func (s *Server) handOver(h *handoff, raw net.Conn) {
	s.mounted.slots <- struct{}{}
	defer func() { <-s.mounted.slots }()
	l := s.pickLoop()
	s.mounted.inflight.Add(1)
	defer s.mounted.inflight.Add(-1)
	if l.hb.pending.Add(1) == 1 {
		l.hb.progress.Store(s.clock())
	}
	res, err := l.el.Enroll(gnet.NewContext(context.Background(), h), raw)
	if err == nil {
		r := <-res
		err = r.Err
	} else {
		_ = raw.Close()
	}
	l.hb.progress.Store(s.clock())
	l.hb.pending.Add(-1)
	if err == nil && !h.opened.Load() {
		err = errNotOpened
	}
	if err != nil {
		s.sockets.Add(-1)
		s.acceptErrors.Add(1)
		s.shed.Add(1)
		s.logMountFailure(fmt.Errorf("handing a connection from net/http to an event loop: %w", err))
	}
}

func (s *Server) logMountFailure(err error) {
	if l := s.opts.logger; l != nil {
		l.Error("wsloop: "+err.Error(), "sockets", s.sockets.Load())
	}
}

// mountRefuse answers a refused upgrade through net/http, with the
// headers wsloop's own listener adds for the status.
func mountRefuse(w http.ResponseWriter, status int, reason string) {
	switch status {
	case 426:
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Sec-WebSocket-Version", "13")
	case 405:
		w.Header().Set("Allow", "GET")
	}
	http.Error(w, reason, status)
}

// appendRequestHead writes r's request line and header back in HTTP/1.1
// form, for codec.ParseRequest. net/http has checked every name and value
// (no CR or LF in them).
func appendRequestHead(dst []byte, r *http.Request) []byte {
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, r.URL.RequestURI()...)
	dst = fmt.Appendf(dst, " HTTP/%d.%d\r\nHost: ", r.ProtoMajor, r.ProtoMinor)
	dst = append(dst, r.Host...)
	dst = append(dst, "\r\n"...)
	for name, values := range r.Header {
		for _, v := range values {
			dst = append(dst, name...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	return append(dst, "\r\n"...)
}

// addrOf turns net/http's RemoteAddr back into a net.Addr.
func addrOf(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return &net.UnixAddr{Name: s, Net: "unix"}
}

// adopt opens a connection net/http handed over, on its loop (OnOpen): it
// writes the 101, parses what came with the request, and reports whether
// the socket must close.
func (c *Conn) adopt(h *handoff) gnet.Action {
	l := c.loop
	s := l.srv
	raw := c.gc
	var st *tlsState
	switch {
	case h.tc != nil:
		st = s.adoptTLS(c, raw, h.tc, h.prefix)
	case len(h.prefix) > 0:
		c.gc = &prefixConn{Conn: raw, buf: h.prefix}
	}
	c.pmd, c.win = h.pmd, h.win
	c.beginDispatch()
	if s.refusing() {
		c.refuse(503, s.refusal())
	} else {
		c.openConn(h.key, h.proto, h.value, h.ext, h.header, 0)
		s.mounted.upgrades.Add(1)
		c.readInput(st)
		if pc, ok := c.gc.(*prefixConn); ok && pc.r == len(pc.buf) {
			c.gc = raw // all of it parsed: back to gnet's buffer
		}
	}
	c.endDispatch()
	if c.afterDispatch(st) {
		return gnet.Close
	}
	if st != nil {
		st.trimIdle()
	}
	return gnet.None
}

// prefixConn serves what net/http read past the request before what the
// socket brings: while it holds bytes, OnTraffic moves gnet's behind them
// (take), and once the parser has consumed them all, the connection reads
// gnet's buffer again. It lasts until a read ends on a frame boundary:
// usually the first.
type prefixConn struct {
	gnet.Conn
	buf []byte
	r   int
}

func (p *prefixConn) InboundBuffered() int { return len(p.buf) - p.r }

func (p *prefixConn) Peek(n int) ([]byte, error) {
	if n < 0 || n > len(p.buf)-p.r {
		n = len(p.buf) - p.r
	}
	return p.buf[p.r : p.r+n], nil
}

func (p *prefixConn) Discard(n int) (int, error) {
	if n < 0 || n > len(p.buf)-p.r {
		n = len(p.buf) - p.r
	}
	p.r += n
	return n, nil
}

// take moves what gnet read behind the unparsed prefix. On the loop.
func (p *prefixConn) take() {
	if p.r > 0 {
		p.buf = p.buf[:copy(p.buf, p.buf[p.r:])]
		p.r = 0
	}
	n := p.Conn.InboundBuffered()
	b, _ := p.Conn.Peek(n)
	p.buf = append(p.buf, b...)
	_, _ = p.Conn.Discard(n)
}

// tlsTransportOff is the offset of tls.Conn's transport (its conn field,
// a net.Conn), found by reflection once and checked by type.
var tlsTransportOff, tlsTransportSettable = func() (uintptr, bool) {
	sf, ok := reflect.TypeFor[tls.Conn]().FieldByName("conn")
	if !ok || sf.Type != reflect.TypeFor[net.Conn]() || len(sf.Index) != 1 {
		return 0, false
	}
	return sf.Offset, true
}()

// adoptTLS takes over a TLS connection whose handshake net/http's server
// ran: its record layer now reads and writes through the loop, as a
// connection's does once its handshake on wsloop's listener is over.
// prefix is plaintext net/http read past the request. On the loop.
func (s *Server) adoptTLS(c *Conn, raw gnet.Conn, tc *tls.Conn, prefix []byte) *tlsState {
	st := &tlsState{c: c, raw: raw, conn: tc}
	st.cond.L = &st.mu
	*(*net.Conn)(unsafe.Add(unsafe.Pointer(tc), tlsTransportOff)) = (*transport)(st)
	st.gc = tlsConn{Conn: raw, st: st}
	c.gc = &st.gc
	if len(prefix) > 0 {
		st.plain = prefix
	}
	return st
}

// trafficPrefixed is OnTraffic for a plain connection whose prefix has not
// been parsed whole yet.
func (c *Conn) trafficPrefixed(pc *prefixConn) gnet.Action {
	pc.take()
	c.beginDispatch()
	c.readSome()
	c.endDispatch()
	if pc.r == len(pc.buf) && c.gc == gnet.Conn(pc) {
		c.gc = pc.Conn
	}
	if c.afterDispatch(nil) {
		return gnet.Close
	}
	return gnet.None
}
