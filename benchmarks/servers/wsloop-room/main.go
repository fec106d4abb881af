// Command wsloop-room is wsloop's fan-out server: one room, "all", that
// every connection joins in OnOpen; every message a connection sends is
// published to the room, sender included, with its opcode. Server.Publish
// encodes the frame into a buffer of its own before it returns, so the
// payload, valid only during OnMessage, is published straight from there
// without a copy of our own. Options as in servers/wsloop (including the
// 500 ms close timeout that bounds shutdown), plus the outbound cap per
// connection. With -nats URL it is one node of a cluster (broker/nats):
// the room spans every node, and a message published here is put on the
// bus once for the other nodes (cmd/cluster runs three). With -reuseport
// several nodes share one port (SO_REUSEPORT, the kernel spreading new
// connections over them), and -heartbeat keeps the engine's default ping
// interval and idle timeout instead of the benchmarks' hour (cmd/million
// runs both), -tls-cert and -tls-key serve wss:// (engine.WithTLS, as
// servers/wsloop: a publish is still encoded once, and each member's copy
// is encrypted into its own TLS records on its loop), and -bus prints "BUS 1 T" or "BUS 0 T" whenever the broker's
// connection to NATS comes or goes (T: CLOCK_MONOTONIC in ns, polled every
// 50 ms), for cmd/million's NATS restart, and "BUSERR reason" whenever the
// broker logs that it lost NATS; -bus-ping sets the NATS client's ping
// interval (it gives up after two unanswered).
//
// With -history N (0, the default, keeps none and changes nothing above)
// the room keeps its last N messages (engine.WithHistory, no TTL) and
// every message it delivers starts with its position's offset in decimal
// and a space ("42 " then the payload, text or binary as published: the
// envelope). A connection may give the position of the last message it
// got in its URL, ?epoch=E&offset=N (anything else, or none, counts as no
// position); OnOpen then calls Conn.Recover instead of Join, which sends
// every message after that position first, and sends the Recovery as a
// text message, the welcome:
//
//	{"recovered":true,"missed":100,"epoch":"9f…","offset":142}
//
// (offset: rec.Top.Offset, the room's position at the seam). The welcome
// follows the missed messages, normally, but is not ordered against them
// or against a message published meanwhile: a client takes it wherever it
// comes among the first messages. The epoch is only in the welcome; an
// offset in a message is of the welcome's epoch (the room's history is
// never forgotten here: it has no TTL). cmd/recoverstorm runs this mode.
//
// With -history-plain too, a message goes out as published (no envelope:
// engine.WithHistory's nil envelope) and every connection joins as
// without history (no position, no welcome): the bytes a client gets are
// those of a room without history, so that cmd/cluster -history compares
// the two with the same client checks. With -nats, -history keeps the
// room's history for the whole cluster in a JetStream stream
// (natsbroker.WithHistory, MaxPerRoom N, on the NATS server's disk: the
// server must run JetStream, servers/nats -js): a publish goes to the
// stream, and every node delivers it from there.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	natsbroker "github.com/wsloop/wsloop/broker/nats"
	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"

	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

const room = "all"

type fanout struct {
	engine.BaseHandler
	srv     *engine.Server
	history bool // -history: Recover in OnOpen, the welcome
}

func (h *fanout) OnOpen(c *engine.Conn) {
	if !h.history {
		_ = c.Join(room)
		return
	}
	since, _ := c.Value().(engine.Position) // the zero Position when the URL gave none
	rec, err := c.Recover(room, since)
	if err != nil {
		return // closed already
	}
	w := append(make([]byte, 0, 96), `{"recovered":`...)
	w = strconv.AppendBool(w, rec.Recovered)
	w = append(w, `,"missed":`...)
	w = strconv.AppendInt(w, int64(rec.Missed), 10)
	w = append(w, `,"epoch":"`...)
	w = append(w, rec.Top.Epoch...)
	w = append(w, `","offset":`...)
	w = strconv.AppendUint(w, rec.Top.Offset, 10)
	w = append(w, '}')
	_ = c.WriteMessage(ws.OpText, w)
}

// sinceHook is the upgrade hook with -history: the position the client
// gave, ?epoch=E&offset=N, attached to the connection; none when either is
// missing or malformed.
func sinceHook(r *engine.Request) (any, error) {
	e := r.QueryValue("epoch")
	if e == "" || len(e) > 32 {
		return nil, nil
	}
	off, err := strconv.ParseUint(r.QueryValue("offset"), 10, 64)
	if err != nil {
		return nil, nil
	}
	return engine.Position{Epoch: e, Offset: off}, nil
}

// envelope prefixes a message with its offset in decimal and a space.
func envelope(dst []byte, _ string, pos engine.Position, p []byte) []byte {
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, ' ')
	return append(dst, p...)
}

func (h *fanout) OnMessage(_ *engine.Conn, op ws.OpCode, p []byte) {
	_ = h.srv.Publish(room, op, p)
}

// busErrors prints "BUSERR reason" on stdout for each record saying the
// broker lost NATS, and passes every record on.
type busErrors struct{ slog.Handler }

