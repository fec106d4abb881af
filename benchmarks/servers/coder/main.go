// Command coder is the coder/websocket echo server, as its echo example
// writes it: websocket.Accept, then one goroutine per connection copying
// each message's Reader into a Writer of the same type.
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/coder/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := context.Background()
	for {
		typ, rd, err := c.Reader(ctx)
		if err != nil {
			return
		}
		wr, err := c.Writer(ctx, typ)
		if err != nil {
			return
		}
		if _, err := io.Copy(wr, rd); err != nil {
			return
		}
		if err := wr.Close(); err != nil {
			return
		}
	}
}

func main() {
	addr, _ := srvutil.Flags()
	srvutil.ServeHTTP(addr, http.HandlerFunc(echo))
}
