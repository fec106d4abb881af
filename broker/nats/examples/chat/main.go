// Command chat runs the chat of examples/chat (package chatroom) as one
// node of a cluster: rooms, their messages and viewer counts span every
// node, through NATS. Two nodes on one machine, with nothing installed:
//
//	go run ./examples/chat -nats-embedded 127.0.0.1:4222                       # node 1 (-addr 127.0.0.1:8180, the default), and NATS
//	go run ./examples/chat -addr 127.0.0.1:8181 -nats nats://127.0.0.1:4222   # node 2
//
// (from broker/nats), then open http://127.0.0.1:8180 and
// http://127.0.0.1:8181 in two tabs: a message typed in one reaches the
// other, and the viewer count is the room's members on both nodes (within
// 2 s): each node pushes it to its members whenever its broker says the
// room's count on all nodes changed (natsbroker.WithOnRoomCount), a join
// or leave on another node included. The first node runs a NATS server in
// its own process (-nats-embedded); in production, point every node at
// your NATS cluster with -nats. GET /stats shows the broker's counters
// under "Broker". -tls serves https:// and wss:// with a self-signed
// certificate (the browser warns once per node), -tls-cert and -tls-key
// with yours.
//
// History spans the cluster: each room's last chatroom.HistorySize
// messages (for chatroom.HistoryTTL) are kept in a NATS JetStream stream
// (natsbroker.WithHistory), every node keeps them all, and a page that
// loses its connection recovers what it missed on whichever node it
// reconnects to (through a load balancer, say), with no gap and no
// duplicate. The embedded NATS server runs JetStream, storing in
// -nats-store; a NATS server of yours (-nats) must run it too
// (nats-server -js, or jetstream {} in its configuration), or the rooms'
// messages do not flow.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	natsbroker "github.com/wsloop/wsloop/broker/nats"
	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
	"github.com/wsloop/wsloop/examples/chat/chatroom"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8180", "listen address (host:port, or unix:///path)")
	natsURL := flag.String("nats", "", "NATS server(s) to join, e.g. nats://127.0.0.1:4222")
	embedded := flag.String("nats-embedded", "", "run a NATS server in this process on `host:port`, with JetStream, and join it")
	store := flag.String("nats-store", filepath.Join(os.TempDir(), "wsloop-chat-nats"),
		"the embedded NATS server's JetStream `directory`: the rooms' history, kept across restarts (a temporary directory by default)")
	rate := flag.Float64("rate", 1, "messages a second a member may send, sustained")
	burst := flag.Float64("burst", 5, "messages a member may send at once")
	tlsFlags := devcert.Flags()
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	if *embedded != "" {
		ns, err := runNATS(*embedded, *store)
		if err != nil {
			log.Error("embedded NATS server", "err", err)
			os.Exit(1)
		}
		defer ns.Shutdown()
		log.Info("embedded NATS server listening", "url", ns.ClientURL())
		if *natsURL == "" {
			*natsURL = ns.ClientURL()
		}
	}
	if *natsURL == "" {
		log.Error("need -nats URL or -nats-embedded ADDR")
		os.Exit(2)
	}
	opts, err := tlsFlags()
	if err != nil {
		log.Error("TLS", "err", err)
		os.Exit(2)
	}
	// The broker calls this on its own goroutine, after srv is set (it
	// starts with the server), whenever a room's count on all nodes
	// changes: every node tells its own members. The stream keeps as
	// much of each room as the chat's rule does (chatroom.New).
	var srv *engine.Server
	b := natsbroker.New(*natsURL, natsbroker.WithOnRoomCount(func(room string, n int) {
		chatroom.PushViewers(srv, room, n)
	}), natsbroker.WithHistory(natsbroker.HistoryConfig{
		Stream:     "WSLOOP_CHAT_HISTORY",
		MaxPerRoom: chatroom.HistorySize,
		MaxAge:     chatroom.HistoryTTL,
	}))
	srv, err = chatroom.New(*rate, *burst, log, append(opts, engine.WithBroker(b))...)
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("joining the cluster", "nats", *natsURL)
	if err := chatroom.Run(ctx, srv, *addr, log); err != nil {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
	log.Info("chat stopped")
}

// runNATS starts a NATS server on addr in this process, with JetStream
// storing in dir.
func runNATS(addr, dir string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: p, NoSigs: true, MaxPayload: 64 << 10, JetStream: true, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("not ready within 10 s")
	}
	return ns, nil
}
