package natsbroker

import (
	"encoding/binary"
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
// full report next time; flagBye says the node stops, and its members
// stop being counted at once (rather than after three silent intervals).
// seq counts a node's messages, so that a receiver
// notices a missed one and asks.

const (
	flagFull = 1 << iota
	flagWant
	flagBye // the node is stopping: forget it now
)

const (
	presHeader = 14
	presChunk  = 32 << 10 // bytes of entries per message
)

type presence struct {
	mu     sync.RWMutex
	peers  map[uint64]*peer
	remote map[string]int32 // sum over peers

	wantFull atomic.Bool // send a full report next time
	askFull  atomic.Bool // ask the others for theirs

	// run goroutine only
	changed map[string]struct{}
	seq     uint32
	started bool
	lastAsk time.Time // when this node last asked for full reports
	buf     []byte
}

type peer struct {
	rooms map[string]int32
	seq   uint32
	seen  time.Time
}

func (p *presence) init() {
	p.peers = make(map[uint64]*peer)
	p.remote = make(map[string]int32)
	p.changed = make(map[string]struct{})
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
	// Ask for everyone's full report at the start, and then at most every
	// five intervals (a node that keeps missing reports must not make all
	// the others send full ones every time).
	if !p.started || (now.Sub(p.lastAsk) >= 5*b.cfg.report && p.askFull.Swap(false)) {
		flags |= flagWant
		p.lastAsk = now
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
	add := func(room string, n int32) {
		p.buf = binary.AppendUvarint(p.buf, uint64(len(room)))
		p.buf = append(p.buf, room...)
		p.buf = binary.AppendUvarint(p.buf, uint64(n))
		if len(p.buf) >= presChunk {
			flush(false)
		}
	}
	if full {
		flags |= flagFull
		for room, n := range b.counts {
			add(room, n)
		}
	} else {
		for room := range p.changed {
			add(room, b.counts[room])
		}
	}
	flush(true)
	clear(p.changed)
	if !ok {
		p.wantFull.Store(true) // a part may be lost: start over
	}
	if cap(p.buf) > 4*presChunk {
		p.buf = nil
	}
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
	if n := p.remote[room] + d; n > 0 {
		p.remote[room] = n
	} else {
		delete(p.remote, room)
	}
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
	defer p.mu.Unlock()
	pe := p.peers[id]
	if flags&flagBye != 0 {
		if pe != nil {
			p.forget(pe)
			delete(p.peers, id)
		}
		return
	}
	switch {
	case pe == nil:
		pe = &peer{rooms: make(map[string]int32)}
		p.peers[id] = pe
		p.wantFull.Store(true) // a newcomer: tell it everything
		if flags&flagFull == 0 {
			p.askFull.Store(true) // joined its stream midway
		}
	case seq != pe.seq+1 && flags&flagFull == 0:
		p.askFull.Store(true) // missed a message
	}
	pe.seq, pe.seen = seq, now
	if flags&flagWant != 0 {
		p.wantFull.Store(true)
	}
	if flags&flagFull != 0 {
		p.forget(pe)
	}
	rest := data[presHeader:]
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
