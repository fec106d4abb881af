package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// mountedTest reports whether t runs under TestMounted: startServer then
// mounts the server on a net/http server instead of its own listener.
func mountedTest(t testing.TB) bool { return strings.HasPrefix(t.Name(), "TestMounted/") }

// startMounted runs a server's loops with Run and mounts it at every path
// of an http.Server's mux on 127.0.0.1, with TLS on the http.Server when
// opts carry WithTLS (which wsloop itself then does not do). It stops both
// when the test ends.
func startMounted(t testing.TB, h Handler, opts ...Option) (*Server, string) {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tlsCfg := o.tls
	if tlsCfg != nil {
		opts = append(opts, WithTLS(nil))
	}
	srv, err := New(h, append(append([]Option{}, testOptions...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(context.Background()) }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("loops not running within 10s")
	}
	addr := mountOn(t, srv, tlsCfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Run returned %v, want ErrServerClosed", err)
		}
	})
	return srv, addr
}

// mountOn serves srv at every path of an http.Server on 127.0.0.1 (with
// TLS when tlsCfg is not nil) until the test ends, and returns its address.
func mountOn(t testing.TB, srv *Server, tlsCfg *tls.Config) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	hs := &http.Server{Handler: mux, TLSConfig: tlsCfg}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if tlsCfg != nil {
			_ = hs.ServeTLS(ln, "", "")
		} else {
			_ = hs.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		mountedUpgrades.Add(srv.Stats().NetHTTPUpgrades)
		_ = hs.Close()
	})
	return ln.Addr().String()
}

// launch runs srv on 127.0.0.1 and returns the address to dial and the
// channel that gets ListenAndServe's (under TestMounted: Run's) result:
// on its own listener, or under TestMounted mounted on net/http.
func launch(t testing.TB, srv *Server) (string, <-chan error) {
	t.Helper()
	served := make(chan error, 1)
	if !mountedTest(t) {
		go func() { served <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
		<-srv.Ready()
		return srv.Addr().String(), served
	}
	go func() { served <- srv.Run(context.Background()) }()
	<-srv.Ready()
	return mountOn(t, srv, nil), served
}

// TestMounted runs tests written for wsloop's own listener against a
// server mounted on net/http (ServeHTTP), over plain TCP and over TLS set
// up on http.Server: Autobahn's cases, echo and close handshakes with
// gorilla, coder and Node's ws, rooms and fan-out, a slow consumer,
// heartbeats and eviction, compression, and Shutdown with 1001.
func TestMounted(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Autobahn", TestAutobahn},
		{"AutobahnTLS", TestAutobahnTLS},
		{"FramesWithUpgrade", TestFramesWithUpgrade},
		{"ByteAtATime", TestByteAtATime},
		{"PingPong", TestPingPong},
		{"ProtocolViolations", TestProtocolViolations},
		{"GorillaEcho", TestGorillaEcho},
		{"CoderEcho", TestCoderEcho},
		{"GorillaClientCloses", TestGorillaClientCloses},
		{"GorillaServerCloses", TestGorillaServerCloses},
		{"CoderCloseHandshakes", TestCoderCloseHandshakes},
		{"TLSEcho", TestTLSEcho},
		{"NodeWSS", TestNodeWSS},
		{"DeflateNode", TestDeflateNode},
		{"DeflateGorilla", TestDeflateGorilla},
		{"DeflateCoder", TestDeflateCoder},
		{"PublishRooms", TestPublishRooms},
		{"SlowConsumer", TestSlowConsumer},
		{"SendToKey", TestSendToKey},
		{"IdleEviction", TestIdleEviction},
		{"LiveClientStaysConnected", TestLiveClientStaysConnected},
		{"HalfDead", TestHalfDead},
		{"CloseTimeout", TestCloseTimeout},
		{"AppHeartbeat", TestAppHeartbeat},
		{"HandlerPanic", TestHandlerPanic},
		{"OnOpenPanic", TestOnOpenPanic},
		{"Shutdown", TestShutdown},
		{"ManyConnections", TestManyConnections},
		{"RateLimitBurstThenDrop", TestRateLimitBurstThenDrop},
		{"RateLimitClose", TestRateLimitClose},
		{"RateLimitBytes", TestRateLimitBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mountedUpgrades.Load()
			t.Cleanup(func() { // registered first: runs after the servers' cleanups
				if mountedUpgrades.Load() == before {
					t.Errorf("%s upgraded no connection through ServeHTTP", tc.name)
				}
			})
			tc.fn(t)
		})
	}
}

