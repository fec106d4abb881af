// Package cfroom is the centrifuge fan-out server of the suite
// (servers/centrifuge-room, and cmd/fanout's tests in process): a
// centrifuge Node set up as its README shows, with the in-memory broker,
// anonymous connections accepted in OnConnecting, and in OnConnect a
// subscribe handler and a publish handler that allow everything, so a
// client publish is published to the channel and pushed to every
// subscriber.
package cfroom

import (
	"context"
	"net/http"

	"github.com/centrifugal/centrifuge"
)

// New starts a Node and returns its WebSocket handler, which accepts any
// Origin (the load clients send none; centrifuge's default check wants one
// that matches the Host). Everything else is centrifuge's default.
func New() (*centrifuge.Node, http.Handler, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		CheckOrigin: func(*http.Request) bool { return true },
	})
	return node, ws, nil
}
