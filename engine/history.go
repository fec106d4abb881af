package engine

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/shard"
)

// Room history. A room whose WithHistory rule gives it a size keeps its
// last messages, each with a Position: an offset that grows by one per
// message within an epoch, a random name that the room's history gets
// when it is created and that changes whenever what it held may have been
// lost (this process restarted, or the room's history was dropped after it
// expired). A client that stores the position of the last message it got
// can come back, on a new connection, and Conn.Recover delivers what it
// missed before the live messages, with no gap and no duplicate at the
// seam.
//
// The seam. A publish to a room with history takes the room's lock,
// gives the message the next offset, stores its frame and queues it on
// every loop, in that order, before it unlocks; Recover takes the same
// lock, copies the frames after the client's position and queues them on
// its connection's loop together with its join. So a message is either
// in the copy (and queued on the loop before the join, which the
// connection is not yet a member for) or queued after the join: never both,
// never neither, whatever other goroutines publish meanwhile.
//
// Memory. A message is stored once, as the frame every member was sent
// (and its compressed form when one was made): the history shares those
// bytes with the fan-out, and a recovery shares them with the history.
// A room's history holds at most its Size messages; with a TTL, messages
// older than that are dropped when the room is next published to or
// recovered from, and by a sweep every second, which also forgets a room
// whose history has been empty for a TTL (its epoch goes with it).

// Position is a message's place in its room's history.
type Position struct {
	// Epoch names one unbroken run of the room's history. Positions of
	// two epochs do not compare: a client whose stored epoch is not the
	// room's may have missed messages that nobody can give it.
	Epoch string
	// Offset is 1 for the epoch's first message and one more for each
	// after it; 0 with an epoch is its start, before any message. With a
	// HistoryBroker the offsets are the bus's, which number the messages
	// of every room together: a room's offsets grow, by one or more.
	Offset uint64
}

// History bounds a room's history (see WithHistory).
type History struct {
	// Size is the most messages kept; 0 keeps none (no history, no
	// positions: the room is like any other).
	Size int
	// TTL is the longest a message is kept; 0 keeps it until Size newer
	// ones push it out.
	TTL time.Duration
}

// Envelope builds the payload that a room with history delivers, and
// keeps, for a message published with payload p at position pos: it
// appends it to dst and returns the result. It runs under the room's lock,
// in publish order, on the publisher's goroutine: keep it short, and do not
// publish from it. p is only valid during the call.
type Envelope func(dst []byte, room string, pos Position, p []byte) []byte

// WithHistory makes the rooms that rule gives a non-zero Size keep
// history (see History and Conn.Recover). rule is called when a room with
// no history yet is published to or recovered from, from any goroutine,
// and must be cheap; a room keeps what it got until its history is
// forgotten. env, if not nil, wraps every message published to such a
// room with its position, so that the client sees where it is (the engine
// imposes no format); nil delivers the payload as published, and the
// position is only Server.PublishPos's to tell. Default: no history.
func WithHistory(rule func(room string) History, env Envelope) Option {
	return func(o *options) { o.historyRule, o.envelope = rule, env }
}

// WithHistoryBytes bounds the frames that all rooms' histories keep
// together (default 64 MiB): a publish that takes the total past it drops
// its own room's oldest messages until the total is back under the bound
// (or the room keeps only the new one), so that recoveries from before
// them are not recovered. With rooms that clients name (a room per URL),
// give the rule a TTL as well: a room with history is forgotten only once
// empty for its TTL, so without one every such room keeps at least its
// last message.
func WithHistoryBytes(n int) Option { return func(o *options) { o.historyBytes = n } }

// Recovery is what Conn.Recover did.
type Recovery struct {
	// Recovered is true when the connection got every message published
	// to the room after the position it gave (none, when it had missed
	// nothing), false when that position was of another epoch (or
	// none), older than the history holds, or ahead of the room, or the
	// room keeps no history: the client must then reload its state. The
	// connection joined the room's live messages either way.
	Recovered bool
	// Missed is how many messages were delivered from the history.
	Missed int
	// Top is the position of the last message published to the room
	// before the live messages that the connection gets (its epoch's
	// start when there was none). A client that stores it, and the
	// position of every message after it, can recover later.
	Top Position
}

