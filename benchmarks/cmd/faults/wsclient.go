package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// WebSocket opcodes (RFC 6455 5.2).
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// frame is one decoded frame; payload is unmasked.
type frame struct {
	fin     bool
	op      byte
	masked  bool
	payload []byte
}

// maxProbeFrame bounds the frames parseFrame accepts: the probe's echo is
// a few bytes.
const maxProbeFrame = 1 << 20

// parseFrame decodes the frame at the front of b. It returns the bytes it
// took, or 0 (and no error) while b holds only part of the frame.
func parseFrame(b []byte) (f frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.fin, f.op, f.masked = b[0]&0x80 != 0, b[0]&0x0f, b[1]&0x80 != 0
	if b[0]&0x70 != 0 {
		return f, 0, fmt.Errorf("frame with RSV bits %#x", b[0]&0x70)
	}
	size, h := uint64(b[1]&0x7f), 2
	switch size {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		size, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		size, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if size > maxProbeFrame {
		return f, 0, fmt.Errorf("frame of %d bytes", size)
	}
	var mask [4]byte
	if f.masked {
		if len(b) < h+4 {
			return f, 0, nil
		}
		copy(mask[:], b[h:])
		h += 4
	}
	if uint64(len(b)-h) < size {
		return f, 0, nil
	}
	f.payload = append([]byte(nil), b[h:h+int(size)]...)
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= mask[i&3]
		}
	}
	return f, h + int(size), nil
}

func randomMask() (m [4]byte) {
	_, _ = rand.Read(m[:])
	return m
}

// statusError is an upgrade answered with a status other than 101.
type statusError struct {
	code int
	line string
}

func (e *statusError) Error() string { return "HTTP " + strconv.Itoa(e.code) }

// statusLine parses "HTTP/1.1 503 Service Unavailable" into 503.
func statusLine(line []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("HTTP/1."))
	if !ok || len(rest) < 5 || rest[1] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(string(rest[2:5]))
	if err != nil || (len(rest) > 5 && rest[5] != ' ') {
		return 0, false
	}
	return code, true
}

// upgrade sends the opening handshake on c and reads the answer. It
// returns the bytes read past the response head (frames), a *statusError
// for an answer other than 101, or the read's error.
func upgrade(c net.Conn, deadline time.Time) ([]byte, error) {
	_ = c.SetDeadline(deadline)
	key := wsload.NewKey()
	if _, err := c.Write(wsload.AppendRequest(nil, c.RemoteAddr().String(), key)); err != nil {
		return nil, err
	}
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, []byte("\r\n")); i >= 0 {
			code, ok := statusLine(buf[:i])
			if !ok {
				return nil, fmt.Errorf("not an HTTP response: %.60q", buf[:i])
			}
			if code != 101 {
				return nil, &statusError{code, string(buf[:i])}
			}
		}
		if n > 0 {
			h, herr := wsload.CheckResponse(buf, key)
			if herr == nil {
				return buf[h:], nil
			}
			if !errors.Is(herr, wsload.ErrIncomplete) {
				return nil, herr
			}
		}
		if err != nil {
			return nil, err
		}
	}
}

// readFrame reads one data or close frame, skipping pings and pongs.
// buf holds bytes already read; it returns the frame and what is left.
func readFrame(c net.Conn, buf []byte) (frame, []byte, error) {
	tmp := make([]byte, 4096)
	for {
		for {
			f, n, err := parseFrame(buf)
			if err != nil {
				return f, nil, err
			}
			if n == 0 {
				break
			}
			buf = buf[n:]
			if f.op != opPing && f.op != opPong {
				return f, buf, nil
			}
		}
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if err != nil && n == 0 {
			return frame{}, nil, err
		}
	}
}

// classify names an error the way the report shows it.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "RST"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EPIPE):
		return "EPIPE"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "EADDRNOTAVAIL"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "EMFILE"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.Error()
	}
	return err.Error()
}

// probe dials addr, upgrades, sends one text message and waits for its
// echo, all within timeout; with cfg, over TLS (wss). It returns "ok" or
// what went wrong, prefixed with the step: "dial: refused", "tls:
// timeout", "upgrade: HTTP 503", "echo: EOF".
func probe(addr string, cfg *tls.Config, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	c, step, err := dialWS(addr, cfg, deadline)
	if err != nil {
		return step + ": " + classify(err)
	}
	defer c.Close()
	if err := c.echo(fmt.Appendf(nil, "faults probe %d", time.Now().UnixNano()), deadline); err != nil {
		return "echo: " + classify(err)
	}
	_, _ = c.Write(wsload.AppendClientFrame(nil, opClose, []byte{0x03, 0xe8}, randomMask()))
	return "ok"
}

// wsConn is an upgraded client connection, over TLS or not, with the
// bytes read past the last frame it returned.
type wsConn struct {
	net.Conn
	rest []byte
}

// dialWS dials addr, completes the TLS handshake when cfg is set, and
// upgrades, all before deadline. On failure it names the step that
// failed: "dial", "tls" or "upgrade".
func dialWS(addr string, cfg *tls.Config, deadline time.Time) (*wsConn, string, error) {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, "dial", err
	}
	c := nc
	if cfg != nil {
		tc := tls.Client(nc, cfg)
		_ = tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, "tls", err
		}
		c = tc
	}
	rest, err := upgrade(c, deadline)
	if err != nil {
		c.Close()
		return nil, "upgrade", err
	}
	_ = c.SetDeadline(time.Time{})
	return &wsConn{Conn: c, rest: rest}, "", nil
}

// echo sends msg as a text message and reads back its echo, before
// deadline.
func (c *wsConn) echo(msg []byte, deadline time.Time) error {
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(wsload.AppendClientFrame(nil, opText, msg, randomMask())); err != nil {
		return err
	}
	f, rest, err := readFrame(c, c.rest)
	c.rest = rest
	switch {
	case err != nil:
		return err
	case f.op == opClose:
		return errors.New("close frame")
	case f.op != opText || !f.fin || !bytes.Equal(f.payload, msg):
		return fmt.Errorf("wrong frame (op %d, %d bytes)", f.op, len(f.payload))
	}
	return nil
}
