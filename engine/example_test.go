package engine_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/engine"
)

// The examples run under go test: each starts a server on a free port and
// talks to it with a gorilla/websocket client, so that what they print is
// checked. The README's snippets are taken from them (TestREADMESnippets).

// echo sends every message back. Its methods run on the event loop: they
// must not block, and p is only valid during the call.
type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

// Embedding the engine: a handler, options, ListenAndServe until a signal.
func Example() {
	srv, err := engine.New(echo{}, engine.WithMaxMessageSize(64<<10))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() { // a client, for the example's sake
		<-srv.Ready()
		fmt.Println(roundTrip("ws://"+srv.Addr().String()+"/", "hello"))
		stop() // as if interrupted
	}()
	err = srv.ListenAndServe(ctx, "127.0.0.1:0") // returns after a graceful shutdown
	fmt.Println(err)
	// Output:
	// hello
	// wsloop: server closed
}

// serveWhile runs srv on a free port of 127.0.0.1 while client talks to
// it at addr (host:port), then shuts it down.
func serveWhile(srv *engine.Server, client func(addr string)) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		<-srv.Ready()
		client(srv.Addr().String())
	}()
	if err := srv.ListenAndServe(ctx, "127.0.0.1:0"); !errors.Is(err, engine.ErrServerClosed) {
		log.Fatal(err)
	}
}

// roundTrip dials url, sends msg and returns the first message it gets.
func roundTrip(url, msg string) string {
	_, p, err := exchange(url, msg)
	if err != nil {
		return err.Error()
	}
	return string(p)
}

// exchange dials url, sends msg and returns the first message it gets,
// with its gorilla/websocket message type.
func exchange(url, msg string) (int, []byte, error) {
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte(msg))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return c.ReadMessage()
}

// ListenAndServe takes "host:port" (TCP) or "unix:///path"; Addr says
// where it listens once Ready is closed.
func ExampleServer_ListenAndServe() {
	srv, err := engine.New(echo{})
	if err != nil {
		log.Fatal(err)
	}
	path := fmt.Sprintf("%s/wsloop-example-%d.sock", os.TempDir(), os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-srv.Ready()
		fmt.Println("listening on", srv.Addr().Network())
		cancel()
	}()
	if err := srv.ListenAndServe(ctx, "unix://"+path); !errors.Is(err, engine.ErrServerClosed) {
		log.Fatal(err)
	}
	// Output:
	// listening on unix
}

// user is what the upgrade hook attaches to a connection.
type user struct{ name string }

// greeter greets each user by the name its upgrade hook found.
type greeter struct{ engine.BaseHandler }

func (greeter) OnOpen(c *engine.Conn) {
	u := c.Value().(*user) // set by the upgrade hook
	_ = c.SendText("hello, " + u.name)
}

// Authentication at upgrade: the hook runs on the event loop after the
// origin check, before the 101. It refuses with a status, or returns the
// value Conn.Value gives from OnOpen on. Browsers cannot set headers on a
// WebSocket request, so a token usually comes in the query or a cookie.
func ExampleWithUpgradeHook() {
	tokens := map[string]string{"s3cret": "alice"} // read-only here: the hook must not block
	srv, err := engine.New(greeter{},
		engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
			name, ok := tokens[r.QueryValue("token")]
			if !ok {
				return nil, engine.Reject(401, "bad or missing token")
			}
			return &user{name: name}, nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		base := "ws://" + addr + "/?token="
		_, resp, err := websocket.DefaultDialer.Dial(base+"wrong", nil)
		fmt.Println(resp.StatusCode, err)
		fmt.Println(roundTrip(base+"s3cret", ""))
	})
	// Output:
	// 401 websocket: bad handshake
	// hello, alice
}

// room puts each connection in the room its URL path names, tells the
// room how many are in it, and relays every message to the room.
type room struct{ engine.BaseHandler }

func (room) OnOpen(c *engine.Conn) {
	name := c.Value().(string)
	_ = c.Join(name) // RoomLen counts c once Join returns; c leaves by itself when it closes
	srv := c.Server()
	msg := fmt.Sprintf("%d in %s", srv.RoomLen(name), name)
	_ = srv.Publish(name, ws.OpText, []byte(msg)) // every member, c included
}

func (room) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	_ = c.Server().Publish(c.Value().(string), op, p) // copies p: no need to copy first
}

