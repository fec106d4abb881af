// Command nats runs a NATS server (github.com/nats-io/nats-server/v2, as a
// library, with its defaults) for the cluster benchmark (cmd/cluster). It
// prints
//
//	READY 127.0.0.1:PORT http://127.0.0.1:MONITOR_PORT
//
// once it accepts clients; the monitoring port serves /varz, whose message
// and byte counters the benchmark reads.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "client address; port 0 picks a free port")
	flag.Parse()
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		log.Fatal(err)
	}
	if p == 0 {
		p = -1 // nats-server's "any free port"
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: p, HTTPHost: host, HTTPPort: -1, NoSigs: true, NoLog: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats: not ready within 10 s")
	}
	fmt.Println("READY", ns.Addr(), "http://"+ns.MonitorAddr().String())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	ns.Shutdown()
}
