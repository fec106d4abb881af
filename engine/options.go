package engine

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// Option configures a Server. Pass options to New, which validates them.
type Option func(*options)

// HeaderField is an HTTP header line added to a response.
type HeaderField = codec.HeaderField

// HTTPResponse is the answer to a plain HTTP request (one that does not ask
// for a WebSocket upgrade), returned by the handler set with
// WithLoopHTTPHandler. Content-Length is written from Body; the answer to a
// HEAD request leaves Body out.
type HTTPResponse struct {
	Status int           // 200 when 0
	Header []HeaderField // e.g. Content-Type
	Body   []byte
	// Pass hands the request to the WithHTTPHandler handler instead (426
	// when there is none); the other fields are ignored.
	Pass bool
}

type options struct {
	eventLoops       int
	maxMessageSize   int
	maxHeaderBytes   int
	readBufferCap    int
	writeBufferCap   int
	maxConns         int
	subprotocols     []string
	checkOrigin      func(r *Request) bool
	upgradeHook      func(r *Request) (any, error)
	loopHTTP         func(r *Request) HTTPResponse
	httpHandler      http.Handler
	httpWorkers      int
	maxRequestBody   int
	maxResponseBuf   int
	responseHeaders  []HeaderField
	logger           *slog.Logger
	pingInterval     time.Duration
	idleTimeout      time.Duration
	handshakeTimeout time.Duration
	closeTimeout     time.Duration
	tick             time.Duration
	appPing, appPong string
	maxOutbound      int
	maxQueued        int
	fanSlice         int
	slowPolicy       SlowConsumerPolicy
	shards           int
	compress         bool
	compressLevel    int
	compressMin      int
	deflate          codec.DeflatePolicy
	broker           Broker
	tls              *tls.Config
	proxyTrusted     []netip.Prefix
	maxTLSHandshakes int
	stallThreshold   time.Duration
	tlsInPerSocket   int
	tlsInTotal       int
	rateLimit        *RateLimit // WithRateLimit, compiled into limiter by validate
	limiter          *limiter
	noReserve        bool // tests: shed no connection when descriptors run out, only back off
	enrollOnly       bool // tests: hand accepted sockets to the loops with gnet's Enroll (gnetlink.go)
	reusePort        bool
	historyRule      func(room string) History
	envelope         Envelope
	historyBytes     int
}

// SlowConsumerPolicy says what happens to a message that would push a
// connection's outbound bytes (queued in the server, not yet taken by the
// socket) past WithMaxOutboundBytes.
type SlowConsumerPolicy uint8

const (
	// DropMessage drops that message for that connection; it is counted in
	// Stats.Dropped and the send returns ErrSlowConsumer.
	DropMessage SlowConsumerPolicy = iota
	// ClosePolicyViolation closes the connection with 1008.
	ClosePolicyViolation
	// CloseTryAgainLater closes the connection with 1013.
	CloseTryAgainLater
)

// code is the close code of a closing policy.
func (p SlowConsumerPolicy) code() ws.StatusCode {
	if p == CloseTryAgainLater {
		return 1013
	}
	return ws.StatusPolicyViolation
}

func defaultOptions() options {
	return options{
		eventLoops:       runtime.NumCPU(),
		maxMessageSize:   1 << 20,
		maxHeaderBytes:   8 << 10,
		readBufferCap:    64 << 10,
		writeBufferCap:   64 << 10,
		checkOrigin:      SameOrigin,
		pingInterval:     25 * time.Second,
		idleTimeout:      60 * time.Second,
		handshakeTimeout: 5 * time.Second,
		maxTLSHandshakes: max(256, 128*runtime.NumCPU()),
		tlsInPerSocket:   64 << 10,
		tlsInTotal:       8 << 20,
		closeTimeout:     5 * time.Second,
		tick:             100 * time.Millisecond,
		maxOutbound:      4 << 20,
		httpWorkers:      64,
		maxRequestBody:   1 << 20,
		maxResponseBuf:   64 << 10,
		maxQueued:        32 << 20,
		fanSlice:         defaultFanSlice,
		compress:         true,
		compressLevel:    1,
		compressMin:      defaultCompressMin,
		historyBytes:     64 << 20,
	}
}

