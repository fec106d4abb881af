package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// panicker panics in OnMessage on "panic" and in OnOpen for path /panic-open.
type panicker struct{ *recorder }

func (p panicker) OnMessage(c *Conn, op ws.OpCode, b []byte) {
	if string(b) == "panic" {
		panic("boom")
	}
	_ = c.WriteMessage(op, b)
}

func TestHandlerPanic(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, panicker{rec})
	other := upgradeRaw(t, addr)

	c := upgradeRaw(t, addr)
	_, _ = c.Write(clientFrame(ws.OpText, true, []byte("panic")))
	expectClose(t, c, 1011)
	ce := rec.nextClose(t)
	var pe *PanicError
	if ce.Code != 1011 || !errors.As(ce, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
		t.Fatalf("OnClose got %+v, want 1011 with the panic", ce)
	}
	// The connection opened before the panic is still served, and so are new ones.
	_, _ = other.Write(clientFrame(ws.OpText, true, []byte("ok")))
	if f := readServerFrame(t, other); string(f.Payload) != "ok" {
		t.Fatalf("got %q", f.Payload)
	}
	checkStillServing(t, addr)
}

// openPanicker panics in OnOpen.
type openPanicker struct{ *recorder }

func (p openPanicker) OnOpen(c *Conn) {
	p.recorder.OnOpen(c)
	panic("open boom")
}

func TestOnOpenPanic(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, openPanicker{rec})
	c := upgradeRaw(t, addr)
	expectClose(t, c, 1011)
	if ce := rec.nextClose(t); ce.Code != 1011 {
		t.Fatalf("OnClose got %+v", ce)
	}
	if o, cl := rec.counts(); o != 1 || cl != 1 {
		t.Fatalf("opens %d closes %d", o, cl)
	}
}

// TestShutdown: live clients get 1001 and answer; one that never answers is
// closed at the deadline; ListenAndServe returns after every OnClose.
func TestShutdown(t *testing.T) {
	rec := newRecorder()
	srv, err := New(rec, append(testOptions, WithCloseTimeout(30*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	addr, served := launch(t, srv)

	const n = 20
	got := make(chan int, n)
	for range n {
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() {
			_, _, err := conn.ReadMessage() // gorilla answers the close frame
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				got <- ce.Code
			} else {
				got <- -1
			}
		}()
	}
	deaf := upgradeRaw(t, addr) // never reads, never answers
	waitFor(t, 5*time.Second, "all connections open", func() bool { return srv.Connections() == n+1 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err = srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v, want the deadline (one client never answers)", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Shutdown took %v with a 2s deadline", d)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe returned %v", err)
	}
	if o, c := rec.counts(); o != n+1 || c != n+1 {
		t.Fatalf("when ListenAndServe returned: %d OnOpen, %d OnClose", o, c)
	}
	for range n {
		if code := <-got; code != 1001 {
			t.Fatalf("client saw close %d, want 1001", code)
		}
	}
	f := readServerFrame(t, deaf)
	if code, _ := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != 1001 {
		t.Fatalf("deaf client got %v %d", f.Header.OpCode, code)
	}
	shutdownCount := 0
	for range n + 1 {
		ce := rec.nextClose(t)
		if errors.Is(ce, ErrServerShutdown) && ce.Code == 1001 {
			shutdownCount++
		}
	}
	if shutdownCount != n+1 {
		t.Fatalf("%d of %d OnClose errors carry ErrServerShutdown", shutdownCount, n+1)
	}
	// New connections are refused after Shutdown.
	if mountedTest(t) { // net/http still listens: ServeHTTP refuses
		if _, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil); err == nil || resp == nil || resp.StatusCode != 503 {
			t.Fatalf("upgrade after Shutdown: %v, %v; want 503", err, resp)
		}
	} else if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting connections after ListenAndServe returned")
	}
}