// histEntry is one kept message.
type histEntry struct {
	off    uint64 // its offset
	at     int64  // when it was published, unix nanoseconds (with a TTL)
	frame  []byte // shared with the fan-out
	zframe []byte // its compressed form, shared, or nil
}

// roomHistory is one room's history: a ring of its last Size messages.
type roomHistory struct {
	mu    sync.Mutex
	room  string
	epoch string
	cfg   History
	ring  []histEntry // grows up to cfg.Size, then wraps
	head  int         // the oldest entry's index in ring
	n     int         // entries kept
	top   uint64      // the last message's offset (floor when none is kept)
	floor uint64      // every message after this offset is kept (the last one dropped)
	last  int64       // the last publish, unix nanoseconds
	gone  bool        // forgotten by the sweep: look the room up again
	buf   []byte      // scratch for the envelope
	bytes int         // frames kept
	all   *histories  // the server's, for the total
	// waiting are the recoveries from positions ahead of this node's
	// history, which another node of the cluster gave: joined once this
	// node has caught up with them (PublishHistory), or closed with 1013
	// (abandon) when it has not within recoverWait, or cannot any more.
	waiting []waiter
}

// waiter is a recovery waiting for its node to catch up.
type waiter struct {
	c     *Conn
	since uint64
	at    int64 // unix nanoseconds
}

// recoverWait is how long a recovery from a position ahead of its node
// (with a HistoryBroker) waits for the node to catch up before its
// connection is closed with 1013, for the client to come back.
const recoverWait = 5 * time.Second

// histories are a server's rooms with history.
type histories struct {
	rooms *shard.Map[string, *roomHistory]
	bytes atomic.Int64 // frames kept by every room, against WithHistoryBytes
	// gapFloor is the highest offset up to which a HistoryBroker's bus
	// may have lost messages (histGap): no room's history starts below it.
	gapFloor atomic.Uint64
}

// newEpoch returns a fresh epoch name.
func newEpoch() string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// history returns room's history, creating it if its rule gives it one;
// nil when the server keeps no history for room.
func (s *Server) history(room string) *roomHistory {
	if s.opts.historyRule == nil {
		return nil
	}
	if h, ok := s.hist.rooms.Get(room); ok {
		return h
	}
	cfg := s.opts.historyRule(room)
	if cfg.Size <= 0 {
		return nil
	}
	h := &roomHistory{room: room, cfg: cfg, last: time.Now().UnixNano(), all: &s.hist}
	if hb := s.histBroker; hb != nil {
		// The bus's history: this node has every message of the bus up
		// to its horizon, and none of them was room's (or it would have
		// a history already): room's is complete after it. While the
		// node cannot vouch for that, no epoch: nothing recovers until
		// the bus's next message for room sets it.
		if hz, ok := hb.HistoryHorizon(); ok {
			off := max(hz.Offset, s.hist.gapFloor.Load())
			h.epoch, h.floor, h.top = hz.Epoch, off, off
		}
	} else {
		h.epoch = newEpoch()
	}
	h, _ = s.hist.rooms.SetIfAbsent(room, h)
	return h
}

// lock locks h, or returns false when the sweep forgot it meanwhile.
func (h *roomHistory) lock() bool {
	h.mu.Lock()
	if h.gone {
		h.mu.Unlock()
		return false
	}
	return true
}

// trim drops the entries past the TTL; h.mu is held.
func (h *roomHistory) trim(now int64) {
	if h.cfg.TTL <= 0 {
		return
	}
	old := now - int64(h.cfg.TTL)
	for h.n > 0 && h.ring[h.head].at <= old {
		h.dropOldest()
	}
}

func (h *roomHistory) dropOldest() {
	e := &h.ring[h.head]
	h.floor = e.off
	n := len(e.frame) + len(e.zframe)
	h.bytes -= n
	h.all.bytes.Add(-int64(n))
	*e = histEntry{}
	h.head++
	if h.head == len(h.ring) {
		h.head = 0
	}
	h.n--
}

