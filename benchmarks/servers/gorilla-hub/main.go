// Command gorilla-hub is the fan-out server in the pattern of
// gorilla/websocket's chat example: a hub goroutine owns the set of clients
// and its register, unregister and broadcast channels; each client has a
// buffered send channel (256) and a read pump and a write pump goroutine;
// the hub drops a client whose send channel is full. Two changes from the
// example, on purpose: no ping ticker or read deadline (no server here has
// heartbeats), and the write pump sends each message as its own frame with
// its opcode instead of joining queued messages with newlines.
package main

import (
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

type message struct {
	op   int
	data []byte
}

type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan message
}

type hub struct {
	clients    map[*client]bool
	broadcast  chan message
	register   chan *client
	unregister chan *client
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if _, ok := h.clients[c]; ok {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				select {
				case c.send <- m:
				default:
					close(c.send)
					delete(h.clients, c)
				}
			}
		}
	}
}

func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(1 << 20)
	for {
		op, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		c.hub.broadcast <- message{op, data}
	}
}

func (c *client) writePump() {
	defer c.conn.Close()
	for m := range c.send {
		if err := c.conn.WriteMessage(m.op, m.data); err != nil {
			return
		}
	}
	_ = c.conn.WriteMessage(websocket.CloseMessage, []byte{})
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

func main() {
	addr, _ := srvutil.Flags()
	h := &hub{
		clients:    make(map[*client]bool),
		broadcast:  make(chan message),
		register:   make(chan *client),
		unregister: make(chan *client),
	}
	go h.run()
	srvutil.ServeHTTP(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{hub: h, conn: conn, send: make(chan message, 256)}
		c.hub.register <- c
		go c.writePump()
		go c.readPump()
	}))
}