func (b busErrors) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "natsbroker: disconnected from NATS" {
		reason := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				reason = a.Value.String()
			}
			return true
		})
		fmt.Println("BUSERR", reason)
	}
	return b.Handler.Handle(ctx, r)
}

func (b busErrors) WithAttrs(as []slog.Attr) slog.Handler { return busErrors{b.Handler.WithAttrs(as)} }
func (b busErrors) WithGroup(g string) slog.Handler       { return busErrors{b.Handler.WithGroup(g)} }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	natsURL := flag.String("nats", "", "join a cluster through the NATS server at this URL (empty: a single node)")
	reuse := flag.Bool("reuseport", false, "set SO_REUSEPORT on the listener, so that several nodes share the port")
	heartbeat := flag.Bool("heartbeat", false, "ping at the engine's default interval and evict at its default idle timeout (else: an hour, two)")
	ping := flag.Duration("ping", 0, "with -heartbeat: this ping interval instead of the engine's default (0)")
	idle := flag.Duration("idle", 0, "with -heartbeat: this idle timeout instead of the engine's default (0)")
	statsEvery := flag.Duration("stats", 0, "print STATS and the engine's counters (JSON) at this interval (0: never)")
	tick := flag.Duration("tick", 0, "the timing wheel's tick (0: the engine's default, 100 ms)")
	bus := flag.Bool("bus", false, "with -nats: print BUS 1 or BUS 0 and the CLOCK_MONOTONIC time whenever the broker connects or disconnects")
	busPing := flag.Duration("bus-ping", 0, "with -nats: the NATS client's ping interval (0: the broker's, 2 s)")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, serve TLS (engine.WithTLS)")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	history := flag.Int("history", 0, "the room keeps its last N messages, each prefixed with its offset, and a client may recover with ?epoch=E&offset=N (0: no history); with -nats, in a JetStream stream for the whole cluster")
	historyPlain := flag.Bool("history-plain", false, "with -history: no envelope (messages go out as published) and no recovery (every connection joins, no welcome)")
	flag.Parse()

	h := &fanout{history: *history > 0 && !*historyPlain}
	var cluster []engine.Option
	if *history > 0 {
		n := *history
		env := envelope
		if *historyPlain {
			env = nil
		}
		cluster = append(cluster, engine.WithHistory(func(string) engine.History { return engine.History{Size: n} }, env))
		if !*historyPlain {
			cluster = append(cluster, engine.WithUpgradeHook(sinceHook))
		}
	}
	var broker *natsbroker.Broker
	if *natsURL != "" {
		var bopts []natsbroker.Option
		if *busPing > 0 {
			bopts = append(bopts, natsbroker.WithNATSOptions(nats.PingInterval(*busPing)))
		}
		if *history > 0 {
			bopts = append(bopts, natsbroker.WithHistory(natsbroker.HistoryConfig{MaxPerRoom: int64(*history)}))
		}
		broker = natsbroker.New(*natsURL, bopts...)
		cluster = append(cluster, engine.WithBroker(broker))
		if *bus {
			cluster = append(cluster, engine.WithLogger(slog.New(busErrors{slog.NewTextHandler(os.Stderr, nil)})))
		}
	}
	if *tick > 0 {
		cluster = append(cluster, engine.WithTick(*tick))
	}
	if *certFile != "" {
		cfg, err := devcert.Config(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		cluster = append(cluster, engine.WithTLS(cfg))
	}
	if !*heartbeat {
		cluster = append(cluster, engine.WithPingInterval(time.Hour), engine.WithIdleTimeout(2*time.Hour))
	} else {
		if *ping > 0 {
			cluster = append(cluster, engine.WithPingInterval(*ping))
		}
		if *idle > 0 {
			cluster = append(cluster, engine.WithIdleTimeout(*idle))
		}
	}
	srv, err := engine.New(h, append(cluster,
		engine.WithEventLoops(*loops),
		engine.WithMaxMessageSize(1<<20),
		engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithReusePort(*reuse),
		engine.WithCloseTimeout(500*time.Millisecond),
		engine.WithMaxOutboundBytes(4<<20),
	)...)
	if err != nil {
		log.Fatal(err)
	}
	h.srv = srv
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		mallocs.Report()
		fmt.Println("READY", srv.Addr())
		if *statsEvery > 0 {
			go func() {
				for range time.Tick(*statsEvery) {
					st := srv.Stats()
					st.ConnsPerLoop = nil
					if b, err := json.Marshal(st); err == nil {
						fmt.Println("STATS", string(b))
					}
				}
			}()
		}
		if *bus && broker != nil {
			// The broker's own Stats, not the server's: polled 20 times a
			// second, it allocates nothing, so the node's heap (and RSS,
			// which cmd/million measures) does not grow with garbage of
			// the harness's making between two GCs.
			was := broker.Stats().Connected
			for range time.Tick(50 * time.Millisecond) {
				if c := broker.Stats().Connected; c != was {
					was = c
					var ts unix.Timespec
					_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
					n := 0
					if c {
						n = 1
					}
					fmt.Println("BUS", n, ts.Nano())
				}
			}
		}
	}()
	if err := srv.ListenAndServe(ctx, *addr); !errors.Is(err, engine.ErrServerClosed) {
		log.Fatal(err)
	}
}
