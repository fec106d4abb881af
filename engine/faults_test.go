package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Faults: ping floods, stale backpressure figures, the order of calls from
// one goroutine, close races and the smaller protocol defects of issue 11.
// Each test here failed before the fix it covers.

// readFrames reads server frames from c until EOF or a read error and
// sends each on the returned channel, which is closed at the end.
func readFramesAsync(c net.Conn) <-chan ws.Frame {
	ch := make(chan ws.Frame, 1024)
	go func() {
		defer close(ch)
		br := bufio.NewReader(c)
		for {
			f, err := ws.ReadFrame(br)
			if err != nil {
				return
			}
			ch <- f
		}
	}()
	return ch
}

// TestPingFloodBounded: a client that sends pings and never reads must not
// grow the server's memory. Only the most recent ping is owed a pong once
// the socket backs up (RFC 6455 5.5.3), and what is queued stays under
// WithMaxOutboundBytes; another connection is served meanwhile.
func TestPingFloodBounded(t *testing.T) {
	const capBytes = 256 << 10
	srv, addr := startServer(t, echoHandler{}, WithMaxOutboundBytes(capBytes))
	pingFlood(t, srv, upgradeSlowReader(t, addr), capBytes, rawDialer(addr))
}

// TestTLSPingFloodBounded: the same over TLS, where the pongs are
// encrypted as they are queued and the cap counts the records.
func TestTLSPingFloodBounded(t *testing.T) {
	const capBytes = 256 << 10
	srv, addr := tlsServer(t, echoHandler{}, WithMaxOutboundBytes(capBytes))
	pingFlood(t, srv, upgradeSlowReaderTLS(t, addr), capBytes, tlsDialer(addr))
}

// pingFlood writes 32 MiB of pings on c, an upgraded connection to srv
// whose client does not read, and checks that the server's outbound bytes
// and its heap's peak stay bounded, that a probe connection opened with
// dial keeps getting echoes, and that the last ping gets the last pong.
func pingFlood(t *testing.T, srv *Server, c net.Conn, capBytes int, dial func(testing.TB) net.Conn) {
	sc := onlyConn(t, srv)
	probe := startProbe(t, dial)
	mem := startMemPeak(t)
	const flood = 32 << 20
	payload := bytes.Repeat([]byte{'p'}, 125)
	frame := clientFrame(ws.OpPing, true, payload)
	batch := bytes.Repeat(frame, 64<<10/len(frame))
	sent := 0
	maxBuffered := 0
	mark := probe.mark()
	deadline := time.Now().Add(30 * time.Second)
	for sent < flood || probe.since(mark) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, %d bytes of pings sent, %d echoes of the probe", sent, probe.since(mark))
		}
		if _, err := c.Write(batch); err != nil {
			t.Fatalf("after %d bytes of pings: %v", sent, err)
		}
		sent += len(batch)
		maxBuffered = max(maxBuffered, sc.BufferedAmount())
	}
	probe.halt() // its echoes are done: MessagesIn counts them all
	msgsIn := srv.Stats().MessagesIn
	// The last ping carries a payload of its own: its pong must be the
	// last one the client gets.
	last := clientFrame(ws.OpPing, true, []byte("last ping"))
	if _, err := c.Write(last); err != nil {
		t.Fatal(err)
	}
	// A data message after the flood: once the server has read it, it has
	// read every ping.
	if _, err := c.Write(clientFrame(ws.OpText, true, []byte("marker"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the server to read the flood", func() bool {
		return srv.Stats().MessagesIn == msgsIn+1
	})
	maxBuffered = max(maxBuffered, sc.BufferedAmount())
	t.Logf("%d MiB of pings: server outbound peaked at %d bytes (cap %d)", sent>>20, maxBuffered, capBytes)
	if maxBuffered > capBytes {
		t.Errorf("outbound bytes reached %d under a ping flood, over the cap %d", maxBuffered, capBytes)
	}
	// The cap, twice over in gnet's buffers, which round up to a power of
	// two, and a loop's scratch buffer.
	mem.check(t, 3*int64(capBytes)+4<<20, "a ping flood")
	probe.end(t)
	// The client reads at last: the final pong answers the final ping.
	frames := readFramesAsync(c)
	var lastPong []byte
	pongs := 0
	timeout := time.After(10 * time.Second)
	for lastPong == nil || string(lastPong) != "last ping" {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("connection ended after %d pongs, last %q", pongs, lastPong)
			}
			if f.Header.OpCode == ws.OpPong {
				pongs++
				lastPong = f.Payload
			}
		case <-timeout:
			t.Fatalf("no pong for the last ping after %d pongs (last %q)", pongs, lastPong)
		}
	}
	t.Logf("%d pongs for %d pings", pongs, sent/len(frame)+1)
}

