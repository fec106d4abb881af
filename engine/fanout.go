package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/codec"
)

// Fan-out. A publish encodes its frame once and hands it to every event
// loop through that loop's queue; the loop writes the same bytes to each of
// its targets. One loop task drains everything queued since the last one,
// so a burst of publishes costs one hand-off per loop, and each target gets
// one write system call per drain: the frame itself (no copy) when the
// drain holds one message, or all of the drain's frames for it, batched.
// A drain goes in slices of WithFanoutSlice deliveries; between two, the
// loop polls its sockets and runs its other tasks (a byte on the loop's
// waker socket brings the drain back after the sockets ready then), so a
// room of tens of thousands does not hold a handshake or a pong for the
// whole fan-out. A drain that finds the queue growing fast behind it
// (pilingUp) goes on without pausing, so the loop's own readers cannot
// publish faster than it fans out.
//
// The queue also carries what must stay in order with publishes: joins and
// leaves (so that a publish made after Join returned reaches the
// connection), close requests, and sends made while it is not empty
// (write.go). Room membership lives in each loop's own index, changed and
// walked only by that loop.
//
// The queue is bounded (WithMaxQueuedBytes): a producer faster than the
// loop gets ErrQueueFull, counted in Stats.QueueFull, rather than growing
// memory or blocking (a producer may itself be a handler on a loop, which
// must never block). Close requests and Shutdown are never refused: they
// travel through the queue too, so that their close frames follow
// everything queued before them.

type pubKind uint8

const (
	pubAll      pubKind = iota // every connection of the loop
	pubRoom                    // the room's members on the loop
	pubConns                   // the listed connections (all on this loop)
	pubSend                    // one connection, a frame in the queue's arena
	pubClose                   // close one connection
	pubShutdown                // close every connection of the loop (Shutdown, the end of a Drain)
	pubJoin
	pubLeave
	pubTask // run task on the loop, in order with what was queued before (handoff.go)
)

// itemCost is what an item counts against the queue bound besides its
// frame: its own size, and a little of what its room's name and the
// queue's growth add.
const itemCost = int(unsafe.Sizeof(pubItem{})) + 16

// spareItems is the most items a drained queue's array may hold to be kept
// for the next batch; a larger one (a burst while the loop lagged) goes to
// the GC, so that a loop does not keep a burst's worth of queue for good.
const spareItems = 1024

// pubItem is one queued operation.
type pubItem struct {
	kind   pubKind
	code   uint16 // pubClose, pubShutdown
	off, n int    // pubSend: the frame's place in the arena
	room   string // pubRoom, pubJoin, pubLeave; pubClose, pubShutdown: the reason
	frame  []byte // shared, read-only
	zframe []byte // frame's message compressed (RSV1), shared; nil when it goes plain to everyone
	conns  []*Conn
	conn   *Conn
	cause  error // pubClose, pubShutdown; pubTask: a loopTask (which keeps the item as small as it was)
}

// loopTask is a pubTask's function, carried in pubItem.cause.
type loopTask func(*loop)

func (loopTask) Error() string { return "wsloop: a loop task" }

// pubQueue is a loop's inbox; producers are any goroutines, the consumer
// is the loop.
type pubQueue struct {
	// active is true from the first enqueue until a drain has applied
	// everything and found the queue empty: while it is, a drain is queued
	// or running, and sends take the queue to keep their order (write.go).
	active atomic.Bool

	mu    sync.Mutex
	items []pubItem
	arena []byte // frames of pubSend items
	bytes int    // counted against WithMaxQueuedBytes

	// pending is, per room, the joins minus the leaves queued and not yet
	// applied, so that RoomLen counts a connection as soon as Join
	// returns. The loop applies a join and takes it out of pending under
	// roomsMu, which RoomLen holds while it reads both.
	pending map[string]int32
}

