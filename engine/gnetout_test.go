package engine

import (
	"bytes"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// TestGnetOutboundReadable: the hand-off reads what gnet holds for a
// socket (gnetout.go) through an unexported field of gnet's connection;
// with the gnet this module requires, it finds it, and what it reads is
// exactly the tail of the frames the socket did not take. A release of
// gnet that renames or retypes the field fails here (hand-offs would then
// wait for such output to drain instead of moving it).
func TestGnetOutboundReadable(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	srv, addr := startServer(t, echoHandler{}, WithMaxOutboundBytes(64<<20))
	// A client with a small receive buffer that does not read.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := upgradeOver(t, nc, addr)
	var want []byte
	for range 8 {
		if _, err := c.Write(clientFrame(ws.OpBinary, true, msg)); err != nil {
			t.Fatal(err)
		}
		want = codec.AppendFrame(want, ws.OpBinary, true, msg)
	}
	var held, gnetHeld int
	var tail []byte
	found, seen := false, false
	waitFor(t, 10*time.Second, "gnet to hold output", func() bool {
		srv.onEveryLoop(func(l *loop) {
			l.each(func(c *Conn) {
				if n := c.gc.OutboundBuffered(); n > 0 {
					seen = true
					ob := outboundOf(c)
					found = ob != nil
					if found {
						gnetHeld, held = n, ob.Buffered()
						tail = appendOutbound(nil, ob)
					}
				}
			})
		})
		return seen
	})
	if !found {
		t.Fatal("gnet holds output, but its outbound buffer cannot be read: a gnet release changed its connection type")
	}
	if held != gnetHeld || len(tail) != held {
		t.Fatalf("read %d bytes (buffer says %d), gnet says %d", len(tail), held, gnetHeld)
	}
	if !bytes.HasSuffix(want, tail) {
		t.Fatalf("the %d bytes read are not the tail of what was written", len(tail))
	}
	t.Logf("gnet held %d of %d bytes", held, len(want))
}
