package engine

import (
	"sync"
	"testing"
)

// BenchmarkConnect: connect, upgrade, one echo and the close handshake,
// from 64 concurrent clients: the cost of accepting and opening a
// connection. ns/op is per connection.
func BenchmarkConnect(b *testing.B) {
	_, addr := startServer(b, echoHandler{})
	msg := []byte("hello")
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan int)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := cycle(addr, clientIPs[g%len(clientIPs)], msg, nil, nil); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
}