// mountedUpgrades adds up the servers' Stats.NetHTTPUpgrades as
// startMounted's servers stop: TestMounted checks that each test it runs
// did go through net/http.
var mountedUpgrades atomic.Uint64

// ctxKey is the type of the context value the middleware sets.
type ctxKey struct{}

// greeter sends each connection the value its upgrade hook returned, as a
// text message, and echoes.
type greeter struct{ echoHandler }

func (greeter) OnOpen(c *Conn) { _ = c.WriteMessage(ws.OpText, []byte(fmt.Sprint(c.Value()))) }

// A server mounted on an http.ServeMux behind middleware: the upgrade
// hook reads the value the middleware put in the request's context, the
// path after http.StripPrefix, and a header; plain requests to other
// routes of the same mux are served by net/http; a plain request to the
// WebSocket route gets 426; a route behind http.TimeoutHandler says why
// it cannot upgrade; gorilla and coder clients talk through it.
func TestMountServeMux(t *testing.T) {
	srv, err := New(greeter{}, append(append([]Option{}, testOptions...),
		WithCheckOrigin(AnyOrigin),
		WithUpgradeHook(func(r *Request) (any, error) {
			user, _ := r.Context().Value(ctxKey{}).(string)
			if user == "" {
				return nil, &RejectError{Status: 401, Reason: "who are you"}
			}
			if r.HTTPRequest() == nil {
				return nil, errors.New("no net/http request")
			}
			return fmt.Sprintf("hello %s at %s from %s", user, r.Path(), r.Header("X-Client")), nil
		}))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	<-srv.Ready()
	if srv.Addr() != nil {
		t.Errorf("Addr = %v without a listener, want nil", srv.Addr())
	}

	auth := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u := r.URL.Query().Get("user"); u != "" {
				r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, u))
			}
			next.ServeHTTP(w, r)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/live/", http.StripPrefix("/live", auth(srv)))
	mux.Handle("/slow/", http.TimeoutHandler(auth(srv), time.Second, "timeout"))
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "connections %d", srv.Stats().Connections)
	})
	hs := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	base := "ws://" + ln.Addr().String()

	hdr := http.Header{"X-Client": {"gorilla"}}
	c, resp, err := websocket.DefaultDialer.Dial(base+"/live/room?user=ann", hdr)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	op, msg, err := c.ReadMessage()
	if want := "hello ann at /room from gorilla"; err != nil || op != websocket.TextMessage || string(msg) != want {
		t.Fatalf("greeting: %d %q %v, want text %q", op, msg, err, want)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, []byte("ping me back")); err != nil {
		t.Fatal(err)
	}
	if op, msg, err = c.ReadMessage(); err != nil || op != websocket.BinaryMessage || string(msg) != "ping me back" {
		t.Fatalf("echo: %d %q %v", op, msg, err)
	}
	if st := srv.Stats(); st.NetHTTPUpgrades != 1 || st.Connections != 1 {
		t.Errorf("Stats: NetHTTPUpgrades %d, Connections %d; want 1, 1", st.NetHTTPUpgrades, st.Connections)
	}

	// The hook's refusal, through net/http.
	_, resp, err = websocket.DefaultDialer.Dial(base+"/live/room", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("without a user: %v, %v; want 401", err, resp)
	}
	// A plain request on the WebSocket route: 426 with Upgrade.
	r, err := http.Get("http://" + ln.Addr().String() + "/live/room?user=ann")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 426 || r.Header.Get("Upgrade") != "websocket" {
		t.Errorf("plain GET: %d Upgrade=%q; want 426 websocket", r.StatusCode, r.Header.Get("Upgrade"))
	}
	// Another route of the same mux, on the same port.
	r, err = http.Get("http://" + ln.Addr().String() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if string(body) != "connections 1" {
		t.Errorf("/stats: %q", body)
	}
	// Behind http.TimeoutHandler, whose writer cannot be hijacked.
	_, resp, err = websocket.DefaultDialer.Dial(base+"/slow/x?user=ann", nil)
	if err == nil || resp == nil || resp.StatusCode != 500 {
		t.Errorf("behind TimeoutHandler: %v, %v; want 500", err, resp)
	} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "TimeoutHandler") {
		t.Errorf("behind TimeoutHandler: body %q does not say why", b)
	}

	cancel() // Run shuts down: the mounted connection gets 1001
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("after shutdown: %v, want close 1001", err)
	}
	if err := <-runErr; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Run: %v", err)
	}
	// Once shut down, ServeHTTP refuses.
	_, resp, err = websocket.DefaultDialer.Dial(base+"/live/room?user=ann", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("after shutdown: %v, %v; want 503", err, resp)
	}
}

