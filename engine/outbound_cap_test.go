package engine

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// The outbound cap on sends from another goroutine (WithMaxOutboundBytes):
// what the server holds for a connection whose client does not read stays
// under the cap plus one message, whatever the socket has taken, and every
// send past it is refused or dropped and counted.

// TestOutboundCapOffLoop: plain TCP.
func TestOutboundCapOffLoop(t *testing.T) {
	const capBytes = 64 << 10
	srv, addr := startServer(t, echoHandler{}, WithMaxOutboundBytes(capBytes))
	outboundCapOffLoop(t, srv, upgradeSlowReader(t, addr), capBytes, 0)
}

// TestTLSOutboundCapOffLoop: over TLS, where gnet's buffer holds records:
// TLS 1.3 adds 22 bytes to each, and the frames that wait in c.out when
// the loop flushes them become at most one record per 16 KiB.
func TestTLSOutboundCapOffLoop(t *testing.T) {
	const capBytes = 64 << 10
	srv, addr := tlsServer(t, echoHandler{}, WithMaxOutboundBytes(capBytes))
	outboundCapOffLoop(t, srv, upgradeSlowReaderTLS(t, addr), capBytes, (capBytes/(16<<10)+2)*22)
}

// held is what the server holds for c, read on c's loop: accepted is
// what the loop has taken for the socket (the frames in c.out and gnet's
// outbound buffer, records over TLS), and queued the sends waiting in the
// loop's queue for the loop to check them against the cap.
func held(c *Conn) (accepted, queued int, err error) {
	ch := make(chan [2]int, 1)
	err = c.loop.el.Execute(context.Background(), runFunc(func() {
		c.mu.Lock()
		n := len(c.out)
		c.mu.Unlock()
		if c.state.Load() != stateClosed {
			n += c.gc.OutboundBuffered()
		}
		ch <- [2]int{n, int(c.queued.Load())}
	}))
	if err != nil {
		return 0, 0, err
	}
	select {
	case r := <-ch:
		return r[0], r[1], nil
	case <-time.After(5 * time.Second):
		return 0, 0, errors.New("the loop did not run a task within 5 s")
	}
}

// outboundCapOffLoop sends to sc, whose client does not read, from the
// test's goroutine: first while its loop is blocked, so that every send
// past the cap is refused at once with ErrSlowConsumer, then 8 MiB while
// the loop runs, sampling on the loop what the server holds. What the loop
// has accepted for the socket stays under capBytes plus one frame (plus
// slack for TLS records), and the sends waiting for the loop's verdict
// under capBytes. Then the client reads everything: it gets every message
// that was not dropped, in order, and Stats.Dropped counts the others.
func outboundCapOffLoop(t *testing.T, srv *Server, c net.Conn, capBytes, slack int) {
	const (
		msgSize = 4 << 10
		stalled = 64
		total   = 8 << 20
		n       = stalled + total/msgSize
	)
	sc := onlyConn(t, srv)
	frameSize := msgSize + 4 // 2-byte length header for 126..65535 bytes
	limit := capBytes + frameSize + slack
	msg := make([]byte, msgSize)
	send := func(i int) error {
		binary.BigEndian.PutUint64(msg, uint64(i))
		err := sc.Send(msg)
		if err != nil && !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("send %d: %v", i, err)
		}
		return err
	}

	// The loop is blocked: nothing leaves, and the sends that do not fit
	// under the cap are refused at once, counted in Stats.Dropped.
	release, blocked := make(chan struct{}), make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	defer unblock()
	if err := sc.loop.el.Execute(context.Background(), runFunc(func() { close(blocked); <-release })); err != nil {
		t.Fatal(err)
	}
	<-blocked
	refused := 0
	for i := range stalled {
		if send(i) != nil {
			refused++
		}
	}
	dropped := srv.Stats().Dropped
	ba := sc.BufferedAmount()
	unblock()
	if want := stalled - capBytes/frameSize; refused != want || dropped != uint64(refused) {
		t.Errorf("%d sends of %d-byte frames while the loop was blocked, cap %d: %d refused with ErrSlowConsumer, Stats.Dropped %d; want %d refused and counted",
			stalled, frameSize, capBytes, refused, dropped, want)
	}
	if ba > capBytes {
		t.Errorf("BufferedAmount is %d with the loop blocked, over the cap %d", ba, capBytes)
	}

	// A goroutine samples on the loop while the test's goroutine sends,
	// pausing now and then so that the loop's flushes and the sends
	// overlap (a sender that never pauses has nearly everything refused).
	type peak struct{ accepted, queued, samples int }
	peaks := make(chan peak, 1)
	done := make(chan struct{})
	go func() {
		var p peak
		defer func() { peaks <- p }()
		for {
			select {
			case <-done:
				return
			default:
			}
			a, q, err := held(sc)
			if err != nil {
				t.Error(err)
				return
			}
			p.accepted, p.queued = max(p.accepted, a), max(p.queued, q)
			p.samples++
		}
	}()
	maxBA := 0
	deadline := time.Now().Add(30 * time.Second)
	for i := stalled; i < n; i++ {
		if send(i) != nil {
			refused++
		}
		maxBA = max(maxBA, sc.BufferedAmount())
		if i%4 == 3 {
			time.Sleep(20 * time.Microsecond)
		}
		if time.Now().After(deadline) {
			close(done)
			<-peaks
			t.Fatalf("%d sends took 30 s", i)
		}
	}
	close(done)
	p := <-peaks
	if a, q, err := held(sc); err == nil {
		p.accepted, p.queued = max(p.accepted, a), max(p.queued, q)
	}
	maxAccepted, maxQueued, samples := p.accepted, p.queued, p.samples
	dropped = srv.Stats().Dropped
	t.Logf("%d sends of %d bytes to a client that does not read: %d refused, %d dropped in all; sampled %d times on the loop, the server had accepted at most %d bytes for the socket and held at most %d in its queue; BufferedAmount at most %d; cap %d",
		n, msgSize, refused, dropped, samples, maxAccepted, maxQueued, maxBA, capBytes)
	if maxAccepted > limit {
		t.Errorf("the server held %d bytes for the socket, over the cap %d plus one frame (%d)", maxAccepted, capBytes, limit)
	}
	if maxQueued > capBytes {
		t.Errorf("%d bytes of sends waited in the loop's queue, over the cap %d", maxQueued, capBytes)
	}
	// BufferedAmount adds both, and gnet's figure as of the loop's last
	// look (an upper bound).
	if maxBA > limit+capBytes {
		t.Errorf("BufferedAmount reached %d, over twice the cap %d plus one frame", maxBA, capBytes)
	}
	if dropped < uint64(refused) {
		t.Errorf("Stats.Dropped is %d, fewer than the %d sends refused with ErrSlowConsumer", dropped, refused)
	}

	// The client reads at last: every message the server did not drop
	// arrives, in order, and then one sent once the socket has drained.
	got := make(chan []uint64, 1)
	go func() {
		var tags []uint64
		defer func() { got <- tags }()
		br := bufio.NewReaderSize(c, 64<<10)
		for {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			op, p, err := readMessage(br)
			if err != nil || op == ws.OpText {
				return
			}
			if len(p) != msgSize {
				t.Errorf("a message of %d bytes, want %d", len(p), msgSize)
				return
			}
			tags = append(tags, binary.BigEndian.Uint64(p))
		}
	}()
	waitFor(t, 10*time.Second, "the client to drain the server", func() bool { return sc.BufferedAmount() == 0 })
	if err := sc.SendText("end"); err != nil {
		t.Fatalf("a send once the client has read everything: %v", err)
	}
	tags := <-got
	for i := 1; i < len(tags); i++ {
		if tags[i] <= tags[i-1] {
			t.Fatalf("message %d has tag %d after %d", i, tags[i], tags[i-1])
		}
	}
	dropped = srv.Stats().Dropped
	if uint64(len(tags))+dropped != n {
		t.Fatalf("the client got %d messages and Stats.Dropped is %d: %d of %d sends are missing or counted twice",
			len(tags), dropped, int(n)-len(tags)-int(dropped), n)
	}
}

