// Command coder is the coder/websocket echo server, written as the
// library's echo example writes it: websocket.Accept, then one goroutine per
// connection copying each message's Reader into a Writer of the same type
// with io.Copy. Unlike the example there is no per-message timeout or rate
// limit (idle connections must stay), and the read limit is 1 MiB.
//
// With this pattern every Write on the message writer is a frame of its own
// and Close adds an empty final frame, so a message comes back fragmented:
// two frames up to 32 KiB (io.Copy's buffer), one more per further 32 KiB.
// That is what the documented pattern costs; c.Read/c.Write would send one
// frame but allocate each message.
package main

import (
	"context"
	"io"
	"net/http"

	"github.com/coder/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
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

func main() { httpserve.Run(http.HandlerFunc(echo)) }
