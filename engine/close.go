package engine

import (
	"syscall"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// The close handshake (RFC 6455 section 7). Every state change below runs
// on the loop and arms the timer the new state needs in the same step
// (engine/doc.go has the diagram).
//
//   - The peer closes first: its close frame is validated and echoed, and the
//     server closes the TCP connection at once (the server SHOULD close first,
//     section 7.1.1).
//   - The server closes first (Conn.Close, Shutdown, a slow-consumer policy):
//     Close from any goroutine only marks the connection (sends fail from
//     then on) and queues a close request behind the calls made before it;
//     the loop applies it: the close frame is queued behind everything sent
//     before, the connection enters stateClosing and the close deadline is
//     armed. Frames keep being read and delivered; the peer's close frame
//     ends it, or the close deadline does.
//   - The server fails the connection (a protocol error, section 7.1.7): the
//     close frame with the error's code is written, the write side is shut
//     down once that frame has left (so that the peer sees the frame and then
//     EOF; if gnet still holds output, the loop's backlog sweep shuts it down
//     when the buffer has drained), and input is skipped until the peer's close
//     frame, which ends the connection at once, or until the close deadline.
//     Skipping instead of closing at once avoids the RST that closing a socket
//     with unread input sends, which can destroy the close frame in flight.

// requestClose marks c as closing and queues the close for its loop. It is
// safe from any goroutine.
func (c *Conn) requestClose(code ws.StatusCode, reason string, cause error) error {
	if c.state.Load() != stateOpen || !c.closeCalled.CompareAndSwap(false, true) {
		return ErrClosed
	}
	return c.loop.enqueueClose(c, code, reason, cause)
}

// closeNow starts the closing handshake on the loop: the close frame is
// queued behind c's pending output, the state moves to closing and the
// close deadline is armed, all in one step. It reports whether it did
// (false when c was no longer open).
func (c *Conn) closeNow(code ws.StatusCode, reason string, cause error) bool {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return false
	}
	c.closeErr = &CloseError{Code: code, Reason: truncateReason(reason), Err: cause}
	c.ensureOutLocked()
	c.out = codec.AppendCloseFrame(c.out, code, reason)
	c.state.Store(stateClosing)
	flushNow := !c.dispatching && c.lflags&lfBatched == 0
	c.mu.Unlock()
	if cause == ErrSlowConsumer {
		c.loop.srv.slowCloses.Add(1)
	}
	c.armCloseTimer()
	if flushNow {
		c.flush()
	}
	return true
}

// fail fails the connection because of err (RFC 6455 7.1.7): a close frame
// with code and reason, then half-close and skip. On the loop.
func (c *Conn) fail(code ws.StatusCode, reason string, err error) {
	c.rd.release(c.loop)
	c.mu.Lock()
	st := c.state.Load()
	switch st {
	case stateOpen:
		c.closeErr = &CloseError{Code: code, Reason: reason, Err: err}
		c.ensureOutLocked()
		c.out = codec.AppendCloseFrame(c.out, code, reason)
		c.state.Store(stateFailed)
		c.lflags |= lfFinPending
	case stateClosing:
		// A violation after our close frame: nothing more to say.
		c.state.Store(stateDone)
	}
	flushNow := !c.dispatching && c.lflags&lfBatched == 0
	c.mu.Unlock()
	if st == stateOpen {
		c.armCloseTimer()
	}
	if flushNow {
		c.flush()
		c.shutdownWrite()
	}
}

// shutdownWrite sends FIN once the last bytes of a failed connection (its
// close frame, or an HTTP answer after which it closes) have left gnet's
// buffer; while they have not, the backlog sweep calls it again. Over TLS
// a close_notify alert goes first, as crypto/tls's own Close sends it, so
// that the client can tell the end from a cut. After an HTTP answer, the
// socket then waits httpLinger for the client to close. On the loop.
func (c *Conn) shutdownWrite() {
	if c.lflags&lfFinPending == 0 || c.state.Load() != stateFailed {
		return
	}
	if st := c.tlsOf(); st != nil && st.err == nil {
		_ = st.conn.CloseWrite() // once: crypto/tls remembers that it sent it
	}
	if c.gc.OutboundBuffered() > 0 {
		c.loop.watchBacklog(c)
		return
	}
	c.lflags &^= lfFinPending
	_ = syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR)
	if c.lflags&lfLinger != 0 {
		l := c.loop
		l.arm(c, min(l.srv.opts.closeTimeout, httpLinger))
	}
}

// onPeerClose handles a valid close frame from the peer: the first one is
// echoed, an answer to ours completes the handshake. On the loop, during a
// dispatch.
func (c *Conn) onPeerClose(code ws.StatusCode, reason []byte) {
	c.mu.Lock()
	switch c.state.Load() {
	case stateOpen:
		c.closeErr = &CloseError{Code: code, Reason: string(reason), Remote: true}
		reply := code
		if code == ws.StatusNoStatusRcvd {
			reply = ws.StatusNormalClosure
		}
		c.ensureOutLocked()
		c.out = codec.AppendCloseFrame(c.out, reply, "")
		c.state.Store(stateDone)
	case stateClosing:
		c.state.Store(stateDone) // the answer to our close frame
	}
	c.mu.Unlock()
}

func (c *Conn) armCloseTimer() {
	c.loop.arm(c, c.loop.srv.opts.closeTimeout)
}

// truncateReason limits a close reason to what fits in a close frame,
// cutting at a UTF-8 boundary (as codec.AppendCloseFrame does).
func truncateReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}
