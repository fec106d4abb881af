package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// wsConn is a client's WebSocket connection, as little as the storm needs:
// a handshake written by hand (the position in its URL) and the server's
// frames read from a bufio.Reader, so that the clients' core spends what
// it must on each reconnect and message (the clients' core, not the
// server's, sets the pace of a storm on two cores).
type wsConn struct {
	c *net.TCPConn
	r *bufio.Reader
}

// opText is a text frame's opcode (as gorilla's TextMessage, 1).
const opText = int(ws.OpText)

// dial connects from src to addr and upgrades, with pos, if any, in the
// URL.
func dial(src net.IP, addr string, pos position, timeout time.Duration) (*wsConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: timeout, Control: noPortAtBind}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &wsConn{c: nc.(*net.TCPConn), r: bufio.NewReaderSize(nc, 4096)}
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	key := wsload.NewKey()
	req := make([]byte, 0, 256)
	req = append(req, "GET /"...)
	if pos.epoch != "" {
		req = append(req, "?epoch="...)
		req = append(req, url.QueryEscape(pos.epoch)...)
		req = append(req, "&offset="...)
		req = strconv.AppendUint(req, pos.offset, 10)
	}
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, addr...)
	req = append(req, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	req = append(req, key...)
	req = append(req, "\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	if _, err := c.c.Write(req); err != nil {
		c.c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	want := 1
	for {
		b, err := c.r.Peek(want)
		if err != nil {
			c.c.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		b, _ = c.r.Peek(c.r.Buffered())
		n, err := wsload.CheckResponse(b, key)
		if errors.Is(err, wsload.ErrIncomplete) {
			want = len(b) + 1
			continue
		}
		if err != nil {
			c.c.Close()
			return nil, fmt.Errorf("handshake: %w", err)
		}
		_, _ = c.r.Discard(n)
		_ = c.c.SetDeadline(time.Time{})
		return c, nil
	}
}

// noPortAtBind sets IP_BIND_ADDRESS_NO_PORT, so that the source port is
// chosen at connect(2), for the address pair, rather than at bind(2)
// among all of the source address's ports. A storm of 10,000 once took
// 10 s of the clients' kernel time (0.5 s normally), after two earlier runs
// had left 20,000 of these ports in TIME_WAIT; not profiled, but bind's
// search for a free port through the taken ones is the known cost, and
// with this and the resets at the end it has not happened again.
func noPortAtBind(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

// read reads the next message into buf[:0]: one final, unmasked data
// frame (the server sends no other; a ping or close frame is an error).
func (c *wsConn) read(buf []byte, timeout time.Duration) (int, []byte, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(timeout))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return 0, buf, err
	}
	if !h.Fin || h.Masked || h.Length > 1<<20 || (h.OpCode != ws.OpText && h.OpCode != ws.OpBinary) {
		return 0, buf, fmt.Errorf("unexpected frame: %+v", h)
	}
	if int64(cap(buf)) < h.Length {
		buf = make([]byte, h.Length)
	}
	buf = buf[:h.Length]
	if _, err := io.ReadFull(c.r, buf); err != nil {
		return 0, buf, err
	}
	return int(h.OpCode), buf, nil
}

// writeText sends p in a text frame.
func (c *wsConn) writeText(p []byte) error {
	_, err := c.c.Write(wsload.AppendClientFrame(make([]byte, 0, len(p)+14), byte(ws.OpText), p, [4]byte{1, 2, 3, 4}))
	return err
}

// abort resets the connection: no close frame, no FIN, and no TIME_WAIT
// left to hold its port.
func (c *wsConn) abort() {
	_ = c.c.SetLinger(0)
	_ = c.c.Close()
}