// Before Run, ServeHTTP answers 503.
func TestMountNotRunning(t *testing.T) {
	srv, err := New(echoHandler{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	defer hs.Close()
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/", nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("before Run: %v, %v; want 503", err, resp)
	}
}

// Frames the client sent right behind its request, which net/http read
// into its buffer, are not lost: a whole frame, and one cut where
// net/http's read ended, whose rest arrives later.
func TestMountPrefixBytes(t *testing.T) {
	_, addr := startMounted(t, echoHandler{})
	req := "GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	for _, cut := range []int{-1, 3, 9} {
		t.Run(fmt.Sprint("cut", cut), func(t *testing.T) {
			c := dialTCP(t, addr)
			defer c.Close()
			f1 := clientFrame(ws.OpText, true, []byte("first"))
			f2 := clientFrame(ws.OpBinary, true, []byte("second frame"))
			first := append([]byte(req), f1...)
			rest := f2
			if cut >= 0 {
				first, rest = append(first, f2[:cut]...), f2[cut:]
			} else {
				first, rest = append(first, f2...), nil
			}
			if _, err := c.Write(first); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			head, err := http.ReadResponse(br, nil)
			if err != nil || head.StatusCode != 101 {
				t.Fatalf("response: %v %v", head, err)
			}
			if rest != nil {
				time.Sleep(50 * time.Millisecond) // the loop has the socket and the cut frame's start
				if _, err := c.Write(rest); err != nil {
					t.Fatal(err)
				}
			}
			for _, want := range []string{"first", "second frame"} {
				f, err := ws.ReadFrame(br)
				if err != nil || string(f.Payload) != want {
					t.Fatalf("echo: %q %v, want %q", f.Payload, err, want)
				}
			}
		})
	}
}

// An upgraded connection holds no goroutine: 2,000 connections mounted on
// net/http, plain and over TLS, leave the goroutine count within a small
// constant of what it was before them.
func TestMountGoroutines(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "ws", true: "wss"}[withTLS], func(t *testing.T) {
			var opts []Option
			srvCfg, _ := testPKI()
			if withTLS {
				opts = append(opts, WithTLS(srvCfg))
			}
			_, addr := startMounted(t, newRecorder(), opts...)
			dial := func() (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
			if withTLS {
				cfg := clientTLS(tls.VersionTLS13)
				dial = func() (net.Conn, error) {
					return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
				}
			}
			n := 2000
			if raceEnabled {
				n = 500
			}
			runtime.GC()
			before := runtime.NumGoroutine()
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			// All connect, then all ask for the upgrade at once, so that
			// net/http hands them over concurrently; then the 101s are read.
			for i := range n {
				c, err := dial()
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				conns = append(conns, c)
			}
			req := []byte("GET /raw HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			for _, c := range conns {
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range conns {
				if head := readHTTPHead(t, c); !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
					t.Fatalf("bad upgrade response:\n%s", head)
				}
			}
			// Within 3 s: gnet's worker pool keeps an idle worker for 10 s,
			// and hand-offs without a bound left one per concurrent
			// hand-off (mountState.slots).
			var after int
			waitFor(t, 3*time.Second, "net/http's goroutines to end", func() bool {
				after = runtime.NumGoroutine()
				return after-before <= 10
			})
			t.Logf("%d connections: %d goroutines before, %d after", n, before, after)
			// They all still work.
			for i, c := range conns {
				if i%97 != 0 {
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(clientFrame(ws.OpText, true, []byte("alive"))); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
