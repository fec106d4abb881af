package engine

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
	"github.com/wsloop/wsloop/timerwheel"
)

// wheelSlots is the number of slots of each loop's timing wheel.
const wheelSlots = 512

// loop is wsloop's state for one gnet event loop. Everything in it is owned
// by that loop's goroutine: no locks.
type loop struct {
	srv   *Server
	el    gnet.EventLoop
	wheel *timerwheel.Wheel[*Conn]
	epoch time.Time
	now   int64 // coarse clock: nanoseconds since epoch, read once per tick
	stamp int64 // now + one tick: an upper bound of the time of any read before the next tick

	head    Conn // sentinel of the list of connections (handshaking or upgraded)
	count   int
	scratch []byte // output collected during one dispatch
	bufs    bufPool
	req     codec.Request // the upgrade request being parsed
	hreq    Request       // its view for hooks
	hdrs    []HeaderField // response header lines being assembled
	rejects []rejected    // sockets refused at accept, closed at first read or deadline
}

// rejected is a socket answered with 503 at accept time.
type rejected struct {
	gc       gnet.Conn
	deadline int64
}

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, epoch: time.Now(), stamp: int64(s.opts.tick), scratch: make([]byte, 0, 16<<10)}
	l.wheel = timerwheel.New(l.epoch, s.opts.tick, wheelSlots, func(t *timerwheel.Timer[*Conn]) {
		t.Owner.onTimer()
	})
	l.head.prev, l.head.next = &l.head, &l.head
	return l
}

func (l *loop) add(c *Conn) {
	c.prev, c.next = l.head.prev, &l.head
	l.head.prev.next = c
	l.head.prev = c
	l.count++
}

func (l *loop) remove(c *Conn) {
	if c.next == nil {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	l.count--
}

// each calls fn for every connection of the loop; fn may close c.
func (l *loop) each(fn func(c *Conn)) {
	for c := l.head.next; c != &l.head; {
		next := c.next
		fn(c)
		c = next
	}
}

// Run advances the loop's clock and wheel; the server's ticker queues it
// on the loop once per tick.
func (l *loop) Run(context.Context) error {
	now := time.Now()
	l.now = int64(now.Sub(l.epoch))
	l.stamp = l.now + int64(l.srv.opts.tick)
	l.wheel.Advance(now)
	l.sweepRejects()
	return nil
}

func (l *loop) sweepRejects() {
	kept := l.rejects[:0]
	for _, r := range l.rejects {
		if r.deadline <= l.now {
			_ = l.el.Close(r.gc) // no-op if it is already closed
			continue
		}
		kept = append(kept, r)
	}
	clear(l.rejects[len(kept):])
	l.rejects = kept
}

// closeSocket closes c's socket now; OnClose runs before it returns.
func (l *loop) closeSocket(c *Conn) {
	if c.state.Load() != stateClosed {
		_ = l.el.Close(c.gc)
	}
}
