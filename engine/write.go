package engine

import (
	"context"
	"errors"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// The write path. Every frame, from the loop or from another goroutine, is
// appended to c.out under c.mu. Whoever appends knows who will hand c.out to
// the socket:
//   - while the loop is dispatching an event for c (a read, a timer, a task),
//     the loop flushes at the end of the event, in one write system call;
//   - otherwise the first writer queues one flush task on the loop and later
//     writers only append, so a burst from a goroutine is also one write.
// Order is the order in which writers took c.mu.

var errBadOpcode = errors.New("wsloop: WriteMessage needs ws.OpText or ws.OpBinary")

// scratchKeep is the largest scratch buffer a loop keeps between events.
const scratchKeep = 1 << 20

func (c *Conn) writeMessage(op ws.OpCode, p []byte, s string) error {
	n := len(p) + len(s)
	size := codec.HeaderLen(int64(n), false) + n
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.overCapLocked(size, int(c.sockBuffered.Load())) {
		// The cached socket backlog may be stale (the socket drained since
		// the loop last looked): have the loop refresh it.
		queue := c.reserveLocked()
		c.mu.Unlock()
		if queue {
			_ = c.queueFlush()
		}
		c.slowConsumer()
		return ErrSlowConsumer
	}
	queue := c.reserveLocked()
	if s != "" {
		c.out = codec.AppendFrameString(c.out, op, true, s)
	} else {
		c.out = codec.AppendFrame(c.out, op, true, p)
	}
	c.mu.Unlock()
	st := &c.loop.stats
	st.msgsOut.Add(1)
	st.bytesOut.Add(uint64(size))
	if queue {
		return c.queueFlush()
	}
	return nil
}

// overCapLocked reports whether queuing n more bytes would pass the
// outbound cap, given sock bytes waiting in gnet's buffer. A message always
// fits in an empty queue, so one larger than the cap can still be sent;
// what a stuck peer can pin is bounded by the cap plus one message.
// c.mu is held.
func (c *Conn) overCapLocked(n, sock int) bool {
	q := len(c.out) + sock
	return q > 0 && q+n > c.loop.srv.opts.maxOutbound
}

// slowConsumer applies the slow consumer policy to c.
func (c *Conn) slowConsumer() {
	s := c.loop.srv
	switch s.opts.slowPolicy {
	case DropMessage:
		s.dropped.Add(1)
	case ClosePolicyViolation, CloseTryAgainLater:
		code := ws.StatusPolicyViolation
		if s.opts.slowPolicy == CloseTryAgainLater {
			code = 1013
		}
		if c.startClose(code, "slow consumer", ErrSlowConsumer) == nil {
			s.slowCloses.Add(1)
		}
	}
}

// reserveLocked makes c.out ready for appending and reports whether the
// caller must queue a flush task (after unlocking).
func (c *Conn) reserveLocked() bool {
	if c.dispatching {
		return false
	}
	if c.out == nil {
		p := c.loop.srv.outPool.Get().(*[]byte)
		c.out, c.outPooled = (*p)[:0], p
	}
	if c.flushQueued {
		return false
	}
	c.flushQueued = true
	return true
}

// queueFrame appends a frame produced by the loop itself (pong, close,
// ping). Must be called on the loop.
func (c *Conn) queueFrame(op ws.OpCode, payload []byte) {
	c.mu.Lock()
	queue := c.reserveLocked()
	c.out = codec.AppendFrame(c.out, op, true, payload)
	c.mu.Unlock()
	if queue {
		_ = c.queueFlush()
	}
}

// queueFlush hands a flush of c to its loop. Called off the loop (or on it,
// outside a dispatch) after reserveLocked returned true.
func (c *Conn) queueFlush() error {
	err := c.loop.el.Execute(context.Background(), (*flushTask)(c))
	if err != nil {
		c.mu.Lock()
		c.flushQueued = false
		c.mu.Unlock()
		return ErrClosed
	}
	return nil
}

type flushTask Conn

func (t *flushTask) Run(context.Context) error {
	c := (*Conn)(t)
	c.mu.Lock()
	c.flushQueued = false
	c.mu.Unlock()
	if c.state.Load() == stateClosed {
		c.dropOut()
		return nil
	}
	c.beginDispatch()
	c.endDispatch()
	return nil
}

// beginDispatch marks the start of an event for c on its loop: from now on
// every write to c is collected in one buffer and written by endDispatch.
func (c *Conn) beginDispatch() {
	c.sockBuffered.Store(int64(c.gc.OutboundBuffered()))
	c.mu.Lock()
	c.dispatching = true
	if c.out == nil {
		c.out, c.outScratch = c.loop.scratch[:0], true
	}
	c.mu.Unlock()
}

// endDispatch writes what was collected since beginDispatch in one system
// call, and applies what off-loop callers asked for meanwhile.
func (c *Conn) endDispatch() {
	c.mu.Lock()
	buf, pooled, scratch := c.out, c.outPooled, c.outScratch
	c.out, c.outPooled, c.outScratch = nil, nil, false
	c.dispatching = false
	armClose := c.closeQueued
	c.closeQueued = false
	c.mu.Unlock()

	if armClose {
		c.armCloseTimer()
	}
	if len(buf) > 0 && c.state.Load() != stateClosed {
		// gnet writes directly when nothing is pending and copies what the
		// socket does not take, so buf is free again when Write returns. A
		// failed write closes the connection (OnClose runs inside Write).
		_, _ = c.gc.Write(buf)
		if c.state.Load() != stateClosed {
			c.sockBuffered.Store(int64(c.gc.OutboundBuffered()))
		}
	}
	c.recycle(buf, pooled, scratch)
}

func (c *Conn) recycle(buf []byte, pooled *[]byte, scratch bool) {
	switch {
	case scratch:
		if cap(buf) <= scratchKeep {
			c.loop.scratch = buf[:0]
		}
	case pooled != nil:
		if cap(buf) <= scratchKeep {
			*pooled = buf[:0]
			c.loop.srv.outPool.Put(pooled)
		}
	}
}

// dropOut discards pending output of a closed connection.
func (c *Conn) dropOut() {
	c.mu.Lock()
	buf, pooled, scratch := c.out, c.outPooled, c.outScratch
	c.out, c.outPooled, c.outScratch = nil, nil, false
	c.mu.Unlock()
	c.recycle(buf, pooled, scratch)
}
