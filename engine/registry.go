package engine

import (
	"github.com/gobwas/ws"
)

// The registry: every upgraded connection by id, and optionally by a user
// key (a user id, a session), in maps sharded by xxhash so that lookups
// from many goroutines do not contend.

// Conn returns the open connection with the given id. Safe from any
// goroutine.
func (s *Server) Conn(id uint64) (*Conn, bool) {
	return s.conns.Get(id)
}

// ConnByKey returns the connection bound to key with Conn.Bind. Safe from
// any goroutine.
func (s *Server) ConnByKey(key string) (*Conn, bool) {
	return s.keys.Get(key)
}

// SendToKey sends one message to the connection bound to key. It returns
// ErrNotConnected when no open connection holds the key. With a broker
// (WithBroker), a key not bound on this node is forwarded to the cluster
// and SendToKey returns ErrForwarded: the node that holds the key delivers
// it, and whether one does is not known here (ErrNotConnected is never
// returned then). Safe from any goroutine.
func (s *Server) SendToKey(key string, op ws.OpCode, p []byte) error {
	if op != ws.OpText && op != ws.OpBinary {
		return errBadOpcode
	}
	err := s.sendToKeyLocal(key, op, p)
	if b := s.opts.broker; b != nil && err == ErrNotConnected {
		if err = b.SendToKey(key, op, p); err == nil {
			err = ErrForwarded
		}
	}
	return err
}

func (s *Server) sendToKeyLocal(key string, op ws.OpCode, p []byte) error {
	c, ok := s.keys.Get(key)
	if !ok {
		return ErrNotConnected
	}
	if err := c.WriteMessage(op, p); err != nil {
		if err == ErrClosed {
			return ErrNotConnected
		}
		return err
	}
	return nil
}

// Bind attaches key (a user id, say) to c, so that Server.ConnByKey and
// Server.SendToKey find it. A key names one connection: binding it again,
// to c or to another connection, replaces the previous binding. The binding
// ends when c closes. A connection holds at most one key; binding a new one
// releases the old. The empty key is refused (ErrEmptyKey): it is what
// Key returns for a connection that has none. Safe from any goroutine.
func (c *Conn) Bind(key string) error {
	if key == "" {
		return ErrEmptyKey
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.Load() != stateOpen {
		return ErrClosed
	}
	s := c.loop.srv
	old := c.key
	if old != "" && old != key {
		s.keys.DeleteIf(old, func(v *Conn) bool { return v == c })
	}
	c.key = key
	_, bound := s.keys.Swap(key, c)
	if b := s.opts.broker; b != nil {
		if old != "" && old != key {
			b.KeyChanged(old)
		}
		if !bound {
			b.KeyChanged(key)
		}
	}
	return nil
}

// Key returns the key bound with Bind, or "".
func (c *Conn) Key() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.key
}

// register adds an upgraded connection to the registry.
func (s *Server) register(c *Conn) { s.conns.Set(c.id, c) }

// unregister removes a closed connection from the registry, its key and
// its rooms. Runs on the loop.
func (s *Server) unregister(c *Conn) {
	s.conns.Delete(c.id)
	c.mu.Lock()
	key := c.key
	c.key = ""
	c.mu.Unlock()
	if key != "" && s.keys.DeleteIf(key, func(v *Conn) bool { return v == c }) && s.opts.broker != nil {
		s.opts.broker.KeyChanged(key)
	}
	c.loop.leaveAll(c)
}
