// Package natsbroker makes wsloop servers one cluster over NATS: with it,
// Server.Publish reaches a room's members on every node, Broadcast every
// connection of every node, SendToKey the connection bound to a key on
// whichever node holds it, and Server.RoomLen counts a room's members on
// all nodes.
//
//	b := natsbroker.New("nats://10.0.0.5:4222")
//	srv, _ := engine.New(h, engine.WithBroker(b))
//
// # On the bus
//
// A message goes on the bus once per publish, whatever the number of nodes
// and members: NATS delivers it to every node that subscribed to its
// subject, and each node hands it to its event loops as a local publish
// (one encode, one hand-off per loop). Subjects, under a prefix (WithPrefix,
// default "wsloop"):
//
//	wsloop.r.<room>      a room's messages
//	wsloop.k.<key>       messages for the connection bound to a key
//	wsloop.all           broadcasts
//	wsloop.presence      each node's member counts
//	wsloop.presence.<id> one node's: asks for its counts, and the answers
//	wsloop.h.<room>      a room's messages, with WithHistory: a JetStream stream's subjects
//
// Two clusters on one NATS server need prefixes of which neither starts
// with the other's tokens ("wsloop" and "wsloop.r" would share subjects).
//
// A room or key that is a valid subject token of letters, digits, '-' and
// '_' (and does not start with '~' or '=') is used as it is; any other is
// encoded ('~' and its base64url form), and one whose encoded form would
// pass 200 bytes is named by its SHA-256 ('='). No name is rejected.
// The payload is one byte of opcode followed by the message.
//
// # Interest
//
// A node subscribes to a room's subject while it has members of the room,
// and to a key's subject while a connection of it is bound to the key, so
// that it receives only what it serves. Changes are applied as they come,
// in batches (what arrives while one is applied goes in the next), and a
// subscription whose last member left is kept for WithLinger (2 s) before
// it is dropped, so that a churn of joins and leaves does not become a
// churn of subscriptions. NATS itself sends each
// message only to the nodes that subscribed. A room new to a node is
// subscribed to as soon as its first join is applied, but what other nodes
// publish before the subscription reaches NATS (well under a millisecond
// on a local network) does not reach that first member: across nodes,
// "a Publish made after Join returns reaches the connection" holds once
// the subscription is in place; the node's next presence report, which
// follows it on the same connection, is a sign that it is.
//
// # Order
//
// Messages published by one goroutine to one room reach every member, on
// every node, in the order published: the broker sends them in that order
// on one NATS connection, NATS keeps the order of one connection's
// messages, and each node delivers them in order. Messages of two
// publishers on two nodes are not ordered: members on different nodes may
// see them interleaved differently (a member sees its own node's publish
// before one that crossed the bus at about the same time).
//
// # Presence
//
// Every node reports its non-empty rooms' member counts on the presence
// subject every WithReportInterval (1 s): the rooms whose count changed,
// and all of them to a node that starts. Server.RoomLen adds the other
// nodes' last reports to its own count, so a join on one node is counted
// on every other by its next report, within one interval, while the bus is
// up, with one message per node per interval, never one per join. A node
// that misses a report (NATS dropped it, see Faults) sees the gap in its
// sender's numbering when the next one comes, and asks that node alone
// for all its counts, which come back at once to it alone: a join whose
// report was lost is counted within two intervals (2 s by default) and a
// round trip. A node asks a peer at most once per interval however much it
// misses, and its repairs cost the other nodes nothing. A node not heard
// from for three intervals is forgotten: its members stop being counted.
//
// A count that changes on another node reaches this one in a report,
// which nothing on this node announces: an application that shows counts
// (a chat's "viewers: N") learns of every change of a room's total, local
// or remote, from WithOnRoomCount, which calls its function with the new
// total on a goroutine of its own, outside the broker's locks, coalescing
// the changes that come while it runs. Pushing a count from a join's own
// handler alone leaves two members who join at the same moment on two
// nodes each seeing 1 until the next join or leave.
//
// # Faults
//
// Nothing here blocks the caller or an event loop: Publish, Broadcast and
// SendToKey copy the message into a bounded buffer (WithSendBuffer, 8 MiB)
// drained by one goroutine. While NATS is unreachable, or the buffer is
// full, the message still reaches this node's connections, the call
// returns an error wrapping engine.ErrBrokerUnavailable and the message is
// counted in Stats.Broker.Failed; the broker is never queued up to replay
// stale messages after an outage. It reconnects by itself, forever, and
// NATS resubscribes every subscription it had; presence catches up in the
// next interval. Messages from the bus wait in two bounded queues: the
// NATS client's (WithPendingMessages, 65,536 messages), which the broker
// empties before it delivers each message, and the broker's own
// (WithPendingBytes, 32 MiB), from which it delivers them in order. The
// first absorbs a burst that NATS reads faster than the broker is
// scheduled; the second holds a backlog, bounded in bytes whatever the
// messages' size. A node that falls behind drops what does not fit,
// counted in Stats.Broker.Dropped (and a message that some of its event
// loops took and others refused, in Stats.Broker.Partial); NATS itself
// never lets a slow client hold up the others. A stalled NATS server
// fails the broker's writes after 2 s rather than holding it. The broker
// runs three goroutines of its own (sending, delivering, and interest with
// presence), and a fourth with WithOnRoomCount, besides the NATS client's,
// whatever the number of connections and rooms.
//
// NATS core delivers at most once: a message in flight when a connection
// breaks is lost without being counted.
package natsbroker

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats.go"

	"github.com/wsloop/wsloop/engine"
)

