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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Tests of WithHTTPHandler: a standard http.Handler served on wsloop's
// listener, driven by net/http's client over real sockets.

// countingClient is an http.Client whose transport counts the TCP
// connections it opens.
func countingClient(dials *atomic.Int64) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 16,
	}}
}

// metricsHandler writes a Prometheus text exposition as promhttp does:
// its own Content-Type, several writes.
func metricsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	for i := range 50 {
		fmt.Fprintf(w, "# HELP wsloop_test_%d A test metric.\n# TYPE wsloop_test_%d counter\nwsloop_test_%d %d\n", i, i, i, i)
	}
}

// testMux is the handler most tests serve.
func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", metricsHandler)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Method", r.Method)
		w.Header().Set("X-Length", strconv.FormatInt(r.ContentLength, 10))
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	return mux
}

func TestNetHTTPHandler(t *testing.T) {
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(testMux()))
	var dials atomic.Int64
	cl := countingClient(&dials)
	base := "http://" + addr

	resp, err := cl.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") ||
		!bytes.Contains(body, []byte("wsloop_test_49 49\n")) || resp.ContentLength != int64(len(body)) || resp.Header.Get("Date") == "" {
		t.Fatalf("metrics: %d %v, %d bytes (Content-Length %d)", resp.StatusCode, resp.Header, len(body), resp.ContentLength)
	}

	// POST bodies: Content-Length, and chunked (a reader of unknown length).
	payload := bytes.Repeat([]byte("x"), 300<<10)
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(payload)
		if chunked {
			rd = io.MultiReader(rd) // hides the length: the client sends it chunked
		}
		resp, err := cl.Post(base+"/echo", "application/octet-stream", rd)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, payload) || resp.Header.Get("X-Length") != strconv.Itoa(len(payload)) {
			t.Fatalf("POST (chunked %v): %d, %d bytes back, X-Length %s", chunked, resp.StatusCode, len(got), resp.Header.Get("X-Length"))
		}
	}

	// A response past the buffer is streamed chunked.
	resp, err = cl.Get(base + "/big?n=1000000")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 1000000 || resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Fatalf("big: %d bytes, Content-Length %d, Transfer-Encoding %v", len(got), resp.ContentLength, resp.TransferEncoding)
	}

	// HEAD has no body; 404 from the mux.
	resp, err = cl.Head(base + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = cl.Get(base + "/nowhere")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("404: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential requests, want 1 (keep-alive)", n)
	}

	// The same port still upgrades.
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := ws.ReadMessage(); err != nil || string(p) != "hi" {
		t.Fatalf("echo: %q %v", p, err)
	}
	if st := srv.Stats(); st.HTTPRequests != 6 {
		t.Errorf("Stats.HTTPRequests = %d, want 6", st.HTTPRequests)
	}
}

// rawRequest writes req on a new socket and returns what the server
// answers until it closes or goes quiet for a second.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c := dialTCP(t, addr)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

func TestNetHTTPHTTP10AndExpect(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithHTTPHandler(testMux()))
	got := rawRequest(t, addr, "GET /metrics HTTP/1.0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.0 200 OK\r\n") || !strings.Contains(got, "wsloop_test_49 49\n") {
		t.Fatalf("HTTP/1.0: %.200q", got)
	}
	got = rawRequest(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 100 Continue\r\n\r\n") {
		t.Fatalf("Expect: 100-continue: %.200q", got)
	}
	got = rawRequest(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
	if !strings.Contains(got, "Connection: close\r\n") || !strings.HasSuffix(got, "\r\n\r\nhello") {
		t.Fatalf("Connection: close: %.300q", got)
	}
	got = rawRequest(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Fatalf("both framings: %.200q", got)
	}
}

func TestNetHTTPTooLarge(t *testing.T) {
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(testMux()), WithMaxRequestBody(64<<10))
	cl := &http.Client{Timeout: 10 * time.Second}
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(make([]byte, 64<<10+1))
		if chunked {
			rd = io.MultiReader(rd)
		}
		resp, err := cl.Post("http://"+addr+"/echo", "application/octet-stream", rd)
		if err != nil {
			// The server may close before the client has sent it all.
			t.Logf("chunked %v: %v", chunked, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked %v: %d, want 413", chunked, resp.StatusCode)
		}
	}
	resp, err := cl.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(make([]byte, 64<<10)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a body at the limit: %v %v", resp, err)
	}
	resp.Body.Close()
	if n := srv.Stats().HTTPTooLarge; n != 2 {
		t.Errorf("Stats.HTTPTooLarge = %d, want 2", n)
	}
}

