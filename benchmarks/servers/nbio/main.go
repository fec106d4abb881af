// Command nbio is the lesismal/nbio echo server in non-blocking mode, as its
// websocket examples write it: an nbhttp.Engine with IOModNonBlocking whose
// handler upgrades every request with a websocket.Upgrader, and an
// OnMessage that writes each message back with its type. KeepaliveTime 0
// clears the read deadline the upgrader would otherwise set (120 s), so idle
// connections stay; no server here has heartbeats.
//
// Two library behaviours show on the wire: nbio never calls OnMessage for
// an empty (0-byte) message, so those are not echoed, and it sends messages
// over 32 KiB (Config.MaxWebsocketFramePayloadSize, left at its default) as
// 32 KiB fragments.
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
	"syscall"
	"time"

	"github.com/lesismal/llib/std/crypto/tls"
	"github.com/lesismal/nbio/logging"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "pollers")
	certFile := flag.String("tls-cert", "", "TLS certificate (PEM); with -tls-key, serve TLS (nbio's own crypto/tls fork, lesismal/llib)")
	keyFile := flag.String("tls-key", "", "TLS private key (PEM)")
	flag.Parse()
	logging.Output = os.Stderr // nbio logs to stdout by default

	upgrader := websocket.NewUpgrader()
	upgrader.CheckOrigin = func(*http.Request) bool { return true }
	upgrader.KeepaliveTime = 0
	upgrader.OnMessage(func(c *websocket.Conn, mt websocket.MessageType, data []byte) {
		_ = c.WriteMessage(mt, data)
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addrs := []string{*addr} // Start writes the bound address back here
	conf := nbhttp.Config{
		Network: "tcp",
		Addrs:   addrs,
		IOMod:   nbhttp.IOModNonBlocking,
		NPoller: *loops,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = upgrader.Upgrade(w, r, nil)
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
