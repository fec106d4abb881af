package engine

import (
	"context"
	"sync"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
	"github.com/wsloop/wsloop/shard"
	"github.com/wsloop/wsloop/timerwheel"
)

// wheelSlots is the number of slots of each loop's timing wheel.
const wheelSlots = 512

// loop is wsloop's state for one gnet event loop. Everything in it is owned
// by that loop's goroutine: no locks.
type loop struct {
	srv *Server
	el  gnet.EventLoop
	idx int            // its place in Server.loops
	hb  heartbeat      // shared with the acceptor and the watchdog (stall.go)
	elp unsafe.Pointer // el's *gnet.eventloop, for gnetlink.go (nil if el is not one)

	accq       acceptQueue // sockets the acceptor gave the loop (accept.go)
	opening    bool        // OnOpen ran for the socket the accept task registers
	adoptNext  *adoption   // the state of the handed-over socket the accept task registers (handoff.go)
	handingOff bool        // Restart is handing the loop's connections over: input is frozen at message boundaries
	hoBatch    hoBatch     // connections on their way to the new process (handoff.go)
	wheel      *timerwheel.Wheel[*Conn]
	epoch      time.Time
	now        int64 // coarse clock: nanoseconds since epoch, read once per tick
	stamp      int64 // now + one tick: an upper bound of the time of any read before the next tick

	head    Conn // sentinel of the list of connections (handshaking or upgraded)
	count   int
	scratch []byte // output collected during one dispatch
	bufs    bufPool
	req     codec.Request       // the upgrade request being parsed
	hreq    Request             // its view for hooks
	hdrs    []HeaderField       // response header lines being assembled
	httpx   map[*Conn]*exchange // connections with an exchange with the http.Handler (nethttp.go)
	backlog []*Conn             // connections with bytes in gnet's outbound buffer (backlog.go)
	pongs   []*pendingPong
	stats   loopStats

	// permessage-deflate (deflate.go)
	ext        []byte            // the response's extension value being assembled
	inflater   *codec.Inflater   // created on first use
	clientHist map[*Conn]*[]byte // client context takeover: each client's window

	// fan-out (fanout.go)
	pub            pubQueue
	pubSpare       []pubItem
	arenaSpare     []byte
	tlsSpare       []byte                      // a TLS connection's plaintext buffer, while none needs it
	rooms          *shard.Rooms[string, *Conn] // written by the loop under roomsMu, read by it without
	roomsMu        sync.RWMutex
	batching       bool    // the current drain holds several frames
	fanning        bool    // the loop is walking member lists
	touched        []*Conn // connections with batched frames
	deferredLeaves []*Conn // closed while fanning: leave their rooms after
	fan            fanState
	waker          *loopWaker // wakes the loop after its ready sockets (stall.go)
	roomScratch    []string
}

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, elp: eventLoopPtr(el), epoch: time.Now(), stamp: int64(s.opts.tick), scratch: make([]byte, 0, 16<<10)}
	l.hb.beat.Store(s.clock())
	l.hb.gid.Store(goroutineID()) // newLoop runs on the loop (OnOpen)
	l.hreq.srv = s
	l.wheel = timerwheel.New(l.epoch, s.opts.tick, wheelSlots, func(t *timerwheel.Timer[*Conn]) {
		t.Owner.onTimer()
	})
	l.head.prev, l.head.next = &l.head, &l.head
	l.rooms = shard.NewRooms[string, *Conn]()
	l.clientHist = make(map[*Conn]*[]byte)
	return l
}

func (l *loop) add(c *Conn) {
	c.prev, c.next = l.head.prev, &l.head
	l.head.prev.next = c
	l.head.prev = c
	l.count++
	l.stats.conns.Add(1)
}

func (l *loop) remove(c *Conn) {
	if c.next == nil {
		return
	}
	if l.fan.cursor == c {
		l.fan.cursor = c.next // a paused broadcast goes on with the next one
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
	l.count--
	l.stats.conns.Add(-1)
}

// each calls fn for every connection of the loop; fn may close c.
func (l *loop) each(fn func(c *Conn)) {
	for c := l.head.next; c != &l.head; {
		next := c.next
		fn(c)
		c = next
	}
}

// Run advances the loop's clock and wheel and beats its heartbeat; the
// server's ticker queues it on the loop once per tick (see loop.tick).
func (l *loop) Run(context.Context) error {
	l.hb.queued.Store(false)
	l.hb.beat.Store(l.srv.clock())
	now := time.Now()
	l.now = int64(now.Sub(l.epoch))
	l.stamp = l.now + int64(l.srv.opts.tick)
	l.wheel.Advance(now)
	l.sweepBacklog()
	return nil
}

// arm schedules c's timer d from now. The wheel's clock is the last tick,
// up to one tick behind the real time, so the delay is counted from the
// next tick: the deadline is never early, at most one tick late.
func (l *loop) arm(c *Conn, d time.Duration) {
	l.schedule(c, d+time.Duration(l.stamp-l.now))
}

// schedule schedules c's timer d after the wheel's clock, unless c is
// closed or about to be: a closed connection never stays on the wheel.
func (l *loop) schedule(c *Conn, d time.Duration) {
	if c.state.Load() >= stateDone {
		return
	}
	l.wheel.Schedule(&c.timer, d)
}

// closeSocket closes c's socket now; OnClose runs before it returns.
func (l *loop) closeSocket(c *Conn) {
	if c.state.Load() != stateClosed {
		_ = l.el.Close(c.socket())
	}
}