// Rooms: Join in OnOpen, Publish from a handler (through Conn.Server) or
// from any goroutine. A published message is encoded once for all members.
func ExampleServer_Publish() {
	srv, err := engine.New(room{}, engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
		return string(r.Path()), nil // copied: r is only valid during the hook
	}))
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		url := "ws://" + addr + "/lobby"
		ann, _, _ := websocket.DefaultDialer.Dial(url, nil)
		defer ann.Close()
		fmt.Println(read(ann)) // its own arrival
		bob, _, _ := websocket.DefaultDialer.Dial(url, nil)
		defer bob.Close()
		fmt.Println(read(ann), "|", read(bob))

		// From outside the handlers, any goroutine:
		_ = srv.Publish("/lobby", ws.OpText, []byte("server: welcome"))
		fmt.Println(read(ann), "|", read(bob))
	})
	// Output:
	// 1 in /lobby
	// 2 in /lobby | 2 in /lobby
	// server: welcome | server: welcome
}

// read returns the next message c gets, or the error.
func read(c *websocket.Conn) string {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, p, err := c.ReadMessage()
	if err != nil {
		return err.Error()
	}
	return string(p)
}

// binder binds each connection to a user key, here from the URL path.
type binder struct{ engine.BaseHandler }

func (binder) OnOpen(c *engine.Conn) {
	_ = c.Bind("user:" + c.Value().(string)) // a newer connection with the same key replaces the binding
}

// Direct messages: Bind a key in OnOpen, SendToKey from anywhere.
// ErrNotConnected says that no connection holds the key.
func ExampleServer_SendToKey() {
	srv, err := engine.New(binder{}, engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
		return string(r.Path()[1:]), nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		alice, _, _ := websocket.DefaultDialer.Dial("ws://"+addr+"/alice", nil)
		defer alice.Close()
		for srv.Connections() < 1 { // OnOpen runs once the 101 is on its way
			time.Sleep(time.Millisecond)
		}
		fmt.Println(srv.SendToKey("user:alice", ws.OpText, []byte("psst")))
		fmt.Println(read(alice))
		fmt.Println(srv.SendToKey("user:bob", ws.OpText, []byte("psst")))
	})
	// Output:
	// <nil>
	// psst
	// wsloop: not connected
}

// Graceful shutdown: Shutdown refuses new sockets, sends 1001 to every
// connection, waits for their answers until ctx's deadline, closes the
// rest; ListenAndServe returns ErrServerClosed after every OnClose ran.
func ExampleServer_Shutdown() {
	srv, err := engine.New(echo{})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr().String()+"/", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = srv.Shutdown(ctx) }()
	fmt.Println(read(c)) // the client gets the close frame; gorilla answers it
	fmt.Println(<-done)  // ListenAndServe's result
	// Output:
	// websocket: close 1001 (going away): server shutting down
	// wsloop: server closed
}

// A deploy: the old process drains its clients over a window (here
// 200 ms; 30 s is usual for 100,000 connections) so that they reconnect to
// the new one a few at a time, each told why with 1012.
func ExampleServer_Drain() {
	srv, err := engine.New(echo{})
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr().String()+"/", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// On SIGTERM, say. Give ctx the window plus time for the last close
	// handshakes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = srv.Drain(ctx, 200*time.Millisecond, engine.DrainReason("deploy: reconnect")) }()
	fmt.Println(read(c))
	fmt.Println(<-done)
	// Output:
	// websocket: close 1012: deploy: reconnect
	// wsloop: server closed
}

// trustedProxy reports whether a peer is our own reverse proxy (here:
// one on the same host), whose X-Forwarded-For can be believed.
func trustedProxy(a netip.Addr) bool { return a.IsLoopback() }

// clientAddr is the client's address: the last X-Forwarded-For entry when
// the request came through a trusted proxy (which appended it), else the
// socket's peer. Entries before the last are the client's own claims.
func clientAddr(r *engine.Request) netip.Addr {
	peer, _ := netip.ParseAddrPort(r.RemoteAddr().String())
	xff := string(r.Header("X-Forwarded-For"))
	if !trustedProxy(peer.Addr()) || xff == "" {
		return peer.Addr()
	}
	last := strings.TrimSpace(xff[strings.LastIndexByte(xff, ',')+1:])
	if a, err := netip.ParseAddr(last); err == nil {
		return a
	}
	return peer.Addr()
}

// addrTeller tells each connection the address its upgrade hook found.
type addrTeller struct{ engine.BaseHandler }

func (addrTeller) OnOpen(c *engine.Conn) {
	_ = c.SendText("you are " + c.Value().(netip.Addr).String())
}

