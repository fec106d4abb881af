package engine_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/engine"
)

// chat echoes every message and greets each new connection.
type chat struct{ engine.BaseHandler }

func (chat) OnOpen(c *engine.Conn) { _ = c.SendText("welcome") }

func (chat) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	// Runs on the event loop: do not block here. p is only valid during the call.
	_ = c.WriteMessage(op, p)
}

func (chat) OnClose(c *engine.Conn, err error) {
	fmt.Println("closed with", engine.CloseStatus(err))
}

// Embedding the engine: a handler, options, ListenAndServe.
func Example() {
	srv, err := engine.New(chat{},
		engine.WithMaxMessageSize(64<<10),
		engine.WithPingInterval(25*time.Second),
		engine.WithIdleTimeout(60*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-srv.Ready()
		fmt.Println("listening")
		cancel() // a real server would run until a signal
	}()
	err = srv.ListenAndServe(ctx, "127.0.0.1:0")
	fmt.Println(err)
	// Output:
	// listening
	// wsloop: server closed
}

// worker hands slow work to a goroutine and answers from there.
type worker struct{ engine.BaseHandler }

func (worker) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	job := append([]byte(nil), p...) // p is only valid during OnMessage
	go func() {
		result := lookup(job) // may block: this goroutine is off the loop
		_ = c.Send(result)    // safe from any goroutine
	}()
}

func lookup(b []byte) []byte { return b }

// Sending from another goroutine.
func ExampleConn_Send() {
	srv, err := engine.New(worker{})
	if err != nil {
		log.Fatal(err)
	}
	_ = srv // run it with srv.ListenAndServe(ctx, ":8080")
}