// Option configures a Broker.
type Option func(*config)

type config struct {
	prefix    string
	natsOpts  []nats.Option
	pending   int
	pendBytes int
	sendBuf   int
	linger    time.Duration
	report    time.Duration
	reconcile time.Duration
	onCount   func(room string, total int)
	history   *HistoryConfig

	presFilter func([]byte) bool // tests: a presence message it returns true for is lost
}

// WithPrefix sets the first token of every subject (default "wsloop");
// clusters that share a NATS server keep apart by prefix.
func WithPrefix(p string) Option { return func(c *config) { c.prefix = p } }

// WithNATSOptions adds options to the NATS connection (credentials, TLS,
// a name, more servers). The broker sets NoEcho, endless reconnects and no
// reconnect buffer, and its own connection handlers; options given here
// come after and may change all but NoEcho. The broker's client pings NATS
// every 2 s and drops the connection after two pings unanswered, to find a
// dead server within 4 to 6 s; on a machine whose cores are saturated (the
// million-viewer run of benchmarks/RESULTS.md: 110 processes on 2 cores) a
// live connection's pong can be that late, and the brokers lost NATS about
// 200 times a run, each time losing what was published meanwhile, until
// nats.PingInterval(10*time.Second) was given here.
func WithNATSOptions(o ...nats.Option) Option {
	return func(c *config) { c.natsOpts = append(c.natsOpts, o...) }
}

// WithPendingMessages bounds the messages that the NATS client queues for
// the broker before it takes them in (default 65,536, NATS's own
// DefaultMaxChanLen); more are dropped and counted. The broker takes them
// in after each message it delivers, so they wait there only as long as
// one delivery or a scheduling delay: the NATS client reads a burst
// without pausing, and the Go scheduler may leave the broker waiting for
// up to its 10 ms time slice meanwhile, long enough for several thousand
// small messages. Their bytes are bounded by n times the NATS server's
// max_payload.
func WithPendingMessages(n int) Option { return func(c *config) { c.pending = n } }

// WithPendingBytes bounds the bytes of the messages from the bus that the
// broker has taken in and not yet delivered on this node (default 32 MiB,
// counting 128 bytes per message besides its subject and payload); a
// message that does not fit is dropped and counted.
func WithPendingBytes(n int) Option { return func(c *config) { c.pendBytes = n } }