func TestMaxConnections(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithMaxConnections(2))
	a := upgradeRaw(t, addr)
	upgradeRaw(t, addr)
	c := dialTCP(t, addr)
	_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	head := readHTTPHead(t, c)
	if string(head[:12]) != "HTTP/1.1 503" {
		t.Fatalf("over the cap got:\n%s", head)
	}
	expectEOF(t, c)
	a.Close()
	waitFor(t, 5*time.Second, "a slot to free up", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
		buf := make([]byte, 12)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := c.Read(buf)
		return string(buf[:n]) == "HTTP/1.1 101"
	})
}

// openFiles counts this process's file descriptors.
func openFiles(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// cycle runs one connect/upgrade/message/close cycle from local address ip.
func cycle(addr string, ip net.IP, msg []byte, open chan<- struct{}, hold <-chan struct{}) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil || status != "HTTP/1.1 101 Switching Protocols\r\n" {
		return fmt.Errorf("upgrade answered %q: %v", status, err)
	}
	for line := ""; line != "\r\n"; {
		if line, err = br.ReadString('\n'); err != nil {
			return fmt.Errorf("101 headers: %w", err)
		}
	}
	if open != nil {
		open <- struct{}{}
		<-hold
	}
	if _, err := c.Write(clientFrame(ws.OpBinary, true, msg)); err != nil {
		return err
	}
	echo := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, echo); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if string(echo[2:]) != string(msg) {
		return errors.New("echo differs")
	}
	if _, err := c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(1000, ""))); err != nil {
		return err
	}
	reply := make([]byte, 4)
	if _, err := io.ReadFull(br, reply); err != nil || reply[0] != 0x88 {
		return fmt.Errorf("close reply %x: %v", reply, err)
	}
	if n, err := br.Read(reply); n != 0 || err == nil {
		return fmt.Errorf("after close: %d bytes, %v (want EOF)", n, err)
	}
	return nil
}

var clientIPs = []net.IP{{127, 0, 0, 1}, {127, 0, 0, 2}, {127, 0, 0, 3}, {127, 0, 0, 4}}

// runCycles runs total cycles, at most conc at once.
func runCycles(t *testing.T, addr string, total, conc int) {
	t.Helper()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	msg := []byte("churn message 0123456789")
	for i := range total {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := cycle(addr, clientIPs[i%len(clientIPs)], msg, nil, nil); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Logf("open files %d", openFiles(t))
		t.Fatalf("%d of %d cycles failed; first: %v", n, total, *firstErr.Load())
	}
}

// TestChurn: 50,000 connect/upgrade/message/close cycles, up to 9,000 at a
// time, leave open files, goroutines and heap where they started, and every
// OnOpen has its OnClose.
func TestChurn(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithHandshakeTimeout(time.Minute)) // a loaded test process is slow to send requests
	t.Cleanup(func() { t.Logf("stats %+v", srv.Stats()) })
	// Warm up with the full concurrency: the runtime keeps the descriptors of
	// dead goroutines for reuse, and the loops size their tables, once.
	const warm = 10000
	runCycles(t, addr, warm, 9000)
	waitFor(t, 10*time.Second, "warm-up sockets to close", func() bool { return srv.sockets.Load() == 0 })
	files0, gor0, heap0 := openFiles(t), runtime.NumGoroutine(), heapInUse()

	const total, conc = 50000, 9000
	start := time.Now()
	runCycles(t, addr, total, conc)
	t.Logf("%d cycles in %v; %+v", total, time.Since(start), srv.Stats())

	waitFor(t, 10*time.Second, "server sockets to close", func() bool { return srv.sockets.Load() == 0 })
	waitFor(t, 10*time.Second, "OnClose for every OnOpen", func() bool {
		o, c := rec.counts()
		return o == c && o == total+warm
	})
	waitFor(t, 10*time.Second, "goroutines to settle", func() bool { return runtime.NumGoroutine() <= gor0+5 })
	for range total + warm { // the recorder's queue holds every error: check and drop them
		if ce := rec.nextClose(t); !ce.Remote || ce.Code != 1000 {
			t.Fatalf("an OnClose got %v, want the peer's 1000", ce)
		}
	}
	rec.errs = nil
	files1, heap1 := openFiles(t), heapInUse()
	t.Logf("open files %d -> %d, goroutines %d -> %d, heap %d KiB -> %d KiB",
		files0, files1, gor0, runtime.NumGoroutine(), heap0>>10, heap1>>10)
	if files1 > files0+10 {
		t.Errorf("open files grew from %d to %d", files0, files1)
	}
	const heapTolerance = 2 << 20 // allocator slack, gnet's and the runtime's pools
	if heap1 > heap0+heapTolerance {
		t.Errorf("heap grew from %d KiB to %d KiB (tolerance %d KiB)", heap0>>10, heap1>>10, heapTolerance>>10)
	}
}

