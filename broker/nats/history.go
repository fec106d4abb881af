package natsbroker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wsloop/wsloop/engine"
)

// HistoryConfig sets up the JetStream stream that keeps the cluster's room
// history (WithHistory).
type HistoryConfig struct {
	// Stream is the stream's name (default "WSLOOP_HISTORY"). Every node
	// of a cluster names the same one; clusters on one NATS server name
	// their own.
	Stream string
	// MaxPerRoom is the most messages the stream keeps for a room (its
	// MaxMsgsPerSubject; default 1,000). Give it at least the largest
	// History.Size of the engine's rule: a node that starts replays what
	// the stream keeps, and recovers from no further back.
	MaxPerRoom int64
	// MaxAge is the longest the stream keeps a message (default 0: no
	// limit); give it the largest History.TTL of the rule, if any.
	MaxAge time.Duration
	// MaxBytes bounds the stream (default 256 MiB); past it, its oldest
	// messages go.
	MaxBytes int64
	// Memory keeps the stream in the NATS server's memory rather than on
	// its disk: a NATS restart then loses it, and the history gets a new
	// epoch (no client recovers across it).
	Memory bool
	// Replicas is the stream's replication in a JetStream cluster
	// (default 1).
	Replicas int
}

// WithHistory makes the broker keep the history of the rooms with history
// (engine.WithHistory) in a JetStream stream, for the whole cluster: it is
// then an engine.HistoryBroker, and a client recovers (Conn.Recover) on
// whichever node it reconnects to. The NATS server must have JetStream
// enabled.
//
// A publish to a room with history goes to the stream, on subject
// <prefix>.h.<room>, and not straight to this node's members: every
// node, this one too, consumes the whole stream in its order (an ordered
// consumer) and delivers each message to its members with the stream's
// sequence as the message's offset and the stream's creation time as the
// epoch, so positions are the same on every node; offsets then grow with
// every message of the stream, not by one per room's message. Each node
// keeps every room's history (bounded by engine.WithHistoryBytes), so that
// a recovery is served from memory on the node that takes the client, with
// the engine's guarantee of no gap and no duplicate at the seam; a node
// that starts replays what the stream keeps first, and recovers nothing
// until it has caught up. Server.Publish puts the message on the bus
// without waiting (as a core NATS publish, which the stream stores);
// Server.PublishPos waits for the stream's acknowledgement.
//
// Without NATS, a publish to a room with history reaches this node's
// members alone, with the zero Position (so an envelope can tell the
// client it has no position), Server.Publish returns an error wrapping
// engine.ErrBrokerUnavailable, and Conn.Recover recovers nothing (the
// client joins the live messages and reloads its state). The consumer
// resumes where it stopped once NATS is back, and the node recovers again
// once it has had what the stream holds (what the stream dropped
// meanwhile, unseen by the node, cuts its histories: see below); a
// stream that was lost (memory storage, a NATS restart) or recreated
// gives a new epoch. Publish fails too until the broker has found (or
// made) the stream after a connection: a core publish that no stream
// stores is lost without a word.
//
// The stream's limits (MaxPerRoom, MaxAge, MaxBytes) drop its oldest
// messages; one dropped before a node took it (the node lagged by that
// much, or was cut off from NATS that long) leaves a hole in the
// sequence the node consumes, which covers every subject of the stream,
// so the node sees it: every room's history on that node is then cut
// there, and no recovery from before the hole succeeds on it (the live
// members of the rooms it concerned missed what it held). Holes in what
// the stream held when the node started are its old deletions and cut
// nothing. Size the limits so that no node lags by that much.
//
// Rooms without history are not concerned: they go on the bus as before,
// at core NATS's speed.
func WithHistory(c HistoryConfig) Option {
	return func(cfg *config) {
		if c.Stream == "" {
			c.Stream = "WSLOOP_HISTORY"
		}
		if c.MaxPerRoom == 0 {
			c.MaxPerRoom = 1000
		}
		if c.MaxBytes == 0 {
			c.MaxBytes = 256 << 20
		}
		if c.Replicas == 0 {
			c.Replicas = 1
		}
		cfg.history = &c
	}
}

// prepare makes what Start needs before NATS's first connection.
func (h *history) prepare() {
	h.kick = make(chan struct{}, 1)
}