// add keeps a message, and drops the room's oldest ones while every
// room's together pass bound; h.mu is held.
func (h *roomHistory) add(e histEntry, bound int64) {
	if h.n == h.cfg.Size {
		h.dropOldest()
	}
	if h.n == len(h.ring) { // not full, and the ring is: grow it in order
		ring := make([]histEntry, min(max(2*len(h.ring), 8), h.cfg.Size))
		for i := 0; i < h.n; i++ {
			ring[i] = h.ring[(h.head+i)%len(h.ring)]
		}
		h.ring, h.head = ring, 0
	}
	h.ring[(h.head+h.n)%len(h.ring)] = e
	h.n++
	h.top = e.off
	n := len(e.frame) + len(e.zframe)
	h.bytes += n
	for h.all.bytes.Add(int64(n)) > bound && h.n > 1 {
		n = 0
		h.dropOldest()
	}
}

// PublishPos publishes like Publish and returns the message's position in
// room's history; the zero Position when room keeps none (see
// WithHistory). With an envelope, the message delivered and kept is the
// envelope's. The message gets its position, is kept and is queued on
// every loop under the room's lock, so that positions follow the order in
// which members get the messages, whoever publishes them. With a
// HistoryBroker, the bus gives the position: PublishPos waits for it (a
// round trip to the bus; call Publish from an event loop, which does not
// wait), and the message reaches this node's members, as every other
// node's, when the bus delivers it back.
func (s *Server) PublishPos(room string, op ws.OpCode, p []byte) (Position, error) {
	if s.histBroker != nil {
		if h := s.history(room); h != nil {
			return s.publishBus(h, room, op, p, true)
		}
	}
	pos, err := s.publishLocalPos(room, op, p)
	if b := s.opts.broker; b != nil && err != errBadOpcode {
		err = joinErr(err, b.Publish(room, op, p))
	}
	return pos, err
}

// publishHistory publishes to a room with history; the position is the
// zero one when the encoding failed.
func (s *Server) publishHistory(h *roomHistory, room string, op ws.OpCode, p []byte) (Position, error) {
	for !h.lock() {
		if h = s.history(room); h == nil {
			return Position{}, s.publishPlain(room, op, p)
		}
	}
	defer h.mu.Unlock()
	now := time.Now().UnixNano()
	if h.cfg.TTL > 0 {
		h.trim(now)
	}
	pos := Position{Epoch: h.epoch, Offset: h.top + 1}
	p = h.wrap(s.opts.envelope, room, pos, p)
	it := pubItem{kind: pubRoom, room: room}
	if err := s.encode(&it, op, p); err != nil {
		return Position{}, err
	}
	h.add(histEntry{off: pos.Offset, at: now, frame: it.frame, zframe: it.zframe}, int64(s.opts.historyBytes))
	h.last = now
	return pos, s.toEachLoop(it)
}

// RoomPosition returns the position of the last message published to
// room, and false when room keeps no history. Safe from any goroutine.
func (s *Server) RoomPosition(room string) (Position, bool) {
	for {
		h := s.history(room)
		if h == nil {
			return Position{}, false
		}
		if h.lock() {
			pos := Position{Epoch: h.epoch, Offset: h.top}
			h.mu.Unlock()
			return pos, true
		}
	}
}

// catchUp is what Recover queues for its connection with its join: the
// missed frames, delivered before the join is applied. It travels in the
// join's pubItem.cause (as a pubTask's function does) so that the item
// stays as small as it is.
type catchUp struct{ entries []histEntry }

func (*catchUp) Error() string { return "wsloop: a recovery" }