// TestNetHTTPBusy: with both workers busy, a request past them is
// answered with 503 and Retry-After at once, never queued; a flood of
// 2,000 such requests from 8 sockets at a time gets 503s, the heap's peak
// stays within 2 MiB of its start (the Bounds row), and a WebSocket probe
// keeps getting echoes meanwhile. Once the workers are free, requests are
// served again.
func TestNetHTTPBusy(t *testing.T) {
	release := make(chan struct{})
	var entered atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(h), WithHTTPWorkers(2))
	cl := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get("http://" + addr + "/slow")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("a request that had a worker: %v %v", resp, err)
				return
			}
			resp.Body.Close()
		}()
	}
	waitFor(t, 5*time.Second, "both workers to be busy", func() bool { return entered.Load() == 2 })
	if st := srv.Stats(); st.HTTPInProgress != 2 {
		t.Errorf("Stats.HTTPInProgress = %d, want 2", st.HTTPInProgress)
	}
	start := time.Now()
	resp, err := cl.Get("http://" + addr + "/third")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || time.Since(start) > 2*time.Second {
		t.Fatalf("a request past the workers: %d, Retry-After %q, after %v", resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start))
	}
	// The flood: requests past the workers, 8 sockets at a time.
	const flood, senders = 2000, 8
	probe := startProbe(t, rawDialer(addr))
	mem := startMemPeak(t)
	mark := probe.mark()
	var busy atomic.Int64
	var next atomic.Int64
	var fwg sync.WaitGroup
	for range senders {
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			fc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer fc.CloseIdleConnections()
			for next.Add(1) <= flood {
				resp, err := fc.Get("http://" + addr + "/flood")
				if err != nil {
					t.Errorf("a request of the flood: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 503 {
					busy.Add(1)
				}
			}
		}()
	}
	fwg.Wait()
	mem.check(t, 2<<20, fmt.Sprintf("%d requests past the busy workers", flood))
	if n := probe.since(mark); n < 3 {
		t.Errorf("the probe echoed %d times during the flood, want at least 3", n)
	}
	probe.end(t)
	if busy.Load() != flood {
		t.Errorf("%d of %d requests past the workers got 503", busy.Load(), flood)
	}
	close(release)
	wg.Wait()
	if st := srv.Stats(); st.HTTPBusy != 1+flood || st.HTTPRequests != 2 {
		t.Errorf("Stats.HTTPBusy = %d, HTTPRequests = %d; want %d and 2", st.HTTPBusy, st.HTTPRequests, 1+flood)
	}
	resp, err = cl.Get("http://" + addr + "/after")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the workers freed: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestNetHTTPKeepAlive(t *testing.T) {
	// As many workers as clients, each with one request in flight: a
	// worker's slot must be free before its answer reaches the client, or
	// the client's next request finds it taken (503).
	const clients, each = 4, 200
	_, addr := startServer(t, echoHandler{}, WithHTTPHandler(testMux()), WithHTTPWorkers(clients))
	// Each client has a transport of its own, so that one connection each
	// is what keep-alive gives (a shared transport may dial while another
	// goroutine's connection is about to come back).
	var dials atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := countingClient(&dials)
			for range each {
				resp, err := cl.Post("http://"+addr+"/echo", "text/plain", strings.NewReader("ping"))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ping" {
					t.Errorf("got %d %q", resp.StatusCode, b)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := dials.Load(); n > clients {
		t.Errorf("%d connections for %d clients making %d requests each: keep-alive not kept", n, clients, each)
	}
}

func TestNetHTTPPipelining(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.URL.Query().Get("i"))
		time.Sleep(time.Duration(20-i) * time.Millisecond) // the first ones are the slowest
		fmt.Fprintf(w, "answer %d", i)
	})
	_, addr := startServer(t, echoHandler{}, WithHTTPHandler(h))
	c := dialTCP(t, addr)
	var reqs bytes.Buffer
	for i := range 20 {
		fmt.Fprintf(&reqs, "GET /?i=%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	if _, err := c.Write(reqs.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 20 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("answer %d", i); string(b) != want {
			t.Fatalf("answer %d is %q: out of order", i, b)
		}
	}
}

func TestNetHTTPSlowHandlerDoesNotStallLoop(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	})
	// One loop: the HTTP connection and the WebSocket share it.
	_, addr := startServer(t, echoHandler{}, WithHTTPHandler(h), WithEventLoops(1))
	defer close(release)
	for range 4 {
		c := dialTCP(t, addr)
		if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := range 100 {
		start := time.Now()
		if err := ws.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatalf("echo %d while handlers block: %v", i, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("echo %d took %v while handlers block", i, d)
		}
	}
}

func TestNetHTTPContextCancelled(t *testing.T) {
	cancelled := make(chan error, 1)
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- errors.New("not cancelled within 10 s")
		}
	})
	_, addr := startServer(t, echoHandler{}, WithHTTPHandler(h))
	c := dialTCP(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-entered
	c.Close()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("the handler's context: %v", err)
	}
}

