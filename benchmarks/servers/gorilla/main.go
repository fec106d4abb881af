// Command gorilla is the gorilla/websocket echo server, as its echo example
// writes it: net/http, an Upgrader, one goroutine per connection looping
// ReadMessage / WriteMessage.
package main

import (
	"net/http"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetReadLimit(1 << 20)
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

func main() {
	addr, _ := srvutil.Flags()
	srvutil.ServeHTTP(addr, http.HandlerFunc(echo))
}
