// Command nbio-room is lesismal/nbio's fan-out server, on the same engine
// as servers/nbio (an nbhttp.Engine with IOModNonBlocking and a
// websocket.Upgrader, KeepaliveTime 0): every connection joins one room in
// OnOpen and leaves it in OnClose, and every message a connection sends is
// written to every member, sender included, with its type. nbio (v1.6.8)
// has no broadcast helper and no way to write a frame encoded beforehand:
// the room calls Conn.WriteMessage for each member, which encodes the
// frame for that member (a buffer from nbio's allocator, the header and a
// copy of the payload) and writes it. The members are a slice under a
// mutex, copied out under it for each message and written outside it (a
// write that fails closes its connection, whose OnClose takes the mutex).
// nbio runs a connection's OnMessage calls one at a time, in order, on its
// task pool.
//
// With -tls-cert and -tls-key it serves wss:// as servers/nbio does, with
// nbio's own fork of crypto/tls (lesismal/llib): each member's copy is
// encrypted by its connection's Write.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

// member is a connection in the room, with its index in room.members.
type member struct {
	c   *websocket.Conn
	idx int
}

type room struct {
	mu      sync.Mutex
	members []*member
	snaps   sync.Pool // *[]*member: a message's copy of the members
}

func (r *room) join(c *websocket.Conn) {
	m := &member{c: c, idx: -1}
	c.SetSession(m)
	r.mu.Lock()
	m.idx = len(r.members)
	r.members = append(r.members, m)
	r.mu.Unlock()
}

func (r *room) leave(c *websocket.Conn) {
	m, ok := c.Session().(*member)
	if !ok {
		return // closed before OnOpen
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.idx < 0 {
		return
	}
	last := r.members[len(r.members)-1]
	r.members[m.idx], last.idx = last, m.idx
	r.members[len(r.members)-1] = nil
	r.members = r.members[:len(r.members)-1]
	m.idx = -1
}

func (r *room) publish(mt websocket.MessageType, data []byte) {
	sp, _ := r.snaps.Get().(*[]*member)
	if sp == nil {
		sp = new([]*member)
	}
	r.mu.Lock()
	snap := append((*sp)[:0], r.members...)
	r.mu.Unlock()
	for _, m := range snap {
		_ = m.c.WriteMessage(mt, data)
	}
	clear(snap)
	*sp = snap[:0]
	r.snaps.Put(sp)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "pollers")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, serve TLS (nbio's own crypto/tls fork, lesismal/llib)")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()
	logging.Output = os.Stderr // nbio logs to stdout by default

	r := &room{}
	upgrader := websocket.NewUpgrader()
	upgrader.CheckOrigin = func(*http.Request) bool { return true }
	upgrader.KeepaliveTime = 0
	upgrader.OnOpen(r.join)
	upgrader.OnClose(func(c *websocket.Conn, _ error) { r.leave(c) })
	upgrader.OnMessage(func(_ *websocket.Conn, mt websocket.MessageType, data []byte) {
		r.publish(mt, data)
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addrs := []string{*addr} // Start writes the bound address back here
	conf := nbhttp.Config{
		Network: "tcp",
		Addrs:   addrs,
		IOMod:   nbhttp.IOModNonBlocking,
		NPoller: *loops,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = upgrader.Upgrade(w, req, nil)
		}),
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatal(err)
		}
		// As nbio's TLS examples configure it, with ALPN http/1.1.
		conf.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
		conf.Addrs, conf.AddrsTLS = nil, addrs
	}
	eng := nbhttp.NewEngine(conf)
	if err := eng.Start(); err != nil {
		log.Fatal(err)
	}
	mallocs.Report()
	fmt.Println("READY", addrs[0])

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = eng.Shutdown(sctx)
}
