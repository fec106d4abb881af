// Command gorilla is the gorilla/websocket echo server, written as the
// library's echo example writes it: a net/http server, an Upgrader with the
// default options (plus an origin check that accepts everyone), and one
// goroutine per connection looping ReadMessage / WriteMessage.
package main

import (
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
)

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		mt, message, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, message); err != nil {
			return
		}
	}
}

func main() { httpserve.Run(http.HandlerFunc(echo)) }
