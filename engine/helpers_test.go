package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// echoHandler echoes every message with its opcode.
type echoHandler struct{ BaseHandler }

func (echoHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

// recorder is an echo handler that records opens and closes.
type recorder struct {
	echoHandler
	mu     sync.Mutex
	opens  int
	closes int
	errs   []error
	closed chan error // receives every OnClose error (buffered)
}

func newRecorder() *recorder { return &recorder{closed: make(chan error, 100000)} }

func (r *recorder) OnOpen(*Conn) {
	r.mu.Lock()
	r.opens++
	r.mu.Unlock()
}

func (r *recorder) OnClose(_ *Conn, err error) {
	r.mu.Lock()
	r.closes++
	if len(r.errs) < 1000 {
		r.errs = append(r.errs, err)
	}
	r.mu.Unlock()
	r.closed <- err
}

func (r *recorder) counts() (opens, closes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opens, r.closes
}

// nextClose waits for the next OnClose error.
func (r *recorder) nextClose(t *testing.T) *CloseError {
	t.Helper()
	select {
	case err := <-r.closed:
		var ce *CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("OnClose error %v (%T) is not a *CloseError", err, err)
		}
		return ce
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose not called within 10s")
		return nil
	}
}

// testOptions keeps timers short enough for tests.
var testOptions = []Option{
	WithEventLoops(2),
	WithTick(10 * time.Millisecond),
	WithCloseTimeout(2 * time.Second),
	WithHandshakeTimeout(5 * time.Second),
}

// startServer runs a server on 127.0.0.1 with an ephemeral port and stops
// it when the test ends. It returns the server and its "host:port".
func startServer(t testing.TB, h Handler, opts ...Option) (*Server, string) {
	t.Helper()
	if mountedTest(t) {
		return startMounted(t, h, opts...)
	}
	srv, errc := serve(t, h, "127.0.0.1:0", opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ListenAndServe returned %v, want ErrServerClosed", err)
		}
	})
	return srv, srv.Addr().String()
}

// serve runs a server with testOptions and opts on addr and returns once
// it is ready, with the channel that gets ListenAndServe's result; the
// caller stops it.
func serve(t testing.TB, h Handler, addr string, opts ...Option) (*Server, <-chan error) {
	t.Helper()
	srv, err := New(h, append(append([]Option{}, testOptions...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe(context.Background(), addr) }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	return srv, errc
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dialTCP opens a plain TCP connection.
func dialTCP(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// upgradeReq is a valid upgrade request, for tests that write it by hand.
const upgradeReq = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// upgradeRaw opens a WebSocket connection by hand and returns the socket
// positioned after the 101 response.
func upgradeRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	return upgradeOver(t, dialTCP(t, addr), addr)
}

// upgradeOver sends an upgrade request for addr on c and reads the 101.
func upgradeOver(t testing.TB, c net.Conn, addr string) net.Conn {
	t.Helper()
	req := "GET /raw HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	head := readHTTPHead(t, c)
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) ||
		!bytes.Contains(head, []byte("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")) {
		t.Fatalf("bad upgrade response:\n%s", head)
	}
	return c
}

// readHTTPHead reads byte by byte up to the end of an HTTP header block, so
// that nothing after it is consumed.
func readHTTPHead(t testing.TB, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var head []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("reading response head %q: %v", head, err)
		}
		head = append(head, one[0])
	}
	return head
}

// clientFrame encodes a masked client frame with gobwas/ws (an independent
// encoder).
func clientFrame(op ws.OpCode, fin bool, p []byte) []byte {
	var b bytes.Buffer
	f := ws.NewFrame(op, fin, append([]byte(nil), p...))
	f = ws.MaskFrameWith(f, [4]byte{0x12, 0x34, 0x56, 0x78})
	if err := ws.WriteFrame(&b, f); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// readServerFrame reads one frame from the server with gobwas/ws.
func readServerFrame(t testing.TB, c net.Conn) ws.Frame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	f, err := ws.ReadFrame(c)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if f.Header.Masked {
		t.Fatal("server frame is masked")
	}
	return f
}