// WithSendBuffer bounds the bytes of messages waiting to go on the bus
// (default 8 MiB); a message that does not fit fails.
func WithSendBuffer(n int) Option { return func(c *config) { c.sendBuf = n } }

// WithLinger sets how long a room's or key's subscription is kept after
// its last member left (default 2 s).
func WithLinger(d time.Duration) Option { return func(c *config) { c.linger = d } }

// WithReportInterval sets how often presence is reported (default 1 s);
// counts are current on every node within one interval, and within two
// and a round trip on the bus when a report is lost.
func WithReportInterval(d time.Duration) Option { return func(c *config) { c.report = d } }

// WithOnRoomCount has the broker call f(room, total) whenever a room's
// member count on all nodes (what Server.RoomLen returns) changes: from a
// join or leave on this node, and from another node's presence report,
// its snapshot, or its going away. It is how an application learns that
// a count changed on another node, which nothing on this node announces:
// a chat pushes "viewers: N" to the room's members here from it. Another
// node's join is told within one report interval (WithReportInterval),
// a join here at once.
//
// f gets the total when it runs, not every step on the way: changes that
// come while it runs, or together (the rooms of one report, a batch of
// joins), make one call per room with the latest total, and none if the
// total is back to what f was last told. A room that empties gets a last
// call with 0. Calls are made one at a time, on a goroutine of the
// broker's own, with no lock of the broker held: f may call
// Server.RoomLen, Server.Publish or Local.Publish (Local, to tell only
// this node's members, since every node's f is called). It should return
// promptly: while it runs, later counts wait (and coalesce), though
// nothing else does, neither NATS's reader nor delivery nor reports.
// Close waits for a call under way to return.
func WithOnRoomCount(f func(room string, total int)) Option {
	return func(c *config) { c.onCount = f }
}

// Broker is a NATS broker for one engine.Server (engine.WithBroker).
type Broker struct {
	cfg   config
	url   string
	nc    *nats.Conn
	local engine.Local
	node  uint64 // this node's id in presence reports

	connected  atomic.Bool
	started    atomic.Bool
	running    atomic.Bool  // from Start to Close
	maxPayload atomic.Int64 // the NATS server's limit on a message

	// Outbound: a queue of messages in an arena, drained by send.
	outMu    sync.Mutex
	outItems []outItem
	outArena []byte
	outWake  chan struct{}
	kick     chan struct{} // a hint arrived

	// Inbound: every subscription delivers into in; deliver takes what
	// is there into inq (bounded in bytes) after every message it
	// delivers, and delivers from inq.
	in      chan *nats.Msg
	inq     []*nats.Msg // deliver only: inq[inHead:] waits
	inHead  int         // deliver only
	inBytes int         // deliver only: msgCost of what waits in inq
	subsMu  sync.RWMutex
	bySub   map[*nats.Subscription]target
	allSub  *nats.Subscription
	presSub *nats.Subscription
	nodeSub *nats.Subscription // this node's own: presence asks and snapshots

	// Interest: hints from the engine, applied by run.
	hintMu sync.Mutex
	hints  map[target]struct{}
	subs   map[target]*interest // run only
	idle   map[target]*interest // run only: subscriptions lingering
	counts map[string]int32     // run only: this node's room counts as last read
	pres   presence

	sent, failed, received, partial, dropped, keyMisses, reconnects atomic.Uint64
	droppedGone                                                     atomic.Uint64 // drops counted by subscriptions since removed
	presIn, subscribes, snapsOut                                    atomic.Uint64 // for tests: presence messages received, subscriptions made, snapshots sent to askers

	hist history // with WithHistory (history.go)

	stop chan struct{}
	wg   sync.WaitGroup
}

// target is a room or a key.
type target struct {
	kind byte // 'r' or 'k'
	name string
}

type interest struct {
	sub       *nats.Subscription
	idleSince time.Time
}

type outItem struct {
	subj, data [2]int // offsets in the arena: start, end
}