func TestNetHTTPShutdownWaits(t *testing.T) {
	entered := make(chan struct{})
	var finished atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "finished")
		finished.Store(true)
	})
	srv, errc := serve(t, echoHandler{}, "127.0.0.1:0", WithHTTPHandler(h))
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + srv.Addr().String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !finished.Load() {
		t.Fatal("Shutdown returned before the handler finished")
	}
	if b := <-got; b != "finished" {
		t.Fatalf("the client got %q", b)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the idle HTTP workers to exit", func() bool {
		_, workers := srv.httpPool.counts()
		return workers == 0
	})
}

func TestNetHTTPLoopHandlerPasses(t *testing.T) {
	loop := func(r *Request) HTTPResponse {
		if string(r.Path()) == "/healthz" {
			return HTTPResponse{Body: []byte("ok")}
		}
		return HTTPResponse{Pass: true}
	}
	_, addr := startServer(t, echoHandler{}, WithLoopHTTPHandler(loop), WithHTTPHandler(testMux()))
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "wsloop_test_0 0"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: %q", path, b)
		}
	}
}

// Over TLS the handler sees r.TLS, and bodies, streaming and keep-alive
// work on the decrypted stream.
func TestNetHTTPOverTLS(t *testing.T) {
	mux := testMux()
	mux.HandleFunc("/tls", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			http.Error(w, "no TLS state", 500)
			return
		}
		fmt.Fprintf(w, "%s %x", r.TLS.ServerName, r.TLS.Version)
	})
	_, addr := tlsServer(t, echoHandler{}, WithHTTPHandler(mux))
	var dials atomic.Int64
	cl := countingClient(&dials)
	cl.Transport.(*http.Transport).TLSClientConfig = clientTLS(tls.VersionTLS13)
	base := "https://localhost:" + addr[strings.LastIndexByte(addr, ':')+1:]
	resp, err := cl.Get(base + "/tls")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "localhost 304" {
		t.Fatalf("/tls: %d %q", resp.StatusCode, b)
	}
	payload := bytes.Repeat([]byte("z"), 200<<10)
	resp, err = cl.Post(base+"/echo", "application/octet-stream", io.MultiReader(bytes.NewReader(payload)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo over TLS: %d bytes back", len(got))
	}
	resp, err = cl.Get(base + "/big?n=500000")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 500000 {
		t.Fatalf("big over TLS: %d bytes", len(got))
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests over TLS, want 1", n)
	}
}

// A handler that panics before answering gets a 500 for its client, one
// that panics mid-stream cuts the connection; the server goes on.
func TestNetHTTPPanic(t *testing.T) {
	mux := testMux()
	mux.HandleFunc("/early", func(http.ResponseWriter, *http.Request) { panic("early") })
	mux.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(mux))
	got := rawRequest(t, addr, "GET /early HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 500 ") || !strings.Contains(got, "Connection: close") {
		t.Fatalf("early panic: %.200q", got)
	}
	got = rawRequest(t, addr, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 ") || strings.HasSuffix(got, "0\r\n\r\n") {
		t.Fatalf("late panic: the answer should be cut short: %.300q", got)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the panics: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, 5*time.Second, "the handlers to be done", func() bool { return srv.Stats().HTTPInProgress == 0 })
}

// busyServer starts a server with one HTTP worker and holds it with a
// request that blocks until the test ends, on one loop.
func busyServer(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	var entered atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-release
	})
	_, addr := startServer(t, echoHandler{}, WithHTTPHandler(h), WithHTTPWorkers(1), WithEventLoops(1))
	hold, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); hold.Close() })
	if _, err := io.WriteString(hold, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the worker to be busy", func() bool { return entered.Load() == 1 })
	return addr
}

// A HEAD answered 503 on a kept-alive connection has no body: the next
// answer on the connection must parse.
func TestNetHTTPBusyHead(t *testing.T) {
	addr := busyServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, method := range []string{"HEAD", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("the answer to %s: %v", method, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Fatalf("the answer to %s: %d, want 503", method, resp.StatusCode)
		}
	}
}

// A 503 for a request whose body came in a later read answers with that
// request's HTTP version, not the one the loop parsed last (another
// connection's): an HTTP/1.0 client kept alive is told so.
func TestNetHTTPBusyLateBody(t *testing.T) {
	addr := busyServer(t)
	x, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	_ = x.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(x, "POST /x HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 4\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the loop parses x's head and waits for its body
	// Another connection's HTTP/1.1 request, parsed by the same loop.
	y, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	_ = y.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(y, "GET /y HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(y), nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("y: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, err := io.WriteString(x, "body"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(x), &http.Request{Method: "POST", ProtoMajor: 1, ProtoMinor: 0})
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("x: %v %v", resp, err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Connection"); !strings.EqualFold(got, "keep-alive") {
		t.Errorf("x, an HTTP/1.0 client kept alive, got Connection %q, want keep-alive", got)
	}
}