// enqueue adds an item, unless the queue is full (never for a close or a
// shutdown), and
// makes sure a drain task is queued on the loop.
func (l *loop) enqueue(it pubItem) error {
	q := &l.pub
	cost := itemCost + len(it.frame) + len(it.zframe)
	q.mu.Lock()
	if it.kind != pubClose && it.kind != pubShutdown && it.kind != pubTask && q.bytes > 0 && q.bytes+cost > l.srv.opts.maxQueued {
		q.mu.Unlock()
		l.srv.queueFull.Add(1)
		return ErrQueueFull
	}
	q.items = append(q.items, it)
	q.bytes += cost
	switch it.kind {
	case pubJoin:
		q.addPending(it.room, 1)
	case pubLeave:
		q.addPending(it.room, -1)
	}
	return l.unlockAndSchedule()
}

// addPending changes room's pending count; q.mu is held.
func (q *pubQueue) addPending(room string, d int32) {
	if q.pending == nil {
		q.pending = make(map[string]int32)
	}
	if n := q.pending[room] + d; n != 0 {
		q.pending[room] = n
	} else {
		delete(q.pending, room)
	}
}

// applied takes a join (d = 1) or a leave (-1) out of pending; roomsMu is
// held.
func (l *loop) applied(room string, d int32) {
	l.pub.mu.Lock()
	l.pub.addPending(room, -d)
	l.pub.mu.Unlock()
}

// unlockAndSchedule unlocks q.mu and queues a drain task unless one is
// queued or running.
func (l *loop) unlockAndSchedule() error {
	q := &l.pub
	schedule := !q.active.Load()
	q.active.Store(true)
	q.mu.Unlock()
	if schedule {
		if err := l.el.Execute(context.Background(), (*drainTask)(l)); err != nil {
			q.mu.Lock()
			q.active.Store(false)
			q.mu.Unlock()
			return ErrServerClosed
		}
	}
	return nil
}

// queueSend queues a send to c behind the queue's other items; the loop
// checks it against the outbound cap when it applies it. Any goroutine.
func (l *loop) queueSend(c *Conn, m *message, size int) error {
	maxOut := int64(l.srv.opts.maxOutbound)
	if q := c.queued.Load(); q > 0 && q+int64(size) > maxOut {
		return c.slowConsumerOffLoop() // cannot fit, whatever the socket takes
	}
	q := &l.pub
	cost := itemCost + size
	q.mu.Lock()
	if q.bytes > 0 && q.bytes+cost > l.srv.opts.maxQueued {
		q.mu.Unlock()
		l.srv.queueFull.Add(1)
		return ErrQueueFull
	}
	off := len(q.arena)
	q.arena = m.appendFrame(q.arena)
	q.items = append(q.items, pubItem{kind: pubSend, conn: c, off: off, n: size})
	q.bytes += cost
	c.queued.Add(int64(size))
	return l.unlockAndSchedule()
}

// enqueueClose queues a close request for c (never refused).
func (l *loop) enqueueClose(c *Conn, code ws.StatusCode, reason string, cause error) error {
	return l.enqueue(pubItem{kind: pubClose, conn: c, code: uint16(code), room: reason, cause: cause})
}

type drainTask loop

// defaultFanSlice is WithFanoutSlice's default: about a millisecond of
// writes on this project's machines.
const defaultFanSlice = 512

// fanState is a drain in progress: the batch taken from the queue and
// how far the loop got through it. A drain stops after a slice of
// deliveries (WithFanoutSlice) and goes on in a later round of the loop,
// after its sockets and timers were served. While one is in progress the
// queue stays active (new work queues behind it), fanning stays set (a
// connection that closes leaves its rooms after it), so no member list it
// walks changes under it: joins and leaves are queue items, applied after.
type fanState struct {
	on      bool
	items   []pubItem
	arena   []byte
	at      int   // the item being applied
	member  int   // pubRoom, pubConns: the next member; pubAll: 1 once started
	cursor  *Conn // pubAll: the next connection (remove moves it on)
	flushAt int   // the next entry of touched to flush, once every item is applied
	budget  int   // deliveries left in this slice
	bytes   int   // what the batch counts against WithMaxQueuedBytes, until it is done
}