// New returns a broker that will connect to the NATS server(s) at url (a
// comma-separated list) when its server starts.
func New(url string, opts ...Option) *Broker {
	cfg := config{prefix: "wsloop", pending: nats.DefaultMaxChanLen, pendBytes: 32 << 20, sendBuf: 8 << 20, linger: 2 * time.Second,
		report: time.Second, reconcile: 50 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	b := &Broker{cfg: cfg, url: url,
		outWake: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		in:      make(chan *nats.Msg, max(cfg.pending, 1)),
		bySub:   make(map[*nats.Subscription]target),
		hints:   make(map[target]struct{}),
		subs:    make(map[target]*interest),
		idle:    make(map[target]*interest),
		counts:  make(map[string]int32),
		stop:    make(chan struct{}),
	}
	b.pres.init()
	if cfg.history != nil {
		b.hist.prepare()
	}
	b.pres.counting = cfg.onCount != nil
	return b
}

// NATS returns the broker's NATS connection (nil before Start).
func (b *Broker) NATS() *nats.Conn { return b.nc }

// Start connects to NATS (or keeps trying, if it cannot yet) and starts
// the broker's goroutines. Called by the server.
func (b *Broker) Start(l engine.Local) error {
	if !b.started.CompareAndSwap(false, true) {
		return errors.New("natsbroker: a broker serves one server")
	}
	if b.cfg.pending < 1 || b.cfg.pendBytes < 1 || b.cfg.sendBuf < 1 || b.cfg.linger < 0 || b.cfg.report <= 0 {
		return errors.New("natsbroker: WithPendingMessages, WithPendingBytes, WithSendBuffer and WithReportInterval need positive values, WithLinger a non-negative one")
	}
	if !validPrefix(b.cfg.prefix) {
		return fmt.Errorf("natsbroker: WithPrefix(%q): need dot-separated tokens of letters, digits, '-' and '_'", b.cfg.prefix)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	b.node = binary.LittleEndian.Uint64(id[:])
	b.local = l

	opts := []nats.Option{
		nats.NoEcho(),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1), // fail while disconnected, never replay stale messages
		nats.PingInterval(2 * time.Second),
		nats.FlusherTimeout(2 * time.Second), // a stalled NATS server fails writes instead of holding the broker for a minute
		nats.MaxPingsOutstanding(2),
		nats.ConnectHandler(func(nc *nats.Conn) { b.onConnect(nc) }),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.reconnects.Add(1)
			b.onConnect(nc)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.connected.Store(false)
			if b.cfg.history != nil {
				b.hist.lost()
			}
			if err != nil {
				l.LogError("natsbroker: disconnected from NATS", "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !errors.Is(err, nats.ErrSlowConsumer) { // counted in Dropped
				l.LogError("natsbroker: NATS error", "err", err)
			}
		}),
	}
	opts = append(opts, b.cfg.natsOpts...)
	opts = append(opts, nats.NoEcho())
	nc, err := nats.Connect(b.url, opts...)
	if err != nil {
		return fmt.Errorf("natsbroker: %w", err)
	}
	b.nc = nc
	if nc.IsConnected() {
		b.onConnect(nc)
	}
	b.subsMu.Lock()
	if b.allSub, err = nc.ChanSubscribe(b.cfg.prefix+".all", b.in); err == nil {
		if b.presSub, err = nc.ChanSubscribe(b.cfg.prefix+".presence", b.in); err == nil {
			b.nodeSub, err = nc.ChanSubscribe(b.nodeSubject(b.node), b.in)
		}
	}
	b.subsMu.Unlock()
	if err != nil {
		nc.Close()
		return fmt.Errorf("natsbroker: %w", err)
	}
	if b.cfg.history != nil {
		b.hist.init(b)
		b.wg.Add(1)
		go b.hist.run()
	}
	b.wg.Add(3)
	go b.send()
	go b.deliver()
	go b.run()
	if b.cfg.onCount != nil {
		b.wg.Add(1)
		go b.notify()
	}
	b.outMu.Lock()
	b.running.Store(true)
	b.outMu.Unlock()
	return nil
}

