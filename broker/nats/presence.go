package natsbroker

import (
	"encoding/binary"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Presence reports, on the presence subject, one or more messages of
//
//	'P' flags node(8 bytes, LE) seq(4 bytes, LE) entries...
//	entry: uvarint(len(room)) room uvarint(count)
//
// A report holds absolute counts (0: the room is gone from the node). The
// first message of a full report has flagFull: receivers forget what they
// had from that node before applying it. flagWant asks every node for a
// full report next time (a node that starts sends it); flagBye says the
// node stops, and its members stop being counted at once (rather than
// after three silent intervals). seq counts a node's messages, so that a
// receiver notices a missed one.
//
// A node that notices one repairs at once, from the one node it concerns
// and without the others: every node also listens on its own subject,
// presence.<its id in hex>, where it gets
//
//	'A' node(8)                    node asks for this one's counts
//	'S' flags node(8) seq(4) part(2) entries...
//
// and answers an ask with a snapshot ('S') of all its counts, sent to the
// asker's subject alone, in parts numbered from 0 (the last has
// snapLast). seq is that of the sender's last report: the asker replaces
// what it had from the sender with the snapshot, and takes the sender's
// reports up again from the next seq. A node asks a peer at most once per
// report interval, so that one that keeps missing reports costs each peer
// at most one snapshot per interval, and costs the other nodes nothing.

const (
	flagFull = 1 << iota
	flagWant
	flagBye // the node is stopping: forget it now
)

const snapLast = 1 // the last part of a snapshot

const (
	presHeader = 14
	snapHeader = presHeader + 2
	presChunk  = 32 << 10 // bytes of entries per message
)

type presence struct {
	mu     sync.RWMutex
	peers  map[uint64]*peer
	remote map[string]int32    // sum over peers
	asks   map[uint64]struct{} // peers to ask for a snapshot (run asks)
	askers map[uint64]struct{} // nodes that asked for one (run answers)

	wantFull atomic.Bool // send a full report next time

	// WithOnRoomCount: the rooms whose total may have changed since
	// notify last looked (under mu), and notify's wake-up.
	counting bool
	touched  map[string]struct{}
	notified chan struct{}

	// run goroutine only
	changed map[string]struct{}
	seq     uint32
	started bool
	buf     []byte
	spare   map[uint64]struct{}
}

type peer struct {
	rooms map[string]int32
	seq   uint32
	seen  time.Time
	asked time.Time // when this node last asked it for a snapshot
	part  uint16    // the next part of its snapshot being received; 0: none
}

func (p *presence) init() {
	p.peers = make(map[uint64]*peer)
	p.remote = make(map[string]int32)
	p.asks = make(map[uint64]struct{})
	p.askers = make(map[uint64]struct{})
	p.changed = make(map[string]struct{})
	p.spare = make(map[uint64]struct{})
	p.touched = make(map[string]struct{})
	p.notified = make(chan struct{}, 1)
}

// touch notes that room's total may have changed, for notify; p.mu is
// held.
func (p *presence) touch(room string) {
	if !p.counting {
		return
	}
	p.touched[room] = struct{}{}
	select {
	case p.notified <- struct{}{}:
	default:
	}
}

// touchRooms notes the rooms among hints, whose counts on this node may
// have changed. Every hinted room, not only those whose count run saw
// change: notify may have read a count that run has not (a join and a
// leave that run reads as no change), and must read it again.
func (p *presence) touchRooms(hints map[target]struct{}) {
	if !p.counting {
		return
	}
	p.mu.Lock()
	for t := range hints {
		if t.kind == 'r' {
			p.touch(t.name)
		}
	}
	p.mu.Unlock()
}

// notify calls WithOnRoomCount's function for each room whose total
// changed since it was last called for it, outside every lock. Its own
// goroutine, so that a slow function holds up nothing but later counts.
func (b *Broker) notify() {
	defer b.wg.Done()
	p := &b.pres
	f := b.cfg.onCount
	told := make(map[string]int) // the last total f got, per room; absent: 0
	spare := make(map[string]struct{})
	for {
		select {
		case <-b.stop:
			return
		case <-p.notified:
		}
		p.mu.Lock()
		rooms := p.touched
		p.touched = spare
		p.mu.Unlock()
		// What changes from here on is touched again, and read in the next
		// round: the last total of every room is told.
		for room := range rooms {
			select {
			case <-b.stop:
				return
			default:
			}
			n := b.local.RoomLen(room) + p.remoteLen(room)
			if n == told[room] {
				continue
			}
			if n == 0 {
				delete(told, room)
			} else {
				told[room] = n
			}
			f(room, n)
		}
		clear(rooms)
		spare = rooms
	}
}

func (p *presence) remoteLen(room string) int {
	p.mu.RLock()
	n := p.remote[room]
	p.mu.RUnlock()
	return int(n)
}

func (p *presence) nodes() int {
	p.mu.RLock()
	n := len(p.peers)
	p.mu.RUnlock()
	return n
}

// nodeSubject is the subject on which node gets asks and snapshots.
func (b *Broker) nodeSubject(node uint64) string {
	return b.cfg.prefix + ".presence." + strconv.FormatUint(node, 16)
}

// report sends this node's counts: the changed ones, or all of them. On
// the run goroutine.
func (b *Broker) report(now time.Time) {
	p := &b.pres
	p.expire(now, 3*b.cfg.report)
	if !b.connected.Load() {
		return // changes keep until the bus is back; the first report then is full
	}
	full := !p.started || p.wantFull.Swap(false)
	var flags byte
	if !p.started {
		flags |= flagWant // a node that starts wants everyone's counts
	}
	p.started = true
	ok := true
	flush := func(last bool) {
		if len(p.buf) == presHeader && !last {
			return
		}
		p.seq++
		p.buf[0] = 'P'
		p.buf[1] = flags
		binary.LittleEndian.PutUint64(p.buf[2:], b.node)
		binary.LittleEndian.PutUint32(p.buf[10:], p.seq)
		if err := b.nc.Publish(b.cfg.prefix+".presence", p.buf); err != nil {
			ok = false
		}
		flags &^= flagFull | flagWant
		p.buf = p.buf[:presHeader]
	}
	p.buf = append(p.buf[:0], make([]byte, presHeader)...)
	if full {
		flags |= flagFull
		for room, n := range b.counts {
			p.buf = appendEntry(p.buf, room, n)
			if len(p.buf) >= presChunk {
				flush(false)
			}
		}
	} else {
		for room := range p.changed {
			p.buf = appendEntry(p.buf, room, b.counts[room])
			if len(p.buf) >= presChunk {
				flush(false)
			}
		}
	}
	flush(true)
	clear(p.changed)
	if !ok {
		p.wantFull.Store(true) // a part may be lost: start over
	}
	p.trimBuf()
}

func appendEntry(dst []byte, room string, n int32) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(room)))
	dst = append(dst, room...)
	return binary.AppendUvarint(dst, uint64(n))
}

