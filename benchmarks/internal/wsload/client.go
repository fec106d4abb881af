// Package wsload is the load generator's WebSocket client: a plain RFC 6455
// client over a net.Conn with masked frames, a reusable read buffer and no
// allocation per message. It accepts masked frames from the server (and
// unmasks them) because the floor server echoes the client's frames as
// they are.
package wsload

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// Conn is one client connection. Not safe for concurrent use.
type Conn struct {
	net.Conn
	mask [4]byte
	rbuf []byte
	r, w int // unread bytes are rbuf[r:w]
	wbuf []byte
}

// Dial opens a TCP connection from src (nil: the kernel's choice) to addr
// and upgrades it, checking the 101 and Sec-WebSocket-Accept.
func Dial(addr string, src net.IP, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &Conn{Conn: nc, rbuf: make([]byte, 4096)}
	if err := c.upgrade(addr, timeout); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *Conn) upgrade(host string, timeout time.Duration) error {
	var k [16]byte
	_, _ = rand.Read(k[:])
	_, _ = rand.Read(c.mask[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.Conn, req); err != nil {
		return err
	}
	for {
		if end := bytes.Index(c.rbuf[:c.w], []byte("\r\n\r\n")); end >= 0 {
			head := c.rbuf[:end+4]
			c.r = end + 4
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
				line, _, _ := bytes.Cut(head, []byte("\r\n"))
				return fmt.Errorf("upgrade refused: %q", line)
			}
			h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			want := "\r\nsec-websocket-accept: " + base64.StdEncoding.EncodeToString(h[:]) + "\r\n"
			if !bytes.Contains(bytes.ToLower(head), bytes.ToLower([]byte(want))) {
				return fmt.Errorf("bad Sec-WebSocket-Accept in %q", head)
			}
			return nil
		}
		if c.w == len(c.rbuf) {
			return errors.New("upgrade response too long")
		}
		n, err := c.Conn.Read(c.rbuf[c.w:])
		if err != nil {
			return fmt.Errorf("reading the upgrade response: %w", err)
		}
		c.w += n
	}
}

// AppendFrame appends one masked final frame carrying p to the connection's
// pending output.
func (c *Conn) AppendFrame(op ws.OpCode, p []byte) {
	b := c.wbuf
	b = append(b, 0x80|byte(op))
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, c.mask[:]...)
	start := len(b)
	b = append(b, p...)
	ws.Cipher(b[start:], c.mask, 0)
	c.wbuf = b
}

// Flush writes the pending frames in one write call.
func (c *Conn) Flush() error {
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return err
}

// fill reads until at least n unread bytes are buffered.
func (c *Conn) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.r > 0 {
		c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		c.r = 0
	}
	if n > len(c.rbuf) {
		nb := make([]byte, n+4096)
		copy(nb, c.rbuf[:c.w])
		c.rbuf = nb
	}
	for c.w < n {
		m, err := c.Conn.Read(c.rbuf[c.w:])
		if err != nil {
			return err
		}
		c.w += m
	}
	return nil
}

// ErrClosed reports a close frame from the server.
var ErrClosed = errors.New("server sent a close frame")

// ReadFrame returns the next frame's opcode and payload (unmasked; valid
// until the next call) and whether it is final.
func (c *Conn) ReadFrame() (op ws.OpCode, fin bool, p []byte, err error) {
	if err = c.fill(2); err != nil {
		return
	}
	b0, b1 := c.rbuf[c.r], c.rbuf[c.r+1]
	hl := 2
	n := int(b1 & 0x7f)
	switch n {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	masked := b1&0x80 != 0
	if masked {
		hl += 4
	}
	if err = c.fill(hl); err != nil {
		return
	}
	h := c.rbuf[c.r:]
	switch n {
	case 126:
		n = int(binary.BigEndian.Uint16(h[2:]))
	case 127:
		n = int(binary.BigEndian.Uint64(h[2:]))
	}
	if err = c.fill(hl + n); err != nil {
		return
	}
	h = c.rbuf[c.r:]
	p = h[hl : hl+n]
	if masked {
		var m [4]byte
		copy(m[:], h[hl-4:hl])
		ws.Cipher(p, m, 0)
	}
	c.r += hl + n
	op, fin = ws.OpCode(b0&0x0f), b0&0x80 != 0
	if op == ws.OpClose {
		err = ErrClosed
	}
	return
}

// ReadMessage returns the next data message, assembling fragments into
// scratch when the server fragments. Control frames other than close are
// skipped.
func (c *Conn) ReadMessage(scratch *[]byte) (ws.OpCode, []byte, error) {
	var op ws.OpCode
	var msg []byte
	fragmented := false
	for {
		fop, fin, p, err := c.ReadFrame()
		if err != nil {
			return 0, nil, err
		}
		if fop.IsControl() {
			continue
		}
		if !fragmented {
			op = fop
			if fin {
				return op, p, nil
			}
			fragmented = true
			msg = append((*scratch)[:0], p...)
			continue
		}
		msg = append(msg, p...)
		*scratch = msg
		if fin {
			return op, msg, nil
		}
	}
}