// onConnect notes a (re)connection and the server's payload limit.
func (b *Broker) onConnect(nc *nats.Conn) {
	if mp := nc.MaxPayload(); mp > 0 {
		b.maxPayload.Store(mp)
	}
	b.connected.Store(true)
	b.pres.wantFull.Store(true)
	if b.cfg.history != nil {
		b.hist.check()
	}
}

// Close stops the broker: it sends what is queued (the server closed
// its connections before, and their leave notices are on the way), tells
// the others it is gone, and closes its NATS connection.
func (b *Broker) Close() error {
	b.outMu.Lock()
	if !b.running.Load() {
		b.outMu.Unlock()
		return nil
	}
	b.running.Store(false) // no enqueue after this one: send drains the rest
	b.outMu.Unlock()
	close(b.stop)
	b.wg.Wait()
	if b.connected.Load() {
		b.bye()
		_ = b.nc.FlushTimeout(time.Second)
	}
	// Keep the drop counts of the subscriptions that Close ends.
	b.subsMu.Lock()
	for sub := range b.bySub {
		b.keepDrops(sub)
	}
	clear(b.bySub)
	b.keepDrops(b.allSub)
	b.keepDrops(b.presSub)
	b.keepDrops(b.nodeSub)
	b.allSub, b.presSub, b.nodeSub = nil, nil, nil
	b.subsMu.Unlock()
	b.nc.Close()
	return nil
}

// keepDrops adds sub's drop count to droppedGone, before sub goes.
func (b *Broker) keepDrops(sub *nats.Subscription) {
	if n, err := sub.Dropped(); err == nil {
		b.droppedGone.Add(uint64(n))
	}
}

var errDown = fmt.Errorf("%w: NATS is not connected", engine.ErrBrokerUnavailable)
var errFull = fmt.Errorf("%w: the send buffer is full", engine.ErrBrokerUnavailable)
var errTooBig = fmt.Errorf("%w: the message exceeds the NATS server's max_payload", engine.ErrBrokerUnavailable)
var errStopped = fmt.Errorf("%w: the broker is stopped", engine.ErrBrokerUnavailable)

// Publish queues a room's message for the other nodes.
func (b *Broker) Publish(room string, op ws.OpCode, p []byte) error {
	return b.enqueue('r', room, op, p)
}

// Broadcast queues a message for every connection of the other nodes.
func (b *Broker) Broadcast(op ws.OpCode, p []byte) error { return b.enqueue('a', "", op, p) }

// SendToKey queues a message for the node holding key.
func (b *Broker) SendToKey(key string, op ws.OpCode, p []byte) error {
	return b.enqueue('k', key, op, p)
}

// enqueue copies the subject and message into the outbound arena.
func (b *Broker) enqueue(kind byte, name string, op ws.OpCode, p []byte) error {
	if !b.connected.Load() {
		b.failed.Add(1)
		return errDown
	}
	hdr := 0
	if kind == 'h' {
		hdr = binary.MaxVarintLen64 + len(name) // histPayload's room, at most
	}
	if mp := b.maxPayload.Load(); mp > 0 && int64(len(p)+1+hdr) > mp {
		b.failed.Add(1)
		return errTooBig
	}
	b.outMu.Lock()
	if !b.running.Load() {
		b.outMu.Unlock()
		b.failed.Add(1)
		return errStopped
	}
	need := len(b.cfg.prefix) + 3 + subjectTokenLen(name) + 1 + len(p)
	if kind == 'h' {
		need += binary.MaxVarintLen64 + len(name)
	}
	if len(b.outArena) > 0 && len(b.outArena)+need > b.cfg.sendBuf {
		b.outMu.Unlock()
		b.failed.Add(1)
		return errFull
	}
	var it outItem
	a := b.outArena
	it.subj[0] = len(a)
	a = appendSubject(a, b.cfg.prefix, kind, name)
	it.subj[1] = len(a)
	it.data[0] = len(a)
	a = append(a, byte(op))
	if kind == 'h' { // a room's name travels with its history (histPayload)
		a = binary.AppendUvarint(a, uint64(len(name)))
		a = append(a, name...)
	}
	a = append(a, p...)
	it.data[1] = len(a)
	b.outArena = a
	b.outItems = append(b.outItems, it)
	b.outMu.Unlock()
	select {
	case b.outWake <- struct{}{}:
	default:
	}
	return nil
}

