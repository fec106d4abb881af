// Command nbio is the lesismal/nbio echo server in non-blocking mode, as its
// websocket examples write it: nbhttp.Engine with IOModNonBlocking and a
// websocket.Upgrader whose OnMessage writes the message back.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

func main() {
	addr, loops := srvutil.Flags()
	addr, err := srvutil.FreeAddr(addr) // nbhttp does not report a port it picked
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	upgrader := websocket.NewUpgrader()
	upgrader.CheckOrigin = func(*http.Request) bool { return true }
	upgrader.KeepaliveTime = 0 // no read deadline: no heartbeats here
	upgrader.MessageLengthLimit = 1 << 20
	upgrader.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
		_ = c.WriteMessage(mt, data)
	})
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := upgrader.Upgrade(w, r, nil); err != nil {
			return
		}
	})
	eng := nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{addr},
		IOMod:   nbhttp.IOModNonBlocking,
		NPoller: loops,
		Handler: mux,
	})
	if err := eng.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	a, _ := net.ResolveTCPAddr("tcp", addr)
	srvutil.Ready(a)
	srvutil.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = eng.Shutdown(ctx)
}
