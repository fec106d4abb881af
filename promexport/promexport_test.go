package promexport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/wsloop/wsloop/engine"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

// serve runs srv on a free port of 127.0.0.1 until the test ends, and
// checks that it shuts down cleanly.
func serve(t *testing.T, srv *engine.Server) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, engine.ErrServerClosed) {
			t.Error(err)
		}
	})
}

// A real server, real traffic, a real scrape: the figures must be the
// server's, under the names and types documented.
func TestCollector(t *testing.T) {
	srv, err := engine.New(echo{}, engine.WithEventLoops(2))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)

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
		"wsloop_idle_evictions_total", "wsloop_dropped_messages_total", "wsloop_slow_consumer_closes_total", `wsloop_loop_connections{loop="0",server="test"}`,
		"wsloop_tls_handshake_failures_total", "wsloop_tls_handshake_overflows_total", "wsloop_tls_handshakes", "wsloop_tls_handshakes_waiting",
		"wsloop_proxy_rejected_total", "wsloop_loop_stalls_total", "wsloop_http_requests_total", "wsloop_http_busy_total",
		"wsloop_http_too_large_total", "wsloop_http_in_progress"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}

// The rate limit's counters: a connection limited to one message, with
// RateLimitClose, sends two.
func TestCollectorRateLimit(t *testing.T) {
	srv, err := engine.New(echo{}, engine.WithRateLimit(engine.RateLimit{Messages: 1, Per: time.Minute, Action: engine.RateLimitClose}))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("one"))
	_ = c.WriteMessage(websocket.TextMessage, []byte("two"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("the second message got %v, want a 1008 close", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(srv, nil))
	want := `
# HELP wsloop_rate_limited_messages_total Messages refused by WithRateLimit (dropped, or the one that closed its connection).
# TYPE wsloop_rate_limited_messages_total counter
wsloop_rate_limited_messages_total 1
# HELP wsloop_rate_limit_closes_total Connections closed with 1008 by WithRateLimit (RateLimitClose).
# TYPE wsloop_rate_limit_closes_total counter
wsloop_rate_limit_closes_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wsloop_rate_limited_messages_total", "wsloop_rate_limit_closes_total"); err != nil {
		t.Fatal(err)
	}
}

// promhttp's handler on wsloop's own port (engine.WithHTTPHandler), run by
// an HTTP worker: the scrape sees itself in progress.
func TestScrapeOnWsloopPort(t *testing.T) {
	mux := http.NewServeMux()
	srv, err := engine.New(echo{}, engine.WithEventLoops(2), engine.WithHTTPHandler(mux))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(srv, nil))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	serve(t, srv)
	var body string
	for range 2 {
		resp, err := http.Get("http://" + srv.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("scrape: %d %v", resp.StatusCode, resp.Header)
		}
		body = string(b)
	}
	for _, line := range []string{"\nwsloop_http_requests_total 2\n", "\nwsloop_http_in_progress 1\n", "\nwsloop_http_busy_total 0\n"} {
		if !strings.Contains(body, line) {
			t.Errorf("the second scrape lacks %q", line)
		}
	}
}

// stubBroker is a broker that carries nothing and reports fixed counters,
// so that the broker metrics can be checked against known figures.
type stubBroker struct{ st engine.BrokerStats }

func (*stubBroker) Start(engine.Local) error                  { return nil }
func (*stubBroker) Publish(string, ws.OpCode, []byte) error   { return nil }
func (*stubBroker) Broadcast(ws.OpCode, []byte) error         { return nil }
func (*stubBroker) SendToKey(string, ws.OpCode, []byte) error { return nil }
func (*stubBroker) RoomChanged(string)                        {}
func (*stubBroker) KeyChanged(string)                         {}
func (*stubBroker) RemoteRoomLen(string) int                  { return 0 }
func (b *stubBroker) Stats() engine.BrokerStats               { return b.st }
func (*stubBroker) Close() error                              { return nil }

// Every broker counter is exported under its documented name.
func TestCollectorBroker(t *testing.T) {
	b := &stubBroker{engine.BrokerStats{Connected: true, Nodes: 2, Subscriptions: 3, Sent: 4, Failed: 5,
		Received: 6, Partial: 7, Dropped: 8, KeyMisses: 9, Reconnects: 10}}
	srv, err := engine.New(echo{}, engine.WithBroker(b))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(srv, nil))
	want := `
# HELP wsloop_broker_connected 1 while the broker is connected to its bus.
# TYPE wsloop_broker_connected gauge
wsloop_broker_connected 1
# HELP wsloop_broker_nodes Other nodes of the cluster heard from recently.
# TYPE wsloop_broker_nodes gauge
wsloop_broker_nodes 2
# HELP wsloop_broker_subscriptions Rooms and keys this node receives from the bus for.
# TYPE wsloop_broker_subscriptions gauge
wsloop_broker_subscriptions 3
# HELP wsloop_broker_sent_total Messages put on the bus for the other nodes; a publish counts once.
# TYPE wsloop_broker_sent_total counter
wsloop_broker_sent_total 4
# HELP wsloop_broker_failed_total Messages for the other nodes not put on the bus (bus down, buffer full).
# TYPE wsloop_broker_failed_total counter
wsloop_broker_failed_total 5
# HELP wsloop_broker_received_total Messages from other nodes queued for all their targets on this node.
# TYPE wsloop_broker_received_total counter
wsloop_broker_received_total 6
# HELP wsloop_broker_partial_total Messages from other nodes that some event loops of this node queued and others refused (queue full): the targets on those loops missed them.
# TYPE wsloop_broker_partial_total counter
wsloop_broker_partial_total 7
# HELP wsloop_broker_dropped_total Messages from other nodes that no target on this node got because it fell behind.
# TYPE wsloop_broker_dropped_total counter
wsloop_broker_dropped_total 8
# HELP wsloop_broker_key_misses_total SendToKey messages that reached this node after the key had left it.
# TYPE wsloop_broker_key_misses_total counter
wsloop_broker_key_misses_total 9
# HELP wsloop_broker_reconnects_total Times the broker reconnected to its bus.
# TYPE wsloop_broker_reconnects_total counter
wsloop_broker_reconnects_total 10
`
	names := []string{"wsloop_broker_connected", "wsloop_broker_nodes", "wsloop_broker_subscriptions", "wsloop_broker_sent_total",
		"wsloop_broker_failed_total", "wsloop_broker_received_total", "wsloop_broker_partial_total", "wsloop_broker_dropped_total",
		"wsloop_broker_key_misses_total", "wsloop_broker_reconnects_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
}

// scrape returns what c exports for st: each series (its description and
// labels) and its value.
func scrape(t *testing.T, c *Collector, st *engine.Stats) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 256)
	c.collect(st, ch)
	close(ch)
	got := map[string]float64{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		key := m.Desc().String()
		for _, l := range pb.GetLabel() {
			key += " " + l.GetName() + "=" + l.GetValue()
		}
		switch {
		case pb.Gauge != nil:
			got[key] = pb.GetGauge().GetValue()
		case pb.Counter != nil:
			got[key] = pb.GetCounter().GetValue()
		default:
			t.Fatalf("%s: neither a gauge nor a counter", key)
		}
	}
	return got
}

// leaf is one field of engine.Stats, nested ones (Broker's) included.
type leaf struct {
	name  string
	index []int
}

func leaves(typ reflect.Type, prefix string, index []int) []leaf {
	var ls []leaf
	for i := range typ.NumField() {
		f := typ.Field(i)
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			ls = append(ls, leaves(f.Type, prefix+f.Name+".", idx)...)
			continue
		}
		ls = append(ls, leaf{prefix + f.Name, idx})
	}
	return ls
}

// Every field of engine.Stats (and of its BrokerStats) is exported: set
// alone to 7 (true for a flag, one loop with 7 sockets for ConnsPerLoop),
// it makes one series read 7 (1) where the zero Stats gave 0 or nothing.
// A field added to Stats without a metric fails here (issue 23).
func TestCollectorExportsEveryStat(t *testing.T) {
	srv, err := engine.New(echo{})
	if err != nil {
		t.Fatal(err)
	}
	col := NewCollector(srv, nil)
	base := scrape(t, col, &engine.Stats{})
	fields := leaves(reflect.TypeFor[engine.Stats](), "", nil)
	if len(fields) < 30 {
		t.Fatalf("found only %d fields in engine.Stats", len(fields))
	}
	for _, f := range fields {
		var st engine.Stats
		v := reflect.ValueOf(&st).Elem().FieldByIndex(f.index)
		want := 7.0
		switch v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			v.SetInt(7)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			v.SetUint(7)
		case reflect.Float32, reflect.Float64:
			v.SetFloat(7)
		case reflect.Bool:
			v.SetBool(true)
			want = 1
		case reflect.Slice:
			if v.Type().Elem().Kind() != reflect.Int {
				t.Errorf("Stats.%s: a %s; teach this test to fill it", f.name, v.Type())
				continue
			}
			v.Set(reflect.ValueOf([]int{7}).Convert(v.Type()))
		default:
			t.Errorf("Stats.%s: a %s; teach this test to fill it", f.name, v.Type())
			continue
		}
		var changed []string
		found := false
		for key, x := range scrape(t, col, &st) {
			if b, ok := base[key]; ok && b == x {
				continue
			}
			changed = append(changed, fmt.Sprintf("%s = %v", key, x))
			found = found || x == want
		}
		switch {
		case len(changed) == 0:
			t.Errorf("Stats.%s is not exported: no metric changes when it is %v", f.name, want)
		case !found || len(changed) > 1:
			t.Errorf("Stats.%s = %v changed %v, want one series reading %v", f.name, want, changed, want)
		}
	}
}
