// Command wsloop-nethttp is the benchmark's wsloop echo server mounted on
// net/http, as an application that already runs an http.Server embeds it:
// engine.Server.Run runs the loops without a listener of their own, an
// http.ServeMux routes every path to the Server (ServeHTTP), and with
// -tls-cert and -tls-key TLS is the http.Server's (ServeTLS), so that
// hijacking yields a *tls.Conn that the loops take over. Settings are
// servers/wsloop's; SIGINT/SIGTERM shut both down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"

	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, the http.Server serves TLS")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()

	srv, err := engine.New(echo{},
		engine.WithEventLoops(*loops),
		engine.WithMaxMessageSize(1<<20),
		engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithPingInterval(time.Hour),
		engine.WithIdleTimeout(2*time.Hour),
		engine.WithCloseTimeout(500*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	<-srv.Ready()

	mux := http.NewServeMux()
	mux.Handle("/", srv)
	hs := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		var err error
		if *certFile != "" {
			cfg, cerr := devcert.Config(*certFile, *keyFile)
			if cerr != nil {
				log.Fatal(cerr)
			}
			hs.TLSConfig = cfg
			err = hs.ServeTLS(ln, "", "")
		} else {
			err = hs.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	mallocs.Report()
	fmt.Println("READY", ln.Addr())
	if err := <-ran; !errors.Is(err, engine.ErrServerClosed) {
		log.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
}