func (p *presence) trimBuf() {
	if cap(p.buf) > 4*presChunk {
		p.buf = nil
	}
}

// repair sends the asks for snapshots that are due (one per peer per
// report interval at most; the others wait for a later round) and answers
// the asks of others. On the run goroutine, after apply: the counts in a
// snapshot are the latest.
func (b *Broker) repair(now time.Time) {
	p := &b.pres
	if !b.connected.Load() {
		return // they wait for the bus
	}
	var asks [16]uint64
	p.mu.Lock()
	ask := asks[:0]
	for id := range p.asks {
		pe := p.peers[id]
		if pe != nil && now.Sub(pe.asked) < b.cfg.report {
			continue // asked it less than an interval ago: later
		}
		delete(p.asks, id)
		if pe != nil {
			pe.asked = now
			ask = append(ask, id)
		}
	}
	askers := p.askers
	p.askers = p.spare
	p.mu.Unlock()

	var m [1 + 8]byte
	m[0] = 'A'
	binary.LittleEndian.PutUint64(m[1:], b.node)
	for _, id := range ask {
		_ = b.nc.Publish(b.nodeSubject(id), m[:]) // if it is lost, the next report shows the gap again
	}
	for id := range askers {
		b.snapshot(id)
	}
	clear(askers)
	p.spare = askers
}

// snapshot sends all of this node's counts to node. On the run goroutine.
func (b *Broker) snapshot(node uint64) {
	p := &b.pres
	subj := b.nodeSubject(node)
	var part uint16
	flush := func(last bool) {
		p.buf[0] = 'S'
		p.buf[1] = 0
		if last {
			p.buf[1] = snapLast
		}
		binary.LittleEndian.PutUint64(p.buf[2:], b.node)
		binary.LittleEndian.PutUint32(p.buf[10:], p.seq)
		binary.LittleEndian.PutUint16(p.buf[14:], part)
		_ = b.nc.Publish(subj, p.buf) // if a part is lost, the asker asks again
		part++
		p.buf = p.buf[:snapHeader]
	}
	p.buf = append(p.buf[:0], make([]byte, snapHeader)...)
	for room, n := range b.counts {
		p.buf = appendEntry(p.buf, room, n)
		if len(p.buf) >= presChunk {
			flush(false)
		}
	}
	flush(true)
	p.trimBuf()
	b.snapsOut.Add(1)
}