// Recover joins c to room, as Join does, and first delivers every message
// of room's history after since, in order, so that a client that comes
// back on a new connection with the position of the last message it got
// misses none and gets none twice, even while others publish. Call it
// instead of Join (a connection already in room would get the missed
// messages twice), from OnOpen or a message handler, with the position the
// client sent (in the request, see Request.Query, or in a message). The
// Recovery says whether the client got everything it missed; when it did
// not (since is of another epoch, older than the history, ahead of the
// room, or room keeps no history), nothing is delivered from the history,
// c joins the live messages all the same, and the client must reload its
// state. A new client may pass the zero Position: it joins, and Top says
// where it starts. The missed messages count against WithMaxOutboundBytes
// as any others (a recovery larger than that closes a slow consumer, or
// drops what does not fit, by WithSlowConsumerPolicy). Safe from any
// goroutine; returns ErrClosed when c is closed or closing.
//
// With a HistoryBroker, a node that cannot vouch for the bus's history
// (no bus, or still replaying it) recovers nothing. A position ahead of
// this node's history, which another node gave the client, is recovered
// at once when this node has seen the bus up to it (the room had nothing
// more); otherwise the connection waits in the room, its Recovery says
// Recovered with Missed 0, and it gets what follows the position, then
// the live messages, once this node has caught up. If it does not within
// 5 s, or the bus lost messages meanwhile, the connection is closed with
// 1013 (try again later), so that the client comes back and recovers
// again; it is never left with a gap.
func (c *Conn) Recover(room string, since Position) (Recovery, error) {
	if st := c.state.Load(); st != stateOpen || c.closeCalled.Load() {
		return Recovery{}, ErrClosed
	}
	s := c.loop.srv
	for {
		h := s.history(room)
		if h == nil {
			return Recovery{}, c.Join(room)
		}
		if !h.lock() {
			continue
		}
		if h.cfg.TTL > 0 {
			h.trim(time.Now().UnixNano())
		}
		vouched := true
		if hb := s.histBroker; hb != nil {
			hz, ok := hb.HistoryHorizon()
			vouched = ok
			if ok && h.epoch != hz.Epoch {
				// The bus's history is another than the room's (the
				// room was made while the node could not vouch, or the
				// bus lost its stream): the room starts anew at the
				// node's horizon, and no position of before recovers.
				s.resetRoom(h, hz.Epoch, max(hz.Offset, s.hist.gapFloor.Load()))
			}
			if ok && since.Epoch == h.epoch && since.Offset > h.top && since.Offset >= h.floor {
				if since.Offset <= hz.Offset {
					// This node has had every message of the bus up to
					// since, and none of the room's after its top: the
					// client has all there is.
					err := c.loop.enqueue(pubItem{kind: pubJoin, room: room, conn: c})
					h.mu.Unlock()
					if err != nil {
						return Recovery{}, err
					}
					return Recovery{Recovered: true, Top: since}, nil
				}
				// Another node gave the client a position this node has
				// not reached yet: join it once the node has, with what
				// follows (release).
				h.waiting = append(h.waiting, waiter{c: c, since: since.Offset, at: time.Now().UnixNano()})
				h.mu.Unlock()
				return Recovery{Recovered: true, Top: since}, nil
			}
		}
		r := Recovery{Top: Position{Epoch: h.epoch, Offset: h.top}}
		var cu *catchUp
		if since.Epoch == h.epoch && h.epoch != "" && since.Offset <= h.top && since.Offset >= h.floor && vouched {
			r.Recovered = true
			if cu = h.after(since.Offset); cu != nil {
				r.Missed = len(cu.entries)
			}
		}
		it := pubItem{kind: pubJoin, room: room, conn: c}
		if cu != nil {
			it.cause = cu
		}
		err := c.loop.enqueue(it)
		h.mu.Unlock()
		if err != nil {
			return Recovery{}, err
		}
		return r, nil
	}
}

// catchUpChunk is how much of a recovery a loop batches for its
// connection (at most a quarter of WithMaxOutboundBytes) before it writes
// that much: the socket takes it while the
// rest is batched, so that a recovery larger than WithMaxOutboundBytes
// fits when the client reads as fast as the loop writes.
const catchUpChunk = 64 << 10

