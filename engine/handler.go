package engine

import "github.com/gobwas/ws"

// Handler receives a connection's events.
//
// **Every method runs on the connection's event loop, which serves
// thousands of other connections: it must not block.** Hand slow work
// (database calls, disk, anything that waits) to a goroutine, and answer from
// there with Conn.Send, which is safe from any goroutine. The events of one
// connection never run concurrently with each other.
//
// Embed BaseHandler to implement only the methods you need.
type Handler interface {
	// OnOpen is called once the upgrade has completed and the 101 response
	// is queued.
	OnOpen(c *Conn)

	// OnMessage is called for every complete message: op is ws.OpText or
	// ws.OpBinary. Text payloads have been validated as UTF-8.
	//
	// payload is only valid during the call: it aliases the connection's
	// read buffer or a pooled reassembly buffer that is reused afterwards.
	// Copy it to keep it.
	OnMessage(c *Conn, op ws.OpCode, payload []byte)

	// OnClose is called once for every connection that saw OnOpen, when it
	// has ended. err is a *CloseError that says who closed it, with which
	// code and why; see CloseError. The connection can no longer send.
	OnClose(c *Conn, err error)
}

// BaseHandler is a Handler whose methods do nothing. Embed it.
type BaseHandler struct{}

// OnOpen does nothing.
func (BaseHandler) OnOpen(*Conn) {}

// OnMessage does nothing.
func (BaseHandler) OnMessage(*Conn, ws.OpCode, []byte) {}

// OnClose does nothing.
func (BaseHandler) OnClose(*Conn, error) {}
