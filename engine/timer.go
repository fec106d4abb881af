package engine

import (
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

var idleClosePayload = ws.NewCloseFrameBody(ws.StatusGoingAway, "idle timeout")

// One timer per connection, on its loop's wheel, does everything timed.
// What it means follows from the state, because the loop arms it in the
// same step as it changes the state:
//   - stateHandshake: the handshake deadline (armed at accept);
//   - stateOpen: heartbeat (armed at upgrade, re-armed by itself). Reads
//     only stamp c.lastRead with the loop's coarse clock (rounded up to the
//     next tick, so that deadlines computed from it are never early); when
//     the timer fires it evicts a connection silent for the idle timeout,
//     pings one silent for a ping interval (since its last frame and since
//     the last ping), and re-arms itself for the earlier of the next ping and
//     the idle deadline. A busy connection therefore costs one timer firing
//     per ping interval, not one reset per read;
//   - stateClosing, stateFailed: the close deadline (armed when the close
//     frame is queued);
//   - stateDone, stateClosed: none; arm refuses to arm a closed connection,
//     so that a write failing inside a timer (which closes the connection)
//     cannot leave it on the wheel.

// onTimer is the wheel's fire function; it runs on the loop.
func (c *Conn) onTimer() {
	l := c.loop
	switch c.state.Load() {
	case stateHandshake:
		if c.lflags&lfKeptAlive == 0 {
			l.srv.hsTimeouts.Add(1)
		}
		l.closeSocket(c)
	case stateOpen:
		c.heartbeat()
	case stateClosing, stateFailed:
		if c.lflags&lfLinger != 0 {
			l.closeSocket(c) // the client did not close after an HTTP answer: not a close handshake timing out
			return
		}
		c.mu.Lock()
		if c.closeErr != nil && c.closeErr.Err == nil {
			c.closeErr.Err = ErrCloseTimeout
		}
		c.mu.Unlock()
		l.srv.closeTimeouts.Add(1)
		l.closeSocket(c)
	}
}

func (c *Conn) heartbeat() {
	l := c.loop
	o := &l.srv.opts
	now := l.now
	idleAt := c.lastRead + int64(o.idleTimeout)
	if now >= idleAt {
		c.evict()
		return
	}
	pingAt := max(c.lastRead, c.lastPing) + int64(o.pingInterval)
	if now >= pingAt {
		if st := c.tlsOf(); st != nil && now-c.lastRead >= int64(o.pingInterval) {
			st.trimIdle() // silent for a ping interval: idle
		}
		c.lastPing = now
		pingAt = now + int64(o.pingInterval)
		c.queueFrame(ws.OpPing, nil)
		c.flush() // may close c, if the write fails
	}
	l.schedule(c, time.Duration(min(pingAt, idleAt)-now))
}

// evict closes a connection whose peer has gone silent. A close frame is
// written on the chance that the peer is alive but stuck; the socket is
// closed without waiting for an answer. The state leaves stateOpen before
// the frame is queued, so no send from another goroutine can follow it.
func (c *Conn) evict() {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return
	}
	c.closeErr = &CloseError{Code: 1006, Reason: "idle timeout", Err: ErrIdleTimeout}
	c.ensureOutLocked()
	c.out = codec.AppendFrame(c.out, ws.OpClose, true, idleClosePayload)
	c.state.Store(stateDone)
	c.mu.Unlock()
	c.loop.srv.evictions.Add(1)
	c.flush()
	c.loop.closeSocket(c)
}
