// Command nats runs a NATS server (github.com/nats-io/nats-server/v2, as a
// library, with its defaults) for the cluster benchmark (cmd/cluster). It
// prints
//
//	READY 127.0.0.1:PORT http://127.0.0.1:MONITOR_PORT
//
// once it accepts clients; the monitoring port serves /varz, whose message
// and byte counters the benchmark reads.
//
// With -js it runs JetStream too (for natsbroker.WithHistory, which keeps
// rooms' history in a stream), its store in a fresh temporary directory
// (under -js-dir, or the system's) that is removed at exit; /jsz then
// serves JetStream's counters.
package main

import (
	"errors"
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
	js := flag.Bool("js", false, "enable JetStream, its store in a temporary directory removed at exit")
	jsDir := flag.String("js-dir", "", "with -js: the directory to make the store's temporary directory in (empty: the system's)")
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
	opts := &server.Options{Host: host, Port: p, HTTPHost: host, HTTPPort: -1, NoSigs: true, NoLog: true}
	if *js {
		dir, err := os.MkdirTemp(*jsDir, "nats-js-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		opts.JetStream, opts.StoreDir = true, dir
	}
	if err := serve(opts); err != nil {
		if opts.StoreDir != "" {
			os.RemoveAll(opts.StoreDir)
		}
		log.Fatal(err)
	}
}

// serve runs the server until SIGINT or SIGTERM.
func serve(opts *server.Options) error {
	ns, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return errors.New("nats: not ready within 10 s")
	}
	fmt.Println("READY", ns.Addr(), "http://"+ns.MonitorAddr().String())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