// WithEventLoops sets the number of event loops. Default: runtime.NumCPU().
func WithEventLoops(n int) Option { return func(o *options) { o.eventLoops = n } }

// WithReusePort sets SO_REUSEPORT on the listening socket, so that several
// servers (in one process or in several, as nginx workers do) can listen
// on the same address and port: the kernel spreads new connections over
// them by a hash of the client's address and port. Every server that
// shares the port must set it (and run as the same user). For running
// more nodes than one process's descriptor limit allows on one machine
// behind one address; a restart in place does not need it (Restart hands
// the listener itself over). TCP only. Default: off.
func WithReusePort(on bool) Option { return func(o *options) { o.reusePort = on } }

// WithMaxMessageSize caps a message's payload in bytes, summed over its
// fragments; a peer that sends more is closed with 1009. Default: 1 MiB.
func WithMaxMessageSize(n int) Option { return func(o *options) { o.maxMessageSize = n } }

// WithMaxHeaderBytes caps the upgrade request's header block in bytes; a
// larger one is answered with 431. Default: 8 KiB.
func WithMaxHeaderBytes(n int) Option { return func(o *options) { o.maxHeaderBytes = n } }

// WithReadBufferCap sets the size in bytes of each event loop's read buffer,
// the most one read system call takes. Default: 64 KiB.
func WithReadBufferCap(n int) Option { return func(o *options) { o.readBufferCap = n } }

// WithWriteBufferCap sets the size in bytes of the ring part of a
// connection's outbound buffer, used only while the socket is full.
// Default: 64 KiB.
func WithWriteBufferCap(n int) Option { return func(o *options) { o.writeBufferCap = n } }

// WithMaxConnections caps the number of open sockets, upgraded or not: past
// it a new socket is answered with 503 and closed at once, before any
// per-connection state is allocated, so the cap bounds the descriptors
// the server holds. Default: 0, which derives the cap from the process's
// descriptor limit (RLIMIT_NOFILE, read when ListenAndServe starts) less a
// reserve for everything else the process opens: 1/64 of the limit, at
// least 32 and at most 1024 (19,688 sockets for a limit of 20,000). If the
// process runs out of descriptors anyway (the application holds more than
// the reserve), the server keeps serving: it answers waiting connections
// with 503 and closes them until descriptors free up.
func WithMaxConnections(n int) Option { return func(o *options) { o.maxConns = n } }

// WithSubprotocols lists the subprotocols the server speaks, most preferred
// first; the first one the client also offers is selected. Default: none.
func WithSubprotocols(protocols ...string) Option {
	return func(o *options) { o.subprotocols = append([]string(nil), protocols...) }
}

// WithCheckOrigin sets the origin check run on every upgrade; returning
// false refuses it with 403. Default: SameOrigin. Use AnyOrigin to accept
// every origin (for non-browser clients or public APIs).
func WithCheckOrigin(fn func(r *Request) bool) Option {
	return func(o *options) { o.checkOrigin = fn }
}

// WithUpgradeHook sets a function that sees every valid upgrade request
// after the origin check. It returns a value attached to the connection
// (Conn.Value) or an error refusing the upgrade: a *RejectError (see Reject)
// answers with its status, any other error with 403. It runs on the event
// loop and must not block. Default: none.
func WithUpgradeHook(fn func(r *Request) (value any, err error)) Option {
	return func(o *options) { o.upgradeHook = fn }
}

// WithLoopHTTPHandler answers plain HTTP requests (those that do not ask
// for a WebSocket upgrade) on the event loop itself, with no goroutine and
// no copy of the request: the cheapest way to serve a health check that a
// balancer polls many times a second, or a small fixed page. fn runs on
// the event loop and must not block (use WithHTTPHandler for anything that
// may). Its response is written and, when the client allows it (HTTP/1.1
// without Connection: close, and a request without a body, which this path
// does not read), the connection stays open for the next request, as a
// load balancer polling a health endpoint expects; it may also upgrade.
// It is closed instead when fn's header says Connection: close, when the
// server is shutting down, or when the answers the client has not read
// reach WithMaxOutboundBytes (a client that pipelines requests and never
// reads cannot grow the server). An idle keep-alive connection is closed
// after the handshake timeout (WithHandshakeTimeout) and counts against
// WithMaxConnections like any socket. 204 and 304 answers carry no body.
// A response with Pass set hands the request on to WithHTTPHandler, so
// that both can serve one port. Default: none.
func WithLoopHTTPHandler(fn func(r *Request) HTTPResponse) Option {
	return func(o *options) { o.loopHTTP = fn }
}