// The client's address behind a reverse proxy (nginx, an L7 balancer):
// read X-Forwarded-For in the upgrade hook, from trusted proxies only.
func ExampleRequest_RemoteAddr() {
	srv, err := engine.New(addrTeller{}, engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
		return clientAddr(r), nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		// As nginx would connect on behalf of 203.0.113.7:
		h := http.Header{"X-Forwarded-For": {"10.9.9.9, 203.0.113.7"}}
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", h)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		fmt.Println(read(c))
	})
	// Output:
	// you are 203.0.113.7
}

// worker hands slow work to a goroutine and answers from there.
type worker struct{ engine.BaseHandler }

func (worker) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	job := string(p) // copied: p is only valid during OnMessage
	go func() {
		result := lookup(job) // may block: this goroutine is off the loop
		if err := c.SendText(result); err != nil {
			log.Print(err) // ErrClosed once the connection is closing
		}
	}()
}

// lookup stands for slow work: a database query, a call to another service.
func lookup(order string) string {
	time.Sleep(10 * time.Millisecond)
	return order + ": shipped"
}

// Sending from another goroutine, as text: a handler must not block its
// event loop, so it hands slow work to a goroutine, which answers with
// SendText (safe from any goroutine; it copies the message before
// returning). SendText sends a text frame (opcode 1): a browser's
// onmessage gets a string, as it should for JSON or any text.
func ExampleConn_SendText() {
	srv, err := engine.New(worker{})
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		fmt.Println(roundTripFrame("ws://"+addr+"/", "order 42"))
	})
	// Output:
	// text message: order 42: shipped
}

// sizer answers every message with its length, as 4 bytes (big-endian).
type sizer struct{ engine.BaseHandler }

func (sizer) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	_ = c.Send(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
}

// Send sends a binary frame (opcode 2): raw bytes, which a browser's
// onmessage gets as a Blob (or an ArrayBuffer with binaryType
// "arraybuffer"), not a string. Send text with SendText.
func ExampleConn_Send() {
	srv, err := engine.New(sizer{})
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		fmt.Println(roundTripFrame("ws://"+addr+"/", "order 42"))
	})
	// Output:
	// binary message: 00 00 00 08
}

// roundTripFrame dials url, sends msg and says what kind of message came
// back, and what it held.
func roundTripFrame(url, msg string) string {
	typ, p, err := exchange(url, msg)
	switch {
	case err != nil:
		return err.Error()
	case typ == websocket.TextMessage:
		return "text message: " + string(p)
	default:
		return fmt.Sprintf("binary message: % x", p)
	}
}

// nameKey is the context key the application's middleware sets.
type nameKey struct{}

// Mounted on the net/http server an application already runs: a Server is
// an http.Handler. The upgrade hook sees the context the application's
// middleware set; once upgraded, the connection lives on an event loop and
// holds no goroutine.
func ExampleServer_ServeHTTP() {
	srv, err := engine.New(greeter{}, engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
		name, ok := r.Context().Value(nameKey{}).(string) // set by the middleware
		if !ok {
			return nil, engine.Reject(401, "not signed in")
		}
		return &user{name: name}, nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Run(ctx) // the event loops, without a listener of their own
	<-srv.Ready()

	auth := func(next http.Handler) http.Handler { // the application's middleware
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := context.WithValue(r.Context(), nameKey{}, r.URL.Query().Get("user"))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", auth(srv))
	hs := &http.Server{Handler: mux}
	hs.RegisterOnShutdown(func() { _ = srv.Shutdown(context.Background()) }) // hijacked connections are wsloop's
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Shutdown(context.Background())

	fmt.Println(roundTrip("ws://"+ln.Addr().String()+"/ws?user=ann", ""))
	// Output:
	// hello, ann
}

// A rate limit: 3 messages at once, then one a minute. A message over it
// is dropped before OnMessage; OnLimited answers the first of a run.
func ExampleWithRateLimit() {
	srv, err := engine.New(echo{}, engine.WithRateLimit(engine.RateLimit{
		Messages: 1, Per: time.Minute, Burst: 3,
		OnLimited: func(c *engine.Conn, n int, retry time.Duration) {
			if n == 1 { // once per run of dropped messages
				_ = c.SendText(fmt.Sprintf("slow down: try again in %.0f s", retry.Seconds()))
			}
		},
	}))
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		for _, m := range []string{"a", "b", "c", "d", "e"} {
			_ = c.WriteMessage(websocket.TextMessage, []byte(m))
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range 4 { // three echoes and one notice; "e" is dropped silently (Stats.RateLimited counts both)
			_, p, _ := c.ReadMessage()
			fmt.Println(string(p))
		}
	})
	// Output:
	// a
	// b
	// c
	// slow down: try again in 60 s
}

// An http.Handler on the WebSocket port: a mux whose handlers run on
// worker goroutines (they may block), with the health check answered on
// the event loop itself and every other request passed on.
func ExampleWithHTTPHandler() {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // read by the loop before the handler runs (WithMaxRequestBody)
		fmt.Fprintf(w, "you sent %q", body)
	})
	health := func(r *engine.Request) engine.HTTPResponse {
		if string(r.Path()) == "/healthz" {
			return engine.HTTPResponse{Body: []byte("ok")}
		}
		return engine.HTTPResponse{Pass: true} // to the mux
	}
	srv, err := engine.New(echo{}, engine.WithHTTPHandler(mux), engine.WithHTTPWorkers(16),
		engine.WithLoopHTTPHandler(health))
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		for _, req := range []struct{ method, path, body string }{{"GET", "/healthz", ""}, {"POST", "/echo", "hi"}} {
			r, _ := http.NewRequest(req.method, "http://"+addr+req.path, strings.NewReader(req.body))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				fmt.Println(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			fmt.Println(resp.StatusCode, string(b))
		}
		fmt.Println(roundTrip("ws://"+addr+"/", "and a WebSocket"))
	})
	// Output:
	// 200 ok
	// 200 you sent "hi"
	// and a WebSocket
}

