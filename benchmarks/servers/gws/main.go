// Command gws is the lxzan/gws echo server, written as its README's best
// practice writes it: a net/http server, gws.NewUpgrader with an event
// handler whose OnMessage writes message.Bytes() back with the message's
// opcode and closes the message, and socket.ReadLoop in a goroutine per
// connection. Unlike the README: no parallel message handling, no
// compression, and no read deadline (the README's ping deadline would drop
// idle connections; no server here has heartbeats).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/lxzan/gws"
)

type handler struct{ gws.BuiltinEventHandler }

func (handler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	_ = socket.WriteMessage(message.Opcode, message.Bytes())
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	flag.Int("loops", runtime.NumCPU(), "ignored (event-loop servers only)")
	flag.Parse()

	upgrader := gws.NewUpgrader(handler{}, &gws.ServerOption{
		ParallelEnabled: false,
		Recovery:        gws.Recovery,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		socket, err := upgrader.Upgrade(w, r)
		if err != nil {
			return
		}
		go func() {
			socket.ReadLoop()
		}()
	})}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("READY", ln.Addr())

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // hijacked WebSocket connections end with the process
}