// send puts queued messages on the bus, in queue order, one batch at a
// time; once the broker stops, it sends what is left and returns.
func (b *Broker) send() {
	defer b.wg.Done()
	var spareItems []outItem
	var spareArena []byte
	for {
		stopping := false
		select {
		case <-b.stop:
			stopping = true
		case <-b.outWake:
		}
		b.outMu.Lock()
		items, arena := b.outItems, b.outArena
		b.outItems, b.outArena = spareItems[:0], spareArena[:0]
		b.outMu.Unlock()
		for _, it := range items {
			subj := arena[it.subj[0]:it.subj[1]]
			// The arena is not touched while it is published from; NATS
			// copies both into its own buffer.
			err := b.nc.Publish(unsafe.String(unsafe.SliceData(subj), len(subj)), arena[it.data[0]:it.data[1]])
			if err != nil {
				b.failed.Add(1)
			} else {
				b.sent.Add(1)
			}
		}
		if stopping {
			return
		}
		spareItems = items
		spareArena = nil
		if cap(arena) <= 1<<20 {
			spareArena = arena
		}
	}
}

// deliver hands messages from the bus to this node's connections. Before
// each message it takes in all that NATS has queued for it: the NATS
// client's queue is bounded in messages (each up to max_payload), this
// one in bytes, so a backlog of small messages (a burst) fits while one of
// large messages stays within WithPendingBytes.
func (b *Broker) deliver() {
	defer b.wg.Done()
	for {
		if b.inHead == len(b.inq) {
			select {
			case <-b.stop:
				return
			case m := <-b.in:
				b.take(m)
			}
		}
		for more := true; more; {
			select {
			case <-b.stop:
				return
			case m := <-b.in:
				b.take(m)
			default:
				more = false
			}
		}
		if m := b.next(); m != nil {
			b.deliverOne(m)
		}
	}
}

// msgCost is what a message from the bus counts against WithPendingBytes:
// its subject, its payload and about the size of a nats.Msg.
func msgCost(m *nats.Msg) int { return 128 + len(m.Subject) + len(m.Data) }

// take queues m for delivery, or drops it when it does not fit; presence
// is applied at once (it is small, and a lost report costs a repair).
func (b *Broker) take(m *nats.Msg) {
	if m.Sub == b.presSub || m.Sub == b.nodeSub {
		if f := b.cfg.presFilter; f != nil && f(m.Data) {
			return
		}
		b.presIn.Add(1)
		if m.Sub == b.presSub {
			b.onPresence(m.Data, time.Now())
		} else {
			b.onNodeMessage(m.Data, time.Now())
		}
		return
	}
	c := msgCost(m)
	if b.inHead < len(b.inq) && b.inBytes+c > b.cfg.pendBytes {
		b.dropped.Add(1)
		return
	}
	if b.inHead > 0 && b.inHead >= len(b.inq)/2 && len(b.inq) == cap(b.inq) {
		// Slide the waiting part down rather than grow the slice.
		n := copy(b.inq, b.inq[b.inHead:])
		clear(b.inq[n:])
		b.inq, b.inHead = b.inq[:n], 0
	}
	b.inq = append(b.inq, m)
	b.inBytes += c
}

// next returns the oldest message taken in, or nil.
func (b *Broker) next() *nats.Msg {
	if b.inHead == len(b.inq) {
		return nil
	}
	m := b.inq[b.inHead]
	b.inq[b.inHead] = nil
	b.inHead++
	b.inBytes -= msgCost(m)
	if b.inHead == len(b.inq) {
		b.inq, b.inHead = b.inq[:0], 0
		if cap(b.inq) > 1<<16 {
			b.inq = nil // a backlog passed: do not keep its slice
		}
	}
	return m
}