// TestSlowConsumerTryAgainLater: WithSlowConsumerPolicy(CloseTryAgainLater)
// closes a client that does not read with 1013, whether the send that
// passes the cap is refused at once by the sending goroutine (Send while
// the loop is blocked) or on the loop (Broadcast): the client finds the
// close frame behind the data it was sent, OnClose gets a *CloseError with
// 1013 and ErrSlowConsumer, and Stats.SlowCloses counts it.
func TestSlowConsumerTryAgainLater(t *testing.T) {
	const capBytes = 64 << 10
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithMaxOutboundBytes(capBytes), WithSlowConsumerPolicy(CloseTryAgainLater))
	msg := make([]byte, 4<<10)
	for i, how := range []string{"Send off the loop", "Broadcast"} {
		c := upgradeSlowReader(t, addr)
		sc := onlyConn(t, srv)
		switch how {
		case "Send off the loop":
			release, blocked := make(chan struct{}), make(chan struct{})
			unblock := sync.OnceFunc(func() { close(release) })
			if err := sc.loop.el.Execute(context.Background(), runFunc(func() { close(blocked); <-release })); err != nil {
				t.Fatal(err)
			}
			<-blocked
			var err error
			for n := 0; err == nil && n < 2*capBytes/len(msg); n++ {
				err = sc.Send(msg)
			}
			unblock()
			if !errors.Is(err, ErrSlowConsumer) {
				t.Fatalf("%s: sends past the cap with the loop blocked: %v, want ErrSlowConsumer", how, err)
			}
			if err := sc.Send(msg); !errors.Is(err, ErrClosed) {
				t.Fatalf("%s: a send after the slow-consumer close: %v, want ErrClosed", how, err)
			}
		case "Broadcast":
			// The loop checks each broadcast frame against the cap.
			deadline := time.Now().Add(10 * time.Second)
			for sc.state.Load() == stateOpen {
				if err := srv.Broadcast(ws.OpBinary, msg); err != nil && !errors.Is(err, ErrQueueFull) {
					t.Fatalf("%s: %v", how, err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: still open after 10 s of broadcasts to a client that does not read", how)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		// The client reads at last: data, then the close frame.
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			f, err := ws.ReadFrame(br)
			if err != nil {
				t.Fatalf("%s: no close frame: %v", how, err)
			}
			if f.Header.OpCode != ws.OpClose {
				continue
			}
			code, reason := ws.ParseCloseFrameData(f.Payload)
			if code != 1013 {
				t.Errorf("%s: the client got close %d %q, want 1013", how, code, reason)
			}
			_, _ = c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(code, "")))
			break
		}
		ce := rec.nextClose(t)
		if ce.Code != 1013 || !errors.Is(ce, ErrSlowConsumer) {
			t.Errorf("%s: OnClose got %+v, want 1013 with ErrSlowConsumer", how, ce)
		}
		if got := srv.Stats().SlowCloses; got != uint64(i+1) {
			t.Errorf("%s: Stats.SlowCloses is %d, want %d", how, got, i+1)
		}
		waitFor(t, 5*time.Second, "the connection to go", func() bool { return firstConn(srv) == nil })
	}
}
