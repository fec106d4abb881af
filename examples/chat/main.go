// Command chat is a live-streaming style chat (danmaku) on wsloop, one
// node (package chatroom has the protocol and how it uses wsloop; the same
// chat runs on a cluster of nodes in broker/nats/examples/chat). It serves
// its own web page on the same port, and a live dashboard of the server's
// figures at /dashboard:
//
//	go run ./examples/chat            # then open http://127.0.0.1:8080 (and /dashboard)
//	go run ./examples/chat -tls       # https://127.0.0.1:8080, self-signed: the browser warns once
//
// On SIGTERM or SIGINT the chat stops accepting and drains its members
// over -drain (5 s by default; 0 closes them all at once): each gets close
// code 1012 at its turn and its page reconnects, to the next process on
// the same address during a restart. A second signal stops it at once.
//
// On SIGHUP it restarts in place (after a new build, say): it starts a new
// copy of itself, hands it the listening socket (engine's Restart), and
// once the copy serves, hands it its members' connections too
// (engine.RestartKeep): the pages stay connected, in their rooms, and
// miss no message. Over TLS (-tls) the connections cannot move (crypto/tls
// cannot export a session) and are drained over -drain into the copy
// instead. No connection attempt is refused meanwhile. If the copy fails
// to start, this process serves on.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
	"github.com/wsloop/wsloop/examples/chat/chatroom"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address (host:port, or unix:///path)")
	rate := flag.Float64("rate", 1, "messages a second a member may send, sustained")
	burst := flag.Float64("burst", 5, "messages a member may send at once")
	drain := flag.Duration("drain", 5*time.Second, "on SIGTERM/SIGINT, close the members a few at a time over this window (0: all at once)")
	tlsFlags := devcert.Flags()
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	opts, err := tlsFlags()
	if err != nil {
		log.Error("TLS", "err", err)
		os.Exit(2)
	}
	srv, err := chatroom.New(*rate, *burst, log, opts...)
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process, drain or not
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			log.Info("chat restarting in place")
			err := srv.Restart(context.Background(), engine.RestartKeep(), engine.RestartDrain(*drain),
				engine.RestartStarted(func(pid int) { log.Info("chat restarted: the new process serves", "pid", pid) }))
			if err != nil {
				log.Error("restart", "err", err) // still serving
			}
		}
	}()
	if err := chatroom.RunDrain(ctx, srv, *addr, *drain, log); err != nil {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
	log.Info("chat stopped")
}