// WithHTTPHandler serves plain HTTP requests (those that do not ask for a
// WebSocket upgrade) with a standard http.Handler: promhttp.Handler(),
// net/http/pprof, a REST mux, a file server, on the WebSocket port. The
// handler runs on a goroutine of a bounded pool (WithHTTPWorkers), never
// on an event loop, so it may block; the loop reads the request and its
// body (WithMaxRequestBody) first. A request that finds every worker busy
// is answered with 503 and Retry-After at once. The response is buffered
// up to WithMaxResponseBuffer and sent with Content-Length when it fits,
// else chunked (HTTP/1.1) as it is written; http.Flusher pushes what is
// buffered. Keep-alive and pipelining work as with net/http; r.Context()
// ends when the client goes away or the handler returns. Requests that
// WithLoopHTTPHandler answers never reach it. Default: none; plain
// requests get 426 Upgrade Required.
func WithHTTPHandler(h http.Handler) Option { return func(o *options) { o.httpHandler = h } }

// WithHTTPWorkers caps the goroutines that run the WithHTTPHandler
// handler, which is the number of requests it serves at once. Workers
// start on demand and exit after 10 s idle. Past the cap, a request is
// answered with 503 (Stats.HTTPBusy). Default: 64.
func WithHTTPWorkers(n int) Option { return func(o *options) { o.httpWorkers = n } }

// WithMaxRequestBody caps the body of a request to the WithHTTPHandler
// handler, in bytes (after de-chunking). The loop reads the whole body
// before the handler runs; a larger one is answered with 413 and the
// connection closes (Stats.HTTPTooLarge). Default: 1 MiB.
func WithMaxRequestBody(n int) Option { return func(o *options) { o.maxRequestBody = n } }

// WithMaxResponseBuffer sets how many bytes of a WithHTTPHandler
// response are buffered before they are sent: a response that fits is
// sent whole with Content-Length, a larger one is streamed in pieces of
// this size (chunked). A handler that writes faster than its client reads
// blocks in Write or Flush once this much waits for the socket. Default:
// 64 KiB.
func WithMaxResponseBuffer(n int) Option { return func(o *options) { o.maxResponseBuf = n } }

// WithResponseHeaders adds header lines to every 101 response. Default: none.
func WithResponseHeaders(fields ...HeaderField) Option {
	return func(o *options) { o.responseHeaders = append(o.responseHeaders, fields...) }
}

// WithLogger sets the logger for panics and unexpected errors. Default: nil,
// the server logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithPingInterval sets how long a connection may stay silent before the
// server pings it. Default: 25 s.
func WithPingInterval(d time.Duration) Option { return func(o *options) { o.pingInterval = d } }

// WithIdleTimeout sets how long a connection may stay silent (no frame of
// any kind, pongs included) before it is evicted: its socket is closed and
// OnClose gets ErrIdleTimeout. Must exceed the ping interval. Default: 60 s.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithHandshakeTimeout bounds the time from accepting a socket to a
// complete upgrade request; slower clients are dropped. Default: 5 s.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(o *options) { o.handshakeTimeout = d }
}

// WithCloseTimeout bounds the wait for the peer's close frame after the
// server sent its own; then the socket is closed. It also bounds how long
// an HTTP answer after which the socket closes (a refused upgrade,
// Connection: close) may take to leave; the socket then waits up to
// 500 ms more (at most this timeout) for the client to close, holding its
// place under WithMaxConnections meanwhile. Default: 5 s.
func WithCloseTimeout(d time.Duration) Option { return func(o *options) { o.closeTimeout = d } }

