package engine

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// Heartbeat, eviction and deadlines, with short timings.

const (
	tTick = 20 * time.Millisecond
	tPing = 200 * time.Millisecond
	tIdle = time.Second
	// slack allows for a shared, noisy machine on top of the one-tick bound.
	slack = 300 * time.Millisecond
)

var heartbeatOptions = []Option{WithTick(tTick), WithPingInterval(tPing), WithIdleTimeout(tIdle)}

// closeTimes records when each connection's OnClose ran.
type closeTimes struct {
	*recorder
	mu sync.Mutex
	at map[uint64]time.Time
}

func (h *closeTimes) OnClose(c *Conn, err error) {
	h.mu.Lock()
	h.at[c.ID()] = time.Now()
	h.mu.Unlock()
	h.recorder.OnClose(c, err)
}

func TestIdleEviction(t *testing.T) {
	h := &closeTimes{recorder: newRecorder(), at: map[uint64]time.Time{}}
	_, addr := startServer(t, h, heartbeatOptions...)
	c := upgradeRaw(t, addr) // then never reads, never answers, never sends FIN
	lastWrite := time.Now()  // upper bound of the upgrade request's send time: the server read it before
	ce := h.nextClose(t)
	evictedAfter := time.Since(lastWrite)
	if !errors.Is(ce, ErrIdleTimeout) || ce.Code != 1006 {
		t.Fatalf("OnClose got %+v, want 1006 with ErrIdleTimeout", ce)
	}
	t.Logf("evicted %v after the last read (idle timeout %v, tick %v)", evictedAfter, tIdle, tTick)
	if evictedAfter < tIdle {
		t.Fatalf("evicted after %v, before the idle timeout %v", evictedAfter, tIdle)
	}
	if evictedAfter > tIdle+tTick+slack {
		t.Fatalf("evicted after %v, want within idle timeout + tick (+%v slack)", evictedAfter, slack)
	}
	// The dead client had been pinged before it was evicted.
	f := readServerFrame(t, c)
	if f.Header.OpCode != ws.OpPing {
		t.Fatalf("first frame to the silent client is %v, want a ping", f.Header.OpCode)
	}
}

func TestLiveClientStaysConnected(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, rec, heartbeatOptions...)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pings atomic.Int64
	conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	msgs := make(chan string, 1)
	go func() { // reading answers pings
		for {
			_, p, err := conn.ReadMessage()
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(p)
		}
	}()
	// Ten idle timeouts without sending anything but pongs.
	select {
	case m, ok := <-msgs:
		t.Fatalf("unexpected message %q (open %v)", m, ok)
	case <-time.After(10 * tIdle):
	}
	if n := pings.Load(); n < 10*int64(tIdle/tPing)/2 {
		t.Fatalf("only %d pings in %v with a ping interval of %v", n, 10*tIdle, tPing)
	}
	select {
	case err := <-rec.closed:
		t.Fatalf("live client was closed: %v", err)
	default:
	}
	if err := conn.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if m != "hi" {
			t.Fatalf("echo %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo")
	}
}

// TestHalfDead: of 1,000 idle clients, exactly the 500 that do not answer
// pings are evicted, and the rest are still served.
func TestHalfDead(t *testing.T) {
	h := &closeTimes{recorder: newRecorder(), at: map[uint64]time.Time{}}
	srv, addr := startServer(t, h, heartbeatOptions...)
	const n = 1000
	var alive []*websocket.Conn
	for i := range n {
		if i%2 == 0 {
			upgradeRaw(t, addr) // dead: never reads
			continue
		}
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		alive = append(alive, conn)
		go func() { // answer pings until the test closes the connection
			for {
				if _, _, err := conn.NextReader(); err != nil {
					return
				}
			}
		}()
	}
	waitFor(t, 5*time.Second, "the dead half to be evicted", func() bool { _, c := h.counts(); return c >= n/2 })
	time.Sleep(3 * tIdle) // would any living one be evicted too?
	if _, c := h.counts(); c != n/2 {
		t.Fatalf("%d connections evicted, want exactly %d", c, n/2)
	}
	for range n / 2 {
		if ce := h.nextClose(t); !errors.Is(ce, ErrIdleTimeout) {
			t.Fatalf("OnClose got %v", ce)
		}
	}
	if got := srv.Connections(); got != n/2 {
		t.Fatalf("%d connections remain, want %d", got, n/2)
	}
	_ = alive // the pong answering goroutines keep them alive; see the count above
}

func TestHandshakeTimeout(t *testing.T) {
	srv, addr := startServer(t, echoHandler{}, WithTick(tTick), WithHandshakeTimeout(200*time.Millisecond))
	c := dialTCP(t, addr)
	start := time.Now()
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgr")) // slowloris: half a request, then nothing
	expectEOF(t, c)
	if d := time.Since(start); d < 200*time.Millisecond || d > 200*time.Millisecond+tTick+slack {
		t.Fatalf("dropped after %v, want at the 200ms handshake deadline", d)
	}
	silent := dialTCP(t, addr) // sends nothing at all
	expectEOF(t, silent)
	waitFor(t, time.Second, "sockets released", func() bool { return srv.sockets.Load() == 0 })
}

func TestCloseTimeout(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, closer{rec}, WithTick(tTick), WithCloseTimeout(300*time.Millisecond))
	c := upgradeRaw(t, addr)
	_, _ = c.Write(clientFrame(ws.OpText, true, []byte("close-me")))
	f := readServerFrame(t, c)
	if f.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v", f.Header.OpCode)
	}
	start := time.Now() // the client ignores the close frame
	expectEOF(t, c)
	if d := time.Since(start); d < 300*time.Millisecond-tTick || d > 300*time.Millisecond+tTick+slack {
		t.Fatalf("closed %v after the close frame, want at the 300ms close deadline", d)
	}
	ce := rec.nextClose(t)
	if ce.Code != 4000 || !errors.Is(ce, ErrCloseTimeout) {
		t.Fatalf("OnClose got %+v, want 4000 with ErrCloseTimeout", ce)
	}
}

// TestAppHeartbeat: a configured text message is answered by the server
// and keeps a client that cannot send protocol pings alive.
func TestAppHeartbeat(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, rec, append(heartbeatOptions, WithAppHeartbeat("ping", "pong"))...)
	c := upgradeRaw(t, addr)
	deadline := time.Now().Add(3 * tIdle)
	for time.Now().Before(deadline) { // a client that ignores protocol pings
		_, _ = c.Write(clientFrame(ws.OpText, true, []byte("ping")))
		for {
			f := readServerFrame(t, c)
			if f.Header.OpCode == ws.OpPing {
				continue
			}
			if f.Header.OpCode != ws.OpText || string(f.Payload) != "pong" {
				t.Fatalf("got %v %q, want the text pong", f.Header.OpCode, f.Payload)
			}
			break
		}
		time.Sleep(tPing)
	}
	select {
	case err := <-rec.closed:
		t.Fatalf("closed: %v", err)
	default:
	}
	// Other text still reaches OnMessage (the recorder echoes it).
	_, _ = c.Write(clientFrame(ws.OpText, true, []byte("pingx")))
	for {
		if f := readServerFrame(t, c); f.Header.OpCode == ws.OpText {
			if string(f.Payload) != "pingx" {
				t.Fatalf("got %q", f.Payload)
			}
			break
		}
	}
}
