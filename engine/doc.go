// Package engine is wsloop's WebSocket server: RFC 6455 on a few gnet event
// loops, with no goroutine per connection.
//
// Use New to create a Server with a Handler and Options, ListenAndServe to
// run it and Shutdown to stop it gracefully (or Drain, for a restart, to
// close its connections a few at a time). Conn is one connection: send to
// it with Send, SendText or WriteMessage from any goroutine, end it with
// Close. SendText sends a text frame (a string in a browser: JSON, any
// text); Send sends a binary frame (a Blob or ArrayBuffer in a browser:
// raw bytes only). Embed BaseHandler to implement only the callbacks you
// need.
//
// # Callbacks run on the event loop
//
// **Handler methods, the origin check, the upgrade hook and the loop's
// HTTP handler (WithLoopHTTPHandler) run on the connection's event loop,
// which serves thousands of connections: they must not block.** (An
// http.Handler given to WithHTTPHandler does not: it runs on a worker
// goroutine and may block; see Plain HTTP.) Give slow work to a goroutine and
// answer with Conn.SendText (or Conn.Send for binary), which is safe from
// any goroutine. A callback that
// blocks anyway stalls its loop's connections, not the others': new
// sockets go to the other loops once the loop misses its heartbeat (two
// ticks), and a loop that stays away for WithStallThreshold is counted
// (Stats.LoopStalls) and logged at error level with its goroutine's
// stack, which shows the callback that blocks. Shutdown may be called
// from a callback: it then starts the shutdown and returns at once.
//
// # Payloads
//
// The payload given to OnMessage is valid only during the call: a
// single-frame message is a slice of the read buffer it arrived in (no
// copy), a fragmented one lives in a pooled buffer. Text messages have been
// validated as UTF-8 before OnMessage sees them.
//
// # Accepting
//
// The server owns its listening socket: one goroutine accepts and hands
// each socket to the least loaded live loop. Open sockets are capped
// (WithMaxConnections; by default the descriptor limit less a reserve);
// past the cap a socket is answered with 503 and closed at once. Running out
// of descriptors does not stop the server: the excess is answered with 503
// and closed, using one descriptor held in reserve, until descriptors free
// up (Stats.AcceptErrors, Stats.Shed). ListenAndServe returns
// ErrServerClosed only after Shutdown; if the listener or an event loop
// fails for good, it closes the connections and returns the error.
//
// # Reads
//
// The loops use level-triggered epoll and read each ready socket once per
// round, up to WithReadBufferCap bytes; a socket with more waiting is read
// again in the next round, after the others that were ready. A client
// that sends faster than its loop handles its messages gets its share of
// the loop and no more: TCP holds it back, and the other connections of
// its loop are served meanwhile.
//
// # Writes
//
// Everything written to a connection while its loop handles one read
// (echoes from OnMessage, pongs, close frames) leaves in one write system
// call. Writes from other goroutines are queued in order and flushed by the
// loop, a burst in one system call. Frames sent by one goroutine to one
// connection leave in call order, whichever of Send, Publish, Broadcast,
// SendTo, SendToKey and Close produced them. What waits for a connection's
// socket is capped (WithMaxOutboundBytes), pongs included: a client that
// floods pings and never reads gets only its latest ping answered once its
// socket backs up (RFC 6455 5.5.3).
//
// # Rate limits
//
// WithRateLimit limits the data messages each connection may send: a
// rate of messages, of payload bytes or both, and a burst. It is checked
// on the loop once a whole message has arrived (bytes counted after
// inflation), before OnMessage, with the loop's coarse clock: a GCRA debt
// in two 32-bit fields of the connection, paid down as each read stamps
// its time, so no timer and no allocation per connection. A message over
// the limit is dropped (Stats.RateLimited) and RateLimit.OnLimited is
// told, with the run's length and when to retry, so that the application
// can answer "slow down"; or, with RateLimitClose, it fails the connection
// with 1008 and OnClose gets ErrRateLimited. Control frames and the
// WithAppHeartbeat ping are not counted; Conn.SetRateLimited(false)
// exempts a connection (a moderator's, say, from OnOpen).
//
// # Compression
//
// permessage-deflate (RFC 7692) is on by default (WithCompression): the
// server accepts the first offer it can (every browser makes one) and
// answers with one extension. Messages from the peer may then be
// compressed: one is inflated once all of it has arrived, by the loop's
// one decompressor, into a pooled buffer, and WithMaxMessageSize caps the
// decompressed size (a message that inflates past it is closed with 1009
// after inflating no more than that; its compressed size is capped at the
// same figure plus DEFLATE's overhead). RSV1 on a control or continuation
// frame, or without compression negotiated, fails the connection with
// 1002, undecodable data with 1007. Messages to the peer of at least
// WithCompressionThreshold bytes are compressed, by the goroutine that
// sends them, with a stateless encoder: nothing is kept between messages.
// A publish or broadcast is compressed once, and every member that
// negotiated the usual parameters gets the same compressed frame; a member
// that asked for a smaller server window (server_max_window_bits), or did
// not negotiate compression, gets the plain frame, which RFC 7692 allows at
// any time. Without context takeover (the default, WithContextTakeover)
// an idle connection holds no compression state at all.
//
// # Connection states
//
// A connection is in one of six states. Only its event loop moves it from
// one to another, and in the same step it arms the connection's single
// timer (one node on the loop's timing wheel) for what the new state needs,
// so the state says what the timer means (in failed, together with whether
// an HTTP answer or a close frame led there):
//
//	                socket handed to a loop (OnOpen)
//	                              |
//	                              v
//	 plain HTTP request,    +-----------+  refused (4xx, 503, hook), or an HTTP
//	 kept alive: +--------->| handshake |  answer that ends the connection:
//	 new deadline +---------+-----------+  FIN once it has left ---------------+
//	          valid upgrade:      |                                            |
//	          101, OnOpen         v                                            |
//	                        +-----------+  the peer's close frame              |
//	                        |   open    |  (echoed), idle eviction             |
//	                        +-----------+---------------------+                |
//	  close request applied    |     |                        |                |
//	  (Close, Shutdown, slow   |     | protocol error or      |                |
//	  consumer): close frame   |     | panic: close frame,    |                |
//	  queued                   v     v then FIN               v                |
//	                  +---------+  +--------+  peer's     +------+   +--------+ |
//	                  | closing |  | failed |------------>| done |-->| closed | |
//	                  +---------+  +--------+  close      +------+   +--------+ |
//	                       |           ^                     ^   end of   ^     |
//	                       +-----------|---------------------+   the loop |     |
//	          the peer's close frame   |                         event    |     |
//	          (the answer)             +----------------------------------|-----+
//	                                                                      |
//	  from any state: its deadline, a failed write, the peer's EOF or ----+
//	  RST close the socket at once
//
//	state      timer means                        entered by (always the loop)
//	handshake  handshake deadline; none while an  OnOpen, when the acceptor's socket reaches the loop;
//	           http.Handler runs its request      again after a plain HTTP request answered with keep-alive
//	open       heartbeat: next ping, or eviction  the upgrade; re-armed by the heartbeat itself
//	closing    close deadline                     applying a close request: Conn.Close, Shutdown,
//	                                              a slow-consumer policy (the frame is queued then)
//	failed     close deadline; after an HTTP      a protocol violation, a panic in a callback or a rate limit (1008);
//	           answer, 500 ms once the FIN is out an HTTP answer after which the socket closes (a
//	                                              refused upgrade, Connection: close), so that the
//	                                              client's unread bytes do not turn the FIN into a
//	                                              reset that destroys the answer
//	done       none (closed when the event ends)  the peer's close frame, eviction
//	closed     none (cancelled; never re-armed)   gnet's OnClose; OnClose runs once, if OnOpen did
//
// Other goroutines never change a state. Conn.Close (and a slow-consumer
// close decided off the loop) marks the connection, so that later sends fail
// with ErrClosed, and queues a close request on the loop behind the calls
// made before it; the loop applies it: it queues the close frame behind
// everything sent before, enters closing and arms the close deadline, in
// one step. The deadline therefore counts from the moment the frame is
// queued for the socket, and a heartbeat that falls due meanwhile is still a
// heartbeat.
//
// # Rooms
//
// Conn.Join and Conn.Leave are safe from any goroutine and take effect in
// order with publishes: a Publish made after Join returns reaches the
// connection, and one made after Leave returns does not. RoomLen counts a
// join or a leave as soon as it returns, so a handler can announce the new
// count right after c.Join in OnOpen; the loop applies the change itself
// after the callback returns (RoomMembers lists applied members). A
// closing connection leaves its rooms before OnClose runs. Handlers reach
// their server with Conn.Server (an HTTP handler with Request.Server).
//
// # Clusters
//
// With WithBroker (broker/nats, a module of its own, implements it over
// NATS) the server is one node of a cluster: Publish reaches a room's
// members on every node, Broadcast every connection of every node, and
// SendToKey the connection bound to the key on whichever node holds it
// (ErrForwarded when that is not this node: delivery is then unknown to the
// caller). The message is delivered here as without a broker and handed to
// the broker once, which puts it on the bus once; the other nodes deliver
// it through Local as a local publish. Messages of one publisher reach
// every member in order; those of two publishers on two nodes may
// interleave differently on different nodes. RoomLen adds the other nodes'
// members as they last reported them (broker/nats: current within one
// report interval, two when a report is lost; Local().RoomLen is this
// node's alone). A Publish from another node reaches a connection that joined a
// room new to its node once the node's subscription is in place (broker/nats
// applies it at once, and says how to tell). The broker's methods never block: when it cannot send (the bus
// is down, its buffer is full) this node's members still get the message,
// the call returns an error wrapping ErrBrokerUnavailable, and
// Stats.Broker.Failed counts it. A message that some event loops of a
// node refuse, their queues full, still reaches the other loops'
// connections: a *QueueFullError says so to the caller on its own node,
// and Stats.Broker.Partial counts it on the others.
//
// # TLS
//
// WithTLS makes the listener speak TLS with crypto/tls. A socket's TLS
// handshake happens in the handshake state, under its deadline, on a
// goroutine that lives until the handshake ends, from the moment the
// client's first record is in (WithMaxTLSHandshakes at once; the rest wait
// in a queue, which a socket leaves when it closes; what clients send
// meanwhile is bounded per socket and in total by
// WithMaxTLSHandshakeBytes, and a socket past either bound is closed);
// after it the connection's records are
// decrypted and encrypted on its loop, and the rest of the engine sees the
// plaintext as it sees a plain socket's bytes. A TLS failure (bad input, a
// version or cipher the config refuses, a bad record later) closes the
// socket, counted in Stats.TLSHandshakeFailures during the handshake; an
// open connection that loses its TLS layer ends with 1006. Request.TLS
// and Conn.TLS return the connection's tls.ConnectionState (server name,
// ALPN, client certificates).
//
// What differs over TLS: crypto/tls allocates one object per record it
// reads (an echo allocates 2, none without TLS); an idle connection holds
// crypto/tls's cipher state (about 3 KB with AES-GCM; the handshake's and
// the records' buffers are dropped once it is silent for a ping interval);
// a Publish is encoded once, as without TLS, but encrypted for each member;
// and Conn.BufferedAmount and WithMaxOutboundBytes count what waits in
// gnet's buffer as records (TLS 1.3 adds 22 bytes per record).
//
// WithProxyProtocol reads a trusted balancer's PROXY header (v1 or v2)
// before anything else, TLS included, in the handshake state and under its
// deadline; RemoteAddr is then the client it names.
//
// # Mounted on net/http
//
// A Server is an http.Handler (ServeHTTP): mounted on an application's
// mux, behind its middleware, on its http.Server, with the loops started by
// Run instead of ListenAndServe. The origin check and the upgrade hook run
// on net/http's goroutine and see the request's context (Request.Context,
// Request.HTTPRequest); an accepted upgrade is hijacked and its socket
// handed to the least loaded loop, with whatever net/http had read past
// the request, and net/http's goroutine returns once the loop has it (at
// most two hand-offs per loop run at once; the rest wait on their own
// goroutines). From then on the connection is one of the loop's like any
// other. Over TLS configured on http.Server, the *tls.Conn's state moves
// to the loop with it, as after a handshake on wsloop's own listener.
//
// What does not compose: http.TimeoutHandler's writer and HTTP/2's cannot
// be hijacked (500 with a message; an HTTP/2 request gets 505 so that the
// client retries over HTTP/1.1; RFC 8441 WebSockets over HTTP/2 and h2c
// are out of scope); http.StripPrefix and middleware whose writer has an
// Unwrap method work. http.Server.Shutdown does not close hijacked
// connections: call Server.Shutdown too (http.Server.RegisterOnShutdown
// chains it), which closes them with 1001 as on wsloop's own listener.
//
// Which to pick: wsloop's own listener is the cheapest (no goroutine at
// any moment, the acceptor's descriptor and connection caps, TLS
// handshakes bounded by WithMaxTLSHandshakes); mounting costs a net/http
// goroutine while an upgrade is checked, and net/http's own limits
// (ReadHeaderTimeout, MaxHeaderBytes, its TLS handshakes, one goroutine
// each) apply before ServeHTTP is called. Measured side by side at 10,000
// idle connections (benchmarks/RESULTS.md), a mounted connection costs
// about 8% more memory than a native one over ws and 1% over wss, almost
// all of it the runtime's caches of goroutine stacks, which do not grow
// with the connections.
//
// # Plain HTTP
//
// A request that does not ask for an upgrade is plain HTTP, served on the
// same port by one of two hooks (426 Upgrade Required without either):
//
//   - WithHTTPHandler takes a standard http.Handler: promhttp.Handler(),
//     net/http/pprof, a REST mux, a file server. Use it for everything but
//     the cheapest fixed answers. The loop reads the request head (with
//     the upgrade's parser and bounds: 431, 400) and its body, Content-Length
//     or chunked, up to WithMaxRequestBody (413 past it; Expect:
//     100-continue is answered), then hands it to one of at most
//     WithHTTPWorkers goroutines, started on demand and gone when idle; a
//     request that finds them all busy gets 503 with Retry-After at once,
//     so a slow handler costs its own clients a retry, never the loops a
//     wait. The handler gets an *http.Request rebuilt with net/http's own
//     parser (RemoteAddr, TLS, a Context that ends when the client goes
//     away or the handler returns) and an http.ResponseWriter that is also
//     an http.Flusher: an answer that fits WithMaxResponseBuffer leaves
//     whole with Content-Length when the handler returns (the worker is
//     free by then, however slowly the client reads); a larger or flushed
//     one is streamed chunked, and Write blocks the worker (not the loop)
//     while that much waits for a client that does not read. Keep-alive,
//     Connection: close and HTTP/1.0 behave as with net/http; pipelined
//     requests are answered in order, one at a time. Shutdown waits for
//     running handlers, up to its ctx. Not supported: HTTP/2, trailers,
//     1xx answers from the handler, http.Hijacker.
//   - WithLoopHTTPHandler answers on the event loop itself: no goroutine,
//     no copy of the request, no http.Request, and no request body (a
//     request with one is answered and the connection closed). It is kept
//     for the cheapest answers a balancer polls many times a second (a
//     health check): benchmarks/RESULTS.md ("Plain HTTP on wsloop's
//     listener") measured 10.8 µs of server CPU per request against
//     WithHTTPHandler's 15.5 µs (net/http's 18.8 µs) for the same small
//     answer with 64 keep-alive clients on one loop, and 12 µs against
//     21 µs (net/http's 20 µs) with 4, where every request pays the
//     hand-off to a worker and back. It must not block. Its
//     answer may pass a request on to WithHTTPHandler (HTTPResponse.Pass),
//     so that both serve one port: /healthz on the loop, the rest on the
//     http.Handler.
//
// With either, the connection stays open for the next request when the
// client allows it; it may also upgrade. An idle one is closed at the
// handshake deadline, which also bounds how long a request and its body
// may take to arrive; a running handler has no deadline. A server
// listening on a Unix socket (ListenAndServe("unix:///path")) works as on
// TCP: Addr is a *net.UnixAddr, and Conn.RemoteAddr is one too (usually
// unnamed).
//
// # Bounds
//
// Every byte a peer sends, and everything the server holds because of
// it, waits somewhere with a bound. The table names each place: what
// waits, the option that sets its bound (default in brackets), and the
// flood test (TestBounds* are in bounds_test.go and bounds_frames_test.go,
// TestBoundsTLSRecords in tls_flood_test.go); below each, the bound and
// what happens there. Each flood test drives the place past its
// bound from real sockets, fails if the heap's peak (sampled every 10 ms)
// grows by more than the row allows, and checks that another connection
// keeps getting echoes meanwhile; the figures quoted are its own. A bound
// per socket is a bound in total too: sockets are capped
// (WithMaxConnections). What the application keeps (rooms, keys, values,
// its own sends) is its own to bound; WithMaxQueuedBytes and
// WithMaxOutboundBytes cap what it queues.
//
//	what waits                                    option [default]                      flood test
//
//	connections in the kernel's accept queue      none [the listen backlog]             TestBoundsSocketFlood
//	                                                                                    TestDescriptorExhaustion
//	    The acceptor takes them off the queue as they come, never waiting for a loop. When the process is out of
//	    descriptors, it accepts the waiting ones with a descriptor held in reserve, answers 503 and closes them
//	    (Stats.Shed), so the queue does not fill with clients that hang.
//	open sockets, handshaking or not              WithMaxConnections [RLIMIT_NOFILE     TestBoundsSocketFlood
//	                                              less 1/64, 32 to 1,024]
//	    Past the cap a socket is answered with 503 and closed at once, before it has any state
//	    (Stats.RejectedUpgrades). A socket costs a descriptor, its Conn and gnet's connection (about 1 KiB), and
//	    what the rows below let it hold. 3,000 connects against a cap of 300, each sending a request head just
//	    short of WithMaxHeaderBytes: 300 held, the heap grew by 4 MiB (the test's own 3,000 sockets included).
//	accepted sockets waiting for a loop           WithMaxConnections                    TestBoundsEnrollQueue
//	    They count against the cap while they wait in their loop's queue, a descriptor and 24 bytes each; the
//	    loop takes its whole queue in one task. Sockets queued for a loop that stalls are taken back and given
//	    to the live loops; when every loop is stalled they pile up to the cap, and the excess is still answered
//	    with 503 at once.
//	input held during a hand-off (RestartKeep)    WithMaxMessageSize [1 MiB] + 1/64     TestRestartKeepsConnections
//	                                              + 64 KiB
//	    While connections move to a new process their input waits unparsed in gnet's buffer, in the old process
//	    and then in the new. A client that sends more than one message of the largest size (a flood during the
//	    hand-off) is closed with 1012 (Stats.HandOffFloods) and reconnects; the test's flooder sends 1 KiB
//	    messages without pause through the hand-off and gets its 1012, while 5,000 others miss nothing. Each
//	    process's heap peaked 0.9 to 11.5 MiB above what it held for the same connections before (the old) or
//	    after (the new) the hand-off, the held input and the hand-off's own buffers (the test allows 24 MiB).
//	output taken along by a hand-off              WithMaxOutboundBytes [4 MiB]          TestRestartKeepSlowConsumer
//	                                              + one message, + gnet's share         TestHandOffInputOverBound
//	    A connection moves with the output not yet written, no more than the outbound bound let it hold: the
//	    old process copies it once into one array, freed once the connection has left, and the new one gives
//	    it to gnet. A connection whose unparsed input is more than a new process takes (16 MiB: possible with
//	    WithMaxMessageSize above that) stays, and is drained with 1012. In the test, 8.7 MiB held for a client
//	    that does not read moves with it; the restart takes 165 to 209 ms.
//	the request head (request line and headers)   WithMaxHeaderBytes [8 KiB]            TestBoundsHeaderFlood
//	    It waits in gnet's buffer, scanned once as it arrives, for at most WithHandshakeTimeout [5 s]. At the
//	    bound: 431, and the socket closes once the answer has left; what follows is discarded as it arrives, a
//	    read (WithReadBufferCap [64 KiB]) at a time. 64 MiB of heads that never end, on 4 sockets: the heap grew
//	    0.1 MiB.
//	a PROXY header (WithProxyProtocol)            none [4,112 bytes; a v1 line 107]     TestBoundsProxyHeader
//	    A trusted balancer's header waits until it is whole, within the handshake deadline; one that cannot end
//	    within the bound, a malformed one, or one from an untrusted peer closes the socket (Stats.ProxyRejected).
//	what a client sends before its TLS handshake  WithMaxTLSHandshakeBytes [64 KiB per   TestTLSHandshakeFlood
//	has ended                                     socket, 8 MiB in total]
//	    Moved out of gnet's buffer as it arrives, into a buffer of the socket's that the handshake's goroutine
//	    consumes; it waits while the handshake waits for a slot or for a slow GetCertificate. A socket whose
//	    input would pass either bound is closed at once (Stats.TLSHandshakeOverflows); a socket's first 4 KiB (a
//	    ClientHello) may take the total to twice its bound, so that a flood filling it leaves room for new clients. 64 MiB streamed behind a
//	    ClientHello, by 1 and by 16 sockets, with every slot held or a slow certificate lookup: the heap peaked
//	    0.2 to 2 MiB above its start.
//	TLS handshakes: running, and waiting for a    WithMaxTLSHandshakes [max(256, 128    TestTLSHandshakeQueueRelease
//	slot                                          per CPU)], WithMaxConnections         TestTLSHandshakeBound
//	    A handshake takes a slot (a goroutine, its crypto/tls state) once the client's first record is in, so a
//	    silent socket holds none; past the bound it waits in a queue, which a socket leaves when it closes: the
//	    queue never holds more than the open sockets. Each is dropped at WithHandshakeTimeout. 500 queued
//	    ClientHellos whose sockets close leave the queue and free their input at once; queued past 2 slots,
//	    they took the heap 2.1 to 2.2 MiB above its start (the test's 552 sockets included; it allows 5 MiB)
//	    while an open wss probe kept echoing.
//	TLS records of an open connection             none [one record: 16 KiB + 2 KiB]     TestBoundsTLSRecords
//	                                                                                    TestTLSPingFloodBounded
//	                                                                                    TestTLSIdleTrim
//	    crypto/tls holds at most one partial record; the loop decrypts only when a whole record is in, at most
//	    64 KiB of plaintext at a time, which the frame parser consumes as above (every row below applies to the
//	    plaintext). A record whose header says it is longer, or that does not decrypt, closes the socket at
//	    once. An idle connection holds only crypto/tls's cipher state (about 3 KB). 64 connections holding a
//	    record one byte short of the largest, 8 sending too long a header, and 64 MiB of messages from 4 more:
//	    the heap peaked 3.2 to 4.0 MiB above its start (the test allows 8 MiB).
//	plain HTTP on the loop (WithLoopHTTPHandler): WithMaxOutboundBytes [4 MiB]          TestBoundsHTTPPipeline
//	pipelined requests, and answers the client                                          TestHTTPKeepAliveBounds
//	has not read
//	    Requests are answered as they are parsed, in one pass over what arrived. Once the answers not yet read
//	    reach the cap, the next one ends with Connection: close and the rest of the input is discarded; a request
//	    with a body is never kept alive. 16,000 pipelined requests for 62 MiB of answers, never read: 136
//	    answered, the heap grew 0.3 MiB.
//	http.Handler: a request body                  WithMaxRequestBody [1 MiB]            TestNetHTTPBoundsBody
//	    Moved out of gnet's buffer as it arrives (chunked sizes and trailers wait there until a line is whole, at
//	    most 4 KiB, trailers WithMaxHeaderBytes), into a buffer that grows with it to the declared length or the
//	    bound; it is held until the handler returns. A Content-Length past the bound is answered with 413 at once,
//	    a chunked body when it passes it (Stats.HTTPTooLarge), and the connection closes, discarding the rest. All
//	    of it must arrive within WithHandshakeTimeout. 16 bodies at a 1 MiB bound that stop a byte short, and 4
//	    chunked bodies of 16 MiB: the heap peaked 24 MiB above its start; the floods got 413.
//	http.Handler: requests running, and the       WithHTTPWorkers [64]                  TestNetHTTPBusy
//	goroutines that run them
//	    At most that many handlers run at once, each on a goroutine that exits after 10 s idle; a request past
//	    them is answered with 503 and Retry-After: 1 at once (Stats.HTTPBusy), never queued. 2,000 requests
//	    from 8 sockets at a time while both of 2 workers block: 2,000 503s, a probe kept echoing, and the heap
//	    peaked 0.9 MiB above its start (the test allows 2 MiB).
//	http.Handler: what a client pipelines behind  WithReadBufferCap [64 KiB]            TestNetHTTPBoundsPipelined
//	a running request
//	    Requests are served one at a time per connection, in order. While one runs, what follows waits in gnet's
//	    buffer, up to the bound (plus one read); past it the rest is discarded as it arrives and the connection
//	    closes once the running answer has left. 4 sockets pipelining 16 MiB each behind a handler that blocks:
//	    the heap grew 0.2 MiB; each got its one answer, then the close.
//	http.Handler: the answer                      WithMaxResponseBuffer [64 KiB]        TestNetHTTPBoundsStream
//	    The writer buffers up to the bound; past it, or on Flush, the bytes join the connection's output, and
//	    Write blocks the handler's worker while more than the bound waits there and in gnet's buffer (the
//	    worker asks the loop for gnet's figure every 1 to 50 ms while it waits). Per connection: the bound in
//	    the writer, the bound plus one piece queued, and gnet's copy of what the socket did not take (up to twice
//	    that). The final piece is queued without waiting, so the worker is free before a slow client has read
//	    it. 8 handlers streaming 64 MiB each with Flush to clients that never read: the heap peaked 1.9 MiB above
//	    its start; the handlers blocked in Write, and returned once their clients closed.
//	a partial frame header or control frame       none [131 bytes]                      TestBoundsMessageAssembly
//	                                                                                    TestPingFloodBounded
//	    It waits in gnet's buffer until whole (at most a 14-byte header, or a control frame of 6 + 125 bytes); a
//	    data frame's payload is taken out of the buffer as it arrives.
//	a message in progress (fragments, or a frame  WithMaxMessageSize [1 MiB]            TestBoundsMessageAssembly
//	that has not all arrived)
//	    Copied into a pooled buffer that grows with what arrived, never past the limit (for a compressed message,
//	    the limit plus 1/4096 and 64 bytes: DEFLATE's overhead). A frame that would pass it fails the connection
//	    with 1009 before its payload is read; the rest is discarded. In total: the limit times the connections
//	    with a message in progress, for as long as the peer keeps its connection alive (a frame at least every
//	    WithIdleTimeout [60 s]). 24 text messages 2 bytes short of a 520 KiB limit: 14 MiB.
//	the UTF-8 state of a text message             none [2 bytes in Conn]                TestBoundsUTF8State
//	                                                                                    TestBoundsMessageAssembly
//	    Text is validated as it arrives; a character cut between fragments or reads is carried in 2 bytes. A
//	    character never completed, or completed wrongly, fails the connection with 1007. 32 MiB of text from 4
//	    sockets, every fragment and read cutting characters (some a byte per fragment): all delivered, the heap
//	    peaked 0.4 to 0.5 MiB above its start (the test allows 1 MiB).
//	inflation of a compressed message             WithMaxMessageSize [1 MiB]            TestBoundsInflate
//	                                                                                    TestDeflateBomb
//	    Once the whole message has arrived, the loop's one decompressor (about 40 KB) inflates it into a buffer
//	    that doubles up to the limit; past it, 1009, having inflated no more. One message at a time per loop. 16
//	    messages of 16 KB that inflate to 16 MiB each, against a limit of 256 KiB: the heap grew 1.6 MiB.
//	the client's LZ77 window (client context      WithContextTakeover [off; 2^15 bytes  TestBoundsTakeoverWindows
//	takeover)                                     when on]
//	    Kept for the connection's life: the last 2^client_max_window_bits bytes of its messages; the server asks
//	    the client for no more than the option's bits. 64 connections that sent 128 KiB each: 2.0 MiB.
//	frames not yet taken by the socket: echoes,   WithMaxOutboundBytes [4 MiB],         TestBoundsEchoNoRead
//	sends, publishes, HTTP answers                WithSlowConsumerPolicy [DropMessage]  TestSlowConsumer
//	    A message that would pass the cap is dropped (Stats.Dropped) or closes the connection with 1008 or 1013;
//	    one larger than the cap is sent when nothing else waits, so a peer that stops reading pins the cap plus
//	    one message. gnet keeps what the socket did not take in chunks rounded up to a power of two: up to twice
//	    the bytes in memory. 4 clients that send 64 MiB to an echo server and never read, cap 1 MiB: about 9 MiB.
//	pongs                                         WithMaxOutboundBytes                  TestPingFloodBounded
//	                                                                                    TestTLSPingFloodBounded
//	    While the socket keeps up every ping is answered in the read's own write; once it backs up, only the
//	    latest ping is kept (126 bytes; RFC 6455 5.5.3) and answered when there is room, under the cap like data.
//	    32 MiB of pings never read: at most 60 KiB queued, the heap grew by less than 1 MiB.
//	the publish queue of each loop: Publish,      WithMaxQueuedBytes [32 MiB]           TestBoundsPublishQueue
//	Broadcast, SendTo, Join, Leave, queued sends                                        TestQueueBound
//	    Calls wait there until the loop drains them; one that would pass the bound fails with ErrQueueFull
//	    (Stats.QueueFull), nothing blocks. Each call counts its frame and its item's own size; in memory, up to
//	    twice the bound while a drain applies the previous batch, and the item array grows by doubling. A
//	    drained array of more than 1,024 items is not kept. A peer whose messages a handler publishes fills it
//	    only while a loop lags. 56,000 tiny publishes against a stalled loop, bound 4 MiB: 27,000 queued, the
//	    rest refused, the heap peaked 12 to 19 MiB above its start (refused calls leave garbage) and kept nothing
//	    once drained.
//	room history (WithHistory): each room's last  History.Size, History.TTL [none];     TestBoundsHistoryFlood
//	messages, kept for recoveries                 WithHistoryBytes [64 MiB, all rooms]  TestHistoryMemory
//	    A publish to a room with history keeps its frame, the one its members were sent (stored once, shared),
//	    and drops the room's oldest past Size, past the TTL (at the next publish or recovery, and by a sweep
//	    every second), and while all rooms together pass WithHistoryBytes: 272 B a message of 200 B. A room is
//	    forgotten once empty for its TTL; rooms that clients name need a TTL, or each keeps its last message. A
//	    recovery (Conn.Recover) queues the missed frames, shared, with its join; they count against
//	    WithMaxOutboundBytes as they are written, a quarter of it at a time. 32 MiB of 1 KiB messages from 4
//	    sockets, each published to a room keeping 100,000, bound 4 MiB: the room kept its newest 4 MiB, the heap
//	    peaked 6.7 to 16.3 MiB above its start (the loops' queues held the rest). With a HistoryBroker (the
//	    NATS broker with JetStream) every node keeps every room's history, within the same bounds; a recovery
//	    from a position ahead of its node waits in the room, holding its connection, until the node catches
//	    up, or for 5 s at most and is then closed with 1013 (one entry per waiting connection).
//	a socket's unread input, while its client     WithReadBufferCap [64 KiB]            TestFloodingClientDoesNotStarveItsLoop
//	sends faster than its loop handles it
//	    It waits in the kernel: each round of the loop reads every ready socket once, so a client that keeps
//	    its socket full gets one read per round and TCP slows it. (Edge-triggered, as the engine ran before,
//	    gnet queued the next read of such a socket ahead of the next poll, and the loop read it and nothing
//	    else while it sent.) Two flooders of 1 KiB messages that each cost 30 µs, on one loop: a connection on
//	    it gets 50 echoes within a second each, a probe keeps echoing, and the heap peaked 0.1 to 0.2 MiB above
//	    its start (the test allows 1 MiB).
//	what a loop keeps between messages            none [about 9 MiB]                    TestBoundsRetained
//	    Reassembly buffers for reuse, at most 1 MiB per size class from 4 KiB to 256 KiB (7 MiB; larger ones go to
//	    the GC), a write scratch buffer and a publish arena of at most 1 MiB each, its read buffer, gnet's buffer
//	    for reads that span two chunks (up to one read), the decompressor, 256 spare pongs. After 96 messages of
//	    200 KiB assembled at once and a 2 MiB echo, two loops kept 3.4 MiB.
//	broker inbound: messages from the other       broker/nats: WithPendingBytes         TestFloodBrokerInbound
//	nodes not yet delivered here                  [32 MiB], WithPendingMessages         (broker/nats)
//	                                              [65,536 messages]
//	    The NATS client's queue (bounded in messages: its worst case is that many times NATS's max_payload, but
//	    it holds only what arrives during one delivery) is emptied into the broker's own queue, bounded in
//	    bytes, before each delivery. Past either bound the message is dropped for this node
//	    (Stats.Broker.Dropped) and the node keeps serving its own connections. 384 MiB from 4 publishers at a
//	    node that compresses every message and lags: the heap grew 14 to 28 MiB.
//	broker outbound: publishes for the other      broker/nats: WithSendBuffer [8 MiB]   TestFloodBrokerOutbound
//	nodes not yet on the bus                                                            (broker/nats)
//	    Publish, Broadcast and SendToKey never block: past the bound the call returns an error wrapping
//	    ErrBrokerUnavailable at once (Stats.Broker.Failed); this node's members still get the message. 256 MiB
//	    of publishes while NATS stops reading: the heap grew 12 to 15 MiB.
//
// # Closing
//
// OnClose runs exactly once for every connection that saw OnOpen, with a
// *CloseError that tells who closed, with which code and why: a close frame
// from the peer, Conn.Close, a protocol violation (1002, 1007, 1009), a
// rate limit (1008, ErrRateLimited), a panic in a callback (1011),
// Shutdown (1001), Drain (1012, ErrServerRestart), idle eviction
// (ErrIdleTimeout) or a lost TCP connection (1006).
//
// # Restarts
//
// Shutdown closes every connection at once, and every client comes back
// at once to whatever replaces the server: within the spread of their
// reconnect backoff. For a deploy, Drain(ctx, window) instead closes the
// listening socket (so that the new process can listen on the address),
// then closes the connections in a random order at an even pace over
// window (DrainRate caps the pace), each with 1012 (service restart) and
// a reason (DrainReason), while the others are served as usual; at the
// end it stops as Shutdown does. Clients arrive at the new server at the
// drain's pace: 3,000 chat clients drained over 6 s reached the next
// server at no more than 630 a second (Shutdown: 1,661 in one second;
// examples/chat TestDrainSpreadsReconnects). Stats.Draining,
// DrainClosed and DrainRemaining and the logger show the progress.
//
// Between the old listener closing and the new one opening, a dial is
// refused. Restart closes that gap: it starts a new process of the program
// (the same executable and arguments, or RestartCommand), passes it the
// listening socket over a Unix socket pair (SCM_RIGHTS; the variable
// WSLOOP_INHERIT_FD tells the new process, whose first ListenAndServe
// takes the listener instead of listening), waits until the new process
// accepts, and only then stops accepting and drains. The socket, and its
// queue of connections not yet accepted, is the same in both processes:
// no dial is refused or left unanswered (TestRestartKeepsListener: 4
// clients dialling, upgrading and echoing in a tight loop through a
// restart, 3,000 to 5,000 dials, none failed). If the new process cannot
// be started, exits, or does not accept within RestartReadyTimeout,
// Restart returns ErrRestartFailed and this process serves on, its
// accepting never interrupted (TestRestartFailedSuccessor). From the moment
// the listening socket is sent, the old process never shuts it down
// (shutdown(2) acts on the socket, which the new process shares) nor
// unlinks its path, until it knows the new process is gone: a Shutdown or
// Drain of the old process while the new one starts or takes the
// connections leaves the new one serving
// (TestRestartFaultsShutdownDuringRestart). A socket the old process
// accepted before its drain began is still upgraded there and closed with
// 1012 at the end of the window; during the drain only an upgrade on a
// socket kept alive after plain HTTP requests is refused (503), so that its
// client reconnects. A process should run one server that restarts this
// way; a server run with Run (mounted on net/http) has no listener of its
// own and cannot.
//
// With RestartKeep, and a Handler that implements HandOffHandler, the
// connections themselves move instead of being drained: the old process
// freezes its input at message boundaries (a message in progress ends
// first), and sends each connection at rest with its descriptor and state
// (subprotocol, compression and the client's window, key, rooms, unparsed
// input, the output not yet written, and what OnHandOff returns) to the
// new one, which adopts it (OnAdopt instead of OnOpen), writes that output
// before anything else, and parses nothing until all have arrived. A
// client that is not reading moves at once, with its output
// (TestRestartKeepSlowConsumer: megabytes of it). A client sees no close
// and no lost, repeated or reordered message, only a pause as long as the
// hand-off (TestRestartKeepsConnections: 5,000 subscribers, a client
// publishing every 50 ms and a 1 MiB fragmented message across it). The
// output a connection takes along is bounded by WithMaxOutboundBytes (and
// gnet's share of it), its unparsed input by what the new process takes
// (16 MiB; a connection with more is drained). TLS connections
// cannot move (crypto/tls cannot export a session) and are drained with
// 1012, as is any connection not at rest within RestartHandOffTimeout (a
// message that does not end, a close or a queued send under way). If
// the new process dies during the hand-off, the old one serves on with the
// connections it had not sent (at most 1,024 are in flight, unacknowledged)
// and accepts again (TestRestartKeepSuccessorDies). benchmarks/RESULTS.md
// has the time to hand over 19,000 connections and the pause clients saw;
// examples/chat restarts this way on SIGHUP.
package engine
