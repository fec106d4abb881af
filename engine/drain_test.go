package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// drainClient is one gorilla client of a drain test: it reads until the
// server closes it and records what it saw.
type drainClient struct {
	idx    int
	conn   *websocket.Conn
	done   chan struct{}
	code   int // close code, -1 for an error that is not a close
	reason string
	at     time.Time // when the close frame arrived
	gotMid bool      // the message published mid-drain arrived (before the close)
	pings  []time.Time
}

// dialDrainClients opens n gorilla clients to addr, in order, and starts
// their readers.
func dialDrainClients(t *testing.T, addr string, n int) []*drainClient {
	t.Helper()
	cs := make([]*drainClient, n)
	for i := range cs {
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		c := &drainClient{idx: i, conn: conn, done: make(chan struct{})}
		conn.SetPingHandler(func(data string) error {
			c.pings = append(c.pings, time.Now()) // on the reading goroutine
			return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		cs[i] = c
		go c.read()
	}
	return cs
}

func (c *drainClient) read() {
	defer close(c.done)
	for {
		_, p, err := c.conn.ReadMessage() // gorilla answers the close frame
		if err != nil {
			c.at = time.Now()
			c.code = -1
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code, c.reason = ce.Code, ce.Text
			}
			return
		}
		if string(p) == "mid" {
			c.gotMid = true
		}
	}
}

// waitClients waits for every client's reader to end.
func waitClients(t *testing.T, cs []*drainClient, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for _, c := range cs {
		select {
		case <-c.done:
		case <-deadline:
			t.Fatalf("client %d not closed within %v", c.idx, d)
		}
	}
}

// TestDrain drains 200 connections over 1 s: every client gets 1012 with
// the reason, spread over the window (no 100 ms holds more than 3 times
// the average) in an order that is not the order they connected in; the
// ones not closed yet still get a broadcast sent halfway and are still
// pinged; new dials are refused from the start; Stats and the log show the
// progress; OnClose gets ErrServerRestart; ListenAndServe returns
// ErrServerClosed.
func TestDrain(t *testing.T) {
	const (
		n      = 200
		window = time.Second
	)
	logBuf := &syncBuffer{}
	rec := newRecorder()
	srv, errc := serve(t, rec, "127.0.0.1:0", WithPingInterval(100*time.Millisecond), WithIdleTimeout(5*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(logBuf, nil))))
	addr := srv.Addr().String()
	cs := dialDrainClients(t, addr, n)
	waitFor(t, 5*time.Second, "all connections open", func() bool { return srv.Connections() == n })

	drained := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		drained <- srv.Drain(ctx, window)
	}()
	waitFor(t, 2*time.Second, "the drain to start", func() bool { return srv.Stats().DrainClosed > 0 })
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("a dial after the drain started was accepted")
	}

	// Halfway: the progress shows, and a broadcast reaches those left.
	time.Sleep(time.Until(start.Add(window / 2)))
	st := srv.Stats()
	if !st.Draining || st.DrainClosed == 0 || st.DrainRemaining == 0 || int(st.DrainClosed)+st.DrainRemaining > n {
		t.Errorf("Stats halfway through the drain: Draining %v, DrainClosed %d, DrainRemaining %d",
			st.Draining, st.DrainClosed, st.DrainRemaining)
	}
	midAt := time.Now()
	if err := srv.Broadcast(ws.OpText, []byte("mid")); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Drain did not return within 15 s")
	}
	took := time.Since(start)
	if took < window*9/10 {
		t.Errorf("Drain of %d connections over %v returned after %v", n, window, took)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after Drain")
	}
	waitClients(t, cs, 5*time.Second)

	buckets := make([]int, 10) // 100 ms each
	got, late, lateMid, pinged, ordered := 0, 0, 0, 0, 0
	var byTime []*drainClient
	for _, c := range cs {
		if c.code != 1012 || c.reason != defaultDrainReason {
			t.Fatalf("client %d: close %d %q, want 1012 %q", c.idx, c.code, c.reason, defaultDrainReason)
		}
		got++
		b := int(c.at.Sub(start) / (window / 10))
		buckets[min(max(b, 0), 9)]++
		if c.at.After(midAt.Add(100 * time.Millisecond)) {
			late++
			if c.gotMid {
				lateMid++
			}
		}
		if c.at.After(start.Add(window*3/4)) && len(c.pings) > 0 && c.pings[len(c.pings)-1].After(start.Add(window/4)) {
			pinged++
		}
		byTime = append(byTime, c)
	}
	avg := float64(n) / 10
	for i, b := range buckets {
		if float64(b) > 3*avg {
			t.Errorf("closes per 100 ms: %v; bucket %d holds %d, over 3 times the average %.0f", buckets, i, b, avg)
			break
		}
	}
	t.Logf("closes per 100 ms: %v", buckets)
	if late < n/5 || lateMid != late {
		t.Errorf("of %d clients closed over 100 ms after the broadcast, %d got it (want all, and at least %d such clients)", late, lateMid, n/5)
	}
	if pinged < n/10 {
		t.Errorf("only %d clients closed in the last quarter were pinged during the drain", pinged)
	}
	// The close order against the connection order: a close order that
	// follows it has every adjacent pair increasing; a random one about
	// half.
	sortByTime(byTime)
	for i := 1; i < len(byTime); i++ {
		if byTime[i].idx > byTime[i-1].idx {
			ordered++
		}
	}
	if ordered > (n-1)*3/4 {
		t.Errorf("%d of %d consecutive closes follow the connection order: not shuffled", ordered, n-1)
	}

	restarts := 0
	for range n {
		if ce := rec.nextClose(t); ce.Code == 1012 && errors.Is(ce, ErrServerRestart) && !ce.Remote {
			restarts++
		}
	}
	if restarts != n {
		t.Errorf("%d of %d OnClose errors are 1012 with ErrServerRestart", restarts, n)
	}
	st = srv.Stats()
	if st.Draining || st.DrainClosed != n || st.DrainRemaining != 0 {
		t.Errorf("Stats after the drain: Draining %v, DrainClosed %d, DrainRemaining %d", st.Draining, st.DrainClosed, st.DrainRemaining)
	}
	logs := logBuf.String()
	for _, want := range []string{"wsloop: draining: closing connections", "connections=200", "wsloop: drained"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

func sortByTime(cs []*drainClient) {
	for i := 1; i < len(cs); i++ { // insertion sort: a few hundred
		for j := i; j > 0 && cs[j].at.Before(cs[j-1].at); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// TestDrainRate: a rate cap longer than the window wins, and the log says
// so.
func TestDrainRate(t *testing.T) {
	const n = 40
	logBuf := &syncBuffer{}
	srv, errc := serve(t, echoHandler{}, "127.0.0.1:0", WithLogger(slog.New(slog.NewTextHandler(logBuf, nil))))
	cs := dialDrainClients(t, srv.Addr().String(), n)
	waitFor(t, 5*time.Second, "all connections open", func() bool { return srv.Connections() == n })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Drain(ctx, 100*time.Millisecond, DrainRate(80), DrainReason("go to b")); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Errorf("Drain of %d connections at 80 a second took %v, want at least 0.5 s", n, d)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	waitClients(t, cs, 5*time.Second)
	first, last := cs[0].at, cs[0].at
	for _, c := range cs {
		if c.code != 1012 || c.reason != "go to b" {
			t.Fatalf("client %d: close %d %q", c.idx, c.code, c.reason)
		}
		if c.at.Before(first) {
			first = c.at
		}
		if c.at.After(last) {
			last = c.at
		}
	}
	if last.Sub(first) < 350*time.Millisecond {
		t.Errorf("the closes took %v, want about 0.5 s at 80 a second", last.Sub(first))
	}
	if logs := logBuf.String(); !strings.Contains(logs, "the rate cap makes the drain longer than its window") {
		t.Errorf("the log does not say that the cap lengthens the drain:\n%s", logs)
	}
	if err := srv.Drain(ctx, -time.Second); err == nil {
		t.Error("Drain with a negative window: no error")
	}
}

// TestShutdownDuringDrain: Shutdown in the middle of a long drain closes
// the rest at once with 1001; the drain returns.
func TestShutdownDuringDrain(t *testing.T) {
	const n = 60
	srv, errc := serve(t, echoHandler{}, "127.0.0.1:0")
	cs := dialDrainClients(t, srv.Addr().String(), n)
	waitFor(t, 5*time.Second, "all connections open", func() bool { return srv.Connections() == n })
	drained := make(chan error, 1)
	go func() { drained <- srv.Drain(context.Background(), 20*time.Second) }()
	waitFor(t, 5*time.Second, "a few drain closes", func() bool { return srv.Stats().DrainClosed >= 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown during a drain: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown during a 20 s drain took %v", d)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain after Shutdown took over: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Drain did not return after Shutdown")
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	waitClients(t, cs, 5*time.Second)
	restart, away := 0, 0
	for _, c := range cs {
		switch c.code {
		case 1012:
			restart++
		case 1001:
			away++
		default:
			t.Errorf("client %d: close %d", c.idx, c.code)
		}
	}
	if restart < 3 || away < n/2 || restart+away != n {
		t.Errorf("%d clients got 1012 and %d got 1001, want a few and the rest", restart, away)
	}
}

// TestDrainHonoursCtx: when ctx ends before the window, the connections
// left get 1012 at once and Drain returns ctx's error.
func TestDrainHonoursCtx(t *testing.T) {
	const n = 30
	srv, errc := serve(t, echoHandler{}, "127.0.0.1:0")
	cs := dialDrainClients(t, srv.Addr().String(), n)
	waitFor(t, 5*time.Second, "all connections open", func() bool { return srv.Connections() == n })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Drain(ctx, 20*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a ctx shorter than its window: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Drain returned %v after it started, its ctx ended at 300 ms", d)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	waitClients(t, cs, 5*time.Second)
	for _, c := range cs {
		if c.code != 1012 && c.code != -1 { // a socket closed before its frame left: an error
			t.Errorf("client %d: close %d, want 1012", c.idx, c.code)
		}
	}
}

// drainOnMessage calls Drain from OnMessage, on the event loop.
type drainOnMessage struct {
	echoHandler
	returned chan error
}

func (h drainOnMessage) OnMessage(c *Conn, _ ws.OpCode, p []byte) {
	if string(p) != "drain" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.returned <- c.Server().Drain(ctx, 200*time.Millisecond)
}

// TestDrainFromHandler: Drain called on an event loop returns at once and
// the drain it started completes.
func TestDrainFromHandler(t *testing.T) {
	h := drainOnMessage{returned: make(chan error, 1)}
	srv, errc := serve(t, h, "127.0.0.1:0")
	cs := dialDrainClients(t, srv.Addr().String(), 5)
	if err := cs[0].conn.WriteMessage(websocket.TextMessage, []byte("drain")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-h.returned:
		if err != nil {
			t.Fatalf("Drain from a handler: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain called from a handler did not return within 5 s")
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	waitClients(t, cs, 5*time.Second)
	for _, c := range cs {
		if c.code != 1012 {
			t.Errorf("client %d: close %d, want 1012", c.idx, c.code)
		}
	}
}

// TestDrainHTTPSockets: sockets that have not upgraded are not left open
// for the next server's clients to queue behind: during a drain a plain
// request is answered and its socket closed, an upgrade gets 503, and an
// idle keep-alive socket is closed at the end of the window.
func TestDrainHTTPSockets(t *testing.T) {
	srv, errc := serve(t, echoHandler{}, "127.0.0.1:0", WithLoopHTTPHandler(func(*Request) HTTPResponse {
		return HTTPResponse{Body: []byte("ok")}
	}))
	addr := srv.Addr().String()
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	socks := make([]net.Conn, 3) // plain, upgrade, idle
	for i := range socks {
		socks[i] = dialTCP(t, addr)
		if _, err := socks[i].Write([]byte(get)); err != nil {
			t.Fatal(err)
		}
		if head := readHTTPHead(t, socks[i]); !strings.HasPrefix(string(head), "HTTP/1.1 200 ") || strings.Contains(string(head), "Connection: close") {
			t.Fatalf("before the drain: %s", head)
		}
		body := make([]byte, 2)
		if _, err := io.ReadFull(socks[i], body); err != nil {
			t.Fatal(err)
		}
	}
	cs := dialDrainClients(t, addr, 1) // keeps the drain going for its window
	waitFor(t, 5*time.Second, "the connection open", func() bool { return srv.Connections() == 1 })
	const window = 600 * time.Millisecond
	drained := make(chan error, 1)
	start := time.Now()
	go func() { drained <- srv.Drain(context.Background(), window) }()
	waitFor(t, 2*time.Second, "the drain to start", func() bool { return srv.Stats().Draining })

	if _, err := socks[0].Write([]byte(get)); err != nil {
		t.Fatal(err)
	}
	if head := readHTTPHead(t, socks[0]); !strings.HasPrefix(string(head), "HTTP/1.1 200 ") || !strings.Contains(string(head), "Connection: close") {
		t.Errorf("a plain request during the drain: %s, want 200 with Connection: close", head)
	}
	if _, err := socks[1].Write([]byte(upgradeReq)); err != nil {
		t.Fatal(err)
	}
	if head := readHTTPHead(t, socks[1]); !strings.HasPrefix(string(head), "HTTP/1.1 503 ") {
		t.Errorf("an upgrade during the drain: %s, want 503", head)
	}
	for i, c := range socks {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, c) // the rest of the answer, then EOF
		if err != nil {
			t.Errorf("socket %d: %v after %d bytes, want EOF", i, err, n)
		}
		if i == 2 && time.Since(start) < window*3/4 {
			t.Errorf("the idle keep-alive socket was closed %v into a %v drain, want at its end", time.Since(start), window)
		}
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe: %v", err)
	}
	waitClients(t, cs, 5*time.Second)
}
