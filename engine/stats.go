package engine

import "sync/atomic"

// Stats is a snapshot of a server's counters; see Server.Stats.
type Stats struct {
	Connections           int         // upgraded connections open now
	Sockets               int         // sockets with state, handshaking ones included
	ConnsPerLoop          []int       // sockets on each event loop, handshaking and closing ones included (one entry per loop; a loop that has not served a socket yet counts 0)
	MessagesIn            uint64      // data messages received (control frames are not counted)
	BytesIn               uint64      // payload bytes of messages received
	MessagesOut           uint64      // data messages queued to connections (a broadcast counts once per target; control frames are not counted)
	BytesOut              uint64      // frame bytes queued to connections
	Dropped               uint64      // messages dropped for slow consumers (WithSlowConsumerPolicy)
	SlowCloses            uint64      // connections closed for being slow consumers
	Evictions             uint64      // connections evicted by the idle timeout
	HandshakeTimeouts     uint64      // sockets closed for not completing their upgrade within WithHandshakeTimeout (idle keep-alive HTTP connections are not counted)
	CloseTimeouts         uint64      // connections closed because the peer did not answer a close frame within WithCloseTimeout
	RejectedUpgrades      uint64      // sockets answered with an HTTP error instead of 101 (cap, bad request, hooks)
	SocketCap             int         // the cap on open sockets (WithMaxConnections, or derived from RLIMIT_NOFILE)
	AcceptErrors          uint64      // accepts that failed (out of descriptors, out of memory, ...); the server kept serving
	Shed                  uint64      // connections closed at once because the process had no descriptor to spare (answered with 503 when one was free for it) or a loop could not take them
	QueueFull             uint64      // refusals by a loop's full queue (WithMaxQueuedBytes): a call refused by two loops (a Publish, say) counts twice
	Deflated              uint64      // messages compressed (permessage-deflate); a publish or broadcast counts once, however many connections get it
	Inflated              uint64      // compressed messages received and decompressed
	TLSHandshakeFailures  uint64      // TLS handshakes that failed: bad input, no shared version or cipher (WithTLS); a socket that closed first is not counted
	TLSHandshakeOverflows uint64      // sockets closed because what they sent before their TLS handshake ended would have passed WithMaxTLSHandshakeBytes (per socket or in total)
	TLSHandshakes         int         // TLS handshakes running now, each on a goroutine (WithMaxTLSHandshakes)
	TLSHandshakesWaiting  int         // TLS handshakes waiting for a slot: sockets whose first record is in
	LoopStalls            uint64      // times an event loop went without coming back to its poller for WithStallThreshold (a callback that blocks); each is logged with the loop's stack
	ProxyRejected         uint64      // sockets closed for a malformed PROXY header, or one from a source not trusted (WithProxyProtocol)
	NetHTTPUpgrades       uint64      // connections upgraded through ServeHTTP (mounted on net/http) and handed to a loop; they count in Connections too
	RateLimited           uint64      // messages refused by WithRateLimit (dropped, or the one that closed its connection); not in MessagesIn
	RateLimitCloses       uint64      // connections closed with 1008 by WithRateLimit (RateLimitClose)
	HTTPRequests          uint64      // requests handed to the WithHTTPHandler handler
	HTTPBusy              uint64      // requests answered with 503 because every HTTP worker was busy (WithHTTPWorkers)
	HTTPTooLarge          uint64      // requests answered with 413: a body past WithMaxRequestBody
	HTTPInProgress        int         // WithHTTPHandler calls running now, each on a worker goroutine
	Draining              bool        // a Drain is under way: from its start until it returns
	DrainClosed           uint64      // connections a Drain sent 1012 at their turn (not those that closed on their own first)
	DrainRemaining        int         // connections open when the Drain began whose turn has not come yet (0 once it ends)
	HandedOver            uint64      // connections handed to a new process by Restart(RestartKeep), alive there
	HandedOverBytes       uint64      // bytes of output not yet written that travelled with those connections, to be written by the new process
	Adopted               uint64      // connections this process took over from the one it replaced
	HandOffFloods         uint64      // connections closed with 1012 for sending more than a hand-off holds unparsed
	HistoryRooms          int         // rooms keeping history now (WithHistory)
	HistoryMessages       int         // messages the rooms' histories keep
	HistoryBytes          int         // frame bytes the rooms' histories keep (bounded by WithHistoryBytes)
	Broker                BrokerStats // the broker's counters (WithBroker); zero without one
}