// Run drains the loop's queue: one batch per drain, so that a producer
// that keeps the queue full cannot hold the loop, and one slice of it per
// run, so that a large fan-out does not hold the loop's other connections
// either; a new task is queued behind the loop's other work when more is
// left or more arrived meanwhile.
func (t *drainTask) Run(context.Context) error {
	l := (*loop)(t)
	d := &l.fan
	if !d.on {
		q := &l.pub
		q.mu.Lock()
		d.items, d.arena = q.items, q.arena
		q.items, q.arena = l.pubSpare[:0], l.arenaSpare[:0]
		d.bytes = q.bytes // still counted against the bound until it is done
		q.mu.Unlock()
		frames := 0
		for i := range d.items {
			if d.items[i].frame != nil || d.items[i].kind == pubSend {
				frames++
			} else if cu, ok := d.items[i].cause.(*catchUp); ok {
				frames += len(cu.entries) // a recovery's missed messages
			}
		}
		l.batching = frames > 1
		l.fanning = true
		d.on = true
	}
	for {
		d.budget = l.srv.opts.fanSlice
		if l.applyItems() && l.flushBatched() {
			break
		}
		if !l.pilingUp() {
			l.pauseFan()
			return nil
		}
	}
	l.fanning = false
	l.batching = false
	l.applyDeferredLeaves()
	items, arena, done := d.items, d.arena, d.bytes
	*d = fanState{}
	clear(items)
	l.pubSpare = nil
	if cap(items) <= spareItems {
		l.pubSpare = items[:0]
	}
	// The old spare is the queue's arena now: keep this one as the spare,
	// or none, never the old one again.
	l.arenaSpare = nil
	if cap(arena) <= scratchKeep {
		l.arenaSpare = arena[:0]
	}

	q := &l.pub
	q.mu.Lock()
	q.bytes -= done
	if len(q.items) == 0 {
		q.active.Store(false)
		q.mu.Unlock()
		return nil
	}
	q.mu.Unlock()
	return l.requeueDrain()
}

// pilingUp reports whether more than a quarter of WithMaxQueuedBytes was
// queued behind the drain since it began: the loop's readers (or other
// goroutines) then publish faster than it fans out, and the drain goes on
// without a pause, as it did before fan-outs were sliced, so that the
// loop reads its sockets again only after it (TCP slows the publishers)
// rather than filling its queue to the bound, where publishes would be
// refused.
func (l *loop) pilingUp() bool {
	q := &l.pub
	q.mu.Lock()
	n := q.bytes - l.fan.bytes
	q.mu.Unlock()
	return n > l.srv.opts.maxQueued/4
}

// pauseFan makes the drain go on once the loop has served the sockets
// that are ready now: its waker's byte arrives behind them. Without a
// waker (Run before the loops are known) it goes on at once.
func (l *loop) pauseFan() {
	w := l.waker
	if w == nil {
		_ = l.requeueDrain()
		return
	}
	if !w.armed {
		if _, err := unix.Write(w.peer, wakeByte); err != nil {
			_ = l.requeueDrain()
			return
		}
		w.armed = true
	}
}

// woken runs on the loop when w's byte arrives: the paused drain goes on.
func (w *loopWaker) woken(gc gnet.Conn) {
	_, _ = gc.Discard(-1)
	w.armed = false
	if w.loop.fan.on {
		_ = (*drainTask)(w.loop).Run(context.Background())
	}
}

func (l *loop) requeueDrain() error {
	if err := l.el.Execute(context.Background(), (*drainTask)(l)); err != nil {
		l.pub.active.Store(false)
	}
	return nil
}

// applyItems applies the drain's items from where it stopped; false when
// the slice ran out first.
func (l *loop) applyItems() bool {
	d := &l.fan
	for ; d.at < len(d.items); d.at++ {
		if d.budget <= 0 && d.member == 0 {
			return false
		}
		if !l.apply(&d.items[d.at], d.arena) {
			return false
		}
		d.member, d.cursor = 0, nil
	}
	return true
}

