// Command gws is the lxzan/gws echo server, as its README's best practice
// writes it (without the ping deadline, like every server here): an
// Upgrader with an event handler, socket.ReadLoop in a goroutine.
package main

import (
	"net/http"

	"github.com/lxzan/gws"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

type handler struct{ gws.BuiltinEventHandler }

func (handler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	_ = socket.WriteMessage(message.Opcode, message.Bytes())
}

func main() {
	addr, _ := srvutil.Flags()
	upgrader := gws.NewUpgrader(&handler{}, &gws.ServerOption{ReadMaxPayloadSize: 1 << 20})
	srvutil.ServeHTTP(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		go socket.ReadLoop()
	}))
}
