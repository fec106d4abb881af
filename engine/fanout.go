package engine

import (
	"context"
	"sync"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// Fan-out. A publish encodes its frame once and hands it to every event
// loop through that loop's queue; the loop writes the same bytes to each of
// its targets. One loop task drains everything queued since the last one,
// so a burst of publishes costs one hand-off per loop, and each target gets
// one write system call per drain: the frame itself (no copy) when the
// drain holds one message, or all of the drain's frames for it, batched.
//
// Room membership lives in each loop's own index, changed and walked only
// by that loop: joins and leaves travel through the same queue as
// publishes, so a publish made after Join returned reaches the connection.

type pubKind uint8

const (
	pubAll   pubKind = iota // every connection of the loop
	pubRoom                 // the room's members on the loop
	pubConns                // the listed connections (all on this loop)
	pubJoin
	pubLeave
)

// pubItem is one queued fan-out operation.
type pubItem struct {
	kind  pubKind
	room  string
	frame []byte // shared, read-only
	conns []*Conn
	conn  *Conn
}

// pubQueue is a loop's inbox of fan-out operations; producers are any
// goroutines, the consumer is the loop.
type pubQueue struct {
	mu        sync.Mutex
	items     []pubItem
	scheduled bool
}

// enqueue adds an item and makes sure a drain task is queued on the loop.
func (l *loop) enqueue(it pubItem) error {
	q := &l.pub
	q.mu.Lock()
	q.items = append(q.items, it)
	schedule := !q.scheduled
	q.scheduled = true
	q.mu.Unlock()
	if schedule {
		if err := l.el.Execute(context.Background(), (*drainTask)(l)); err != nil {
			q.mu.Lock()
			q.scheduled = false
			q.mu.Unlock()
			return ErrServerClosed
		}
	}
	return nil
}

type drainTask loop

// Run drains the loop's fan-out queue.
func (t *drainTask) Run(context.Context) error {
	l := (*loop)(t)
	q := &l.pub
	q.mu.Lock()
	items := q.items
	q.items = l.pubSpare[:0]
	q.scheduled = false
	q.mu.Unlock()

	frames := 0
	for i := range items {
		if items[i].frame != nil {
			frames++
		}
	}
	l.batching = frames > 1
	l.fanning = true
	for i := range items {
		l.apply(&items[i])
	}
	l.fanning = false
	l.flushBatched()
	l.applyDeferredLeaves()
	clear(items)
	l.pubSpare = items[:0]
	return nil
}

func (l *loop) apply(it *pubItem) {
	switch it.kind {
	case pubAll:
		l.each(func(c *Conn) { l.push(c, it.frame) })
	case pubRoom:
		for _, c := range l.rooms.Members(it.room) {
			l.push(c, it.frame)
		}
	case pubConns:
		for _, c := range it.conns {
			l.push(c, it.frame)
		}
	case pubJoin:
		if st := it.conn.state.Load(); st == stateOpen || st == stateClosing {
			l.roomsMu.Lock()
			l.rooms.Join(it.room, it.conn)
			l.roomsMu.Unlock()
		}
	case pubLeave:
		l.roomsMu.Lock()
		l.rooms.Leave(it.room, it.conn)
		l.roomsMu.Unlock()
	}
}

// push writes a shared frame to c, on the loop.
func (l *loop) push(c *Conn, frame []byte) {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return
	}
	if c.overCapLocked(len(frame), c.gc.OutboundBuffered()) {
		c.mu.Unlock()
		c.slowConsumer()
		return
	}
	l.stats.msgsOut.Add(1)
	l.stats.bytesOut.Add(uint64(len(frame)))
	if l.batching || c.out != nil {
		// Batch the drain's frames for c, or queue behind pending output
		// (whose flush task is queued) to keep the order.
		if c.out == nil {
			p := l.srv.outPool.Get().(*[]byte)
			c.out, c.outPooled = (*p)[:0], p
		}
		c.out = append(c.out, frame...)
		c.mu.Unlock()
		if l.batching && !c.batched {
			c.batched = true
			l.touched = append(l.touched, c)
		}
		return
	}
	c.mu.Unlock()
	// The one frame of this drain: write the shared bytes as they are; gnet
	// copies only what the socket does not take. A failed write closes c.
	_, _ = c.gc.Write(frame)
	c.sockBuffered.Store(int64(c.gc.OutboundBuffered()))
}