// apply applies it, or the part of it the slice has room for; false when
// the slice ran out first (d.member and d.cursor say where it stopped).
// An item for one connection counts one delivery; a walk of members one
// per member.
func (l *loop) apply(it *pubItem, arena []byte) bool {
	d := &l.fan
	switch it.kind {
	case pubAll:
		if d.member == 0 {
			d.member, d.cursor = 1, l.head.next
		}
		for d.cursor != &l.head {
			if d.budget <= 0 {
				return false
			}
			d.budget--
			c := d.cursor
			d.cursor = c.next
			l.push(c, it.frameFor(c))
		}
		return true
	case pubRoom:
		ms := l.rooms.Members(it.room)
		for ; d.member < len(ms); d.member++ {
			if d.budget <= 0 {
				return false
			}
			d.budget--
			l.push(ms[d.member], it.frameFor(ms[d.member]))
		}
		return true
	case pubConns:
		for ; d.member < len(it.conns); d.member++ {
			if d.budget <= 0 {
				return false
			}
			d.budget--
			l.push(it.conns[d.member], it.frameFor(it.conns[d.member]))
		}
		return true
	}
	d.budget--
	switch it.kind {
	case pubSend:
		it.conn.queued.Add(-int64(it.n))
		l.push(it.conn, arena[it.off:it.off+it.n])
	case pubClose:
		it.conn.closeNow(ws.StatusCode(it.code), it.room, it.cause)
	case pubShutdown:
		l.each(func(c *Conn) {
			if c.state.Load() == stateHandshake {
				if ex := l.exchangeOf(c); ex != nil && ex.lx.phase == exRunning {
					return // its handler's answer ends it (Shutdown waits)
				}
				l.closeSocket(c)
				return
			}
			c.closeNow(ws.StatusCode(it.code), it.room, it.cause)
		})
	case pubTask:
		it.cause.(loopTask)(l)
	case pubJoin:
		if cu, ok := it.cause.(*catchUp); ok {
			l.deliverCatchUp(it.conn, cu) // Recover's missed messages, before the live ones
		}
		l.roomsMu.Lock()
		if st := it.conn.state.Load(); st == stateOpen || st == stateClosing {
			l.rooms.Join(it.room, it.conn)
		}
		l.applied(it.room, 1)
		l.roomsMu.Unlock()
		l.roomHint(it.room)
	case pubLeave:
		l.roomsMu.Lock()
		if it.conn.state.Load() != stateClosed {
			// A closed connection leaves all its rooms in leaveAll, which
			// settles their pending counts; leaving one here too, between
			// a deferred leaveAll and its application, would unbalance them.
			l.rooms.Leave(it.room, it.conn)
		}
		l.applied(it.room, -1)
		l.roomsMu.Unlock()
		l.roomHint(it.room)
	}
	return true
}

// roomHint tells the broker, if any, that room's count changed: after
// every join or leave the loop applies, whether or not it changed the
// membership, since RoomLen counted it while it was queued.
func (l *loop) roomHint(room string) {
	if b := l.srv.opts.broker; b != nil {
		b.RoomChanged(room)
	}
}

// push writes a shared frame to c, on the loop, checking the outbound cap
// against gnet's exact figure.
func (l *loop) push(c *Conn, frame []byte) {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return
	}
	if c.overCapLocked(len(frame), c.gnetBuffered()) {
		c.mu.Unlock()
		c.slowConsumer()
		return
	}
	l.stats.msgsOut.Add(1)
	l.stats.bytesOut.Add(uint64(len(frame)))
	if l.batching || c.out != nil {
		// Batch the drain's frames for c, or queue behind pending output
		// (whose flush task is queued) to keep the order.
		c.ensureOutLocked()
		c.out = append(c.out, frame...)
		c.mu.Unlock()
		if l.batching && c.lflags&lfBatched == 0 {
			c.lflags |= lfBatched
			l.touched = append(l.touched, c)
		}
		return
	}
	c.sockBuffered.Add(int64(len(frame))) // counted before the unlock, as takeOutForWriteLocked does
	c.mu.Unlock()
	// The one frame of this drain: write the shared bytes as they are; gnet
	// copies only what the socket does not take. A failed write closes c.
	c.write(frame)
}