// TestPingFloodPolicy: with a close policy, a pong that would pass the cap
// closes the connection like a data message would.
func TestPingFloodPolicy(t *testing.T) {
	const capBytes = 64 << 10
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithMaxOutboundBytes(capBytes), WithSlowConsumerPolicy(ClosePolicyViolation))
	c := upgradeSlowReader(t, addr)
	sc := onlyConn(t, srv)
	// Fill the outbound queue close to the cap with data the client does
	// not read.
	msg := make([]byte, 4<<10)
	for sc.BufferedAmount()+2*len(msg) < capBytes {
		if err := sc.Send(msg); err != nil {
			t.Fatalf("Send at %d buffered: %v", sc.BufferedAmount(), err)
		}
		time.Sleep(time.Millisecond)
	}
	frame := clientFrame(ws.OpPing, true, bytes.Repeat([]byte{'p'}, 125))
	batch := bytes.Repeat(frame, 64<<10/len(frame))
	stop := time.Now().Add(10 * time.Second)
	for time.Now().Before(stop) {
		if _, err := c.Write(batch); err != nil {
			break // closed by the server
		}
		o, cl := rec.counts()
		if o == 1 && cl == 1 {
			break
		}
	}
	ce := rec.nextClose(t)
	if ce.Code != 1008 || !errors.Is(ce, ErrSlowConsumer) {
		t.Fatalf("OnClose got %+v, want 1008 slow consumer", ce)
	}
}

