// Command floor measures the reactor's own cost: a gnet server that answers
// the WebSocket upgrade and then writes back every byte it reads, unchanged
// and unparsed (the load generator accepts its own masked frames back). No
// gnet-based WebSocket server can do less per message, so every figure is
// also shown against it. One Next and one Write per OnTraffic; the only
// per-connection state is a bool in the connection's context. It runs
// gnet the way wsloop does (level-triggered, one read per socket per round), so that
// it stays the floor for wsloop's configuration of the reactor.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/benchmarks/internal/cpuprof"
	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

const maxHeader = 8 << 10

type floor struct {
	gnet.BuiltinEventEngine
	booted chan gnet.Engine
}

func (f *floor) OnBoot(eng gnet.Engine) gnet.Action {
	f.booted <- eng
	return gnet.None
}

func (f *floor) OnTraffic(c gnet.Conn) gnet.Action {
	if upgraded, _ := c.Context().(bool); upgraded {
		buf, _ := c.Next(-1)
		_, _ = c.Write(buf)
		return gnet.None
	}
	buf, _ := c.Peek(-1)
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(buf) > maxHeader {
			return gnet.Close
		}
		return gnet.None
	}
	h := sha1.New()
	h.Write(headerValue(buf[:end], "Sec-WebSocket-Key"))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	out := []byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	out = base64.StdEncoding.AppendEncode(out, h.Sum(nil))
	out = append(out, "\r\n\r\n"...)
	_, _ = c.Discard(end + 4)
	c.SetContext(true)
	if c.InboundBuffered() > 0 { // frames sent right behind the request
		rest, _ := c.Next(-1)
		out = append(out, rest...)
	}
	_, _ = c.Write(out)
	return gnet.None
}

// headerValue returns the value of the header called name (any case) in
// the request head, or nil.
func headerValue(head []byte, name string) []byte {
	for _, line := range bytes.Split(head, []byte("\r\n"))[1:] {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte(name)) {
			return bytes.TrimSpace(v)
		}
	}
	return nil
}

// boundAddr reads the listener's address, which gnet does not report.
func boundAddr(eng gnet.Engine) (net.Addr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, err
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	}
	return nil, fmt.Errorf("unexpected listener address %T", sa)
}

// stderrLogger sends gnet's warnings and errors to stderr (gnet's default
// logger writes to stdout) and drops the rest.
type stderrLogger struct{ *log.Logger }

func (stderrLogger) Debugf(string, ...any)          {}
func (stderrLogger) Infof(string, ...any)           {}
func (l stderrLogger) Warnf(f string, args ...any)  { l.Printf(f, args...) }
func (l stderrLogger) Errorf(f string, args ...any) { l.Printf(f, args...) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file, from the start until SIGHUP (the server keeps running), SIGTERM or SIGINT")
	flag.Parse()
	defer cpuprof.Start(*cpuProfile)()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := &floor{booted: make(chan gnet.Engine, 1)}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(f, "tcp://"+*addr,
			gnet.WithNumEventLoop(*loops),
			// Level-triggered, gnet's default, as the engine runs (its
			// server.go says why it left edge-triggered).
			gnet.WithReusePort(false),
			gnet.WithLogger(stderrLogger{log.New(os.Stderr, "floor: ", log.LstdFlags)}))
	}()
	var eng gnet.Engine
	select {
	case eng = <-f.booted:
	case err := <-done:
		log.Fatal(err)
	}
	a, err := boundAddr(eng)
	if err != nil {
		log.Fatal(err)
	}
	mallocs.Report()
	fmt.Println("READY", a)

	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_ = eng.Stop(sctx)
}
