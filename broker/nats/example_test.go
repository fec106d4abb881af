package natsbroker_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	natsbroker "github.com/wsloop/wsloop/broker/nats"
	"github.com/wsloop/wsloop/engine"
)

// lobby joins every connection to the room "lobby".
type lobby struct{ engine.BaseHandler }

func (lobby) OnOpen(c *engine.Conn) { _ = c.Join("lobby") }

// node starts one node of the cluster.
func node(h engine.Handler, natsURL string) *engine.Server {
	srv, err := engine.New(h, engine.WithBroker(natsbroker.New(natsURL)))
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	return srv
}

// Two nodes of one cluster in one process, with a NATS server of their
// own; in production each node is a process of its own, on its own
// machine, and natsURL names your NATS cluster.
func Example() {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)
	natsURL := ns.ClientURL()

	a, b := node(lobby{}, natsURL), node(lobby{}, natsURL)
	defer a.Shutdown(context.Background())
	defer b.Shutdown(context.Background())
	nodes := []*engine.Server{a, b}

	// A viewer on each node.
	var viewers []*websocket.Conn
	for _, srv := range nodes {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr().String()+"/", http.Header{})
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		viewers = append(viewers, c)
	}
	for a.RoomLen("lobby") != 2 || b.RoomLen("lobby") != 2 { // presence: within 2 s
		time.Sleep(10 * time.Millisecond)
	}
	srv := a
	n := srv.RoomLen("lobby") // members on every node, as last reported (within 2 s)
	fmt.Println("viewers in the lobby:", n, "of which here:", srv.Local().RoomLen("lobby"))

	// One publish on node A reaches the lobby on both nodes. (B counted
	// on A means B's subscription is in place: a node subscribes before
	// it reports the count, on the same NATS connection.)
	_ = srv.Publish("lobby", ws.OpText, []byte("hello, both nodes"))
	for i, c := range viewers {
		_, p, _ := c.ReadMessage()
		fmt.Printf("viewer %d: %s\n", i, p)
	}

	err = srv.SendToKey("user-42", ws.OpText, []byte("psst")) // engine.ErrForwarded: not on this node, sent on to the others
	fmt.Println(err == engine.ErrForwarded)
	// Output:
	// viewers in the lobby: 2 of which here: 1
	// viewer 0: hello, both nodes
	// viewer 1: hello, both nodes
	// true
}

// A node that shows its members how many are in their room on all nodes,
// pushing the count whenever it changes there: a join on another node
// changes it with no event on this one but the broker's call.
func ExampleWithOnRoomCount() {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	ns.ReadyForConnections(10 * time.Second)
	natsURL := ns.ClientURL()
	h := lobby{}

	var srv *engine.Server
	// Called whenever a room's count on all nodes changes, other nodes'
	// joins and leaves included, on the broker's goroutine: keep it short.
	b := natsbroker.New(natsURL, natsbroker.WithOnRoomCount(func(room string, total int) {
		_ = srv.Local().Publish(room, ws.OpText, fmt.Appendf(nil, "viewers: %d", total))
	}))
	srv, err = engine.New(h, engine.WithBroker(b))
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	defer srv.Shutdown(context.Background())
	other := node(lobby{}, natsURL) // a node of the cluster that pushes nothing
	defer other.Shutdown(context.Background())

	here, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr().String()+"/", http.Header{})
	if err != nil {
		log.Fatal(err)
	}
	defer here.Close()
	_, p, _ := here.ReadMessage()
	fmt.Printf("%s\n", p)
	there, _, err := websocket.DefaultDialer.Dial("ws://"+other.Addr().String()+"/", http.Header{})
	if err != nil {
		log.Fatal(err)
	}
	defer there.Close()
	_, p, _ = here.ReadMessage() // within a report interval (1 s)
	fmt.Printf("%s\n", p)
	// Output:
	// viewers: 1
	// viewers: 2
}
