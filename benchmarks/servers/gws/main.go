// Command gws is the lxzan/gws echo server, written as its README's best
// practice writes it: a net/http server, gws.NewUpgrader with an event
// handler whose OnMessage writes message.Bytes() back with the message's
// opcode and closes the message, and socket.ReadLoop in a goroutine per
// connection. Unlike the README: no parallel message handling and no read
// deadline (the README's ping deadline would drop idle connections; no
// server here has heartbeats). permessage-deflate is enabled as gws
// documents it for servers (no context takeover either way, level 1,
// messages under 256 bytes sent plain, as wsloop's defaults): it applies
// only to clients that offer it, which only the compression scenarios'
// load generator does.
package main

import (
	"net/http"

	"github.com/lxzan/gws"

	"github.com/wsloop/wsloop/benchmarks/internal/gwsopt"
	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
)

type handler struct{ gws.BuiltinEventHandler }

func (handler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	_ = socket.WriteMessage(message.Opcode, message.Bytes())
}

func main() {
	upgrader := gws.NewUpgrader(handler{}, gwsopt.Server())
	httpserve.Run(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		go socket.ReadLoop()
	}))
}
