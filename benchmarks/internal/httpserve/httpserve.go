// Package httpserve is the part every net/http-based peer server of the
// suite shares: its flags, its listener, the READY line the orchestrator
// waits for, and the stop on SIGINT/SIGTERM. What each server does with a
// request (the library's own way to upgrade and echo) stays in its main.
package httpserve

import (
	"context"
	"crypto/tls"
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

	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

// Run parses -addr (and -loops, accepted and ignored: only event-loop
// servers have loops), serves h on it, prints "READY <addr>" and returns
// after SIGINT or SIGTERM. With -tls-cert and -tls-key it serves TLS with
// crypto/tls (http.Server.ServeTLS, ALPN http/1.1 only: a WebSocket
// upgrade is an HTTP/1.1 request).
func Run(h http.Handler) {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	flag.Int("loops", runtime.NumCPU(), "ignored (event-loop servers only)")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, serve TLS")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	if *certFile != "" {
		srv.TLSConfig = &tls.Config{NextProtos: []string{"http/1.1"}}
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2
		if _, err := tls.LoadX509KeyPair(*certFile, *keyFile); err != nil {
			log.Fatal(err) // before READY, not a silent ServeTLS failure after it
		}
		go func() { serveErr(srv.ServeTLS(ln, *certFile, *keyFile)) }()
	} else {
		go func() { serveErr(srv.Serve(ln)) }()
	}
	mallocs.Report()
	fmt.Println("READY", ln.Addr())

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx) // hijacked WebSocket connections end with the process
}

// serveErr ends the process when the server stops for any reason but
// Shutdown.
func serveErr(err error) {
	if !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
