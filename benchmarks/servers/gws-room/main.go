// Command gws-room is lxzan/gws's fan-out server, written as gws's README
// shows broadcasting: every connection joins one set (a gws.ConcurrentMap,
// as gws's own examples keep sessions) and every message a connection
// sends goes to all of them, sender included, through one gws.Broadcaster
// per message, which encodes (and compresses) the frame once and queues it
// on each connection's write queue. A goroutine per connection runs its
// ReadLoop; the payload is copied out of gws's pooled message before it is
// released, since the broadcaster writes it later. permessage-deflate is
// enabled as in servers/gws (it applies only to clients that offer it).
// With -tls-cert and -tls-key it serves wss:// (internal/httpserve:
// net/http's ServeTLS, crypto/tls): the broadcaster's frame is still
// encoded once, and each connection's write encrypts its copy.
package main

import (
	"bytes"
	"net/http"
	"sync/atomic"

	"github.com/lxzan/gws"

	"github.com/wsloop/wsloop/benchmarks/internal/gwsopt"
	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
)

type room struct {
	gws.BuiltinEventHandler
	conns *gws.ConcurrentMap[uint64, *gws.Conn]
	next  atomic.Uint64
}

const idKey = "id"

func (r *room) OnOpen(socket *gws.Conn) {
	id := r.next.Add(1)
	socket.Session().Store(idKey, id)
	r.conns.Store(id, socket)
}

func (r *room) OnClose(socket *gws.Conn, _ error) {
	if id, ok := socket.Session().Load(idKey); ok {
		r.conns.Delete(id.(uint64))
	}
}

func (r *room) OnMessage(_ *gws.Conn, message *gws.Message) {
	payload := bytes.Clone(message.Bytes())
	op := message.Opcode
	message.Close()
	b := gws.NewBroadcaster(op, payload)
	defer b.Close()
	r.conns.Range(func(_ uint64, c *gws.Conn) bool {
		_ = b.Broadcast(c)
		return true
	})
}

func main() {
	r := &room{conns: gws.NewConcurrentMap[uint64, *gws.Conn](16)}
	upgrader := gws.NewUpgrader(r, gwsopt.Server())
	httpserve.Run(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		socket, err := upgrader.Upgrade(w, req)
		if err != nil {
			return
		}
		go socket.ReadLoop()
	}))
}