// bye tells the others that this node stops. On Close, after run ended.
func (b *Broker) bye() {
	var m [presHeader]byte
	m[0], m[1] = 'P', flagBye
	binary.LittleEndian.PutUint64(m[2:], b.node)
	binary.LittleEndian.PutUint32(m[10:], b.pres.seq+1)
	_ = b.nc.Publish(b.cfg.prefix+".presence", m[:])
}

// expire forgets the nodes not heard from within ttl.
func (p *presence) expire(now time.Time, ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, pe := range p.peers {
		if now.Sub(pe.seen) > ttl {
			p.forget(pe)
			delete(p.peers, id)
		}
	}
}

// forget takes pe's counts out of the sums; p.mu is held.
func (p *presence) forget(pe *peer) {
	for room, n := range pe.rooms {
		p.add(room, -n)
	}
	clear(pe.rooms)
}

func (p *presence) add(room string, d int32) {
	p.touch(room)
	if n := p.remote[room] + d; n > 0 {
		p.remote[room] = n
	} else {
		delete(p.remote, room)
	}
}

// peerLocked returns node's peer, new if it was not known; p.mu is held.
func (p *presence) peerLocked(node uint64) (pe *peer, isNew bool) {
	if pe = p.peers[node]; pe == nil {
		pe = &peer{rooms: make(map[string]int32)}
		p.peers[node] = pe
		isNew = true
	}
	return pe, isNew
}

// onPresence applies another node's report. On the deliver goroutine.
func (b *Broker) onPresence(data []byte, now time.Time) {
	if len(data) < presHeader || data[0] != 'P' {
		b.dropped.Add(1)
		return
	}
	flags := data[1]
	id := binary.LittleEndian.Uint64(data[2:])
	seq := binary.LittleEndian.Uint32(data[10:])
	if id == b.node {
		return
	}
	p := &b.pres
	p.mu.Lock()
	if flags&flagBye != 0 {
		if pe := p.peers[id]; pe != nil {
			p.forget(pe)
			delete(p.peers, id)
		}
		p.mu.Unlock()
		return
	}
	pe, isNew := p.peerLocked(id)
	lost := false
	switch {
	case isNew:
		p.wantFull.Store(true)     // a newcomer: tell it everything
		lost = flags&flagFull == 0 // joined its stream midway
	case flags&flagFull != 0:
	case seq != pe.seq+1 || pe.part != 0: // missed a report, or the end of a snapshot
		lost = true
	}
	pe.seq, pe.seen, pe.part = seq, now, 0
	if flags&flagWant != 0 {
		p.wantFull.Store(true)
	}
	if flags&flagFull != 0 {
		p.forget(pe)
		delete(p.asks, id) // this repairs it too
	}
	p.apply(pe, data[presHeader:])
	if lost {
		p.asks[id] = struct{}{}
	}
	p.mu.Unlock()
	if lost {
		b.wake() // ask now, not at the next report
	}
}

// onNodeMessage handles what comes on this node's own subject: an ask for
// a snapshot, or a part of one. On the deliver goroutine.
func (b *Broker) onNodeMessage(data []byte, now time.Time) {
	p := &b.pres
	switch {
	case len(data) == 1+8 && data[0] == 'A':
		p.mu.Lock()
		p.askers[binary.LittleEndian.Uint64(data[1:])] = struct{}{}
		p.mu.Unlock()
		b.wake()
	case len(data) >= snapHeader && data[0] == 'S':
		id := binary.LittleEndian.Uint64(data[2:])
		seq := binary.LittleEndian.Uint32(data[10:])
		part := binary.LittleEndian.Uint16(data[14:])
		p.mu.Lock()
		pe, _ := p.peerLocked(id)
		pe.seen = now
		switch {
		case part == 0:
			p.forget(pe)
			pe.seq = seq
			delete(p.asks, id) // answered
		case part != pe.part || seq != pe.seq: // a part was lost
			pe.part = 0
			p.asks[id] = struct{}{}
			p.mu.Unlock()
			b.wake()
			return
		}
		p.apply(pe, data[snapHeader:])
		pe.part = part + 1
		if data[1]&snapLast != 0 {
			pe.part = 0
		}
		p.mu.Unlock()
	default:
		b.dropped.Add(1)
	}
}

// apply applies a report's or a snapshot's entries to pe; p.mu is held.
func (p *presence) apply(pe *peer, rest []byte) {
	for len(rest) > 0 {
		l, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < l {
			return
		}
		name := rest[k : k+int(l)]
		rest = rest[k+int(l):]
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > 1<<31-1 {
			return
		}
		rest = rest[k:]
		old := pe.rooms[string(name)]
		if int32(n) == old {
			continue
		}
		room := string(name)
		if n == 0 {
			delete(pe.rooms, room)
		} else {
			pe.rooms[room] = int32(n)
		}
		p.add(room, int32(n)-old)
	}
}
