// Command gobwas is gobwas/ws used naively, as its README shows: a net/http
// server whose handler calls ws.UpgradeHTTP and starts one goroutine per
// connection looping wsutil.ReadClientData / wsutil.WriteServerMessage.
package main

import (
	"net/http"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
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

func main() { httpserve.Run(http.HandlerFunc(echo)) }
