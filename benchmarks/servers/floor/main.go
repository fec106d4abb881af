// Command floor is the reactor's own cost: a gnet server that answers the
// upgrade and then echoes the raw bytes it reads without parsing frames
// (the client accepts its own masked frames back). No gnet-based WebSocket
// server can do less per message; every figure is also shown against it.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/benchmarks/internal/srvutil"
)

type floor struct {
	gnet.BuiltinEventEngine
	eng   gnet.Engine
	ready chan net.Addr
}

var upgraded = new(bool) // context marker: the handshake is done

func (f *floor) OnBoot(eng gnet.Engine) gnet.Action {
	f.eng = eng
	fd, err := eng.Dup()
	if err == nil {
		sa, _ := syscall.Getsockname(fd)
		_ = syscall.Close(fd)
		if a, ok := sa.(*syscall.SockaddrInet4); ok {
			f.ready <- &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
			return gnet.None
		}
	}
	f.ready <- nil
	return gnet.None
}

func (f *floor) OnTraffic(c gnet.Conn) gnet.Action {
	if c.Context() == nil {
		buf, _ := c.Peek(-1)
		end := bytes.Index(buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(buf) > 8192 {
				return gnet.Close
			}
			return gnet.None
		}
		key := header(buf[:end], "sec-websocket-key")
		h := sha1.New()
		h.Write(key)
		h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		resp := make([]byte, 0, 160)
		resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
		resp = base64.StdEncoding.AppendEncode(resp, h.Sum(nil))
		resp = append(resp, "\r\n\r\n"...)
		_, _ = c.Discard(end + 4)
		c.SetContext(upgraded)
		_, _ = c.Write(resp)
	}
	if c.InboundBuffered() == 0 {
		return gnet.None
	}
	buf, _ := c.Next(-1)
	_, _ = c.Write(buf)
	return gnet.None
}

// header returns the value of the named header (lower case) in head.
func header(head []byte, name string) []byte {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && string(bytes.ToLower(bytes.TrimSpace(k))) == name {
			return bytes.TrimSpace(v)
		}
	}
	return nil
}

func main() {
	addr, loops := srvutil.Flags()
	f := &floor{ready: make(chan net.Addr, 1)}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(f, "tcp://"+addr, gnet.WithNumEventLoop(loops), gnet.WithReusePort(false))
	}()
	select {
	case a := <-f.ready:
		if a == nil {
			fmt.Fprintln(os.Stderr, "floor: cannot read the bound address")
			os.Exit(1)
		}
		srvutil.Ready(a)
	case err := <-done:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srvutil.Wait()
	_ = f.eng.Stop(context.Background())
}
