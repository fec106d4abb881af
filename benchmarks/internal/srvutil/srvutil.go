// Package srvutil holds what every benchmark server shares: its flags, the
// READY line the orchestrator waits for, and the wait for SIGINT/SIGTERM.
package srvutil

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// Flags parses -addr and -loops, the two flags every server takes.
func Flags() (addr string, loops int) {
	a := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	l := flag.Int("loops", runtime.NumCPU(), "event loops (event-loop servers only)")
	flag.Parse()
	return *a, *l
}

// Ready prints the line the orchestrator waits for.
func Ready(addr net.Addr) { fmt.Fprintf(os.Stdout, "READY %s\n", addr) }

// Wait blocks until SIGINT or SIGTERM.
func Wait() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
}

// FreeAddr resolves port 0 in addr to a free port, for libraries that
// cannot report the port they bound.
func FreeAddr(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ServeHTTP runs h on addr with net/http until SIGINT/SIGTERM, printing the
// READY line once listening.
func ServeHTTP(addr string, h http.Handler) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() { _ = http.Serve(l, h) }()
	Ready(l.Addr())
	Wait()
}
