package engine

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
	"github.com/wsloop/wsloop/timerwheel"
)

// Conn.lflags, owned by the event loop.
const (
	lfFinPending uint16 = 1 << iota // failed: the write side is shut down once the close frame has left
	lfBatched                       // in the loop's list of connections with batched fan-out frames
	lfBacklogged                    // in the loop's list of connections with bytes in gnet's buffer
	lfKeptAlive                     // answered a plain HTTP request and stayed open for the next
	lfProxyWait                     // from a trusted balancer: its PROXY header has not been read yet
	lfProxyCheck                    // from elsewhere: its first bytes must not be a PROXY header
	lfLinger                        // failed after an HTTP answer that ends the connection: waiting for the client's EOF
	lfRateExempt                    // SetRateLimited(false): WithRateLimit does not apply
	lfServedHTTP                    // answered a plain HTTP request (a Drain refuses its upgrade)
	lfOpened                        // OnOpen was called: OnClose is owed
	lfFrozen                        // handed over from the old process: input waits until the hand-off ends
	lfHandedOver                    // sent to the new process: it ends here without OnClose
)

// Connection states; engine/doc.go draws the diagram. Only the event loop
// changes a connection's state, under Conn.mu, and it arms the
// connection's timer in the same step: the state says what the timer means.
const (
	stateHandshake uint32 = iota // waiting for the upgrade request; timer: handshake deadline
	stateOpen                    // upgraded; timer: heartbeat (next ping or idle eviction)
	stateClosing                 // this server's close frame is out; waiting for the peer's. Timer: close deadline
	stateFailed                  // this server failed the connection; input is skipped until the peer's close. Timer: close deadline
	stateDone                    // the socket is closed when the current loop event ends; no timer
	stateClosed                  // the socket is closed and OnClose ran; no timer
)

// Conn is one WebSocket connection.
//
// Its methods are safe for concurrent use unless their comment says
// otherwise. Writes from any goroutine are queued in order and leave in as
// few system calls as possible: everything written while the event loop
// handles one read (including from OnMessage) goes out in one write.
type Conn struct {
	gc    gnet.Conn // the socket; for TLS, its plaintext view (*tlsConn, see tlsOf)
	loop  *loop
	id    uint64
	state atomic.Uint32 // written by the loop only, under mu

	// closeCalled is set once (CompareAndSwap) by Close, or a slow-consumer
	// close decided off the loop, from any goroutine: from then on sends
	// fail with ErrClosed, while the close request waits in the loop's
	// queue and the state is still open. Closes the loop starts itself show
	// in the state at once.
	closeCalled atomic.Bool

	// guarded by mu: the pending output and who will flush it.
	mu          sync.Mutex
	out         []byte  // frames not yet handed to the socket
	outPooled   *[]byte // out came from Server.outPool (off-loop writes)
	outScratch  bool    // out is the loop's scratch buffer (dispatch in progress)
	dispatching bool    // the loop is handling an event for c and flushes at its end
	flushQueued bool    // a flush task is queued on the loop

	// owned by the event loop (here, not below, to pack the struct into a
	// smaller allocation class)
	proto  uint8  // the negotiated subprotocol: 1 + its index in WithSubprotocols, 0 for none
	lflags uint16 // lf* flags
	pmd    uint8  // permessage-deflate: pmd* flags (deflate.go), 0 when not negotiated
	win    uint8  // permessage-deflate: the server's LZ77 window bits | the client's << 4

	key          string       // guarded by mu: bound with Bind
	sockBuffered atomic.Int64 // bytes in gnet's outbound buffer, as of the loop's last look (an upper bound: only the loop adds to it)
	queued       atomic.Int64 // bytes of sends for c waiting in the loop's queue

	// owned by the event loop.
	timer      timerwheel.Timer[*Conn]
	prev, next *Conn  // the loop's list of connections
	lastRead   int64  // loop clock at the last read
	lastPing   int64  // loop clock at the last ping sent
	rlMsgs     uint32 // WithRateLimit: the message count's debt as of lastRead (ratelimit.go)
	rlBytes    uint32 // WithRateLimit: the bytes' debt as of lastRead
	rd         reader
	closeErr   *CloseError
	pong       *pendingPong // the latest ping not yet answered, while the socket is backed up
	value      any
	remote     net.Addr
}

// ID returns the connection's identifier, unique within its Server.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr returns the peer's address: a *net.TCPAddr, or for a server
// listening on a Unix socket a *net.UnixAddr (whose Name is usually
// empty: the peer's socket has none). Never nil.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// TLS returns the connection's TLS state (see Request.TLS), or nil
// without TLS. Safe from any goroutine.
func (c *Conn) TLS() *tls.ConnectionState { return c.tlsOf().state() }

// Server returns the server c belongs to, so that a handler can publish
// or look up other connections without keeping its own reference:
// c.Server().Publish(room, op, p).
func (c *Conn) Server() *Server { return c.loop.srv }

