// Command wsloop is the benchmark's wsloop echo server, the engine used as
// examples/echo uses it: a Handler whose OnMessage writes every message back
// with its opcode. Heartbeats are pushed out of any run's reach (ping after
// an hour of silence, eviction after two). SIGINT/SIGTERM shut it down
// gracefully (close frames with 1001); the 500 ms close timeout bounds the
// wait for peers that do not answer, keeping the exit under two seconds
// with 19,000 connections open.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"

	"github.com/wsloop/wsloop/benchmarks/internal/cpuprof"
	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file, from the start until SIGHUP (the server keeps running), SIGTERM or SIGINT")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, serve TLS (engine.WithTLS)")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()
	defer cpuprof.Start(*cpuProfile)()

	opts := []engine.Option{
		engine.WithEventLoops(*loops),
		engine.WithMaxMessageSize(1 << 20),
		engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithPingInterval(time.Hour),
		engine.WithIdleTimeout(2 * time.Hour),
		engine.WithCloseTimeout(500 * time.Millisecond),
	}
	if *certFile != "" {
		cfg, err := devcert.Config(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		opts = append(opts, engine.WithTLS(cfg))
	}
	srv, err := engine.New(echo{}, opts...)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		mallocs.Report()
		fmt.Println("READY", srv.Addr())
	}()
	if err := srv.ListenAndServe(ctx, *addr); !errors.Is(err, engine.ErrServerClosed) {
		log.Fatal(err)
	}
}