// TestManyConnections: 9,000 connections open at once, then each exchanges
// a message; every one must succeed.
func TestManyConnections(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, WithHandshakeTimeout(time.Minute))
	const n = 9000
	open := make(chan struct{}, n)
	hold := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(hold)
		}
	}()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- cycle(addr, clientIPs[i%len(clientIPs)], []byte(fmt.Sprintf("conn %d", i)), open, hold)
		}()
	}
	deadline := time.After(60 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-open:
		case err := <-errs:
			t.Fatalf("a connection failed before all were open: %v", err)
		case <-deadline:
			t.Fatalf("only %d of %d connections opened in 60s", i, n)
		}
	}
	if got := srv.Connections(); got != n {
		t.Fatalf("server counts %d connections, want %d", got, n)
	}
	close(hold)
	released = true
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("exchange failed: %v", err)
		}
	}
	waitFor(t, 10*time.Second, "every OnClose", func() bool { _, c := rec.counts(); return c == n })
}

// shutdownOnMessage calls Shutdown from OnMessage, on the event loop, as
// a handler that stops the server on an admin's command does.
type shutdownOnMessage struct {
	echoHandler
	returned chan error
}

func (h shutdownOnMessage) OnMessage(c *Conn, _ ws.OpCode, p []byte) {
	if string(p) != "shutdown" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel() // ends the handler's ctx at once: the shutdown must not end with it
	h.returned <- c.Server().Shutdown(ctx)
}

// TestShutdownFromHandler: Shutdown called on an event loop returns at
// once (it waited forever, for the loop it ran on, whatever its ctx said),
// and the shutdown it started completes: every client gets 1001 and
// ListenAndServe returns ErrServerClosed. Off the loop, Shutdown returns
// when its ctx ends even if a loop never lets go.
func TestShutdownFromHandler(t *testing.T) {
	h := shutdownOnMessage{returned: make(chan error, 1)}
	srv, errc := serve(t, h, "127.0.0.1:0")
	addr := srv.Addr().String()
	other, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	admin := upgradeRaw(t, addr)
	if _, err := admin.Write(clientFrame(ws.OpText, true, []byte("shutdown"))); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.returned:
		if err != nil {
			t.Fatalf("Shutdown from a handler: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown called from a handler did not return within 5 s")
	}
	_ = other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := other.ReadMessage(); !websocket.IsCloseError(err, 1001) {
		t.Fatalf("the other client after Shutdown from a handler: %v, want 1001", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after Shutdown from a handler")
	}
}

// TestShutdownHonoursCtx: a loop held by a handler that blocks keeps the
// shutdown from completing; Shutdown still returns when its ctx ends.
func TestShutdownHonoursCtx(t *testing.T) {
	srv, errc := serve(t, stallHandler{newRecorder()}, "127.0.0.1:0", WithEventLoops(1))
	c := upgradeRaw(t, srv.Addr().String())
	if _, err := c.Write(clientFrame(ws.OpText, true, []byte("stall 3000"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the loop is in the handler
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a stalled loop: %v, want the ctx's error", err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("Shutdown returned %v after its ctx ended", d-300*time.Millisecond)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
}
