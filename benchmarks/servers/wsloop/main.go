// Command wsloop is the benchmark's wsloop echo server: the engine with an
// OnMessage that writes every message back with its opcode, no heartbeat
// within a run (ping interval one hour).
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

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	addr, loops := srvutil.Flags()
	srv, err := engine.New(echo{},
		engine.WithEventLoops(loops),
		engine.WithMaxMessageSize(1<<20),
		engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithPingInterval(time.Hour),
		engine.WithIdleTimeout(2*time.Hour),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
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
