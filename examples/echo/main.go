// Command echo is a WebSocket server that echoes every message back with
// the same opcode and does nothing else. Conformance suites and benchmarks
// run against it. It accepts permessage-deflate (RFC 7692) unless run with
// -deflate=false.
//
//	go run ./examples/echo -addr 127.0.0.1:9001
//	go run ./examples/echo -addr unix:///tmp/echo.sock
//
// Any WebSocket client will do, for example websocat
// (websocat ws://127.0.0.1:9001), a browser's console
// (new WebSocket("ws://127.0.0.1:9001")), or the Autobahn TestSuite's
// fuzzingclient pointed at ws://127.0.0.1:9001.
//
// With -tls it speaks wss:// (TLS on the event loops), with the
// certificate in -tls-cert and -tls-key, or without them a self-signed one
// made at start (clients must trust it by hand, or skip verification):
//
//	go run ./examples/echo -tls            # then websocat -k wss://127.0.0.1:9001
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "listen address: host:port, or unix:///path")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	maxMsg := flag.Int("max-message", 64<<20, "largest message in bytes")
	ping := flag.Duration("ping-interval", 25*time.Second, "ping a connection silent for this long")
	idle := flag.Duration("idle-timeout", 60*time.Second, "evict a connection silent for this long")
	handshake := flag.Duration("handshake-timeout", 5*time.Second, "drop a socket that has not sent its upgrade request within this")
	closeTimeout := flag.Duration("close-timeout", 5*time.Second, "wait this long for the peer's close frame")
	deflate := flag.Bool("deflate", true, "accept permessage-deflate (RFC 7692) offers")
	deflateLevel := flag.Int("deflate-level", 1, "compression level, 1 (fastest) to 9 (smallest)")
	takeover := flag.Int("client-takeover", 0, "let clients keep their compression context, with a window of this many bits (8-15); 0: no takeover")
	tlsFlags := devcert.Flags()
	verbose := flag.Bool("v", false, "log gnet's debug messages")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	tlsOpt, err := tlsFlags()
	if err != nil {
		log.Error("TLS", "err", err)
		os.Exit(2)
	}
	srv, err := engine.New(echo{}, append(tlsOpt,
		engine.WithEventLoops(*loops),
		engine.WithMaxMessageSize(*maxMsg),
		engine.WithCheckOrigin(engine.AnyOrigin), // test suites and benchmarks send any Origin; a server for browsers keeps the default, SameOrigin
		engine.WithPingInterval(*ping),
		engine.WithIdleTimeout(*idle),
		engine.WithHandshakeTimeout(*handshake),
		engine.WithCloseTimeout(*closeTimeout),
		engine.WithLogger(log),
		engine.WithCompression(*deflate),
		engine.WithCompressionLevel(*deflateLevel),
		engine.WithContextTakeover(*takeover != 0, *takeover),
	)...)
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		url := "ws://" + srv.Addr().String()
		if srv.TLS() {
			url = "wss://" + srv.Addr().String()
		}
		if srv.Addr().Network() == "unix" {
			url = "unix://" + srv.Addr().String()
		}
		log.Info("echo server listening", "addr", url, "loops", *loops, "deflate", *deflate)
	}()
	err = srv.ListenAndServe(ctx, *addr)
	if err != nil && !errors.Is(err, engine.ErrServerClosed) {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
	log.Info("echo server stopped")
}
