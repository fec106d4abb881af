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
// loop, a burst in one system call.
//
// # Closing
//
// OnClose runs exactly once for every connection that saw OnOpen, with a
// *CloseError that tells who closed, with which code and why: a close frame
// from the peer, Conn.Close, a protocol violation (1002, 1007, 1009), a
// panic in a callback (1011), Shutdown (1001), idle eviction
// (ErrIdleTimeout) or a lost TCP connection (1006).
package engine