// flushBatched writes each batched connection's frames in one system
// call, from where it stopped; false when the slice ran out first.
func (l *loop) flushBatched() bool {
	d := &l.fan
	for ; d.flushAt < len(l.touched); d.flushAt++ {
		if d.budget <= 0 {
			return false
		}
		d.budget--
		c := l.touched[d.flushAt]
		c.lflags &^= lfBatched
		if c.state.Load() != stateClosed {
			c.flush()
		} else {
			c.dropOut()
		}
		l.touched[d.flushAt] = nil
	}
	l.touched = l.touched[:0]
	d.flushAt = 0
	return true
}

// leaveAll removes c from every room of its loop, now or, if the loop
// is walking a member list, right after; RoomLen stops counting c at once
// either way (OnClose may announce the new count).
func (l *loop) leaveAll(c *Conn) {
	if l.fanning {
		l.deferredLeaves = append(l.deferredLeaves, c)
		rooms := l.rooms.AppendRoomsOf(l.roomScratch[:0], c)
		l.pendRooms(rooms, -1)
		clear(rooms)
		l.roomScratch = rooms[:0]
		return
	}
	var rooms []string
	if l.srv.opts.broker != nil {
		rooms = l.rooms.AppendRoomsOf(l.roomScratch[:0], c)
	}
	l.roomsMu.Lock()
	l.rooms.LeaveAll(c)
	l.roomsMu.Unlock()
	if rooms != nil {
		l.srv.roomHints(rooms)
		clear(rooms)
		l.roomScratch = rooms[:0]
	}
}

func (l *loop) applyDeferredLeaves() {
	for i, c := range l.deferredLeaves {
		rooms := l.rooms.AppendRoomsOf(l.roomScratch[:0], c)
		l.roomsMu.Lock()
		l.pendRooms(rooms, 1)
		l.rooms.LeaveAll(c)
		l.roomsMu.Unlock()
		if l.srv.opts.broker != nil {
			l.srv.roomHints(rooms)
		}
		clear(rooms)
		l.roomScratch = rooms[:0]
		l.deferredLeaves[i] = nil
	}
	l.deferredLeaves = l.deferredLeaves[:0]
}

// pendRooms adds d to the pending count of each of rooms (a connection's):
// -1 while its leaving them is deferred, +1 when it is applied.
func (l *loop) pendRooms(rooms []string, d int32) {
	l.pub.mu.Lock()
	for _, r := range rooms {
		l.pub.addPending(r, d)
	}
	l.pub.mu.Unlock()
}

// frameFor returns the frame c gets: the compressed one when c negotiated
// compression with the window it was made for (32 KiB), the plain one
// otherwise.
func (it *pubItem) frameFor(c *Conn) []byte {
	if it.zframe != nil && c.pmd != 0 && c.serverWindow() == 15 {
		return it.zframe
	}
	return it.frame
}

// encode fills it.frame, and it.zframe when some connection negotiated
// compression and p reaches the threshold: each once for every target.
func (s *Server) encode(it *pubItem, op ws.OpCode, p []byte) error {
	if op != ws.OpText && op != ws.OpBinary {
		return errBadOpcode
	}
	it.frame = codec.AppendFrame(make([]byte, 0, codec.HeaderLen(int64(len(p)), false)+len(p)), op, true, p)
	if s.pmdConns.Load() > 0 {
		if d, z := s.compress(pmdOn, 15, p, ""); d != nil {
			it.zframe = codec.AppendDeflatedFrame(make([]byte, 0, codec.HeaderLen(int64(len(z)), false)+len(z)), op, z)
			s.putDeflater(d)
		}
	}
	return nil
}