func (b *Broker) deliverOne(m *nats.Msg) {
	if len(m.Data) < 1 || (m.Data[0] != byte(ws.OpText) && m.Data[0] != byte(ws.OpBinary)) {
		b.dropped.Add(1) // not from a wsloop broker
		return
	}
	op, p := ws.OpCode(m.Data[0]), m.Data[1:]
	var err error
	if m.Sub == b.allSub {
		err = b.local.Broadcast(op, p)
	} else {
		b.subsMu.RLock()
		t, ok := b.bySub[m.Sub]
		b.subsMu.RUnlock()
		switch {
		case !ok:
			return // unsubscribed meanwhile
		case t.kind == 'r':
			err = b.local.Publish(t.name, op, p)
		default:
			if err = b.local.SendToKey(t.name, op, p); err == engine.ErrNotConnected {
				b.keyMisses.Add(1)
				return
			}
		}
	}
	b.count(err)
}

// count counts a message from the bus by what its delivery here returned.
func (b *Broker) count(err error) {
	var qf *engine.QueueFullError
	switch {
	case err == nil, errors.As(err, &qf) && qf.Missed == 0: // the loops that refused it had none of its targets
		b.received.Add(1)
	case qf != nil && qf.Queued > 0:
		b.partial.Add(1) // some loops' queues were full: their members missed it
	default:
		b.dropped.Add(1) // every loop's queue was full, or the key's connection is a slow consumer
	}
}

// RoomChanged notes that room's membership here changed.
func (b *Broker) RoomChanged(room string) { b.hint(target{'r', room}) }

// KeyChanged notes that key was bound or released here.
func (b *Broker) KeyChanged(key string) { b.hint(target{'k', key}) }

func (b *Broker) hint(t target) {
	b.hintMu.Lock()
	b.hints[t] = struct{}{}
	b.hintMu.Unlock()
	b.wake() // apply it now: a new room's subscription should not wait for the tick
}

