// Package engine is wsloop's WebSocket server: RFC 6455 on a few gnet event
// loops, with no goroutine per connection.
//
// Use New to create a Server with a Handler and Options, ListenAndServe to
// run it and Shutdown to stop it gracefully. Conn is one connection: send to
// it with Send, SendText or WriteMessage from any goroutine, end it with
// Close. Embed BaseHandler to implement only the callbacks you need.
//
// # Callbacks run on the event loop
//
// **Handler methods, the origin check, the upgrade hook and the HTTP
// handler run on the connection's event loop, which serves thousands of
// connections: they must not block.** Give slow work to a goroutine and
// answer with Conn.Send, which is safe from any goroutine.
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
// each socket to the least loaded loop. Open sockets are capped
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
// The loops use edge-triggered epoll and read a socket once per readiness
// event, up to WithReadBufferCap bytes; a read that fills the buffer queues
// the next one behind the other ready sockets. Under load, connections are
// served in the order their data arrived, so no connection waits while
// another is served twice.
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
//	handshake  handshake deadline                 OnOpen, when the acceptor's socket reaches the loop;
//	                                              again after a plain HTTP request answered with keep-alive
//	open       heartbeat: next ping, or eviction  the upgrade; re-armed by the heartbeat itself
//	closing    close deadline                     applying a close request: Conn.Close, Shutdown,
//	                                              a slow-consumer policy (the frame is queued then)
//	failed     close deadline; after an HTTP      a protocol violation or a panic in a callback;
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
// goroutine that lives until the handshake ends (WithMaxTLSHandshakes at
// once; the rest wait in a queue); after it the connection's records are
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
// # Plain HTTP
//
// A request that does not ask for an upgrade goes to the WithHTTPHandler
// handler (426 without one). When the client allows it (HTTP/1.1 without
// Connection: close, no request body) the connection stays open for the
// next request, which may also be an upgrade; an idle one is closed at the
// handshake deadline. A server listening on a Unix socket
// (ListenAndServe("unix:///path")) works as on TCP: Addr is a
// *net.UnixAddr, and Conn.RemoteAddr is one too (usually unnamed).
//
// # Closing
//
// OnClose runs exactly once for every connection that saw OnOpen, with a
// *CloseError that tells who closed, with which code and why: a close frame
// from the peer, Conn.Close, a protocol violation (1002, 1007, 1009), a
// panic in a callback (1011), Shutdown (1001), idle eviction
// (ErrIdleTimeout) or a lost TCP connection (1006).
package engine
