package engine

import (
	"syscall"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// The close handshake (RFC 6455 section 7).
//
//   - The peer closes first: its close frame is validated and echoed, and the
//     server closes the TCP connection at once (the server SHOULD close first,
//     section 7.1.1).
//   - The server closes first (Conn.Close, Shutdown): the close frame is
//     queued and the connection enters stateClosing. Frames keep being read and
//     delivered; the peer's close frame ends it, or the close timer does.
//   - The server fails the connection (a protocol error, section 7.1.7): the
//     close frame with the error's code is written, the write side is shut
//     down so that the peer sees the frame and then EOF, and input is
//     discarded until the peer closes or the close timer fires. Discarding
//     instead of closing at once avoids the RST that closing a socket with
//     unread input sends, which can destroy the close frame in flight.

// startClose sends a close frame and enters stateClosing. It is safe from
// any goroutine.
func (c *Conn) startClose(code ws.StatusCode, reason string, cause error) error {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	c.state.Store(stateClosing)
	c.closeErr = &CloseError{Code: code, Reason: truncateReason(reason), Err: cause}
	queue := c.reserveLocked()
	c.out = codec.AppendCloseFrame(c.out, code, reason)
	c.closeQueued = true
	c.mu.Unlock()
	if queue {
		return c.queueFlush()
	}
	return nil
}

// fail fails the connection because of err (RFC 6455 7.1.7): a close frame
// with code and reason, then half-close and discard. Must be called on the
// loop during a dispatch.
func (c *Conn) fail(code ws.StatusCode, reason string, err error) {
	c.rd.release(c.loop)
	c.mu.Lock()
	st := c.state.Load()
	switch st {
	case stateOpen:
		c.closeErr = &CloseError{Code: code, Reason: reason, Err: err}
		c.reserveLocked() // on the loop, in a dispatch: never needs a flush task
		c.out = codec.AppendCloseFrame(c.out, code, reason)
		c.state.Store(stateFailed)
	case stateClosing:
		// A violation after our close frame: nothing more to say.
		c.state.Store(stateDone)
	}
	c.mu.Unlock()
	if st == stateOpen {
		c.armCloseTimer()
	}
}

// shutdownWrite half-closes the socket once the close frame is out. Called by
// the loop after the dispatch that failed the connection flushed.
func (c *Conn) shutdownWrite() {
	if c.state.Load() == stateFailed && c.gc.OutboundBuffered() == 0 {
		_ = syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR)
	}
}

// onPeerClose handles a valid close frame from the peer: the first one is
// echoed, an answer to ours completes the handshake.
func (c *Conn) onPeerClose(code ws.StatusCode, reason []byte) {
	c.mu.Lock()
	switch c.state.Load() {
	case stateOpen:
		c.closeErr = &CloseError{Code: code, Reason: string(reason), Remote: true}
		reply := code
		if code == ws.StatusNoStatusRcvd {
			reply = ws.StatusNormalClosure
		}
		c.reserveLocked()
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
// cutting at a UTF-8 boundary.
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
