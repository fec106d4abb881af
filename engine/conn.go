package engine

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
	"github.com/wsloop/wsloop/timerwheel"
)

// connection states. Only the event loop changes state, under Conn.mu, except
// that Conn.Close moves open to closing from any goroutine.
const (
	stateHandshake uint32 = iota // waiting for the upgrade request
	stateOpen                    // upgraded
	stateClosing                 // this server sent a close frame; waiting for the peer's
	stateFailed                  // this server failed the connection; input is discarded until EOF
	stateDone                    // the handshake is over: the loop closes the socket after this event
	stateClosed                  // the socket is closed (OnClose ran)
)

// Conn is one WebSocket connection.
//
// Its methods are safe for concurrent use unless their comment says
// otherwise. Writes from any goroutine are queued in order and leave in as
// few system calls as possible: everything written while the event loop
// handles one read (including from OnMessage) goes out in one write.
type Conn struct {
	gc    gnet.Conn
	loop  *loop
	id    uint64
	state atomic.Uint32

	// guarded by mu: the pending output and who will flush it.
	mu          sync.Mutex
	out         []byte  // frames not yet handed to the socket
	outPooled   *[]byte // out came from Server.outPool (off-loop writes)
	outScratch  bool    // out is the loop's scratch buffer (dispatch in progress)
	dispatching bool    // the loop is handling an event for c and flushes at its end
	flushQueued bool    // a flush task is queued on the loop
	closeQueued bool    // Close was called off the loop: the loop must arm the close timer

	key          string       // guarded by mu: bound with Bind
	sockBuffered atomic.Int64 // bytes in gnet's outbound buffer, as of the last loop event for c

	// owned by the event loop.
	timer       timerwheel.Timer[*Conn]
	prev, next  *Conn // the loop's list of connections
	lastRead    int64 // loop clock at the last read
	lastPing    int64 // loop clock at the last ping sent
	rd          reader
	closeErr    *CloseError
	opened      bool // OnOpen was called: OnClose is owed
	halfClosed  bool // the write side was shut down after a failure
	batched     bool // in the loop's list of connections with batched fan-out frames
	subprotocol string
	value       any
	remote      net.Addr
}

// ID returns the connection's identifier, unique within its Server.
func (c *Conn) ID() uint64 { return c.id }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// Subprotocol returns the negotiated subprotocol, or "" when none was.
func (c *Conn) Subprotocol() string { return c.subprotocol }

// Value returns the value attached by the upgrade hook or SetValue.
// It must be called on the event loop (from a Handler method) unless the
// value is only set by the upgrade hook.
func (c *Conn) Value() any { return c.value }

// SetValue attaches v to the connection. It must be called on the event
// loop (from a Handler method).
func (c *Conn) SetValue(v any) { c.value = v }

// Send sends p as one binary message. It is safe from any goroutine and
// copies p before returning. It returns ErrClosed once the connection is
// closing.
func (c *Conn) Send(p []byte) error { return c.writeMessage(ws.OpBinary, p, "") }

// SendText sends s as one text message. s must be valid UTF-8 (not
// checked). Safe from any goroutine; returns ErrClosed once closing.
func (c *Conn) SendText(s string) error { return c.writeMessage(ws.OpText, nil, s) }

// WriteMessage sends p as one message with opcode op (ws.OpText or
// ws.OpBinary). Safe from any goroutine; copies p; returns ErrClosed once
// closing.
func (c *Conn) WriteMessage(op ws.OpCode, p []byte) error {
	if op != ws.OpText && op != ws.OpBinary {
		return errBadOpcode
	}
	return c.writeMessage(op, p, "")
}

// Close starts the close handshake with code and reason (truncated to 123
// bytes): the close frame is queued after everything sent before, further
// sends fail with ErrClosed, and the socket is closed when the peer answers
// or WithCloseTimeout expires. OnClose follows. code must be one an
// endpoint may send (1000-1003, 1007-1014, 3000-4999). Safe from any
// goroutine; returns ErrClosed if the connection is already closing.
func (c *Conn) Close(code ws.StatusCode, reason string) error {
	if !codec.ValidReceivedCloseCode(code) {
		return fmt.Errorf("wsloop: Close(%d): not a close code an endpoint may send", code)
	}
	return c.startClose(code, reason, nil)
}

// BufferedAmount returns the bytes queued for c and not yet taken by its
// socket, as of the event loop's last look at the socket (like a browser
// WebSocket's bufferedAmount). WithMaxOutboundBytes caps it. Safe from any
// goroutine.
func (c *Conn) BufferedAmount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) + int(c.sockBuffered.Load())
}