// deliverCatchUp pushes a recovery's frames to c, on its loop, before its
// join is applied.
func (l *loop) deliverCatchUp(c *Conn, cu *catchUp) {
	if st := c.state.Load(); st != stateOpen {
		return
	}
	chunk := min(catchUpChunk, l.srv.opts.maxOutbound/4)
	for i := range cu.entries {
		e := &cu.entries[i]
		f := e.frame
		if e.zframe != nil && c.pmd != 0 && c.serverWindow() == 15 {
			f = e.zframe
		}
		if l.batching && c.lflags&lfBatched != 0 {
			c.mu.Lock()
			full := len(c.out) >= chunk
			c.mu.Unlock()
			if full {
				c.flush() // still on the batch's list: its flush writes the rest
			}
		}
		l.push(c, f)
	}
}

// sweepHistories drops expired messages every second and forgets the
// rooms whose history has been empty for a TTL, until stop closes.
func (s *Server) sweepHistories(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		s.hist.rooms.Range(func(room string, h *roomHistory) bool {
			h.mu.Lock()
			if len(h.waiting) > 0 {
				h.abandon(func(w *waiter) bool { return now-w.at >= int64(recoverWait) })
			}
			if h.cfg.TTL <= 0 || len(h.waiting) > 0 {
				h.mu.Unlock()
				return true
			}
			h.trim(now)
			forget := h.n == 0 && now-h.last >= int64(h.cfg.TTL)
			if forget {
				h.gone = true
				h.ring = nil // empty: its bytes are counted out already
			}
			h.mu.Unlock()
			if forget {
				s.hist.rooms.DeleteIf(room, func(v *roomHistory) bool { return v == h })
			}
			return true
		})
	}
}

// historyStats counts the rooms with history and the bytes they keep.
func (s *Server) historyStats() (rooms, msgs, bytes int) {
	if s.opts.historyRule == nil {
		return 0, 0, 0
	}
	s.hist.rooms.Range(func(_ string, h *roomHistory) bool {
		h.mu.Lock()
		rooms++
		msgs += h.n
		bytes += h.bytes
		h.mu.Unlock()
		return true
	})
	return rooms, msgs, bytes
}

// HistoryBroker is a Broker that keeps the history of the rooms with
// history for the whole cluster (natsbroker with JetStream does), so that
// a client recovers on whichever node it reconnects to. With one, a
// publish to a room with history (WithHistory) goes to the bus and not
// straight to this node's members: the bus gives it its position and
// delivers it to every node, this one too, in one order, through
// Local.PublishHistory, and each node keeps it as a message published
// here. Positions are then the bus's (its epoch, and offsets that grow
// with every message of the bus, not by one per room's message), the
// same on every node.
type HistoryBroker interface {
	Broker
	// PublishHistory puts a message for a room with history on the bus.
	// With wait it returns once the bus has given the message its
	// position; without it, it returns at once with the zero Position and
	// never blocks. p is only valid during the call. An error means the
	// message is not on the bus: the engine then delivers it to this
	// node's members alone, with the zero Position, and keeps it nowhere.
	PublishHistory(room string, op ws.OpCode, p []byte, wait bool) (Position, error)
	// HistoryHorizon returns the bus's epoch and an offset such that this
	// node has been given, through Local.PublishHistory, every message of
	// the bus up to it; false while the node cannot vouch for that (the
	// bus is unreachable, or the node has not caught up with it since it
	// started): Conn.Recover then recovers nothing.
	HistoryHorizon() (Position, bool)
	// KeepsHistory reports whether the broker was set up to keep history;
	// when it was not, the engine takes it for a plain Broker and keeps
	// each node's history apart. Called once, by New.
	KeepsHistory() bool
}

// publishBus publishes to a room with history through the HistoryBroker;
// when the bus does not take the message, this node's members get it
// alone, with the zero Position (in the envelope), and no history keeps it.
func (s *Server) publishBus(h *roomHistory, room string, op ws.OpCode, p []byte, wait bool) (Position, error) {
	if op != ws.OpText && op != ws.OpBinary {
		return Position{}, errBadOpcode
	}
	pos, err := s.histBroker.PublishHistory(room, op, p, wait)
	if err == nil {
		return pos, nil
	}
	return Position{}, joinErr(s.publishUnkept(h, room, op, p), err)
}