// Broadcast sends one message to every open connection. The frame is
// encoded once, and compressed once when some connection negotiated
// permessage-deflate and the message reaches WithCompressionThreshold; each
// event loop gets one task. Safe from any goroutine;
// returns when the message is queued, not delivered. Delivery to each
// connection is subject to WithMaxOutboundBytes. When some loops' queues
// are full (WithMaxQueuedBytes), the others still queue the message and
// the error is a *QueueFullError that says how many loops refused it and
// how many sockets they held; nil means every loop queued it. With a
// broker (WithBroker), the message also goes to every other node of the
// cluster whatever happened here: an error from the broker (wrapping
// ErrBrokerUnavailable) means that only this node's connections get it;
// when both fail, the error joins both (errors.Is and errors.As find
// each).
func (s *Server) Broadcast(op ws.OpCode, p []byte) error {
	err := s.broadcastLocal(op, p)
	if b := s.opts.broker; b != nil && err != errBadOpcode {
		err = joinErr(err, b.Broadcast(op, p))
	}
	return err
}

func (s *Server) broadcastLocal(op ws.OpCode, p []byte) error {
	it := pubItem{kind: pubAll}
	if err := s.encode(&it, op, p); err != nil {
		return err
	}
	return s.toEachLoop(it)
}

// Publish sends one message to every member of room (see Conn.Join), like
// Broadcast: when some loops' queues are full, the others still queue it
// and the *QueueFullError says how many of the room's members (as RoomLen
// counted them on those loops) miss it. Messages published by one
// goroutine reach each member in the order they were published (a member
// whose loop refused one misses that one, and gets the later ones that its
// loop queued). With a broker (WithBroker), the members on every node of
// the cluster get it, in the order one publisher published; messages of
// two publishers on two nodes may interleave differently on different
// nodes.
func (s *Server) Publish(room string, op ws.OpCode, p []byte) error {
	if s.histBroker != nil {
		if h := s.history(room); h != nil {
			_, err := s.publishBus(h, room, op, p, false)
			return err
		}
	}
	err := s.publishLocal(room, op, p)
	if b := s.opts.broker; b != nil && err != errBadOpcode {
		err = joinErr(err, b.Publish(room, op, p))
	}
	return err
}

func (s *Server) publishLocal(room string, op ws.OpCode, p []byte) error {
	_, err := s.publishLocalPos(room, op, p)
	return err
}

// publishLocalPos publishes to room's members on this node, keeping the
// message in room's history if it has one (history.go).
func (s *Server) publishLocalPos(room string, op ws.OpCode, p []byte) (Position, error) {
	if h := s.history(room); h != nil {
		if s.histBroker != nil { // only the bus gives positions (Local.Publish)
			return Position{}, s.publishUnkept(h, room, op, p)
		}
		return s.publishHistory(h, room, op, p)
	}
	return Position{}, s.publishPlain(room, op, p)
}

func (s *Server) publishPlain(room string, op ws.OpCode, p []byte) error {
	it := pubItem{kind: pubRoom, room: room}
	if err := s.encode(&it, op, p); err != nil {
		return err
	}
	return s.toEachLoop(it)
}

// joinErr returns what went wrong here (a), on the bus (b), or both.
func joinErr(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return errors.Join(a, b)
}

// SendTo sends one message to the connections with the given ids, encoded
// once and handed to each event loop in one task. Ids that are not
// connected are skipped; it returns how many connections were targeted.
// When some loops' queues are full, the others still queue it, and the
// *QueueFullError's Missed says how many of the targeted connections do
// not get it. Safe from any goroutine.
func (s *Server) SendTo(ids []uint64, op ws.OpCode, p []byte) (int, error) {
	it := pubItem{kind: pubConns}
	if err := s.encode(&it, op, p); err != nil {
		return 0, err
	}
	byLoop := make(map[*loop][]*Conn)
	n := 0
	for _, id := range ids {
		if c, ok := s.conns.Get(id); ok {
			byLoop[c.loop] = append(byLoop[c.loop], c)
			n++
		}
	}
	var r fanResult
	s.eachLoop(func(l *loop) { // in the loops' order, not the map's: the same every time
		if conns := byLoop[l]; conns != nil {
			it.conns = conns
			r.note(l, &it, l.enqueue(it))
		}
	})
	return n, r.err()
}

// toEachLoop queues it on every loop. A loop whose queue is full does not
// stop the others; the error says which part was queued.
func (s *Server) toEachLoop(it pubItem) error {
	var r fanResult
	s.eachLoop(func(l *loop) { r.note(l, &it, l.enqueue(it)) })
	return r.err()
}

