// Command gobwas is gobwas/ws used naively, as its README shows:
// ws.UpgradeHTTP, then one goroutine per connection looping
// wsutil.ReadClientData / wsutil.WriteServerMessage.
package main

import (
	"net/http"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

func echo(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	go func() {
		defer conn.Close()
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
				return
			}
		}
	}()
}

func main() {
	addr, _ := srvutil.Flags()
	srvutil.ServeHTTP(addr, http.HandlerFunc(echo))
}
