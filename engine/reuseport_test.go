package engine

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// TestReusePort: two servers with WithReusePort listen on one port and
// share its connections; when one stops, the other takes every new one.
// Without the option the second server cannot listen.
func TestReusePort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	a, errA := serve(t, pidEcho("a"), addr, WithReusePort(true))
	b, errB := serve(t, pidEcho("b"), addr, WithReusePort(true))
	defer func() { _ = b.Shutdown(context.Background()); <-errB }()
	served := map[string]int{}
	who := func() string {
		t.Helper()
		// From several source addresses: the kernel picks a listener by a
		// hash of the client's address and port.
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+len(served)%8))}}).DialContext}
		c, _, err := d.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("who")); err != nil {
			t.Fatal(err)
		}
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	for range 200 {
		served[who()]++
	}
	t.Logf("200 connections over two servers sharing %s: %v", addr, served)
	if served["a"] == 0 || served["b"] == 0 {
		t.Errorf("want both servers to get connections: %v", served)
	}

	// One stops: the other takes every new connection.
	_ = a.Shutdown(context.Background())
	if err := <-errA; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("a: %v", err)
	}
	for i := range 50 {
		if got := who(); got != "b" {
			t.Fatalf("connection %d after a stopped went to %q", i, got)
		}
	}

	// Without the option a second listener is refused.
	c, err := New(echoHandler{})
	if err != nil {
		t.Fatal(err)
	}
	err = c.ListenAndServe(context.Background(), addr)
	if err == nil || errors.Is(err, ErrServerClosed) {
		t.Fatalf("a server without WithReusePort listened on a shared port: %v", err)
	}
	t.Logf("without WithReusePort: %v", err)
}

// pidEcho answers "who" with its name.
type pidEcho string

func (pidEcho) OnOpen(*Conn)         {}
func (pidEcho) OnClose(*Conn, error) {}
func (h pidEcho) OnMessage(c *Conn, op ws.OpCode, _ []byte) {
	_ = c.WriteMessage(op, []byte(h))
}
