// Command centrifuge-room is github.com/centrifugal/centrifuge (the library
// behind Centrifugo) as a fan-out server, set up as its README shows: a
// Node with the in-memory broker, anonymous connections accepted in
// OnConnecting, and in OnConnect a subscribe handler and a publish handler
// that allow everything, so a client publish is published to the channel
// and pushed to every subscriber, sender included when subscribed. Clients
// speak centrifuge's JSON protocol (cmd/fanout -proto centrifuge): connect,
// subscribe to the channel "room", publish; a publication arrives as
// {"push":{"channel":"room","pub":{"data":...}}}, and centrifuge's writer
// joins up to 16 queued messages into one frame, separated by newlines, as
// it does by default. Everything else is centrifuge's default: no
// compression, a goroutine per connection reading and one writing.
package main

import (
	"log"

	"github.com/wsloop/wsloop/benchmarks/internal/cfroom"
	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
)

func main() {
	_, ws, err := cfroom.New()
	if err != nil {
		log.Fatal(err)
	}
	httpserve.Run(ws)
}