// Subprotocol returns the negotiated subprotocol, or "" when none was.
func (c *Conn) Subprotocol() string {
	if c.proto == 0 {
		return ""
	}
	return c.loop.srv.opts.subprotocols[c.proto-1]
}

// Compressed reports whether permessage-deflate (RFC 7692) was negotiated:
// messages from the peer may then be compressed, and messages to it of at
// least WithCompressionThreshold bytes are. Safe from any goroutine once
// OnOpen has run.
func (c *Conn) Compressed() bool { return c.pmd != 0 }

// Value returns the value attached by the upgrade hook or SetValue.
// It must be called on the event loop (from a Handler method) unless the
// value is only set by the upgrade hook.
func (c *Conn) Value() any { return c.value }

// SetValue attaches v to the connection. It must be called on the event
// loop (from a Handler method).
func (c *Conn) SetValue(v any) { c.value = v }

// Send sends p as one binary message: a frame with opcode 0x2
// (ws.OpBinary), which a browser's onmessage gets as a Blob or an
// ArrayBuffer, not a string. Send text (JSON, say) with SendText or
// WriteMessage(ws.OpText, p). It is safe from any goroutine and
// copies p before returning; frames sent by one goroutine leave in call
// order (with those of Publish, Broadcast, SendTo and Close). It returns
// ErrClosed once the connection is closing, and ErrSlowConsumer when the
// message cannot fit under WithMaxOutboundBytes whatever the socket has
// taken (the policy of WithSlowConsumerPolicy then applies). When the
// answer depends on what the socket took since the event loop last looked,
// Send queues the message and the loop decides with the exact figure: a
// message dropped then is counted in Stats.Dropped. ErrQueueFull means the
// loop's queue is full (WithMaxQueuedBytes).
func (c *Conn) Send(p []byte) error { return c.writeMessage(ws.OpBinary, p, "") }

// SendText sends s as one text message: a frame with opcode 0x1
// (ws.OpText), which a browser's onmessage gets as a string. Otherwise it
// is Send's twin (any goroutine, copied, same errors). s must be valid
// UTF-8 (not checked).
func (c *Conn) SendText(s string) error { return c.writeMessage(ws.OpText, nil, s) }

// WriteMessage sends p as one message with opcode op, ws.OpText (a string
// in a browser; p must be valid UTF-8, not checked) or ws.OpBinary (a
// Blob or ArrayBuffer), like Send.
func (c *Conn) WriteMessage(op ws.OpCode, p []byte) error {
	if op != ws.OpText && op != ws.OpBinary {
		return errBadOpcode
	}
	return c.writeMessage(op, p, "")
}

// Close starts the close handshake with code and reason (at most 123
// bytes, cut at a character boundary): the close frame is queued after
// everything sent before, further sends fail with ErrClosed, and the socket
// is closed when the peer answers or WithCloseTimeout after the frame was
// queued. OnClose follows. code must be one an endpoint may send
// (1000-1003, 1007-1014, 3000-4999) and reason valid UTF-8 (the peer must
// fail a close frame whose reason is not); otherwise Close returns an error
// and sends nothing. Safe from any goroutine; returns ErrClosed if the
// connection is already closing.
func (c *Conn) Close(code ws.StatusCode, reason string) error {
	if !codec.ValidReceivedCloseCode(code) {
		return fmt.Errorf("wsloop: Close(%d): not a close code an endpoint may send", code)
	}
	if !utf8.ValidString(reason) {
		return fmt.Errorf("wsloop: Close(%d, %q): the reason is not valid UTF-8", code, reason)
	}
	return c.requestClose(code, reason, nil)
}

// BufferedAmount returns the bytes queued for c and not yet taken by its
// socket (like a browser WebSocket's bufferedAmount): what waits in the
// server, exactly, plus what waits in gnet's buffer as of the event loop's
// last look, which is at most one tick (WithTick) old while that buffer
// drains. WithMaxOutboundBytes caps what the loop has accepted for the
// socket (plus one message), checked on the loop against gnet's exact
// figure; sends from other goroutines that wait in the loop's queue for
// that check count here too, up to the cap again, so the figure can reach
// about twice the cap while a slow consumer's sends race the loop. Safe
// from any goroutine.
func (c *Conn) BufferedAmount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) + int(c.sockBuffered.Load()) + int(c.queued.Load())
}

// socket is c's gnet connection itself (gnet's own calls need it).
func (c *Conn) socket() gnet.Conn {
	if st := c.tlsOf(); st != nil {
		return st.raw
	}
	if pc, ok := c.gc.(*prefixConn); ok {
		return pc.Conn // an adopted connection still parsing the input it came with
	}
	return c.gc
}

// tlsOf is c's TLS state, nil without TLS. (Not a field: Conn stays in
// its allocation size class.)
func (c *Conn) tlsOf() *tlsState {
	if tc, ok := c.gc.(*tlsConn); ok {
		return tc.st
	}
	return nil
}
