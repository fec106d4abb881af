// Command gorilla-hub is gorilla/websocket's chat example as a fan-out
// server: a hub goroutine owns the set of clients and its register,
// unregister and broadcast channels; each client has a buffered send
// channel (256) and a read pump and a write pump goroutine; the hub drops
// a client whose send channel is full. Every connection is a subscriber
// and every message is broadcast to all of them, sender included. The
// write pump is the example's: it writes a queued message and every
// message queued behind it into one frame, separated by newlines (the
// fan-out client splits them again: cmd/fanout -proto newline). Changes
// from the example, on purpose: no ping ticker and no read deadline (no
// server here has heartbeats), a 1 MiB read limit, the read pump does not
// replace newlines in what it reads (the payloads have none), and a frame
// goes out with the opcode its first message arrived with, where the
// example always writes text. With -tls-cert and -tls-key it serves
// wss:// (internal/httpserve: net/http's ServeTLS, crypto/tls): each write
// pump's frame is encrypted by its connection's tls.Conn.
package main

import (
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
)

const (
	writeWait      = 10 * time.Second // as in the example
	maxMessageSize = 1 << 20
)

// message is one broadcast: the payload and its opcode.
type message struct {
	typ  int
	data []byte
}

type Hub struct {
	clients    map[*Client]bool
	broadcast  chan message
	register   chan *Client
	unregister chan *Client
}

func newHub() *Hub {
	return &Hub{
		broadcast:  make(chan message),
		register:   make(chan *Client),
		unregister: make(chan *Client),
		clients:    make(map[*Client]bool),
	}
}

func (h *Hub) run() {
	for {
		select {
		case client := <-h.register:
			h.clients[client] = true
		case client := <-h.unregister:
			if _, ok := h.clients[client]; ok {
				delete(h.clients, client)
				close(client.send)
			}
		case m := <-h.broadcast:
			for client := range h.clients {
				select {
				case client.send <- m:
				default:
					close(client.send)
					delete(h.clients, client)
				}
			}
		}
	}
}

type Client struct {
	hub  *Hub
	conn *websocket.Conn
	send chan message
}

func (c *Client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		c.hub.broadcast <- message{typ, data}
	}
}

var newline = []byte{'\n'}

func (c *Client) writePump() {
	defer c.conn.Close()
	for m := range c.send {
		c.conn.SetWriteDeadline(time.Now().Add(writeWait))
		w, err := c.conn.NextWriter(m.typ)
		if err != nil {
			return
		}
		w.Write(m.data)

		// Add queued chat messages to the current websocket message.
		n := len(c.send)
		for i := 0; i < n; i++ {
			w.Write(newline)
			w.Write((<-c.send).data)
		}

		if err := w.Close(); err != nil {
			return
		}
	}
	// The hub closed the channel.
	c.conn.SetWriteDeadline(time.Now().Add(writeWait))
	c.conn.WriteMessage(websocket.CloseMessage, []byte{})
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

func serveWs(hub *Hub, w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	client := &Client{hub: hub, conn: conn, send: make(chan message, 256)}
	client.hub.register <- client

	go client.writePump()
	go client.readPump()
}

func main() {
	hub := newHub()
	go hub.run()
	httpserve.Run(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveWs(hub, w, r)
	}))
}