// loopStats are one loop's counters: written by its loop (and by senders,
// for the output counters), read by Server.Stats. Padded so that loops do
// not share cache lines.
type loopStats struct {
	conns       atomic.Int64
	msgsIn      atomic.Uint64
	bytesIn     atomic.Uint64
	msgsOut     atomic.Uint64
	bytesOut    atomic.Uint64
	rateLimited atomic.Uint64
	_           [16]byte
}

// Stats returns the server's counters. Safe from any goroutine; each
// figure is read atomically, the set is not a consistent cut.
func (s *Server) Stats() Stats {
	st := Stats{
		Connections:           int(s.upgraded.Load()),
		Sockets:               int(s.sockets.Load()),
		Dropped:               s.dropped.Load(),
		SlowCloses:            s.slowCloses.Load(),
		Evictions:             s.evictions.Load(),
		HandshakeTimeouts:     s.hsTimeouts.Load(),
		CloseTimeouts:         s.closeTimeouts.Load(),
		RejectedUpgrades:      s.rejected.Load(),
		NetHTTPUpgrades:       s.mounted.upgrades.Load(),
		SocketCap:             int(s.socketCap.Load()),
		AcceptErrors:          s.acceptErrors.Load(),
		Shed:                  s.shed.Load(),
		QueueFull:             s.queueFull.Load(),
		Deflated:              s.deflated.Load(),
		Inflated:              s.inflated.Load(),
		TLSHandshakeFailures:  s.tlsFailures.Load(),
		TLSHandshakeOverflows: s.tlsOverflows.Load(),
		ProxyRejected:         s.proxyRejected.Load(),
		LoopStalls:            s.loopStalls.Load(),
		RateLimitCloses:       s.rateLimitCloses.Load(),
		HTTPRequests:          s.httpPool.taken.Load(),
		HTTPBusy:              s.httpBusy.Load(),
		HTTPTooLarge:          s.httpTooLarge.Load(),
		HTTPInProgress:        s.httpInProgress(),
		Draining:              s.drainSt.active.Load(),
		DrainClosed:           s.drainSt.closed.Load(),
		DrainRemaining:        int(s.drainSt.remaining.Load()),
		HandedOver:            s.handOffs.Load(),
		HandedOverBytes:       s.handOffBytes.Load(),
		Adopted:               s.adopted.Load(),
		HandOffFloods:         s.frozenFloods.Load(),
	}
	st.HistoryRooms, st.HistoryMessages, st.HistoryBytes = s.historyStats()
	st.TLSHandshakes, st.TLSHandshakesWaiting = s.handshakes.counts()
	if b := s.opts.broker; b != nil {
		st.Broker = b.Stats()
	}
	s.eachLoop(func(l *loop) {
		st.ConnsPerLoop = append(st.ConnsPerLoop, int(l.stats.conns.Load()))
		st.MessagesIn += l.stats.msgsIn.Load()
		st.BytesIn += l.stats.bytesIn.Load()
		st.MessagesOut += l.stats.msgsOut.Load()
		st.BytesOut += l.stats.bytesOut.Load()
		st.RateLimited += l.stats.rateLimited.Load()
	})
	for len(st.ConnsPerLoop) < s.opts.eventLoops {
		st.ConnsPerLoop = append(st.ConnsPerLoop, 0)
	}
	return st
}