// history is the broker's side of the cluster's history: the stream, the
// consumer that delivers it, and where this node stands in it.
type history struct {
	b    *Broker
	js   jetstream.JetStream
	kick chan struct{} // (re)check the stream: started, or reconnected

	epoch    atomic.Pointer[string]
	horizon  atomic.Uint64 // every message of the stream up to it was delivered here
	caughtUp atomic.Bool   // delivered up to catchTo since the last (re)connection
	catchTo  atomic.Uint64 // the stream's last sequence when setup last read it
	streamOK atomic.Bool   // setup has found the stream since the last (re)connection
	gen      atomic.Uint64 // the consumer's generation: a stopped one's late messages are ignored

	// deliverMu is held by deliver for the whole of a message, and by
	// setup to start a generation: a handler of a stopped consumer still
	// running cannot then store its state over the new one's.
	deliverMu sync.Mutex

	mu sync.Mutex // run's: cc
	cc jetstream.ConsumeContext
}

func (h *history) init(b *Broker) {
	h.b = b
	h.js, _ = jetstream.New(b.nc) // fails only without a connection
	h.check()
}

// check asks run to look at the stream (after a connection is made).
func (h *history) check() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// run sets the stream and its consumer up whenever NATS (re)connects,
// and retries every second while that fails.
func (h *history) run() {
	defer h.b.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-h.b.stop:
			h.mu.Lock()
			if h.cc != nil {
				h.cc.Stop()
			}
			h.mu.Unlock()
			return
		case <-h.kick:
		case <-retry.C:
		}
		if !h.b.connected.Load() {
			continue // the next connection kicks
		}
		if err := h.setup(); err != nil {
			h.b.local.LogError("natsbroker: setting up the history stream", "err", err)
			retry.Reset(time.Second)
		}
	}
}

// setup makes sure the stream exists and is consumed: a stream seen
// before keeps its consumer (which resumes by itself after a reconnect);
// a new one, or one recreated meanwhile, is consumed from its start under
// a new epoch.
func (h *history) setup() error {
	c := h.b.cfg.history
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	subj := h.b.cfg.prefix + ".h.>"
	st, err := h.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: c.Stream, Subjects: []string{subj}, Storage: storage, Replicas: c.Replicas,
		MaxMsgsPerSubject: c.MaxPerRoom, MaxAge: c.MaxAge, MaxBytes: c.MaxBytes, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	epoch := strconv.FormatInt(info.Created.UnixNano(), 36)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cc != nil && h.epoch.Load() != nil && *h.epoch.Load() == epoch {
		// The same stream, after a reconnection: the consumer resumes
		// by itself. What the stream dropped meanwhile, unseen here,
		// is a hole now; and the node vouches again once it has had
		// what the stream holds.
		h.deliverMu.Lock()
		last := h.horizon.Load()
		if first := info.State.FirstSeq; last != 0 && first > last+1 {
			h.b.local.HistoryGap(engine.Position{Epoch: epoch, Offset: first - 1})
			h.horizon.Store(first - 1)
			last = first - 1
		}
		h.catchTo.Store(info.State.LastSeq)
		h.caughtUp.Store(last >= info.State.LastSeq)
		h.streamOK.Store(true)
		h.deliverMu.Unlock()
		return nil
	}
	if h.cc != nil {
		h.cc.Stop()
		h.cc = nil
	}
	h.deliverMu.Lock()
	gen := h.gen.Add(1)
	h.caughtUp.Store(false)
	h.epoch.Store(&epoch)
	end := info.State.LastSeq
	h.catchTo.Store(end)
	if info.State.Msgs == 0 {
		h.horizon.Store(end)
		h.caughtUp.Store(true)
	} else {
		h.horizon.Store(0)
	}
	h.deliverMu.Unlock()
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { h.deliver(m, gen, epoch, end) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrStreamNotFound) {
				h.check() // a lost stream: recreate it, under a new epoch
			}
		}))
	if err != nil {
		return err
	}
	h.cc = cc
	h.streamOK.Store(true)
	return nil
}

// lost notes that NATS is gone: the node cannot vouch for the stream
// until setup has looked at it again.
func (h *history) lost() {
	h.caughtUp.Store(false)
	h.streamOK.Store(false)
}

