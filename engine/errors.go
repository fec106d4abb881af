package engine

import (
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// Sentinel errors. They reach OnClose wrapped in a *CloseError (test with
// errors.Is) or are returned by Conn and Server methods.
var (
	// ErrClosed is returned by Send, SendText, WriteMessage and Close once the
	// connection has started closing.
	ErrClosed = errors.New("wsloop: connection closed")

	// ErrMessageTooBig is the cause of a 1009 close: a message would have
	// exceeded WithMaxMessageSize.
	ErrMessageTooBig = errors.New("wsloop: message exceeds the size limit")

	// ErrIdleTimeout is the cause of an eviction: nothing arrived from the peer
	// for WithIdleTimeout, pings included.
	ErrIdleTimeout = errors.New("wsloop: idle timeout")

	// ErrCloseTimeout reports that the peer did not answer this server's close
	// frame within WithCloseTimeout; the socket was closed without it.
	ErrCloseTimeout = errors.New("wsloop: close handshake timed out")

	// ErrServerShutdown is the cause of the 1001 close sent by Shutdown.
	ErrServerShutdown = errors.New("wsloop: server shutting down")

	// ErrServerRestart is the cause of the 1012 (service restart) close
	// sent by Drain: the client may reconnect, to another server or to
	// this one's successor.
	ErrServerRestart = errors.New("wsloop: server restarting (drain)")

	// ErrServerClosed is returned by ListenAndServe after Shutdown, and by
	// ListenAndServe called twice.
	ErrServerClosed = errors.New("wsloop: server closed")

	// ErrSlowConsumer is returned by a send that would have passed
	// WithMaxOutboundBytes (the message was dropped, or the connection is
	// being closed, per WithSlowConsumerPolicy), and is the cause of a
	// 1008/1013 close for that reason.
	ErrSlowConsumer = errors.New("wsloop: slow consumer: outbound buffer full")

	// ErrRateLimited is the cause of a 1008 close by WithRateLimit with
	// RateLimitClose: the peer sent faster than the limit.
	ErrRateLimited = errors.New("wsloop: rate limit exceeded")

	// ErrQueueFull is returned by Join, Leave and sends queued behind
	// other work when an event loop's queue holds WithMaxQueuedBytes of
	// work not yet done: the caller produces faster than the loop
	// delivers, and nothing was queued. Publish, Broadcast and SendTo,
	// which reach several loops, return a *QueueFullError instead, which
	// says which part of the message was queued; errors.Is(err,
	// ErrQueueFull) holds for both.
	ErrQueueFull = errors.New("wsloop: event loop queue full")

	// ErrNotConnected is returned by Server.SendToKey when no open
	// connection holds the key.
	ErrNotConnected = errors.New("wsloop: not connected")

	// ErrEmptyKey is returned by Conn.Bind for the empty key.
	ErrEmptyKey = errors.New("wsloop: Bind: empty key")

	// ErrBrokerUnavailable is wrapped by a broker's errors: a message for
	// the other nodes of a cluster was not sent (WithBroker); this node's
	// connections got it.
	ErrBrokerUnavailable = errors.New("wsloop: broker unavailable: not sent to the other nodes")

	// ErrConnectionLost is the cause when the TCP connection ended without a
	// close frame (peer vanished, reset, EOF).
	ErrConnectionLost = errors.New("wsloop: connection lost without a close frame")
)

// QueueFullError is returned by Publish, Broadcast and SendTo when some
// event loops refused the message because their queues were full
// (WithMaxQueuedBytes): the other loops queued it for their connections,
// as if nothing had happened, and the connections on the refusing loops do
// not get it. errors.Is(err, ErrQueueFull) holds. A message no loop took
// has Queued 0.
type QueueFullError struct {
	Loops  int // event loops that refused the message
	Queued int // event loops that queued it
	// Missed is how many of the message's targets were on the refusing
	// loops when they refused it: the room's members there (Publish, with
	// Joins and Leaves not yet applied counted as RoomLen counts them),
	// their sockets, handshaking ones included (Broadcast), or the listed
	// connections there (SendTo). 0 means that no target missed it.
	Missed int
}

func (e *QueueFullError) Error() string {
	if e.Queued == 0 {
		return fmt.Sprintf("wsloop: event loop queue full: refused by all %d loops (%d targets missed it)", e.Loops, e.Missed)
	}
	return fmt.Sprintf("wsloop: event loop queue full on %d of %d loops: queued on the others, %d targets missed it",
		e.Loops, e.Loops+e.Queued, e.Missed)
}

// Unwrap returns ErrQueueFull.
func (e *QueueFullError) Unwrap() error { return ErrQueueFull }

// CloseError describes how a connection ended; OnClose always receives one.
//
// Code and Reason are those of the close frame that ended the connection:
// the peer's when Remote is true, this server's otherwise. When no close
// frame was exchanged (the TCP connection was lost, or the peer was evicted
// as idle) Code is 1006 (ws.StatusAbnormalClosure). Err holds the cause when
// this server ended the connection (a *codec.ProtocolError, ErrMessageTooBig,
// a *PanicError, ErrServerShutdown, ErrIdleTimeout, ...); it is nil for a
// close started by Conn.Close or by the peer.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
	Remote bool
	Err    error
}

func (e *CloseError) Error() string {
	who := "server"
	if e.Remote {
		who = "peer"
	}
	s := fmt.Sprintf("wsloop: closed by %s with %d", who, e.Code)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause, so that errors.Is(err, ErrIdleTimeout) works.
func (e *CloseError) Unwrap() error { return e.Err }

// CloseStatus returns the close code carried by err (a *CloseError anywhere
// in its chain), or 0 when there is none.
func CloseStatus(err error) ws.StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// PanicError is the cause of the 1011 close that follows a panic in a
// handler callback.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string { return fmt.Sprintf("wsloop: handler panic: %v", e.Value) }

// RejectError refuses an upgrade from an upgrade hook with an HTTP status.
// Create it with Reject.
type RejectError struct {
	Status int
	Reason string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("wsloop: upgrade rejected with %d: %s", e.Status, e.Reason)
}

// Reject returns an error that an upgrade hook returns to refuse the
// upgrade with status (for example 401 or 403) and reason as the body.
func Reject(status int, reason string) error {
	return &RejectError{Status: status, Reason: reason}
}