// wake makes run do a round now.
func (b *Broker) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run applies interest hints as they come (those that come while it
// works wait for the next round, together), asks for and sends presence
// snapshots as they are needed and, every 50 ms, lets lingering
// subscriptions go and reports presence when due.
func (b *Broker) run() {
	defer b.wg.Done()
	tick := time.NewTicker(b.cfg.reconcile)
	defer tick.Stop()
	// Reports go out on a schedule of their own, every interval exactly,
	// so that a change waits at most one interval for the next report.
	nextReport := time.Now()
	reportDue := time.NewTimer(0)
	defer reportDue.Stop()
	spare := make(map[target]struct{})
	for {
		var now time.Time
		report := false
		select {
		case <-b.stop:
			return
		case <-b.kick:
			now = time.Now()
		case now = <-tick.C:
		case now = <-reportDue.C:
			report = true
		}
		b.hintMu.Lock()
		hints := b.hints
		b.hints = spare
		b.hintMu.Unlock()
		b.apply(hints, now)
		clear(hints)
		spare = hints
		b.repair(now)
		if report {
			b.report(now)
			if nextReport = nextReport.Add(b.cfg.report); nextReport.Before(now) {
				nextReport = now.Add(b.cfg.report) // fell behind: no burst of reports to catch up
			}
			reportDue.Reset(time.Until(nextReport))
		}
	}
}

// apply brings subscriptions and counts in line with the local truth for
// each hinted target, and drops subscriptions that lingered long enough.
func (b *Broker) apply(hints map[target]struct{}, now time.Time) {
	b.pres.touchRooms(hints)
	for t := range hints {
		var want bool
		if t.kind == 'r' {
			n := b.local.RoomLen(t.name)
			if int32(n) != b.counts[t.name] {
				if n == 0 {
					delete(b.counts, t.name)
				} else {
					b.counts[t.name] = int32(n)
				}
				b.pres.changed[t.name] = struct{}{}
			}
			want = n > 0
		} else {
			want = b.local.HasKey(t.name)
		}
		in := b.subs[t]
		switch {
		case want && in == nil:
			sub, err := b.nc.ChanSubscribe(string(appendSubject(nil, b.cfg.prefix, t.kind, t.name)), b.in)
			if err != nil {
				b.local.LogError("natsbroker: subscribing", "err", err)
				b.hint(t) // try again next round
				continue
			}
			b.subscribes.Add(1)
			b.subs[t] = &interest{sub: sub}
			b.subsMu.Lock()
			b.bySub[sub] = t
			b.subsMu.Unlock()
		case want:
			if !in.idleSince.IsZero() {
				in.idleSince = time.Time{}
				delete(b.idle, t)
			}
		case in != nil && in.idleSince.IsZero():
			in.idleSince = now
			b.idle[t] = in
		}
	}
	for t, in := range b.idle {
		if now.Sub(in.idleSince) < b.cfg.linger {
			continue
		}
		delete(b.idle, t)
		delete(b.subs, t)
		b.subsMu.Lock()
		delete(b.bySub, in.sub)
		b.subsMu.Unlock()
		if n, err := in.sub.Dropped(); err == nil {
			b.droppedGone.Add(uint64(n))
		}
		_ = in.sub.Unsubscribe()
	}
}

// RemoteRoomLen returns room's members on the other nodes as last
// reported.
func (b *Broker) RemoteRoomLen(room string) int { return b.pres.remoteLen(room) }

// Stats returns the broker's counters.
func (b *Broker) Stats() engine.BrokerStats {
	st := engine.BrokerStats{
		Connected:  b.connected.Load(),
		Sent:       b.sent.Load(),
		Failed:     b.failed.Load(),
		Received:   b.received.Load(),
		Partial:    b.partial.Load(),
		Dropped:    b.dropped.Load() + b.droppedGone.Load(),
		KeyMisses:  b.keyMisses.Load(),
		Reconnects: b.reconnects.Load(),
		Nodes:      b.pres.nodes(),
	}
	dropped := func(sub *nats.Subscription) {
		if n, err := sub.Dropped(); err == nil {
			st.Dropped += uint64(n)
		}
	}
	b.subsMu.RLock()
	st.Subscriptions = len(b.bySub)
	dropped(b.allSub)
	dropped(b.presSub)
	dropped(b.nodeSub)
	for sub := range b.bySub {
		dropped(sub)
	}
	b.subsMu.RUnlock()
	return st
}

// Subjects.

const maxPlainToken = 200

// appendSubject appends prefix.kind.token (prefix.all for a broadcast).
func appendSubject(dst []byte, prefix string, kind byte, name string) []byte {
	dst = append(dst, prefix...)
	if kind == 'a' {
		return append(dst, ".all"...)
	}
	dst = append(dst, '.', kind, '.')
	return appendToken(dst, name)
}

// appendToken appends name as a subject token: as it is when that is safe,
// else encoded (see the package doc).
func appendToken(dst []byte, name string) []byte {
	if plainToken(name) {
		return append(dst, name...)
	}
	if base64.RawURLEncoding.EncodedLen(len(name)) <= maxPlainToken {
		dst = append(dst, '~')
		return base64.RawURLEncoding.AppendEncode(dst, []byte(name))
	}
	sum := sha256.Sum256([]byte(name))
	dst = append(dst, '=')
	return hex.AppendEncode(dst, sum[:])
}

// subjectTokenLen is an upper bound of appendToken's length for name.
func subjectTokenLen(name string) int {
	if plainToken(name) {
		return len(name)
	}
	return max(1+base64.RawURLEncoding.EncodedLen(len(name)), 1+64)
}

func plainToken(s string) bool {
	if len(s) == 0 || len(s) > maxPlainToken || s[0] == '~' || s[0] == '=' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validPrefix accepts plain tokens separated by dots.
func validPrefix(p string) bool {
	for tok := range strings.SplitSeq(p, ".") {
		if !plainToken(tok) {
			return false
		}
	}
	return true
}