// upgradeSlowReader is upgradeRaw with a receive buffer of 128 KiB, set
// before connecting so that the kernel does not grow it: a client that
// does not read backs the server up after a few MiB. (A buffer smaller than
// loopback's 64 KiB segment would make later reads crawl: the sender waits
// for a window of a full segment.)
// dialSlowReader dials addr with a 128 KiB receive buffer.
func dialSlowReader(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 128<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// upgradeSlowReader upgrades a connection whose receive buffer is small
// (128 KiB), so that a client that does not read backs the server up soon.
func upgradeSlowReader(t testing.TB, addr string) net.Conn {
	t.Helper()
	return upgradeOver(t, dialSlowReader(t, addr), addr)
}

// upgradeSlowReaderTLS is upgradeSlowReader over TLS 1.3.
func upgradeSlowReaderTLS(t testing.TB, addr string) net.Conn {
	t.Helper()
	tc := tls.Client(dialSlowReader(t, addr), clientTLS(tls.VersionTLS13))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return upgradeOver(t, tc, addr)
}

// onlyConn waits for the server's only connection and returns it.
func onlyConn(t *testing.T, srv *Server) *Conn {
	t.Helper()
	var sc *Conn
	waitFor(t, 5*time.Second, "the connection", func() bool { sc = firstConn(srv); return sc != nil })
	return sc
}

func firstConn(srv *Server) *Conn {
	var found *Conn
	srv.conns.Range(func(_ uint64, c *Conn) bool {
		found = c
		return false
	})
	return found
}

// TestBufferedAmountAfterDrain: once the client has read everything, the
// figure the cap is checked against must say so, even if the server has
// not touched the connection since.
func TestBufferedAmountAfterDrain(t *testing.T) {
	const capBytes = 1 << 20
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithMaxOutboundBytes(capBytes), WithSlowConsumerPolicy(ClosePolicyViolation))
	c := upgradeSlowReader(t, addr)
	sc := onlyConn(t, srv)
	msg := make([]byte, 64<<10)
	sent := 0
	for sc.BufferedAmount()+2*len(msg) <= capBytes {
		if err := sc.Send(msg); err != nil {
			t.Fatalf("Send %d: %v", sent, err)
		}
		sent++
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("sent %d messages, %d bytes buffered", sent, sc.BufferedAmount())
	stale := sc.BufferedAmount()
	// The client reads every message.
	br := bufio.NewReader(c)
	for i := range sent {
		if op, p, err := readMessage(br); err != nil || op != ws.OpBinary || len(p) != len(msg) {
			t.Fatalf("message %d: %v %d %v", i, op, len(p), err)
		}
	}
	// Nothing is buffered any more: a healthy consumer may be sent a
	// message that would not have fitted behind what it has just read.
	big := make([]byte, capBytes-stale+len(msg))
	if err := sc.Send(big); err != nil {
		t.Fatalf("Send after the client read everything: %v (BufferedAmount %d)", err, sc.BufferedAmount())
	}
	if op, p, err := readMessage(br); err != nil || op != ws.OpBinary || len(p) != len(big) {
		t.Fatalf("last message: %v %d %v", op, len(p), err)
	}
	waitFor(t, 3*time.Second, "BufferedAmount to fall to 0", func() bool { return sc.BufferedAmount() == 0 })
	if o, cl := rec.counts(); o != 1 || cl != 0 {
		t.Fatalf("opens %d closes %d: the healthy consumer was closed", o, cl)
	}
}

// stallHandler blocks its loop for the duration named in a "stall N"
// message (a test of what happens to other connections meanwhile).
type stallHandler struct{ *recorder }

func (h stallHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if ms, ok := bytes.CutPrefix(p, []byte("stall ")); ok {
		n, _ := strconv.Atoi(string(ms))
		time.Sleep(time.Duration(n) * time.Millisecond)
		return
	}
	_ = c.WriteMessage(op, p)
}

// TestCloseDuringLoopStall: Close from another goroutine while the loop is
// busy and heartbeats are due. Every client gets what was sent before the
// close frame, then the close frame; OnClose reports the completed
// handshake, not a close timeout.
func TestCloseDuringLoopStall(t *testing.T) {
	const n = 50
	rec := newRecorder()
	srv, addr := startServer(t, stallHandler{rec}, WithEventLoops(1), WithTick(10*time.Millisecond),
		WithPingInterval(30*time.Millisecond), WithIdleTimeout(10*time.Second), WithCloseTimeout(3*time.Second))
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = upgradeRaw(t, addr)
	}
	waitFor(t, 5*time.Second, "opens", func() bool { o, _ := rec.counts(); return o == n })
	var conns []*Conn
	srv.conns.Range(func(_ uint64, c *Conn) bool { conns = append(conns, c); return true })
	// Each client answers pings and the close frame, and records data.
	var wg sync.WaitGroup
	got := make([][]string, n)
	closeCode := make([]ws.StatusCode, n)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for {
				f, err := ws.ReadFrame(br)
				if err != nil {
					return
				}
				switch f.Header.OpCode {
				case ws.OpPing:
					_, _ = c.Write(clientFrame(ws.OpPong, true, f.Payload))
				case ws.OpText:
					got[i] = append(got[i], string(f.Payload))
				case ws.OpClose:
					closeCode[i], _ = ws.ParseCloseFrameData(f.Payload)
					_, _ = c.Write(clientFrame(ws.OpClose, true, f.Payload))
				}
			}
		}()
	}
	// Stall the loop, let heartbeats fall due, then close everyone.
	if _, err := clients[0].Write(clientFrame(ws.OpText, true, []byte("stall 150"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	for _, c := range conns {
		if err := c.SendText("before close"); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(1000, "bye"); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	timeouts := 0
	for range n {
		ce := rec.nextClose(t)
		if errors.Is(ce, ErrCloseTimeout) || ce.Code != 1000 {
			timeouts++
			t.Logf("OnClose: %v", ce)
		}
	}
	for i := range n {
		if len(got[i]) != 1 || got[i][0] != "before close" || closeCode[i] != 1000 {
			t.Errorf("client %d got %q and close code %d, want [before close] then 1000", i, got[i], closeCode[i])
		}
	}
	if timeouts > 0 {
		t.Fatalf("%d of %d closes did not complete the handshake", timeouts, n)
	}
}

// orderHandler binds every connection to the key in its path.
type orderHandler struct{ *recorder }

func (h orderHandler) OnOpen(c *Conn) {
	h.recorder.OnOpen(c)
	_ = c.Bind("k" + strconv.FormatUint(c.ID(), 10))
	_ = c.Join("room")
}

// TestCallOrder: frames from one goroutine to one connection leave in call
// order, whichever call produced them, and Close's frame comes after all.
func TestCallOrder(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, orderHandler{rec})
	for round := range 50 {
		c := upgradeRaw(t, addr)
		var sc *Conn
		waitFor(t, 5*time.Second, "join", func() bool {
			m := srv.RoomMembers("room") // applied joins (RoomLen also counts queued ones)
			if len(m) != 1 {
				return false
			}
			sc = m[0]
			_, ok := srv.ConnByKey("k" + strconv.FormatUint(sc.ID(), 10))
			return ok
		})
		key := "k" + strconv.FormatUint(sc.ID(), 10)
		const perRound = 40
		var err error
		for i := range perRound {
			msg := []byte(strconv.Itoa(i))
			switch i % 5 {
			case 0:
				err = sc.Send(msg)
			case 1:
				err = srv.Publish("room", ws.OpBinary, msg)
			case 2:
				err = srv.Broadcast(ws.OpBinary, msg)
			case 3:
				_, err = srv.SendTo([]uint64{sc.ID()}, ws.OpBinary, msg)
			case 4:
				err = srv.SendToKey(key, ws.OpBinary, msg)
			}
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if err := srv.Publish("room", ws.OpBinary, []byte("last")); err != nil {
			t.Fatal(err)
		}
		if err := sc.Close(1000, "done"); err != nil {
			t.Fatal(err)
		}
		frames := readFramesAsync(c)
		want := 0
		for f := range frames {
			switch f.Header.OpCode {
			case ws.OpBinary:
				if want == perRound {
					if string(f.Payload) != "last" {
						t.Fatalf("round %d: got %q after the %d numbered messages, want \"last\"", round, f.Payload, perRound)
					}
					want++
					continue
				}
				if string(f.Payload) != strconv.Itoa(want) {
					t.Fatalf("round %d: got message %q, want %d", round, f.Payload, want)
				}
				want++
			case ws.OpClose:
				if want != perRound+1 {
					t.Fatalf("round %d: close frame after %d of %d messages", round, want, perRound+1)
				}
				_, _ = c.Write(clientFrame(ws.OpClose, true, f.Payload))
			}
		}
		if want != perRound+1 {
			t.Fatalf("round %d: got %d of %d messages", round, want, perRound+1)
		}
		rec.nextClose(t)
	}
}

// TestCloseReasonUTF8: a close reason that is not valid UTF-8 is refused
// with an error and nothing is sent.
func TestCloseReasonUTF8(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec)
	c := upgradeRaw(t, addr)
	sc := onlyConn(t, srv)
	if err := sc.Close(1000, "bad \xff reason"); err == nil {
		t.Fatal("Close with an invalid UTF-8 reason returned nil")
	}
	// Still open: an echo works, then a valid close.
	_, _ = c.Write(clientFrame(ws.OpText, true, []byte("still open")))
	if f := readServerFrame(t, c); f.Header.OpCode != ws.OpText || string(f.Payload) != "still open" {
		t.Fatalf("got %v %q", f.Header.OpCode, f.Payload)
	}
	if err := sc.Close(1000, "ok ✓"); err != nil {
		t.Fatal(err)
	}
	f := readServerFrame(t, c)
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if f.Header.OpCode != ws.OpClose || code != 1000 || reason != "ok ✓" {
		t.Fatalf("got %v %d %q", f.Header.OpCode, code, reason)
	}
}

// TestCloseAfterViolationInSameRead: a close frame that arrives in the same
// read as a protocol violation is answered at once (the server closes the
// TCP connection), not at the close timeout.
func TestCloseAfterViolationInSameRead(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, rec, WithCloseTimeout(30*time.Second))
	for _, tc := range []struct {
		name string
		bad  []byte
		code ws.StatusCode
	}{
		{"reserved opcode", rawFrame(0x83, true, 0, nil), 1002},
		{"invalid UTF-8", clientFrame(ws.OpText, true, []byte{0xff, 0xfe}), 1007},
		{"unmasked", rawFrame(0x81, false, 2, []byte("hi")), 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := upgradeRaw(t, addr)
			in := append(append([]byte{}, tc.bad...), clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(1000, ""))...)
			start := time.Now()
			if _, err := c.Write(in); err != nil {
				t.Fatal(err)
			}
			f := readServerFrame(t, c)
			if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != tc.code {
				t.Fatalf("got %v %d, want close %d", f.Header.OpCode, code, tc.code)
			}
			expectEOF(t, c)
			ce := rec.nextClose(t)
			t.Logf("closed after %v: %v", time.Since(start), ce)
			if ce.Code != tc.code || errors.Is(ce, ErrCloseTimeout) {
				t.Fatalf("OnClose got %+v", ce)
			}
		})
	}
}

