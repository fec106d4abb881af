package engine

import (
	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// The backlog: connections whose socket did not take everything written to
// it, so that gnet holds the rest in its outbound buffer and drains it on
// write-ready events without telling wsloop. Each loop keeps them on a
// list, which it sweeps once per tick: the sweep refreshes the figure that
// BufferedAmount reports, answers the latest ping once there is room, and
// sends the FIN of a failed connection once its close frame has left.
// Decisions on the outbound cap read gnet's exact figure on the loop; the
// sweep only keeps what other goroutines see within a tick of the truth.

// pendingPong is the payload of the latest ping not yet answered. A
// connection holds one only while its socket is backed up; they come from
// a per-loop free list.
type pendingPong struct {
	n uint8
	b [125]byte
}

// watchBacklog puts c on the backlog list. On the loop.
func (l *loop) watchBacklog(c *Conn) {
	if c.lflags&lfBacklogged == 0 {
		c.lflags |= lfBacklogged
		l.backlog = append(l.backlog, c)
	}
}

// sweepBacklog runs once per tick on the loop.
func (l *loop) sweepBacklog() {
	kept := l.backlog[:0]
	for _, c := range l.backlog {
		if c.state.Load() != stateClosed {
			n := c.gc.OutboundBuffered()
			c.sockBuffered.Store(int64(n))
			if c.pong != nil {
				c.sendPendingPong(n)
			}
			c.shutdownWrite()
			if c.state.Load() != stateClosed && (c.gc.OutboundBuffered() > 0 || c.pong != nil) {
				kept = append(kept, c)
				continue
			}
		}
		c.lflags &^= lfBacklogged
	}
	clear(l.backlog[len(kept):])
	l.backlog = kept
}

// onPing answers a ping (RFC 6455 5.5.2) during a read dispatch. While the
// socket keeps up, every ping gets its pong in the dispatch's write. Once
// gnet holds a backlog, or the pong would pass the outbound cap, only the
// latest ping is kept, to be answered when there is room (5.5.3 allows
// answering only the most recent of several pending pings): a client that
// floods pings and never reads cannot grow the server's memory.
func (c *Conn) onPing(p []byte) {
	if c.state.Load() != stateOpen {
		return
	}
	c.mu.Lock()
	now := c.gc.OutboundBuffered() == 0 && len(c.out)+2+len(p) <= c.loop.srv.opts.maxOutbound
	if now {
		c.ensureOutLocked()
		c.out = codec.AppendFrame(c.out, ws.OpPong, true, p)
	}
	c.mu.Unlock()
	if now {
		c.releasePong() // superseded
		return
	}
	l := c.loop
	if c.pong == nil {
		if k := len(l.pongs); k > 0 {
			c.pong = l.pongs[k-1]
			l.pongs[k-1] = nil
			l.pongs = l.pongs[:k-1]
		} else {
			c.pong = new(pendingPong)
		}
	}
	c.pong.n = uint8(copy(c.pong.b[:], p))
	l.watchBacklog(c)
}

// sendPendingPong writes the held pong if the socket has room: at once
// when gnet's buffer is empty, else if it fits under the outbound cap (one
// pong per tick at most). When it does not fit, the slow-consumer policy
// applies as it does to data: the pong waits (DropMessage), or the
// connection is closed. sock is gnet's figure. On the loop, outside a
// dispatch.
func (c *Conn) sendPendingPong(sock int) {
	if c.state.Load() != stateOpen {
		c.releasePong()
		return
	}
	size := 2 + int(c.pong.n)
	if sock > 0 && sock+size > c.loop.srv.opts.maxOutbound {
		if c.loop.srv.opts.slowPolicy != DropMessage {
			c.slowConsumer()
		}
		return
	}
	var frame [2 + 125]byte
	out := codec.AppendFrame(frame[:0], ws.OpPong, true, c.pong.b[:c.pong.n])
	c.releasePong()
	c.mu.Lock()
	pending := c.out != nil
	if pending {
		c.out = append(c.out, out...) // behind output a flush task will write
	} else {
		c.sockBuffered.Add(int64(len(out))) // counted before the unlock, as takeOutForWriteLocked does
	}
	c.mu.Unlock()
	if !pending {
		c.write(out)
	}
}

// releasePong returns c's held pong to the loop's free list.
func (c *Conn) releasePong() {
	if p := c.pong; p != nil {
		c.pong = nil
		if l := c.loop; len(l.pongs) < 256 {
			l.pongs = append(l.pongs, p)
		}
	}
}