// WithTick sets the resolution of the timing wheels that drive every
// per-connection timer: timers fire up to one tick late, never early.
// Default: 100 ms.
func WithTick(d time.Duration) Option { return func(o *options) { o.tick = d } }

// WithAppHeartbeat makes the server answer the text message ping with the
// text message pong itself, without calling OnMessage: a heartbeat for
// clients that cannot send protocol pings (browsers' JavaScript cannot).
// Like every frame, it keeps the connection alive. Default: off.
func WithAppHeartbeat(ping, pong string) Option {
	return func(o *options) { o.appPing, o.appPong = ping, pong }
}

// WithMaxOutboundBytes caps the bytes queued for one connection and not
// yet taken by its socket; a client that stops reading cannot make the
// server hold more (than the cap plus one message: a message larger than
// the cap is sent when nothing else is queued). Default: 4 MiB.
func WithMaxOutboundBytes(n int) Option { return func(o *options) { o.maxOutbound = n } }

// WithMaxQueuedBytes caps the bytes each event loop holds in its queue of
// work handed to it by other goroutines and not yet done: the frames of
// Publish, Broadcast and SendTo calls (each counted once per loop), of
// sends queued behind them, and about 100 bytes per queued call (Join and
// Leave included). A call that would pass it fails with ErrQueueFull and
// is counted in Stats.QueueFull; nothing blocks. Close is never refused.
// Default: 32 MiB.
func WithMaxQueuedBytes(n int) Option { return func(o *options) { o.maxQueued = n } }

// WithFanoutSlice sets the most deliveries (writes of a queued frame to
// one connection, or of a connection's batched frames) an event loop
// makes for queued publishes before it serves its sockets, timers and
// other tasks again; what remains of the fan-out continues right after.
// A room of 20,000 members on one loop so costs its other connections a
// wait of one slice, not of the whole fan-out: a handshake, an echo or a
// pong is not held behind tens of milliseconds of writes (on a machine
// whose cores are all busy, seconds). Order is kept: every member still
// gets every message in publish order, and what is queued behind a
// publish (joins, leaves, sends, closes) is applied after it. Smaller
// slices cost a little more CPU per delivery; larger ones make the other
// connections wait longer. Default: 512.
func WithFanoutSlice(n int) Option { return func(o *options) { o.fanSlice = n } }

// WithSlowConsumerPolicy sets what happens when a send would pass
// WithMaxOutboundBytes. Default: DropMessage.
func WithSlowConsumerPolicy(p SlowConsumerPolicy) Option {
	return func(o *options) { o.slowPolicy = p }
}

// WithShards sets the number of shards (rounded up to a power of two) of
// the connection registry and key map. Default: 0, four per CPU.
func WithShards(n int) Option { return func(o *options) { o.shards = n } }

// defaultCompressMin is the default WithCompressionThreshold.
const defaultCompressMin = 256

// WithCompression turns permessage-deflate (RFC 7692) on or off. On, the
// server accepts the first permessage-deflate offer of a client (every
// browser makes one), without context takeover unless
// WithContextTakeover allows it: then no connection holds any compression
// state between messages, an idle compressed connection costs what a plain
// one does, and a publish is compressed once for all its subscribers.
// Messages from a client may then be compressed; messages to it are when
// they reach WithCompressionThreshold. WithMaxMessageSize applies to the
// decompressed size. Default: on. benchmarks/RESULTS.md ("Compression")
// has the figures behind it: 1 KiB of chat JSON shrinks 3.3 times; an idle
// compressed connection costs what a plain one does; a publish to 10,000
// subscribers costs no more server CPU per delivery than without
// compression; but compressing a request and its reply multiplies the CPU
// per 1 KiB echo by 3 to 5, and a small compressed message from a browser
// costs 3 to 4 µs to inflate. Servers dominated by chatty client traffic
// may prefer it off.
func WithCompression(on bool) Option { return func(o *options) { o.compress = on } }

