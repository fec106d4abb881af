// Command example runs wsloop's echo server with its counters exported to
// Prometheus on a port of their own:
//
//	go run ./example -addr 127.0.0.1:9001 -metrics 127.0.0.1:9090
//	curl -s 127.0.0.1:9090/metrics | grep ^wsloop_
//
// /metrics also carries the Go runtime's and the process's metrics, and
// /debug/pprof/ the runtime's profiles (net/http/pprof) on the same port,
// which should not be reachable from the internet.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on the metrics port
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
	addr := flag.String("addr", "127.0.0.1:9001", "WebSocket listen address")
	metrics := flag.String("metrics", "127.0.0.1:9090", "listen address of /metrics and /debug/pprof/")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	srv, err := engine.New(echo{}, engine.WithCheckOrigin(engine.AnyOrigin), engine.WithLogger(log))
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
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	go func() {
		log.Info("metrics on http://" + *metrics + "/metrics")
		if err := http.ListenAndServe(*metrics, nil); err != nil {
			log.Error("metrics server", "err", err)
			os.Exit(1)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		log.Info("echo on ws://" + srv.Addr().String())
	}()
	if err := srv.ListenAndServe(ctx, *addr); !errors.Is(err, engine.ErrServerClosed) {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
}