// fanResult collects what enqueueing a message on each of its loops did.
type fanResult struct {
	qf     QueueFullError
	failed error // the server is closing
}

// note records that enqueueing it on l returned err: queued (nil),
// refused (ErrQueueFull: its targets there miss it), or failed otherwise.
func (r *fanResult) note(l *loop, it *pubItem, err error) {
	switch err {
	case nil:
		r.qf.Queued++
	case ErrQueueFull:
		r.qf.Loops++
		r.qf.Missed += l.targets(it)
	default:
		r.failed = err
	}
}

func (r *fanResult) err() error {
	switch {
	case r.failed != nil:
		return r.failed
	case r.qf.Loops > 0:
		qf := r.qf
		return &qf
	}
	return nil
}

// targets counts its targets on l, from any goroutine: as RoomLen counts
// a room's members, the loop's sockets for a broadcast, the listed
// connections.
func (l *loop) targets(it *pubItem) int {
	switch it.kind {
	case pubRoom:
		return max(l.roomLen(it.room), 0)
	case pubAll:
		return int(l.stats.conns.Load())
	case pubConns:
		return len(it.conns)
	}
	return 0
}

// Join adds c to room: a Publish to room made after Join returns reaches
// c, and RoomLen counts c from then on. It is safe from any goroutine
// (OnOpen is the usual place). The loop applies it in order with
// publishes, after the callback that called it returns: a publish queued
// before Join, but not yet written, does not reach c, and RoomMembers
// lists c once the loop has applied it. A connection that closes leaves
// its rooms by itself. (With a broker, publishes from other nodes reach c
// once its node is subscribed to the room: see WithBroker.)
func (c *Conn) Join(room string) error {
	if st := c.state.Load(); st != stateOpen || c.closeCalled.Load() {
		return ErrClosed
	}
	return c.loop.enqueue(pubItem{kind: pubJoin, room: room, conn: c})
}

// Leave removes c from room: RoomLen stops counting it when Leave
// returns, and a Publish made after that does not reach it. Safe from any
// goroutine; applied in order with publishes, as Join is.
func (c *Conn) Leave(room string) error {
	if c.loop.srv.histBroker != nil && c.loop.srv.unwait(c, room) {
		return nil // a recovery waiting for its node: it never joined
	}
	return c.loop.enqueue(pubItem{kind: pubLeave, room: room, conn: c})
}

// RoomLen returns the number of connections in room, counting every Join
// and Leave that has returned, applied or not, so that a handler can
// announce the new count right after c.Join (examples/chat does). A
// connection joined twice, or left without having joined, or closed with
// a Join still queued, is counted right once its loop has applied that
// (at once, unless the loop is busy). With a broker (WithBroker) it adds
// the members on the other nodes as they last reported them (broker/nats:
// current within its report interval, 1 s by default, and within two and a
// round trip when a report is lost). Safe from any goroutine.
func (s *Server) RoomLen(room string) int {
	n := s.localRoomLen(room)
	if b := s.opts.broker; b != nil {
		n += b.RemoteRoomLen(room)
	}
	return n
}

func (s *Server) localRoomLen(room string) int {
	n := 0
	s.eachLoop(func(l *loop) { n += l.roomLen(room) })
	return max(n, 0)
}

// roomLen is room's applied members on l plus its pending joins less its
// pending leaves (which may make it negative). Any goroutine.
func (l *loop) roomLen(room string) int {
	l.roomsMu.RLock()
	defer l.roomsMu.RUnlock()
	l.pub.mu.Lock()
	defer l.pub.mu.Unlock()
	return l.rooms.Len(room) + int(l.pub.pending[room])
}

// RoomMembers returns the connections in room whose Join their loop has
// applied (see Join). Safe from any goroutine.
func (s *Server) RoomMembers(room string) []*Conn {
	var out []*Conn
	s.eachLoop(func(l *loop) {
		l.roomsMu.RLock()
		out = append(out, l.rooms.Members(room)...)
		l.roomsMu.RUnlock()
	})
	return out
}