// deliver hands one message of the stream to this node's members and
// history; the consumer calls it in the stream's order, on one goroutine.
func (h *history) deliver(m jetstream.Msg, gen uint64, epoch string, end uint64) {
	h.deliverMu.Lock()
	defer h.deliverMu.Unlock()
	if h.gen.Load() != gen {
		return
	}
	b := h.b
	md, err := m.Metadata()
	if err != nil {
		b.dropped.Add(1)
		return
	}
	seq := md.Sequence.Stream
	last := h.horizon.Load()
	if seq <= last && last != 0 {
		return // delivered before (a consumer reset overlapping)
	}
	// The consumer takes every subject of the stream, so the sequences
	// it gets follow each other: a hole after the replay means messages
	// that the stream dropped (its limits) before this node took them,
	// of rooms unknown, and no node history can vouch for what came
	// before. (The replay's holes are the stream's old deletions, made
	// before this node started.)
	gap := seq > end && last != 0 && seq != last+1
	room, op, p, ok := histPayload(m.Data())
	if ok {
		err = b.local.PublishHistory(engine.HistoryMessage{Room: room, Op: op, Payload: p,
			Pos: engine.Position{Epoch: epoch, Offset: seq}, At: md.Timestamp, Gap: gap, Replay: seq <= end})
		b.count(err)
	} else {
		b.dropped.Add(1) // not from a wsloop broker
		if gap {
			b.local.HistoryGap(engine.Position{Epoch: epoch, Offset: seq - 1})
		}
	}
	h.horizon.Store(seq)
	if seq >= h.catchTo.Load() || md.NumPending == 0 {
		h.caughtUp.Store(true)
	}
}

// histPayload splits a history message: its opcode, the room's name (a
// uvarint length and the bytes) and the payload.
func histPayload(d []byte) (room string, op ws.OpCode, p []byte, ok bool) {
	if len(d) < 2 || (d[0] != byte(ws.OpText) && d[0] != byte(ws.OpBinary)) {
		return "", 0, nil, false
	}
	n, k := binary.Uvarint(d[1:])
	if k <= 0 || n > uint64(len(d)-1-k) {
		return "", 0, nil, false
	}
	r := d[1+k : 1+k+int(n)]
	return string(r), ws.OpCode(d[0]), d[1+k+int(n):], true
}

// PublishHistory puts a message for a room with history on the stream
// (engine.HistoryBroker): queued for the sending goroutine without wait,
// published and acknowledged with it.
func (b *Broker) PublishHistory(room string, op ws.OpCode, p []byte, wait bool) (engine.Position, error) {
	h := &b.hist
	if b.cfg.history == nil {
		return engine.Position{}, errors.New("natsbroker: no WithHistory")
	}
	if !h.streamOK.Load() || !b.connected.Load() || h.js == nil {
		// Before setup has found the stream, a core publish to it may
		// be stored by nobody.
		b.failed.Add(1)
		return engine.Position{}, errDown
	}
	if !wait {
		return engine.Position{}, b.enqueue('h', room, op, p)
	}
	if !b.connected.Load() || h.js == nil {
		b.failed.Add(1)
		return engine.Position{}, errDown
	}
	data := make([]byte, 0, 1+binary.MaxVarintLen64+len(room)+len(p))
	data = append(data, byte(op))
	data = binary.AppendUvarint(data, uint64(len(room)))
	data = append(append(data, room...), p...)
	subj := appendSubject(nil, b.cfg.prefix, 'h', room)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ack, err := h.js.Publish(ctx, unsafe.String(unsafe.SliceData(subj), len(subj)), data, jetstream.WithExpectStream(b.cfg.history.Stream))
	if err != nil {
		b.failed.Add(1)
		return engine.Position{}, fmt.Errorf("%w: %w", engine.ErrBrokerUnavailable, err)
	}
	b.sent.Add(1)
	var epoch string
	if e := h.epoch.Load(); e != nil {
		epoch = *e
	}
	return engine.Position{Epoch: epoch, Offset: ack.Sequence}, nil
}

// HistoryHorizon returns where this node stands in the stream
// (engine.HistoryBroker): false while NATS is unreachable or the node is
// replaying the stream.
func (b *Broker) HistoryHorizon() (engine.Position, bool) {
	h := &b.hist
	e := h.epoch.Load()
	if b.cfg.history == nil || e == nil || !b.connected.Load() || !h.streamOK.Load() || !h.caughtUp.Load() {
		return engine.Position{}, false
	}
	return engine.Position{Epoch: *e, Offset: h.horizon.Load()}, true
}

// KeepsHistory reports whether the broker was given WithHistory
// (engine.HistoryBroker).
func (b *Broker) KeepsHistory() bool { return b.cfg.history != nil }
