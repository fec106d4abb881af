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
	"context"
	"log"
	"net/http"

	"github.com/centrifugal/centrifuge"

	"github.com/wsloop/wsloop/benchmarks/internal/httpserve"
)

func main() {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		log.Fatal(err)
	}
	node.OnConnecting(func(context.Context, centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{}}, nil
	})
	node.OnConnect(func(client *centrifuge.Client) {
		client.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
		client.OnPublish(func(_ centrifuge.PublishEvent, cb centrifuge.PublishCallback) {
			cb(centrifuge.PublishReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}
	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		// The load clients send no Origin; the default check wants one
		// that matches the Host.
		CheckOrigin: func(*http.Request) bool { return true },
	})
	httpserve.Run(ws)
}