// TestFailWithBacklogSendsFIN: a connection failed while its outbound
// buffer is backed up still gets its FIN once the buffer drains, so the
// peer sees the close frame and then EOF without waiting for the close
// timeout.
func TestFailWithBacklogSendsFIN(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithCloseTimeout(30*time.Second))
	c := upgradeSlowReader(t, addr)
	sc := onlyConn(t, srv)
	msg := make([]byte, 64<<10)
	sent := 0
	for sc.BufferedAmount() < 256<<10 {
		if err := sc.Send(msg); err != nil {
			t.Fatal(err)
		}
		sent++
		time.Sleep(time.Millisecond)
	}
	// A protocol violation while the server's output is backed up.
	if _, err := c.Write(rawFrame(0x83, true, 0, nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the failure", func() bool { return sc.state.Load() == stateFailed })
	failedAt := time.Now()
	br := bufio.NewReader(c)
	for i := range sent {
		if _, p, err := readMessage(br); err != nil || len(p) != len(msg) {
			t.Fatalf("message %d: %d bytes, %v", i, len(p), err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ws.ReadFrame(br)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("after the data: %v %v, want the close frame", f.Header.OpCode, err)
	}
	// Then EOF (the FIN), long before the 30 s close timeout.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the close frame: %v, want EOF", err)
	}
	t.Logf("EOF %v after the failure", time.Since(failedAt))
	if d := time.Since(failedAt); d > 15*time.Second {
		t.Fatalf("EOF %v after the failure: the FIN waited for the close timeout", d)
	}
}

// TestNoTimerAfterClose: a connection whose write fails while its timer
// runs (the heartbeat's ping, here) leaves no timer armed on the wheel.
func TestNoTimerAfterClose(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithEventLoops(1), WithTick(10*time.Millisecond),
		WithPingInterval(time.Second), WithIdleTimeout(10*time.Second))
	c := upgradeRaw(t, addr)
	defer c.Close()
	sc := onlyConn(t, srv)
	// Shut the server side's write half down, so that the next ping's
	// write fails (EPIPE) inside the heartbeat.
	done := make(chan struct{})
	_ = sc.loop.el.Execute(context.Background(), runFunc(func() {
		_ = syscall.Shutdown(sc.gc.Fd(), syscall.SHUT_WR)
		close(done)
	}))
	<-done
	ce := rec.nextClose(t)
	t.Logf("closed: %v", ce)
	// Look at the wheel right after the event that closed the connection.
	armed := make(chan int, 1)
	_ = sc.loop.el.Execute(context.Background(), runFunc(func() { armed <- sc.loop.wheel.Len() }))
	if n := <-armed; n != 0 {
		t.Fatalf("%d timers armed on the wheel after its only connection closed", n)
	}
}

type runFunc func()

func (f runFunc) Run(context.Context) error { f(); return nil }

// TestEvictWhileSending: data sent from other goroutines while a
// connection is evicted never follows its close frame.
func TestEvictWhileSending(t *testing.T) {
	const n = 100
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithTick(10*time.Millisecond), WithPingInterval(100*time.Millisecond),
		WithIdleTimeout(300*time.Millisecond))
	clients := make([]net.Conn, n)
	for i := range clients {
		clients[i] = upgradeRaw(t, addr) // silent: they will be evicted
	}
	waitFor(t, 5*time.Second, "opens", func() bool { o, _ := rec.counts(); return o == n })
	var conns []*Conn
	srv.conns.Range(func(_ uint64, c *Conn) bool { conns = append(conns, c); return true })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte("data")
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := g; i < n; i += 4 {
					_ = conns[i].Send(msg)
				}
			}
		}()
	}
	for range n {
		rec.nextClose(t)
	}
	close(stop)
	wg.Wait()
	bad := 0
	for i, c := range clients {
		sawClose := false
		for f := range readFramesAsync(c) {
			if f.Header.OpCode == ws.OpClose {
				sawClose = true
			} else if sawClose && f.Header.OpCode.IsData() {
				bad++
				t.Logf("client %d: %v frame after the close frame", i, f.Header.OpCode)
				break
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d evicted clients got data after the close frame", bad, n)
	}
}

// TestConnectionCapUnderRace: many clients dialing at once never get more
// sockets past WithMaxConnections than the cap.
func TestConnectionCapUnderRace(t *testing.T) {
	const capN = 20
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithMaxConnections(capN), WithEventLoops(2))
	var peak atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s := int64(srv.Stats().Sockets); s > peak.Load() {
				peak.Store(s)
			}
		}
	}()
	upgrades := atomic.Int64{}
	var heldMu sync.Mutex
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				_, _ = c.Write([]byte(upgradeReq))
				buf := make([]byte, 12)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, _ := io.ReadFull(c, buf); n == 12 && string(buf) == "HTTP/1.1 101" {
					upgrades.Add(1)
					heldMu.Lock()
					held = append(held, c) // hold it to the end
					heldMu.Unlock()
				} else {
					c.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("%d upgrades held, peak sockets %d (cap %d)", upgrades.Load(), peak.Load(), capN)
	if peak.Load() > capN {
		t.Fatalf("sockets peaked at %d, over the cap %d", peak.Load(), capN)
	}
	if upgrades.Load() > capN {
		t.Fatalf("%d upgrades held, over the cap %d", upgrades.Load(), capN)
	}
}

