package engine

import (
	"errors"

	"github.com/gobwas/ws"
)

// Clusters. A Server alone reaches the connections of its own process. With
// a Broker (WithBroker), Publish, Broadcast and SendToKey reach every node
// of a cluster: the server delivers to its own connections as before and
// hands the message to the broker once; the broker puts it on a message
// bus once, and every other node that has interest delivers it to its own
// connections through Local, with the same encode-once, one hand-off per
// loop path as a local publish. The broker that ships with wsloop is
// broker/nats (a separate module, so that this one needs no NATS).
//
// The engine tells the broker when a room's local count may have changed
// (after every join or leave a loop applies, and for each room of a
// closing connection) and when a key was bound or released; the broker
// reads the truth from Local when it acts on that hint, so hints may be
// coalesced, reordered or late without harm, as long as one follows every
// change.

// Broker carries messages between the nodes of a cluster. Every method but
// Start and Close may be called from an event loop, and must return at
// once: queue the work, or fail it, never block.
type Broker interface {
	// Start is called once by ListenAndServe, once the event loops run
	// and before the first connection is accepted. Messages from other
	// nodes are delivered through l.
	Start(l Local) error
	// Publish, Broadcast and SendToKey send a message, already delivered
	// on this node (or, for SendToKey, not found here), to the other
	// nodes. p is only valid during the call. An error means the other
	// nodes will not get it (the bus is down, the broker's buffer is
	// full); the broker counts it in its BrokerStats.
	Publish(room string, op ws.OpCode, p []byte) error
	Broadcast(op ws.OpCode, p []byte) error
	SendToKey(key string, op ws.OpCode, p []byte) error
	// RoomChanged says that room's count on this node may have changed
	// (Local.RoomLen tells how), KeyChanged that key was bound or released
	// here (Local.HasKey tells which). Called on event loops, often: keep
	// them cheap.
	RoomChanged(room string)
	KeyChanged(key string)
	// RemoteRoomLen returns room's members on the other nodes, as last
	// reported by them.
	RemoteRoomLen(room string) int
	// Stats returns the broker's counters, for Server.Stats.
	Stats() BrokerStats
	// Close stops the broker; ListenAndServe calls it when it returns,
	// after the connections are closed.
	Close() error
}

// BrokerStats are a broker's counters, reported in Stats.Broker.
type BrokerStats struct {
	Connected     bool   // the broker is connected to its bus now
	Nodes         int    // other nodes heard from recently
	Subscriptions int    // rooms and keys this node receives for
	Sent          uint64 // messages put on the bus (a publish counts once)
	Failed        uint64 // messages for other nodes not put on the bus: the bus was down or the broker's buffer full
	Received      uint64 // messages from other nodes queued for all their targets on this node
	Partial       uint64 // messages from other nodes that some event loops of this node queued and others refused, their queues full (WithMaxQueuedBytes): the targets on those loops missed them
	Dropped       uint64 // messages from other nodes that no target on this node got because it fell behind: the broker's buffer or every loop's queue was full
	KeyMisses     uint64 // SendToKey messages that reached this node after the key had left it
	Reconnects    uint64 // times the broker reconnected to its bus
}

// ErrForwarded is returned by Server.SendToKey on a server with a broker
// when the key is not bound on this node: the message went to the other
// nodes, and the one holding the key (if any) delivers it. Whether some
// node held it is unknown to the caller: the cluster keeps no directory of
// keys. Without a broker, SendToKey returns ErrNotConnected instead.
var ErrForwarded = errors.New("wsloop: key not on this node; forwarded to the cluster, delivery unknown")

// WithBroker makes the server one node of a cluster (see Broker); the
// default is none: a single node. A broker serves one server.
func WithBroker(b Broker) Option { return func(o *options) { o.broker = b } }

// Local is a server as its broker sees it: the same operations, reaching
// this node's connections only. Its methods are safe from any goroutine.
type Local struct{ s *Server }

// Local returns the node-local view of s.
func (s *Server) Local() Local { return Local{s} }

// Publish delivers a message to room's members on this node; its error is
// Server.Publish's without a broker (a *QueueFullError when some loops'
// queues were full). With a HistoryBroker, a message to a room with
// history published so is this node's alone: it gets the zero Position
// (in the envelope) and no history keeps it, since only the bus gives
// positions.
func (l Local) Publish(room string, op ws.OpCode, p []byte) error {
	return l.s.publishLocal(room, op, p)
}

// Broadcast delivers a message to every connection of this node; its
// error is Server.Broadcast's without a broker.
func (l Local) Broadcast(op ws.OpCode, p []byte) error { return l.s.broadcastLocal(op, p) }

// SendToKey delivers a message to the connection bound to key on this
// node, or returns ErrNotConnected.
func (l Local) SendToKey(key string, op ws.OpCode, p []byte) error {
	return l.s.sendToKeyLocal(key, op, p)
}

// RoomLen returns room's members on this node (as Server.RoomLen counts
// them without a broker).
func (l Local) RoomLen(room string) int { return l.s.localRoomLen(room) }

// HasKey reports whether a connection of this node is bound to key.
func (l Local) HasKey(key string) bool {
	_, ok := l.s.keys.Get(key)
	return ok
}

// LogError logs a broker's message at error level with the server's logger
// (WithLogger), or nowhere.
func (l Local) LogError(msg string, args ...any) {
	if lg := l.s.opts.logger; lg != nil {
		lg.Error(msg, args...)
	}
}

// roomHints tells the broker about each room in rooms (a connection left
// them all).
func (s *Server) roomHints(rooms []string) {
	for _, r := range rooms {
		s.opts.broker.RoomChanged(r)
	}
}
