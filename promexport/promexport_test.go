package promexport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wsloop/wsloop/engine"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

// A real server, real traffic, a real scrape: the figures must be the
// server's, under the names and types documented.
func TestCollector(t *testing.T) {
	srv, err := engine.New(echo{}, engine.WithEventLoops(2))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, engine.ErrServerClosed) {
			t.Error(err)
		}
	}()

	c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 {
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := http.Get("http://" + srv.Addr().String() + "/"); err == nil { // 426: a rejected upgrade
		resp.Body.Close()
	}

	reg := prometheus.NewRegistry()
	col := NewCollector(srv, prometheus.Labels{"server": "test"})
	reg.MustRegister(col)
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
	want := `
# HELP wsloop_connections Upgraded WebSocket connections open now.
# TYPE wsloop_connections gauge
wsloop_connections{server="test"} 1
# HELP wsloop_messages_in_total Data messages received.
# TYPE wsloop_messages_in_total counter
wsloop_messages_in_total{server="test"} 3
# HELP wsloop_bytes_in_total Payload bytes of data messages received.
# TYPE wsloop_bytes_in_total counter
wsloop_bytes_in_total{server="test"} 15
# HELP wsloop_messages_out_total Data messages queued to connections; a broadcast counts once per target.
# TYPE wsloop_messages_out_total counter
wsloop_messages_out_total{server="test"} 3
# HELP wsloop_rejected_upgrades_total Sockets answered with an HTTP error instead of 101.
# TYPE wsloop_rejected_upgrades_total counter
wsloop_rejected_upgrades_total{server="test"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wsloop_connections", "wsloop_messages_in_total",
		"wsloop_bytes_in_total", "wsloop_messages_out_total", "wsloop_rejected_upgrades_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(col, "wsloop_loop_connections"); n != 2 {
		t.Fatalf("%d wsloop_loop_connections series, want one per loop (2)", n)
	}

	// And over HTTP, as Prometheus scrapes it.
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	resp, err := http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, name := range []string{"wsloop_sockets", "wsloop_socket_cap", "wsloop_handshake_timeouts_total", "wsloop_close_timeouts_total",
		"wsloop_idle_evictions_total", "wsloop_dropped_messages_total", "wsloop_slow_consumer_closes_total", `wsloop_loop_connections{loop="0",server="test"}`} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}
