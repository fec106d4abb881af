package engine

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestStats drives every counter of Stats over real sockets and checks the
// exact figures: upgrades, per-loop counts, messages and bytes both ways,
// rejected upgrades and an idle eviction.
func TestStats(t *testing.T) {
	srv, addr := startServer(t, echoHandler{},
		WithTick(10*time.Millisecond), WithPingInterval(300*time.Millisecond), WithIdleTimeout(600*time.Millisecond))

	if st := srv.Stats(); st.Connections != 0 || len(st.ConnsPerLoop) != 2 {
		t.Fatalf("fresh server: %+v", st)
	}

	// A bad upgrade (no Sec-WebSocket-Key) is rejected with 400 and counted.
	bad := dialTCP(t, addr)
	_, _ = bad.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	if head := readHTTPHead(t, bad); !bytes.HasPrefix(head, []byte("HTTP/1.1 400 ")) {
		t.Fatalf("bad upgrade answered with %q", head)
	}
	bad.Close() // the server waits for this (up to 500 ms) before closing its socket

	a, b := upgradeRaw(t, addr), upgradeRaw(t, addr)
	waitFor(t, 5*time.Second, "two connections", func() bool { return srv.Stats().Connections == 2 })
	waitFor(t, 5*time.Second, "two sockets", func() bool {
		st := srv.Stats()
		return st.ConnsPerLoop[0]+st.ConnsPerLoop[1] == 2
	})
	st := srv.Stats()
	if st.RejectedUpgrades != 1 {
		t.Fatalf("RejectedUpgrades = %d, want 1", st.RejectedUpgrades)
	}

	// Three 5-byte echoes on a: 3 messages and 15 payload bytes in, three
	// 7-byte frames out.
	for i := 0; i < 3; i++ {
		if _, err := a.Write(clientFrame(ws.OpText, true, []byte("hello"))); err != nil {
			t.Fatal(err)
		}
		if f := readServerFrame(t, a); string(f.Payload) != "hello" {
			t.Fatalf("echo %q", f.Payload)
		}
	}
	st = srv.Stats()
	if st.MessagesIn != 3 || st.BytesIn != 15 {
		t.Fatalf("in: %d messages, %d bytes; want 3, 15", st.MessagesIn, st.BytesIn)
	}
	if st.MessagesOut != 3 || st.BytesOut != 21 {
		t.Fatalf("out: %d messages, %d bytes; want 3, 21", st.MessagesOut, st.BytesOut)
	}

	// a answers nothing and sends nothing more: it is pinged, then evicted.
	// b keeps talking, so it stays.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := b.Write(clientFrame(ws.OpPong, true, nil)); err != nil {
				return
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, b) }()
	waitFor(t, 5*time.Second, "the eviction of a", func() bool { return srv.Stats().Evictions == 1 })
	close(stop)
	<-done
	st = srv.Stats()
	if st.Connections != 1 || st.Evictions != 1 {
		t.Fatalf("after eviction: %d connections, %d evictions; want 1, 1", st.Connections, st.Evictions)
	}
	if st.MessagesOut != 3 { // pings to a are control frames, not messages
		t.Fatalf("MessagesOut = %d, want the 3 echoes", st.MessagesOut)
	}
	if st.Dropped != 0 || st.SlowCloses != 0 {
		t.Fatalf("nothing was slow, yet Dropped=%d SlowCloses=%d", st.Dropped, st.SlowCloses)
	}
}
