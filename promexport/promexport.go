// Package promexport exports a wsloop server's counters (engine.Stats) to
// Prometheus. It is a module of its own, so that wsloop's core module does
// not depend on the Prometheus client:
//
//	go get github.com/wsloop/wsloop/promexport
//
// Register the collector and serve the registry's /metrics on any HTTP
// server, or on wsloop's own port through engine.WithHTTPHandler (the
// example in ./example does that):
//
//	mux := http.NewServeMux()
//	srv, _ := engine.New(h, engine.WithHTTPHandler(mux))
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(promexport.NewCollector(srv, nil))
//	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The collector reads Server.Stats once per scrape, on the scraping
// goroutine: no goroutine of its own, nothing on the event loops, no
// allocation between scrapes. Every metric is named wsloop_*; labels
// passed to NewCollector (a server name, say) are added to all of them.
//
// # Metrics
//
// Gauges: wsloop_connections (upgraded connections open), wsloop_sockets
// (sockets with state, handshaking ones included), wsloop_socket_cap,
// wsloop_loop_connections{loop="N"} (sockets on each event loop).
//
// Counters: wsloop_messages_in_total, wsloop_bytes_in_total,
// wsloop_messages_out_total, wsloop_bytes_out_total (data messages and
// their bytes; a broadcast counts once per target),
// wsloop_dropped_messages_total and wsloop_slow_consumer_closes_total
// (backpressure), wsloop_idle_evictions_total,
// wsloop_rejected_upgrades_total, wsloop_handshake_timeouts_total,
// wsloop_close_timeouts_total, wsloop_accept_errors_total,
// wsloop_shed_connections_total, wsloop_queue_full_total,
// wsloop_deflated_messages_total, wsloop_inflated_messages_total,
// wsloop_tls_handshake_failures_total, wsloop_tls_handshake_overflows_total,
// wsloop_proxy_rejected_total, wsloop_nethttp_upgrades_total (connections
// upgraded through ServeHTTP), wsloop_rate_limited_messages_total,
// wsloop_rate_limit_closes_total, wsloop_loop_stalls_total, and for plain
// HTTP served by an http.Handler wsloop_http_requests_total,
// wsloop_http_busy_total (503s) and wsloop_http_too_large_total (413s);
// gauges wsloop_tls_handshakes, wsloop_tls_handshakes_waiting and
// wsloop_http_in_progress. A restart's drain (Server.Drain): gauges
// wsloop_draining (1 or 0) and wsloop_drain_remaining, counter
// wsloop_drain_closes_total. Each is the engine.Stats field of the same
// meaning; see its documentation. Every field of engine.Stats is exported
// (TestCollectorExportsEveryStat fails on one that is not).
//
// A cluster's broker (engine.WithBroker; all zero without one), from
// Stats.Broker: gauges wsloop_broker_connected (1 or 0),
// wsloop_broker_nodes and wsloop_broker_subscriptions; counters
// wsloop_broker_sent_total, wsloop_broker_failed_total,
// wsloop_broker_received_total, wsloop_broker_partial_total,
// wsloop_broker_dropped_total, wsloop_broker_key_misses_total and
// wsloop_broker_reconnects_total.
package promexport

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsloop/wsloop/engine"
)

// metric is one exported figure.
type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*engine.Stats) float64
}

// Collector is a prometheus.Collector for one server.
type Collector struct {
	srv     *engine.Server
	metrics []metric
	perLoop *prometheus.Desc
}