// flushBatched writes each batched connection's frames in one system call.
func (l *loop) flushBatched() {
	for i, c := range l.touched {
		c.batched = false
		if c.state.Load() != stateClosed {
			c.beginDispatch()
			c.endDispatch()
		}
		l.touched[i] = nil
	}
	l.touched = l.touched[:0]
}

// leaveAll removes c from every room of its loop, now or, if the loop
// is walking a member list, right after.
func (l *loop) leaveAll(c *Conn) {
	if l.fanning {
		l.deferredLeaves = append(l.deferredLeaves, c)
		return
	}
	l.roomsMu.Lock()
	l.rooms.LeaveAll(c)
	l.roomsMu.Unlock()
}

func (l *loop) applyDeferredLeaves() {
	for i, c := range l.deferredLeaves {
		l.leaveAll(c)
		l.deferredLeaves[i] = nil
	}
	l.deferredLeaves = l.deferredLeaves[:0]
}

// encodeFrame encodes a data frame once for every target.
func encodeFrame(op ws.OpCode, p []byte) ([]byte, error) {
	if op != ws.OpText && op != ws.OpBinary {
		return nil, errBadOpcode
	}
	return codec.AppendFrame(make([]byte, 0, codec.HeaderLen(int64(len(p)), false)+len(p)), op, true, p), nil
}

// Broadcast sends one message to every open connection. The frame is
// encoded once; each event loop gets one task. Safe from any goroutine;
// returns when the message is queued, not delivered. Delivery to each
// connection is subject to WithMaxOutboundBytes.
func (s *Server) Broadcast(op ws.OpCode, p []byte) error {
	frame, err := encodeFrame(op, p)
	if err != nil {
		return err
	}
	return s.toEachLoop(pubItem{kind: pubAll, frame: frame})
}

// Publish sends one message to every member of room (see Conn.Join), like
// Broadcast. Messages published by one goroutine reach each member in the
// order they were published.
func (s *Server) Publish(room string, op ws.OpCode, p []byte) error {
	frame, err := encodeFrame(op, p)
	if err != nil {
		return err
	}
	return s.toEachLoop(pubItem{kind: pubRoom, room: room, frame: frame})
}

// SendTo sends one message to the connections with the given ids, encoded
// once and handed to each event loop in one task. Ids that are not
// connected are skipped; it returns how many connections were targeted.
func (s *Server) SendTo(ids []uint64, op ws.OpCode, p []byte) (int, error) {
	frame, err := encodeFrame(op, p)
	if err != nil {
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
	for l, conns := range byLoop {
		if err := l.enqueue(pubItem{kind: pubConns, frame: frame, conns: conns}); err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *Server) toEachLoop(it pubItem) error {
	var err error
	s.eachLoop(func(l *loop) {
		if e := l.enqueue(it); e != nil {
			err = e
		}
	})
	return err
}

// Join adds c to room: later Publish calls for room reach it. It is safe
// from any goroutine and takes effect in order with publishes. A closed
// connection leaves its rooms by itself.
func (c *Conn) Join(room string) error {
	if st := c.state.Load(); st != stateOpen {
		return ErrClosed
	}
	return c.loop.enqueue(pubItem{kind: pubJoin, room: room, conn: c})
}

// Leave removes c from room. Safe from any goroutine; in order with
// publishes.
func (c *Conn) Leave(room string) error {
	return c.loop.enqueue(pubItem{kind: pubLeave, room: room, conn: c})
}

// RoomLen returns the number of connections in room. Safe from any
// goroutine.
func (s *Server) RoomLen(room string) int {
	n := 0
	s.eachLoop(func(l *loop) {
		l.roomsMu.RLock()
		n += l.rooms.Len(room)
		l.roomsMu.RUnlock()
	})
	return n
}

// RoomMembers returns the connections in room. Safe from any goroutine.
func (s *Server) RoomMembers(room string) []*Conn {
	var out []*Conn
	s.eachLoop(func(l *loop) {
		l.roomsMu.RLock()
		out = append(out, l.rooms.Members(room)...)
		l.roomsMu.RUnlock()
	})
	return out
}