// WithCompressionLevel sets the DEFLATE level of outgoing messages, 1
// (fastest) to 9 (smallest). Level 1 uses a stateless encoder that holds
// no memory between messages; levels 2 to 9 borrow a pooled encoder of 0.5
// to 1 MB for each message being compressed; level 6 costs about the same
// as level 1 on 1 KiB of JSON and 2.5 times as much on 16 KiB, for a
// tenth fewer bytes.
// Default: 1.
func WithCompressionLevel(level int) Option { return func(o *options) { o.compressLevel = level } }

// WithCompressionThreshold sets the size in bytes below which a message
// is sent uncompressed on a connection that negotiated compression: small
// messages barely shrink and cost the same fixed time to compress.
// Default: 256.
func WithCompressionThreshold(n int) Option { return func(o *options) { o.compressMin = n } }

// WithContextTakeover lets the peers keep their compression context
// between messages, which compresses a stream of similar messages better
// at a cost per connection. client lets the client keep its context: the
// server then keeps the client's LZ77 window for each such connection, at
// most 2^clientWindowBits bytes (clientWindowBits 8 to 15; the server
// asks the client to hold to it, and answers client_no_context_takeover
// to a client that cannot). Server takeover is not offered: it would give
// every connection a compression history and compress every publish once
// per subscriber. Default: no takeover.
func WithContextTakeover(client bool, clientWindowBits int) Option {
	return func(o *options) {
		o.deflate.ClientContextTakeover = client
		o.deflate.ClientMaxWindowBits = uint8(min(max(clientWindowBits, 0), 255))
	}
}

// AnyOrigin accepts every origin. Pass it to WithCheckOrigin.
func AnyOrigin(*Request) bool { return true }

// SameOrigin accepts requests without an Origin header (non-browser clients)
// and those whose Origin host equals the Host header, ASCII
// case-insensitively. It is the default origin check.
func SameOrigin(r *Request) bool {
	origin := r.Origin()
	if len(origin) == 0 {
		return true
	}
	i := bytes.Index(origin, []byte("://"))
	if i < 0 {
		return false
	}
	return bytes.EqualFold(origin[i+3:], r.Host())
}

