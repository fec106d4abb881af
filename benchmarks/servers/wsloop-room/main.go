// Command wsloop-room is the fan-out server for wsloop: every connection
// joins the room "all"; every message a connection sends is published to
// every member, sender included (Server.Publish copies the payload into one
// frame before it returns, so p may be published straight from OnMessage).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
	"github.com/wsloop/wsloop/engine"
)

type room struct {
	engine.BaseHandler
	srv *engine.Server
}

func (room) OnOpen(c *engine.Conn) { _ = c.Join("all") }

func (r *room) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = r.srv.Publish("all", op, p) }

func main() {
	addr, loops := srvutil.Flags()
	h := &room{}
	srv, err := engine.New(h,
		engine.WithEventLoops(loops),
		engine.WithMaxMessageSize(1<<20),
		engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithPingInterval(time.Hour),
		engine.WithIdleTimeout(2*time.Hour),
		engine.WithMaxOutboundBytes(4<<20),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx, addr) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srvutil.Ready(srv.Addr())
	srvutil.Wait()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}
