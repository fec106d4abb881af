package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Flood tests of the buffers WithHTTPHandler adds (engine/doc.go,
// "Bounds"): the response a handler streams to a client that does not
// read, request bodies, and what a client pipelines behind a running
// request. Each checks the heap's peak and that a WebSocket probe keeps
// getting echoes meanwhile.

func TestNetHTTPBoundsStream(t *testing.T) {
	const sockets, bufSize = 8, 64 << 10
	var written atomic.Int64
	var running sync.WaitGroup
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer running.Done()
		chunk := make([]byte, 16<<10)
		for range (64 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			written.Add(int64(len(chunk)))
		}
	})
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(h), WithMaxResponseBuffer(bufSize))
	probe := startProbe(t, rawDialer(addr))
	mem := startMemPeak(t)
	mark := probe.mark()
	conns := make([]net.Conn, sockets)
	running.Add(sockets)
	for i := range conns {
		conns[i] = dialSlowReader(t, addr)
		if _, err := io.WriteString(conns[i], "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	probe.waitEchoes(t, mark, 20)
	// The handlers are blocked in Write: they wrote what the sockets took
	// (the kernel's buffers) and the server's bound, not their 64 MiB.
	w := written.Load()
	if st := srv.Stats(); st.HTTPInProgress != sockets {
		t.Errorf("Stats.HTTPInProgress = %d, want %d handlers blocked", st.HTTPInProgress, sockets)
	}
	t.Logf("%d handlers streaming 64 MiB each to clients that do not read wrote %s in all", sockets, mib(w))
	if w > sockets*(16<<20) {
		t.Errorf("the handlers wrote %s: Write does not block", mib(w))
	}
	mem.check(t, sockets*6*bufSize+4<<20, "responses streamed to clients that do not read")
	for _, c := range conns {
		c.Close()
	}
	done := make(chan struct{})
	go func() { running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the handlers did not return after their clients left")
	}
	probe.end(t)
}

func TestNetHTTPBoundsBody(t *testing.T) {
	const limit = 1 << 20
	const partial, chunkedFloods = 16, 4
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	})
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(h), WithMaxRequestBody(limit),
		WithHandshakeTimeout(20*time.Second))
	probe := startProbe(t, rawDialer(addr))
	mem := startMemPeak(t)
	mark := probe.mark()
	// Bodies that stop one byte short of their Content-Length, at the limit:
	// each held whole while it waits.
	body := make([]byte, limit-1)
	for range partial {
		c := dialTCP(t, addr)
		if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", limit); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	// Chunked bodies that never end: 413 at the limit, the rest discarded.
	var wg sync.WaitGroup
	statuses := make([]string, chunkedFloods)
	for i := range chunkedFloods {
		c := dialTCP(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", 32<<10, bytes.Repeat([]byte("y"), 32<<10)))
			_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			for sent := 0; sent < 16<<20; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					break
				}
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			statuses[i] = line
		}()
	}
	wg.Wait()
	probe.waitEchoes(t, mark, 3)
	for i, s := range statuses {
		if !strings.HasPrefix(s, "HTTP/1.1 413 ") {
			t.Errorf("chunked flood %d: %q, want 413", i, s)
		}
	}
	if served.Load() != 0 {
		t.Errorf("%d incomplete bodies reached the handler", served.Load())
	}
	mem.check(t, partial*limit*2+4<<20, fmt.Sprintf("%d bodies at the limit waiting for their last byte, %d chunked floods", partial, chunkedFloods))
	if n := srv.Stats().HTTPTooLarge; n != chunkedFloods {
		t.Errorf("Stats.HTTPTooLarge = %d, want %d", n, chunkedFloods)
	}
	probe.end(t)
}

func TestNetHTTPBoundsPipelined(t *testing.T) {
	const sockets = 4
	release := make(chan struct{})
	var entered atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-release
		_, _ = io.WriteString(w, "answer")
	})
	srv, addr := startServer(t, echoHandler{}, WithHTTPHandler(h))
	probe := startProbe(t, rawDialer(addr))
	mem := startMemPeak(t)
	mark := probe.mark()
	reqs := bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 2000) // 54 KB
	conns := make([]net.Conn, sockets)
	var wg sync.WaitGroup
	for i := range conns {
		conns[i] = dialTCP(t, addr)
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			for sent := 0; sent < 16<<20; sent += len(reqs) {
				if _, err := c.Write(reqs); err != nil {
					return
				}
			}
		}(conns[i])
	}
	wg.Wait()
	probe.waitEchoes(t, mark, 3)
	if n := entered.Load(); n != sockets {
		t.Errorf("%d handlers entered, want %d: one request per socket runs while the rest waits", n, sockets)
	}
	mem.check(t, 4<<20, fmt.Sprintf("%d sockets pipelining 16 MiB of requests behind one that runs", sockets))
	close(release)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			t.Errorf("socket %d after its answer: %d bytes, %v; want the close", i, len(rest), err)
		}
	}
	waitFor(t, 10*time.Second, "the sockets to close", func() bool { return srv.Stats().Sockets == 1 })
	probe.end(t)
}