// NewCollector returns a collector of srv's counters; constLabels (may be
// nil) are added to every metric.
func NewCollector(srv *engine.Server, constLabels prometheus.Labels) *Collector {
	c := &Collector{srv: srv}
	add := func(name, help string, kind prometheus.ValueType, v func(*engine.Stats) float64) {
		c.metrics = append(c.metrics, metric{prometheus.NewDesc("wsloop_"+name, help, nil, constLabels), kind, v})
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	add("connections", "Upgraded WebSocket connections open now.", gauge, func(s *engine.Stats) float64 { return float64(s.Connections) })
	add("sockets", "Sockets with state, handshaking ones included.", gauge, func(s *engine.Stats) float64 { return float64(s.Sockets) })
	add("socket_cap", "The cap on open sockets (WithMaxConnections, or derived from RLIMIT_NOFILE).", gauge, func(s *engine.Stats) float64 { return float64(s.SocketCap) })
	add("messages_in_total", "Data messages received.", counter, func(s *engine.Stats) float64 { return float64(s.MessagesIn) })
	add("bytes_in_total", "Payload bytes of data messages received.", counter, func(s *engine.Stats) float64 { return float64(s.BytesIn) })
	add("messages_out_total", "Data messages queued to connections; a broadcast counts once per target.", counter, func(s *engine.Stats) float64 { return float64(s.MessagesOut) })
	add("bytes_out_total", "Frame bytes queued to connections.", counter, func(s *engine.Stats) float64 { return float64(s.BytesOut) })
	add("dropped_messages_total", "Messages dropped for slow consumers (WithSlowConsumerPolicy).", counter, func(s *engine.Stats) float64 { return float64(s.Dropped) })
	add("slow_consumer_closes_total", "Connections closed for being slow consumers.", counter, func(s *engine.Stats) float64 { return float64(s.SlowCloses) })
	add("rate_limited_messages_total", "Messages refused by WithRateLimit (dropped, or the one that closed its connection).", counter, func(s *engine.Stats) float64 { return float64(s.RateLimited) })
	add("rate_limit_closes_total", "Connections closed with 1008 by WithRateLimit (RateLimitClose).", counter, func(s *engine.Stats) float64 { return float64(s.RateLimitCloses) })
	add("idle_evictions_total", "Connections evicted by the idle timeout.", counter, func(s *engine.Stats) float64 { return float64(s.Evictions) })
	add("rejected_upgrades_total", "Sockets answered with an HTTP error instead of 101.", counter, func(s *engine.Stats) float64 { return float64(s.RejectedUpgrades) })
	add("handshake_timeouts_total", "Sockets closed for not completing their upgrade in time.", counter, func(s *engine.Stats) float64 { return float64(s.HandshakeTimeouts) })
	add("close_timeouts_total", "Connections closed because the peer did not answer a close frame in time.", counter, func(s *engine.Stats) float64 { return float64(s.CloseTimeouts) })
	add("accept_errors_total", "Accepts that failed (out of descriptors, ...); the server kept serving.", counter, func(s *engine.Stats) float64 { return float64(s.AcceptErrors) })
	add("shed_connections_total", "Connections closed at once for want of a descriptor or a loop.", counter, func(s *engine.Stats) float64 { return float64(s.Shed) })
	add("queue_full_total", "Refusals by an event loop's full queue (WithMaxQueuedBytes); a call refused by two loops counts twice.", counter, func(s *engine.Stats) float64 { return float64(s.QueueFull) })
	add("deflated_messages_total", "Messages compressed (permessage-deflate); a publish counts once.", counter, func(s *engine.Stats) float64 { return float64(s.Deflated) })
	add("inflated_messages_total", "Compressed messages received and decompressed.", counter, func(s *engine.Stats) float64 { return float64(s.Inflated) })
	add("tls_handshake_failures_total", "TLS handshakes that failed (bad input, no shared version or cipher).", counter, func(s *engine.Stats) float64 { return float64(s.TLSHandshakeFailures) })
	add("tls_handshake_overflows_total", "Sockets closed for sending more than WithMaxTLSHandshakeBytes before their TLS handshake ended.", counter, func(s *engine.Stats) float64 { return float64(s.TLSHandshakeOverflows) })
	add("tls_handshakes", "TLS handshakes running now.", gauge, func(s *engine.Stats) float64 { return float64(s.TLSHandshakes) })
	add("tls_handshakes_waiting", "TLS handshakes waiting for a slot (WithMaxTLSHandshakes).", gauge, func(s *engine.Stats) float64 { return float64(s.TLSHandshakesWaiting) })
	add("proxy_rejected_total", "Sockets closed for a malformed or untrusted PROXY header.", counter, func(s *engine.Stats) float64 { return float64(s.ProxyRejected) })
	add("http_requests_total", "Plain HTTP requests handed to the http.Handler (WithHTTPHandler).", counter, func(s *engine.Stats) float64 { return float64(s.HTTPRequests) })
	add("http_busy_total", "Plain HTTP requests answered with 503 because every HTTP worker was busy (WithHTTPWorkers).", counter, func(s *engine.Stats) float64 { return float64(s.HTTPBusy) })
	add("http_too_large_total", "Plain HTTP requests answered with 413: a body past WithMaxRequestBody.", counter, func(s *engine.Stats) float64 { return float64(s.HTTPTooLarge) })
	add("http_in_progress", "http.Handler calls running now, each on a worker goroutine.", gauge, func(s *engine.Stats) float64 { return float64(s.HTTPInProgress) })
	add("nethttp_upgrades_total", "Connections upgraded through ServeHTTP (mounted on net/http) and handed to a loop; they count in wsloop_connections too.", counter, func(s *engine.Stats) float64 { return float64(s.NetHTTPUpgrades) })
	add("loop_stalls_total", "Times an event loop went without coming back to its poller for WithStallThreshold (a callback that blocks).", counter, func(s *engine.Stats) float64 { return float64(s.LoopStalls) })
	add("draining", "1 while a Drain is under way.", gauge, func(s *engine.Stats) float64 {
		if s.Draining {
			return 1
		}
		return 0
	})
	add("handed_over_total", "Connections handed to a new process by Restart (RestartKeep).", counter, func(s *engine.Stats) float64 { return float64(s.HandedOver) })
	add("handoff_floods_total", "Connections closed for sending more than a hand-off holds unparsed.", counter, func(s *engine.Stats) float64 { return float64(s.HandOffFloods) })
	add("history_rooms", "Rooms keeping history now (WithHistory).", gauge, func(s *engine.Stats) float64 { return float64(s.HistoryRooms) })
	add("history_messages", "Messages the rooms' histories keep.", gauge, func(s *engine.Stats) float64 { return float64(s.HistoryMessages) })
	add("history_bytes", "Frame bytes the rooms' histories keep (WithHistoryBytes bounds them).", gauge, func(s *engine.Stats) float64 { return float64(s.HistoryBytes) })
	add("handed_over_bytes_total", "Bytes of output not yet written that travelled with the connections handed to a new process.", counter, func(s *engine.Stats) float64 { return float64(s.HandedOverBytes) })
	add("adopted_total", "Connections taken over from the process this one replaced.", counter, func(s *engine.Stats) float64 { return float64(s.Adopted) })
	add("drain_closes_total", "Connections a Drain closed with 1012 at their turn.", counter, func(s *engine.Stats) float64 { return float64(s.DrainClosed) })
	add("drain_remaining", "Connections open when the Drain began whose turn has not come yet.", gauge, func(s *engine.Stats) float64 { return float64(s.DrainRemaining) })
	// A cluster's broker (engine.WithBroker); zero without one.
	add("broker_connected", "1 while the broker is connected to its bus.", gauge, func(s *engine.Stats) float64 {
		if s.Broker.Connected {
			return 1
		}
		return 0
	})
	add("broker_nodes", "Other nodes of the cluster heard from recently.", gauge, func(s *engine.Stats) float64 { return float64(s.Broker.Nodes) })
	add("broker_subscriptions", "Rooms and keys this node receives from the bus for.", gauge, func(s *engine.Stats) float64 { return float64(s.Broker.Subscriptions) })
	add("broker_sent_total", "Messages put on the bus for the other nodes; a publish counts once.", counter, func(s *engine.Stats) float64 { return float64(s.Broker.Sent) })
	add("broker_failed_total", "Messages for the other nodes not put on the bus (bus down, buffer full).", counter, func(s *engine.Stats) float64 { return float64(s.Broker.Failed) })
	add("broker_received_total", "Messages from other nodes queued for all their targets on this node.", counter, func(s *engine.Stats) float64 { return float64(s.Broker.Received) })
	add("broker_partial_total", "Messages from other nodes that some event loops of this node queued and others refused (queue full): the targets on those loops missed them.", counter, func(s *engine.Stats) float64 { return float64(s.Broker.Partial) })
	add("broker_dropped_total", "Messages from other nodes that no target on this node got because it fell behind.", counter, func(s *engine.Stats) float64 { return float64(s.Broker.Dropped) })
	add("broker_key_misses_total", "SendToKey messages that reached this node after the key had left it.", counter, func(s *engine.Stats) float64 { return float64(s.Broker.KeyMisses) })
	add("broker_reconnects_total", "Times the broker reconnected to its bus.", counter, func(s *engine.Stats) float64 { return float64(s.Broker.Reconnects) })
	c.perLoop = prometheus.NewDesc("wsloop_loop_connections", "Sockets on each event loop.", []string{"loop"}, constLabels)
	return c
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
	ch <- c.perLoop
}

// Collect reads the server's counters once and sends every metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	c.collect(&st, ch)
}

// collect sends every metric of st.
func (c *Collector) collect(st *engine.Stats, ch chan<- prometheus.Metric) {
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
	for i, n := range st.ConnsPerLoop {
		ch <- prometheus.MustNewConstMetric(c.perLoop, prometheus.GaugeValue, float64(n), strconv.Itoa(i))
	}
}
