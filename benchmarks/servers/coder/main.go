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
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/coder/websocket"
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
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	flag.Int("loops", runtime.NumCPU(), "ignored (event-loop servers only)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(echo)}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println("READY", ln.Addr())

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // hijacked WebSocket connections end with the process
}