// viewer is what the upgrade hook reads from the URL: the room and the
// position of the last message the client got, if it says.
type viewer struct {
	room  string
	since engine.Position
}

func viewerHook(r *engine.Request) (any, error) {
	off, _ := strconv.ParseUint(r.QueryValue("offset"), 10, 64)
	return viewer{r.QueryValue("room"), engine.Position{Epoch: r.QueryValue("epoch"), Offset: off}}, nil
}

// recovering joins each connection to its room with what it missed.
type recovering struct{ engine.BaseHandler }

func (recovering) OnOpen(c *engine.Conn) {
	v := c.Value().(viewer)                // the hook parsed ?room=R&epoch=E&offset=N
	rec, err := c.Recover(v.room, v.since) // instead of Join
	if err != nil {
		return
	}
	// rec.Recovered: the client got every message it missed, in order,
	// before any live one. If not, it must reload its state.
	_ = c.SendText(fmt.Sprintf(`{"type":"welcome","recovered":%t,"epoch":%q,"offset":%d}`,
		rec.Recovered, rec.Top.Epoch, rec.Top.Offset))
}

// envelope puts each message's position first into its JSON object:
// {"epoch":"9f…","offset":42,…the message's own fields…}
func envelope(dst []byte, room string, pos engine.Position, p []byte) []byte {
	dst = fmt.Appendf(dst, `{"epoch":%q,"offset":%d,`, pos.Epoch, pos.Offset)
	return append(dst, p[1:]...) // p is a JSON object with at least one field
}

// Room history: a client that comes back with the position of the last
// message it got receives what it missed, then the live messages.
func ExampleConn_Recover() {
	srv, err := engine.New(recovering{},
		engine.WithHistory(func(room string) engine.History {
			return engine.History{Size: 200, TTL: 5 * time.Minute} // every room; choose by name if you like
		}, envelope),
		engine.WithUpgradeHook(viewerHook), // reads the client's last position from the URL
	)
	if err != nil {
		log.Fatal(err)
	}
	serveWhile(srv, func(addr string) {
		ann, _, _ := websocket.DefaultDialer.Dial("ws://"+addr+"/?room=news", nil)
		fmt.Println(strings.Contains(read(ann), `"recovered":false`)) // new: nothing to recover
		var last struct {
			Epoch  string
			Offset uint64
		}
		for _, m := range []string{"one", "two"} {
			_, _ = srv.PublishPos("news", ws.OpText, []byte(`{"text":"`+m+`"}`))
			_ = json.Unmarshal([]byte(read(ann)), &last)
		}
		ann.Close() // dropped: what follows is missed
		_, _ = srv.PublishPos("news", ws.OpText, []byte(`{"text":"three"}`))
		_, _ = srv.PublishPos("news", ws.OpText, []byte(`{"text":"four"}`))

		url := fmt.Sprintf("ws://%s/?room=news&epoch=%s&offset=%d", addr, last.Epoch, last.Offset)
		ann, _, _ = websocket.DefaultDialer.Dial(url, nil)
		defer ann.Close()
		for range 3 {
			m := read(ann)
			fmt.Println(m[strings.Index(m, `"offset"`):])
		}
	})
	// Output:
	// true
	// "offset":3,"text":"three"}
	// "offset":4,"text":"four"}
	// "offset":4}
}
