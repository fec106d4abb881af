// Command example runs wsloop's echo server with its counters exported to
// Prometheus on the WebSocket port itself (engine.WithHTTPHandler):
//
//	go run ./example        # echo on ws://127.0.0.1:9002, /metrics on the same port
//	curl -s 127.0.0.1:9002/metrics | grep ^wsloop_
//
// /metrics also carries the Go runtime's and the process's metrics. With
// -pprof, /debug/pprof/ serves the runtime's profiles (net/http/pprof) on
// the same port, which should then not be reachable from the internet.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsloop/wsloop/engine"
	"github.com/wsloop/wsloop/promexport"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	addr := flag.String("addr", "127.0.0.1:9002", "WebSocket listen address")
	withPprof := flag.Bool("pprof", false, "serve /debug/pprof/ too")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	mux := http.NewServeMux()
	srv, err := engine.New(echo{}, engine.WithCheckOrigin(engine.AnyOrigin), engine.WithLogger(log), engine.WithHTTPHandler(mux))
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		promexport.NewCollector(srv, prometheus.Labels{"server": "echo"}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if *withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		log.Info("echo on ws://"+srv.Addr().String(), "metrics", "http://"+srv.Addr().String()+"/metrics")
	}()
	if err := srv.ListenAndServe(ctx, *addr); !errors.Is(err, engine.ErrServerClosed) {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
}
