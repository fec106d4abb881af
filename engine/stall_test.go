package engine

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// syncBuffer is a bytes.Buffer for a logger written from several
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStalledLoop: with two loops and a handler that blocks one of them
// for 4 s, new connections are upgraded and served by the other loop at
// once (they all waited for the stalled one before: 0 of 20 within 1 s);
// the stall is counted and logged at error level with the blocking
// handler on the loop's stack, and its return is logged; the stalled
// loop's connections are served once it is back.
func TestStalledLoop(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	srv, addr := startServer(t, stallHandler{newRecorder()}, WithEventLoops(2), WithLogger(logger), WithStallThreshold(time.Second))

	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	blocker, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	if err := blocker.WriteMessage(websocket.TextMessage, []byte("stall 4000")); err != nil {
		t.Fatal(err)
	}
	// The loop has been in the handler for a while (new sockets may go to
	// it during the first two ticks of a stall, before it misses a
	// heartbeat: a handful at most).
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	const n = 20
	took := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := d.Dial("ws://"+addr+"/", nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			msg := fmt.Sprintf("hello %d", i)
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				errs[i] = err
				return
			}
			if _, p, err := c.ReadMessage(); err != nil || string(p) != msg {
				errs[i] = fmt.Errorf("echo %q: %v", p, err)
				return
			}
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	fast := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("connection %d: %v", i, errs[i])
		}
		if took[i] > 0 && took[i] < time.Second {
			fast++
		}
	}
	t.Logf("%d of %d new connections upgraded and echoed within 1 s of a 4 s stall of the other loop; per loop: %v",
		fast, n, srv.Stats().ConnsPerLoop)
	if fast < n-2 {
		t.Errorf("only %d of %d new connections were served within 1 s while one of two loops was stalled", fast, n)
	}
	// The blocked connection is served once its loop is back.
	if err := blocker.WriteMessage(websocket.TextMessage, []byte("back")); err != nil {
		t.Fatal(err)
	}
	_ = blocker.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, p, err := blocker.ReadMessage(); err != nil || string(p) != "back" {
		t.Fatalf("an echo on the stalled loop after the stall: %q %v", p, err)
	}
	waitFor(t, 5*time.Second, "the stall counted and its end logged", func() bool {
		return srv.Stats().LoopStalls == 1 && strings.Contains(logs.String(), "stalled event loop is back")
	})
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "an event loop is stalled") ||
		!strings.Contains(out, "stallHandler.OnMessage") {
		t.Fatalf("the stall's log does not name the blocking handler:\n%s", out)
	}
}
