package engine

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// BenchmarkNetHTTP serves a small answer through WithHTTPHandler to 4
// keep-alive connections, one request in flight on each (cmd/httpbench
// measures it against net/http, process against process).
func BenchmarkNetHTTP(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello, world\n")
	})
	_, addr := startServer(b, echoHandler{}, WithHTTPHandler(h), WithEventLoops(1))
	const conns = 4
	req := []byte("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i := range conns {
		n := b.N / conns
		if i == 0 {
			n += b.N % conns
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for range n {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
			}
		}()
	}
	wg.Wait()
}