// publishUnkept delivers a message to a room with history on this node
// alone, with the zero Position (in the envelope), keeping it nowhere: with
// a HistoryBroker, only the bus gives positions.
func (s *Server) publishUnkept(h *roomHistory, room string, op ws.OpCode, p []byte) error {
	if env := s.opts.envelope; env != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		p = h.wrap(env, room, Position{}, p)
	}
	return s.publishPlain(room, op, p)
}

// HistoryMessage is a message of a HistoryBroker's bus, as the broker
// hands it to Local.PublishHistory.
type HistoryMessage struct {
	Room    string
	Op      ws.OpCode
	Payload []byte    // only valid during the call
	Pos     Position  // the bus's: its epoch, and an offset above every earlier message's
	At      time.Time // when it was published, on the bus's clock (for the TTL)
	// Gap says that messages of the bus before this one, of any room,
	// may have been lost unseen (the broker found a hole in the bus's
	// sequence: the bus dropped them before this node took them): no
	// recovery from before Pos then succeeds, in any room.
	Gap bool
	// Replay says that the message was published before this node
	// started taking the bus (the broker replays what the bus keeps when
	// it starts): it is kept, for recoveries, and not delivered to the
	// members, who joined after it was published.
	Replay bool
}

// PublishHistory delivers a message of a HistoryBroker's bus to its
// room's members on this node and keeps it in the room's history, as a
// publish here does: under the room's lock, with the envelope. A broker
// calls it for every message of the bus, in the bus's order, from one
// goroutine. A message at or before the last one kept is skipped
// (delivered before); one of another epoch than the room's starts the
// room's history anew (the bus lost its own). A room whose rule gives it
// no history gets the message as a plain publish (unless it is a replay).
func (l Local) PublishHistory(m HistoryMessage) error {
	s := l.s
	room, op, p, pos, at := m.Room, m.Op, m.Payload, m.Pos, m.At
	if m.Gap && pos.Offset > 0 {
		s.histGap(pos.Offset - 1) // first: whatever this message's room is
	}
	if op != ws.OpText && op != ws.OpBinary {
		return errBadOpcode
	}
	h := s.history(room)
	if h == nil || pos.Offset == 0 {
		if m.Replay {
			return nil
		}
		return s.publishPlain(room, op, p)
	}
	for !h.lock() {
		if h = s.history(room); h == nil {
			return s.publishPlain(room, op, p)
		}
	}
	defer h.mu.Unlock()
	if h.epoch != pos.Epoch {
		s.resetRoom(h, pos.Epoch, max(pos.Offset-1, s.hist.gapFloor.Load()))
	} else if pos.Offset <= h.top {
		return nil
	}
	now := time.Now().UnixNano()
	t := now // when it was published, for the TTL: the bus's time, unless in the future
	if h.cfg.TTL > 0 {
		h.trim(now)
		if u := at.UnixNano(); !at.IsZero() && u < now {
			t = u
		}
	}
	p = h.wrap(s.opts.envelope, room, pos, p)
	it := pubItem{kind: pubRoom, room: room}
	if err := s.encode(&it, op, p); err != nil {
		return err
	}
	h.add(histEntry{off: pos.Offset, at: t, frame: it.frame, zframe: it.zframe}, int64(s.opts.historyBytes))
	h.last = now
	var err error
	if !m.Replay {
		err = s.toEachLoop(it)
	}
	if len(h.waiting) > 0 {
		h.release(func(w *waiter) bool { return w.since < pos.Offset })
	}
	return err
}

// histGap empties every room's history up to off: no recovery from
// before it succeeds (HistoryMessage.Gap).
func (s *Server) histGap(off uint64) {
	for {
		g := s.hist.gapFloor.Load()
		if g >= off || s.hist.gapFloor.CompareAndSwap(g, off) {
			break
		}
	}
	s.hist.rooms.Range(func(_ string, h *roomHistory) bool {
		h.mu.Lock()
		for h.n > 0 && h.ring[h.head].off <= off {
			h.dropOldest()
		}
		h.floor = max(h.floor, off)
		h.top = max(h.top, off)
		h.abandon(func(w *waiter) bool { return w.since < off }) // what they wait for may be lost
		h.mu.Unlock()
		return true
	})
}

