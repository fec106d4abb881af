package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsloop/wsloop/engine"
)

// runNATS starts an in-process NATS server on port (-1: any free port).
func runNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	return runNATSWith(t, &server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
}

func runNATSWith(t *testing.T, o *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// member joins the rooms named in the URL (?room=a&room=b) and binds the
// key (?key=k).
type member struct {
	engine.BaseHandler
}

type want struct {
	rooms []string
	key   string
}

func (member) OnOpen(c *engine.Conn) {
	w := c.Value().(want)
	for _, r := range w.rooms {
		_ = c.Join(r)
	}
	if w.key != "" {
		_ = c.Bind(w.key)
	}
}

// OnMessage obeys the test's commands: "DURATION" stalls the loop (a
// slow node); "join ROOM" and "leave ROOM" join and leave; "leave ROOM
// DURATION" leaves and then stalls the loop, with the leave still queued.
func (member) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	f := strings.Fields(string(p))
	switch {
	case len(f) == 1:
		if d, err := time.ParseDuration(f[0]); err == nil {
			time.Sleep(d)
		}
	case len(f) >= 2 && f[0] == "join":
		_ = c.Join(f[1])
	case len(f) >= 2 && f[0] == "leave":
		_ = c.Leave(f[1])
		if len(f) == 3 {
			d, _ := time.ParseDuration(f[2])
			time.Sleep(d)
		}
	}
}

func hook(r *engine.Request) (any, error) {
	q, _ := url.ParseQuery(string(r.Query()))
	return want{rooms: q["room"], key: q.Get("key")}, nil
}

type node struct {
	srv  *engine.Server
	b    *Broker
	addr string
	stop func()
}

// startNode runs a server with a broker on ns's URL.
func startNode(t *testing.T, natsURL string, opts []Option, eopts ...engine.Option) *node {
	t.Helper()
	return startNodeWith(t, member{}, natsURL, opts, eopts...)
}

// startNodeWith runs a server with handler h (which gets member's upgrade
// hook) and a broker on ns's URL.
func startNodeWith(t *testing.T, h engine.Handler, natsURL string, opts []Option, eopts ...engine.Option) *node {
	t.Helper()
	opts = append([]Option{WithLinger(100 * time.Millisecond), WithReportInterval(200 * time.Millisecond)}, opts...)
	b := New(natsURL, opts...)
	srv, err := engine.New(h, append([]engine.Option{engine.WithBroker(b), engine.WithUpgradeHook(hook),
		engine.WithCheckOrigin(engine.AnyOrigin), engine.WithEventLoops(2)}, eopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			if err := <-done; !errors.Is(err, engine.ErrServerClosed) {
				t.Errorf("ListenAndServe: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &node{srv: srv, b: b, addr: srv.Addr().String(), stop: stop}
}

// client is a gorilla/websocket client whose messages are collected.
type client struct {
	c    *websocket.Conn
	msgs chan []byte
}

func dial(t *testing.T, n *node, query string) *client {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+n.addr+"/?"+query, http.Header{})
	if err != nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	cl := &client{c: c, msgs: make(chan []byte, 1<<16)}
	go func() {
		defer close(cl.msgs)
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			cl.msgs <- p
		}
	}()
	t.Cleanup(func() { c.Close() })
	return cl
}

// next returns the client's next message, failing after 5 s.
func (cl *client) next(t *testing.T) []byte {
	t.Helper()
	select {
	case p, ok := <-cl.msgs:
		if !ok {
			t.Fatal("connection closed")
		}
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
	}
	return nil
}

// quiet checks that the client gets nothing for d.
func (cl *client) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case p := <-cl.msgs:
		t.Fatalf("unexpected message %q", p)
	case <-time.After(d):
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// natsInterest is the number of subscriptions the NATS server has for subj.
func natsInterest(ns *server.Server, subj string) int { return ns.GlobalAccount().Interest(subj) }

func roomSubject(room string) string { return string(appendSubject(nil, "wsloop", 'r', room)) }

// payload is message i of a stream: binary, with its number and bytes
// that depend on it, of a size that varies.
func payload(i int) []byte {
	p := fmt.Appendf(nil, "%06d:", i)
	for j := 0; j < i%300; j++ {
		p = append(p, byte(i*7+j))
	}
	return p
}