// TestQueueBound: a publisher faster than the loop is told with
// ErrQueueFull (and Stats.QueueFull) once the loop's queue holds
// WithMaxQueuedBytes; nothing blocks, and publishing works again once the
// loop has caught up.
func TestQueueBound(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, stallHandler{rec}, WithEventLoops(1), WithMaxQueuedBytes(64<<10))
	c := upgradeRaw(t, addr)
	waitFor(t, 5*time.Second, "the connection", func() bool { return firstConn(srv) != nil })
	if _, err := c.Write(clientFrame(ws.OpText, true, []byte("stall 300"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the loop is now asleep in OnMessage
	msg := make([]byte, 1024)
	full, ok := 0, 0
	start := time.Now()
	for range 200 {
		switch err := srv.Broadcast(ws.OpBinary, msg); {
		case errors.Is(err, ErrQueueFull):
			full++
		case err == nil:
			ok++
		default:
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("200 broadcasts took %v while the loop was stalled: they blocked", d)
	}
	t.Logf("%d queued, %d refused while the loop was stalled", ok, full)
	if full == 0 || ok == 0 {
		t.Fatalf("queued %d, refused %d: want both", ok, full)
	}
	if got := srv.Stats().QueueFull; got != uint64(full) {
		t.Fatalf("Stats.QueueFull %d, want %d", got, full)
	}
	// The client gets every queued message, then new ones again.
	br := bufio.NewReader(c)
	for i := range ok {
		if _, p, err := readMessage(br); err != nil || len(p) != len(msg) {
			t.Fatalf("message %d: %d bytes, %v", i, len(p), err)
		}
	}
	waitFor(t, 5*time.Second, "the queue to drain", func() bool { return !firstConn(srv).loop.pub.active.Load() })
	if err := srv.Broadcast(ws.OpText, []byte("again")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := readMessage(br); err != nil || string(p) != "again" {
		t.Fatalf("after the stall: %q %v", p, err)
	}
}

// connGrab hands each opened connection to the test.
type connGrab struct {
	echoHandler
	ch chan *Conn
}

func (h *connGrab) OnOpen(c *Conn) { h.ch <- c }

// TestQueueArenaReuse: frames queued for one connection while the loop
// drains are never overwritten by later ones, also after a drain whose
// frames passed 1 MiB (the loop then drops that buffer instead of keeping
// it for reuse; it once kept the one the senders were already writing
// into). Every tagged frame carries its tag and the tag's low byte
// repeated; the client must get every frame whose call returned nil,
// intact, and each producer's in order.
func TestQueueArenaReuse(t *testing.T) {
	h := &connGrab{ch: make(chan *Conn, 1)}
	srv, addr := startServer(t, h, WithEventLoops(1), WithMaxOutboundBytes(256<<20), WithMaxQueuedBytes(256<<20))
	c := upgradeRaw(t, addr)
	sc := <-h.ch
	const producers = 4
	var (
		mu     sync.Mutex
		frames int                 // frames read
		bad    []string            // corrupted frames
		sizes  = map[uint64]int{}  // tag -> length of the frames sent before the producers start
		seen   [producers][]uint32 // each producer's tags, in the order read
		readEr error
	)
	go func() {
		br := bufio.NewReaderSize(c, 1<<20)
		for {
			f, err := ws.ReadFrame(br)
			mu.Lock()
			if err != nil {
				readEr = err
				mu.Unlock()
				return
			}
			frames++
			p := f.Payload
			if len(p) >= 8 {
				tag := binary.BigEndian.Uint64(p)
				for i := 8; i < len(p); i++ {
					if p[i] != byte(tag) {
						bad = append(bad, fmt.Sprintf("frame of %d bytes, tag %x: byte %d is %x", len(p), tag, i, p[i]))
						break
					}
				}
				if g := tag >> 32; g >= 1 && g <= producers {
					seen[g-1] = append(seen[g-1], uint32(tag))
				} else {
					sizes[tag] = len(p)
				}
			} // else one of the broadcasts that keep the queue busy
			mu.Unlock()
		}
	}()
	read := func() int {
		mu.Lock()
		defer mu.Unlock()
		return frames
	}
	waitRead := func(n int, what string) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() bool { return read() >= n })
	}
	tagged := func(tag uint64, n int) []byte {
		p := make([]byte, n)
		binary.BigEndian.PutUint64(p, tag)
		for i := 8; i < n; i++ {
			p[i] = byte(tag)
		}
		return p
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// A small drain, then one of more than 1 MiB: sends take the queue
	// while a broadcast is queued ahead of them.
	must("broadcast", srv.Broadcast(ws.OpText, []byte("x")))
	must("send tag 1", sc.Send(tagged(1, 100)))
	waitRead(2, "the first drain's two frames")
	must("broadcast", srv.Broadcast(ws.OpText, []byte("x")))
	must("send tag 2", sc.Send(tagged(2, 2<<20)))
	waitRead(4, "the big drain's two frames")
	// Then producers racing with the drains, for a second or 20,000
	// rounds each.
	stop := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	var sent [producers]int
	var broadcasts atomic.Int64
	for g := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); i < 20000 && time.Now().Before(stop); i++ {
				if err := srv.Broadcast(ws.OpText, []byte("x")); err != nil {
					t.Errorf("producer %d, broadcast %d: %v", g, i, err)
					return
				}
				broadcasts.Add(1)
				if err := sc.Send(tagged(uint64(g+1)<<32|i, 200+int(i%50))); err != nil {
					t.Errorf("producer %d, send %d: %v", g, i, err)
					return
				}
				sent[g]++
			}
		}()
	}
	wg.Wait()
	want := 4 + int(broadcasts.Load())
	for _, n := range sent {
		want += n
	}
	if want < 4+2*producers*100 {
		t.Fatalf("only %d frames sent in a second", want)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n, nbad, err := frames, len(bad), readEr
		first := ""
		if nbad > 0 {
			first = bad[0]
		}
		mu.Unlock()
		switch {
		case nbad > 0:
			t.Fatalf("%d corrupted frames among the first %d; the first: %s", nbad, n, first)
		case err != nil:
			t.Fatalf("reading frame %d of %d: %v", n+1, want, err)
		case time.Now().After(deadline):
			t.Fatalf("the client read %d frames of %d within 30 s", n, want)
		}
		if n >= want {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Nothing more arrives.
	must("a last broadcast", srv.Broadcast(ws.OpText, []byte("x")))
	waitRead(want+1, "the last broadcast")
	mu.Lock()
	defer mu.Unlock()
	if frames != want+1 {
		t.Fatalf("the client read %d frames, %d were sent", frames, want+1)
	}
	if len(bad) > 0 {
		t.Fatalf("%d corrupted frames of %d; the first: %s", len(bad), frames, bad[0])
	}
	if sizes[1] != 100 || sizes[2] != 2<<20 || len(sizes) != 2 {
		t.Fatalf("the first two sends arrived as %v, want tag 1 with 100 bytes and tag 2 with 2 MiB", sizes)
	}
	for g := range producers {
		if len(seen[g]) != sent[g] {
			t.Fatalf("producer %d sent %d frames, the client got %d", g, sent[g], len(seen[g]))
		}
		for i, tag := range seen[g] {
			if tag != uint32(i) {
				t.Fatalf("producer %d: frame %d carries tag %d", g, i, tag)
			}
		}
	}
	t.Logf("%d frames read, all intact and in order (%d broadcasts)", frames, broadcasts.Load()+3)
}

// TestBroadcastThenShutdown: Shutdown's 1001 follows everything published
// before it: a broadcast that returned nil is delivered before the close
// frame.
func TestBroadcastThenShutdown(t *testing.T) {
	for round := range 10 {
		srv, errc := serve(t, echoHandler{}, "127.0.0.1:0", WithEventLoops(1))
		c := upgradeRaw(t, srv.Addr().String())
		waitFor(t, 5*time.Second, "open", func() bool { return srv.Connections() == 1 })
		type result struct{ n, code int }
		got := make(chan result, 1)
		go func() {
			br := bufio.NewReader(c)
			var r result
			for {
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				f, err := ws.ReadFrame(br)
				if err != nil {
					break
				}
				if f.Header.OpCode == ws.OpClose {
					r.code = int(binary.BigEndian.Uint16(f.Payload))
					_, _ = c.Write(clientFrame(ws.OpClose, true, f.Payload[:2]))
					break
				}
				r.n++
			}
			got <- r
		}()
		accepted := 0
		for i := range 2000 {
			if srv.Broadcast(ws.OpText, []byte(strconv.Itoa(i))) == nil {
				accepted++
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
		<-errc
		if r := <-got; r.n != accepted || r.code != 1001 {
			t.Fatalf("round %d: %d broadcasts accepted, the client got %d, then close %d", round, accepted, r.n, r.code)
		}
	}
}

// TestRefusedGets503: a client refused at the cap reads the 503, also when
// its request reached the socket before the server accepted it (closing a
// socket with unread input would reset it).
func TestRefusedGets503(t *testing.T) {
	srv, addr := startServer(t, echoHandler{}, WithMaxConnections(1))
	upgradeRaw(t, addr)
	waitFor(t, 5*time.Second, "open", func() bool { return srv.Connections() == 1 })
	req := upgradeReq
	for i := range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			time.Sleep(time.Millisecond) // let the server accept first
		}
		_, _ = c.Write([]byte(req))
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		// A request that reached the socket after the server closed it is
		// answered with RST, after the response: the client has it all.
		if string(b) != string(busyResponse) || err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("refused client %d read %q, %v", i, b, err)
		}
	}
}

// TestUnixSocket: "unix:///path" listens on a Unix socket, end to end.
func TestUnixSocket(t *testing.T) {
	path := t.TempDir() + "/ws.sock"
	srv, errc := serve(t, echoHandler{}, "unix://"+path)
	if a := srv.Addr(); a == nil || a.String() != path {
		t.Fatalf("Addr() = %v, want %s", a, path)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(upgradeReq))
	readHTTPHead(t, c)
	_, _ = c.Write(clientFrame(ws.OpText, true, []byte("over a unix socket")))
	if f := readServerFrame(t, c); string(f.Payload) != "over a unix socket" {
		t.Fatalf("echo %q", f.Payload)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, c) }() // the 1001 is not answered: closed at the close timeout
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the socket file is left behind: %v", err)
	}
}