// resetRoom starts h's history anew in epoch at offset off (nothing kept,
// nothing recovers from before); h.mu is held.
func (s *Server) resetRoom(h *roomHistory, epoch string, off uint64) {
	for h.n > 0 {
		h.dropOldest()
	}
	h.abandon(func(*waiter) bool { return true }) // their epoch is gone
	h.epoch, h.top, h.floor = epoch, off, off
}

// abandon closes the waiting recoveries that done selects with 1013: they
// were told they recovered, and what they wait for can no longer be
// vouched for (lost on the bus, another epoch, or not there in time), so
// the client must come back and recover again; h.mu is held.
func (h *roomHistory) abandon(done func(*waiter) bool) {
	h.takeWaiting(done, func(w waiter) {
		// Not under h.mu, nor on this goroutine: a close on the caller's
		// own loop may run handlers, which may recover.
		go w.c.Close(recoverAgain, "history position not reached here: reconnect")
	})
}

// recoverAgain is the close code of a recovery that a node could not
// complete after all (abandon): 1013, try again later.
const recoverAgain ws.StatusCode = 1013

// release joins the waiting recoveries that done selects, each with the
// kept messages after its position (queued after the message that made
// the node catch up, which it therefore gets here); h.mu is held.
func (h *roomHistory) release(done func(*waiter) bool) {
	h.takeWaiting(done, func(w waiter) {
		it := pubItem{kind: pubJoin, room: h.room, conn: w.c}
		if w.since >= h.floor {
			if cu := h.after(w.since); cu != nil {
				it.cause = cu
			}
		}
		if w.c.loop.enqueue(it) != nil {
			go w.c.Close(recoverAgain, "history position not reached here: reconnect")
		}
	})
}

// takeWaiting removes the waiting recoveries that sel selects and calls
// fn for each, in their order; h.mu is held.
func (h *roomHistory) takeWaiting(sel func(*waiter) bool, fn func(waiter)) {
	kept := h.waiting[:0]
	for _, w := range h.waiting {
		if sel(&w) {
			fn(w)
		} else {
			kept = append(kept, w)
		}
	}
	clear(h.waiting[len(kept):])
	h.waiting = kept
}

// after returns the kept messages after offset since, oldest first, for
// a recovery; nil when there are none. h.mu is held.
func (h *roomHistory) after(since uint64) *catchUp {
	n := 0
	for n < h.n && h.ring[(h.head+h.n-1-n)%len(h.ring)].off > since {
		n++
	}
	if n == 0 {
		return nil
	}
	cu := &catchUp{entries: make([]histEntry, n)}
	for i := range cu.entries {
		cu.entries[i] = h.ring[(h.head+h.n-n+i)%len(h.ring)]
	}
	return cu
}

// wrap returns p in env's envelope for pos (p itself without one), built
// in h.buf; h.mu is held. The result is valid until the next wrap.
func (h *roomHistory) wrap(env Envelope, room string, pos Position, p []byte) []byte {
	if env == nil {
		return p
	}
	h.buf = env(h.buf[:0], room, pos, p)
	p = h.buf
	if cap(h.buf) > scratchKeep {
		h.buf = nil // a rare large one is not kept
	}
	return p
}

// HistoryGap tells the engine that the bus of a HistoryBroker may have
// lost messages up to pos (the broker found its sequence broken, without
// a message after the hole to hand over yet): every room's history is cut
// there, and no recovery from before it succeeds.
func (l Local) HistoryGap(pos Position) { l.s.histGap(pos.Offset) }

// unwait drops c's recovery waiting in room (Conn.Recover ahead of its
// node), and reports whether there was one: a Leave meanwhile must not be
// undone by the join that would follow.
func (s *Server) unwait(c *Conn, room string) bool {
	h, ok := s.hist.rooms.Get(room)
	if !ok {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	found := false
	h.takeWaiting(func(w *waiter) bool { return w.c == c }, func(waiter) { found = true })
	return found
}