func (o *options) validate() error {
	switch {
	case o.eventLoops < 1:
		return fmt.Errorf("wsloop: WithEventLoops(%d): need at least 1", o.eventLoops)
	case o.maxMessageSize < 1:
		return fmt.Errorf("wsloop: WithMaxMessageSize(%d): need at least 1", o.maxMessageSize)
	case o.maxHeaderBytes < 256:
		return fmt.Errorf("wsloop: WithMaxHeaderBytes(%d): need at least 256", o.maxHeaderBytes)
	case o.readBufferCap < 1024:
		return fmt.Errorf("wsloop: WithReadBufferCap(%d): need at least 1024", o.readBufferCap)
	case o.writeBufferCap < 1024:
		return fmt.Errorf("wsloop: WithWriteBufferCap(%d): need at least 1024", o.writeBufferCap)
	case o.maxOutbound < 1024:
		return fmt.Errorf("wsloop: WithMaxOutboundBytes(%d): need at least 1024", o.maxOutbound)
	case o.maxQueued < 64<<10:
		return fmt.Errorf("wsloop: WithMaxQueuedBytes(%d): need at least 64 KiB", o.maxQueued)
	case o.historyBytes < 1:
		return fmt.Errorf("wsloop: WithHistoryBytes(%d): need at least 1", o.historyBytes)
	case o.fanSlice < 1:
		return fmt.Errorf("wsloop: WithFanoutSlice(%d): need at least 1", o.fanSlice)
	case o.slowPolicy > CloseTryAgainLater:
		return fmt.Errorf("wsloop: WithSlowConsumerPolicy(%d): unknown policy", o.slowPolicy)
	case o.shards < 0:
		return fmt.Errorf("wsloop: WithShards(%d): must not be negative", o.shards)
	case o.compressLevel < 1 || o.compressLevel > 9:
		return fmt.Errorf("wsloop: WithCompressionLevel(%d): need 1 to 9", o.compressLevel)
	case o.compressMin < 0:
		return fmt.Errorf("wsloop: WithCompressionThreshold(%d): must not be negative", o.compressMin)
	case o.deflate.ClientContextTakeover && (o.deflate.ClientMaxWindowBits < 8 || o.deflate.ClientMaxWindowBits > 15):
		return fmt.Errorf("wsloop: WithContextTakeover(true, %d): the window needs 8 to 15 bits", o.deflate.ClientMaxWindowBits)
	case o.maxConns < 0:
		return fmt.Errorf("wsloop: WithMaxConnections(%d): must not be negative", o.maxConns)
	case o.checkOrigin == nil:
		return fmt.Errorf("wsloop: WithCheckOrigin(nil): use AnyOrigin to accept every origin")
	case o.tls != nil && len(o.tls.Certificates) == 0 && o.tls.GetCertificate == nil && o.tls.GetConfigForClient == nil:
		return fmt.Errorf("wsloop: WithTLS: the config has no certificate (Certificates, GetCertificate or GetConfigForClient)")
	case o.proxyTrusted != nil && len(o.proxyTrusted) == 0:
		return fmt.Errorf("wsloop: WithProxyProtocol(): name the balancers' networks")
	case o.maxTLSHandshakes < 1:
		return fmt.Errorf("wsloop: WithMaxTLSHandshakes(%d): need at least 1", o.maxTLSHandshakes)
	case o.tlsInPerSocket < 4<<10 || o.tlsInTotal < o.tlsInPerSocket:
		return fmt.Errorf("wsloop: WithMaxTLSHandshakeBytes(%d, %d): need at least 4 KiB per socket, and a total of at least that",
			o.tlsInPerSocket, o.tlsInTotal)
	case o.httpWorkers < 1:
		return fmt.Errorf("wsloop: WithHTTPWorkers(%d): need at least 1", o.httpWorkers)
	case o.maxRequestBody < 0:
		return fmt.Errorf("wsloop: WithMaxRequestBody(%d): must not be negative", o.maxRequestBody)
	case o.maxResponseBuf < 512:
		return fmt.Errorf("wsloop: WithMaxResponseBuffer(%d): need at least 512", o.maxResponseBuf)
	case o.tick <= 0:
		return fmt.Errorf("wsloop: WithTick(%v): must be positive", o.tick)
	case o.pingInterval < o.tick:
		return fmt.Errorf("wsloop: WithPingInterval(%v): must be at least the tick (%v)", o.pingInterval, o.tick)
	case o.idleTimeout <= o.pingInterval:
		return fmt.Errorf("wsloop: WithIdleTimeout(%v): must exceed the ping interval (%v), or live peers are evicted before they are pinged",
			o.idleTimeout, o.pingInterval)
	case o.handshakeTimeout < o.tick:
		return fmt.Errorf("wsloop: WithHandshakeTimeout(%v): must be at least the tick (%v)", o.handshakeTimeout, o.tick)
	case o.stallThreshold != 0 && o.stallThreshold < 2*o.tick:
		return fmt.Errorf("wsloop: WithStallThreshold(%v): must be at least two ticks (%v)", o.stallThreshold, 2*o.tick)
	case o.closeTimeout < o.tick:
		return fmt.Errorf("wsloop: WithCloseTimeout(%v): must be at least the tick (%v)", o.closeTimeout, o.tick)
	}
	if o.stallThreshold == 0 {
		o.stallThreshold = max(500*time.Millisecond, 2*o.tick)
	}
	if (o.appPing == "") != (o.appPong == "") {
		return fmt.Errorf("wsloop: WithAppHeartbeat(%q, %q): need both messages or neither", o.appPing, o.appPong)
	}
	if len(o.subprotocols) > 255 {
		return fmt.Errorf("wsloop: WithSubprotocols: %d subprotocols, at most 255", len(o.subprotocols))
	}
	for _, p := range o.subprotocols {
		if p == "" || !isToken(p) {
			return fmt.Errorf("wsloop: WithSubprotocols(%q): not an HTTP token", p)
		}
	}
	if o.rateLimit != nil {
		lim, err := o.rateLimit.compile(o)
		if err != nil {
			return err
		}
		o.limiter = lim
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`()<>@,;:\"/[]?={}`), c) >= 0 {
			return false
		}
	}
	return true
}
