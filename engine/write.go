package engine

import (
	"context"
	"errors"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// The write path.
//
// A connection's frames reach its socket by one of two roads, and the order
// of calls made by one goroutine is kept across both:
//   - direct: the frame is appended to c.out under c.mu. While the loop is
//     dispatching an event for c (a read, a timer, a task), the loop writes
//     c.out at the end of the event in one system call; otherwise the first
//     writer queues one flush task and later writers only append, so a
//     burst from a goroutine is also one write.
//   - queued: the frame goes through the loop's queue (fanout.go), which
//     carries Publish, Broadcast, SendTo, Join, Leave and Close in call
//     order; the loop applies it to c.out or writes it when it drains.
// Publish and the other fan-out calls, and Close, always take the queued
// road. A send takes it whenever the loop's queue holds anything (or a
// drain is applying it): a goroutine's earlier queued call is then still
// ahead of it, and the send must not overtake it. When the queue is idle,
// every call made earlier has been applied, and the direct road keeps order.
//
// The outbound cap (WithMaxOutboundBytes) counts c.out, the bytes waiting
// in gnet's buffer (which gnet drains without telling wsloop), and sends
// waiting in the queue. Only the loop can read gnet's figure, so every
// decision that depends on it is made on the loop: a send from another
// goroutine is accepted at once if it fits even if the socket took nothing
// since the loop last looked, refused at once if it cannot fit even if the
// socket took everything, and otherwise queued for the loop to decide with
// the exact figure.

var errBadOpcode = errors.New("wsloop: WriteMessage needs ws.OpText or ws.OpBinary")

// scratchKeep is the largest scratch buffer a loop keeps between events.
const scratchKeep = 1 << 20

func (c *Conn) writeMessage(op ws.OpCode, p []byte, s string) error {
	if c.closeCalled.Load() || c.state.Load() != stateOpen {
		return ErrClosed
	}
	l := c.loop
	d, z := l.srv.compress(c.pmd, c.serverWindow(), p, s)
	defer l.srv.putDeflater(d)
	m := message{op: op, p: p, s: s, z: z}
	size := m.size()
	if l.pub.active.Load() {
		return l.queueSend(c, &m, size)
	}
	maxOut := l.srv.opts.maxOutbound
	c.mu.Lock()
	if c.state.Load() != stateOpen || c.closeCalled.Load() {
		c.mu.Unlock()
		return ErrClosed
	}
	pending := len(c.out)
	switch q := pending + int(c.sockBuffered.Load()); {
	case q == 0 || q+size <= maxOut:
		// Fits, whatever the socket took since the loop last looked.
	case pending > 0 && pending+size > maxOut:
		// Cannot fit, even if the socket took everything.
		c.mu.Unlock()
		return c.slowConsumerOffLoop()
	default:
		// Fits only if the socket drained since the loop last looked: the
		// loop decides, with the exact figure.
		c.mu.Unlock()
		return l.queueSend(c, &m, size)
	}
	queue := c.reserveLocked()
	c.out = m.appendFrame(c.out)
	c.mu.Unlock()
	st := &l.stats
	st.msgsOut.Add(1)
	st.bytesOut.Add(uint64(size))
	if queue {
		return c.queueFlush()
	}
	return nil
}

// message is one outgoing data message: p or s, and z, its payload
// compressed, when it goes compressed (z is then never nil).
type message struct {
	op ws.OpCode
	p  []byte
	s  string
	z  []byte
}

// size is the size of the message's frame.
func (m *message) size() int {
	n := len(m.p) + len(m.s)
	if m.z != nil {
		n = len(m.z)
	}
	return codec.HeaderLen(int64(n), false) + n
}

// appendFrame appends the message's frame to dst: RSV1 and the compressed
// payload when deflated.
func (m *message) appendFrame(dst []byte) []byte {
	switch {
	case m.z != nil:
		return codec.AppendDeflatedFrame(dst, m.op, m.z)
	case m.s != "":
		return codec.AppendFrameString(dst, m.op, true, m.s)
	}
	return codec.AppendFrame(dst, m.op, true, m.p)
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

// slowConsumerOffLoop applies the slow consumer policy from any goroutine
// and returns ErrSlowConsumer.
func (c *Conn) slowConsumerOffLoop() error {
	s := c.loop.srv
	switch s.opts.slowPolicy {
	case DropMessage:
		s.dropped.Add(1)
	default:
		if c.closeCalled.CompareAndSwap(false, true) {
			_ = c.loop.enqueueClose(c, s.opts.slowPolicy.code(), "slow consumer", ErrSlowConsumer)
		}
	}
	return ErrSlowConsumer
}

// slowConsumer applies the slow consumer policy on the loop.
func (c *Conn) slowConsumer() {
	s := c.loop.srv
	switch s.opts.slowPolicy {
	case DropMessage:
		s.dropped.Add(1)
	default:
		c.closeNow(s.opts.slowPolicy.code(), "slow consumer", ErrSlowConsumer)
	}
}

// reserveLocked makes c.out ready for appending and reports whether the
// caller must queue a flush task (after unlocking).
func (c *Conn) reserveLocked() bool {
	if c.dispatching {
		return false
	}
	c.ensureOutLocked()
	if c.flushQueued {
		return false
	}
	c.flushQueued = true
	return true
}

// ensureOutLocked gives c.out a pooled buffer if it has none.
func (c *Conn) ensureOutLocked() {
	if c.out == nil {
		p := c.loop.srv.outPool.Get().(*[]byte)
		c.out, c.outPooled = (*p)[:0], p
	}
}

// queueFrame appends a frame produced by the loop itself (pong, ping) to
// c's output, which the end of the dispatch or a flush then writes. Must be
// called on the loop.
func (c *Conn) queueFrame(op ws.OpCode, payload []byte) {
	c.mu.Lock()
	c.ensureOutLocked()
	c.out = codec.AppendFrame(c.out, op, true, payload)
	c.mu.Unlock()
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
	c.flush()
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
// call.
func (c *Conn) endDispatch() {
	c.mu.Lock()
	c.dispatching = false
	buf, pooled, scratch := c.takeOutForWriteLocked()
	c.mu.Unlock()
	c.write(buf)
	c.recycle(buf, pooled, scratch)
}

// flush hands c's pending output to the socket in one write. It runs on
// the loop, outside a dispatch of c.
func (c *Conn) flush() {
	c.mu.Lock()
	buf, pooled, scratch := c.takeOutForWriteLocked()
	c.mu.Unlock()
	c.write(buf)
	c.recycle(buf, pooled, scratch)
}

// takeOutForWriteLocked detaches c's pending output to write it, and
// counts it in sockBuffered at once: between the unlock and the write's
// own figure (noteBacklog) the bytes are in neither c.out nor gnet's
// buffer, and a sender that counted neither would take the cap's worth
// again (the outbound cap test saw 97 KB held against 64 KiB). It keeps
// sockBuffered an upper bound (over TLS, short of the records' overhead).
// On the loop; c.mu is held.
func (c *Conn) takeOutForWriteLocked() (buf []byte, pooled *[]byte, scratch bool) {
	buf, pooled, scratch = c.takeOutLocked()
	if len(buf) > 0 && c.state.Load() != stateClosed {
		c.sockBuffered.Add(int64(len(buf)))
	}
	return
}

// takeOutLocked detaches c's pending output. c.mu is held.
func (c *Conn) takeOutLocked() (buf []byte, pooled *[]byte, scratch bool) {
	buf, pooled, scratch = c.out, c.outPooled, c.outScratch
	c.out, c.outPooled, c.outScratch = nil, nil, false
	return
}

// write hands buf to the socket: gnet writes directly when nothing is
// pending and copies what the socket does not take, so buf is free again
// when it returns. A failed write closes the connection (OnClose runs
// inside gnet's Write). On the loop.
func (c *Conn) write(buf []byte) {
	if len(buf) == 0 || c.state.Load() == stateClosed {
		return
	}
	n, all := c.sendDirect(buf)
	if all {
		c.sockBuffered.Store(0) // gnet's buffer is empty (sendDirect checked)
		return
	}
	_, _ = c.gc.Write(buf[n:])
	c.noteBacklog()
}

// gnetBuffered is the number of bytes waiting in gnet's outbound buffer:
// none while c is off the backlog list (only the loop adds to the buffer,
// and whatever does so puts c on the list), else gnet's exact figure. On
// the loop.
func (c *Conn) gnetBuffered() int {
	if c.lflags&lfBacklogged == 0 {
		if _, tls := c.gc.(*tlsConn); !tls { // a TLS handshake writes around write
			return 0
		}
	}
	return c.gc.OutboundBuffered()
}

// noteBacklog records what waits in gnet's buffer after a write, and
// puts c on the loop's backlog list, whose sweep follows the buffer as
// gnet drains it. On the loop.
func (c *Conn) noteBacklog() {
	if c.state.Load() == stateClosed {
		return
	}
	n := c.gc.OutboundBuffered()
	c.sockBuffered.Store(int64(n))
	if n > 0 {
		c.loop.watchBacklog(c)
	}
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
	buf, pooled, scratch := c.takeOutLocked()
	c.mu.Unlock()
	c.recycle(buf, pooled, scratch)
}
