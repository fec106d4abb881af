package wstest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// websocketGUID is the RFC 6455 section 1.3 magic string.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// defaultHandshakeTimeout bounds Dial, like Autobahn's openHandshakeTimeout.
const defaultHandshakeTimeout = 5 * time.Second

// Conn is a raw client connection after a successful opening handshake.
//
// A Conn is not safe for concurrent use, except that one goroutine may read
// (ReadFrame, ReadMessage) while another writes (WriteFrame, WriteRaw).
type Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	resp      *http.Response
	sentClose atomic.Bool // a close frame was written (ExpectClose then does not answer)
}

// DialOption changes how Dial and Handshake build the upgrade request.
type DialOption func(*dialConfig)

type dialConfig struct {
	path    string
	host    string
	key     string
	header  [][2]string
	timeout time.Duration
	tls     *tls.Config
}

// WithTLS dials with TLS (wss://): the connection's first bytes are a TLS
// handshake with cfg. Default: plain TCP.
func WithTLS(cfg *tls.Config) DialOption { return func(c *dialConfig) { c.tls = cfg } }

// WithPath sets the request target of the upgrade request. Default "/".
func WithPath(path string) DialOption { return func(c *dialConfig) { c.path = path } }

// WithHost sets the Host header. Default: the address passed to Dial.
func WithHost(host string) DialOption { return func(c *dialConfig) { c.host = host } }

// WithKey sets Sec-WebSocket-Key. Default: NewKey().
func WithKey(key string) DialOption { return func(c *dialConfig) { c.key = key } }

// WithHeader adds a header line to the upgrade request (repeat it for several).
func WithHeader(name, value string) DialOption {
	return func(c *dialConfig) { c.header = append(c.header, [2]string{name, value}) }
}

// WithHandshakeTimeout bounds the TCP connect plus the opening handshake.
// Default 5 s.
func WithHandshakeTimeout(d time.Duration) DialOption {
	return func(c *dialConfig) { c.timeout = d }
}

// DialRaw opens a TCP connection to addr and nothing else. Tests that send a
// handshake of their own start here (see UpgradeRequest and Handshake).
func DialRaw(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, defaultHandshakeTimeout)
}

// Dial opens a TCP connection to addr, sends a standard upgrade request and
// checks the 101 response (status, Upgrade, Connection and
// Sec-WebSocket-Accept). Errors quote the server's status line.
func Dial(addr string, opts ...DialOption) (*Conn, error) {
	cfg := dialConfig{timeout: defaultHandshakeTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	nc, err := net.DialTimeout("tcp", addr, cfg.timeout)
	if err != nil {
		return nil, err
	}
	if cfg.tls != nil {
		tc := tls.Client(nc, cfg.tls)
		_ = tc.SetDeadline(time.Now().Add(cfg.timeout))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		nc = tc
	}
	if cfg.host == "" {
		cfg.host = addr
	}
	c, err := handshake(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Handshake runs the opening handshake on an open connection, as Dial does
// after connecting. The Host header defaults to the connection's remote
// address.
func Handshake(nc net.Conn, opts ...DialOption) (*Conn, error) {
	cfg := dialConfig{timeout: defaultHandshakeTimeout, host: nc.RemoteAddr().String()}
	for _, o := range opts {
		o(&cfg)
	}
	return handshake(nc, cfg)
}

func handshake(nc net.Conn, cfg dialConfig) (*Conn, error) {
	if cfg.path == "" {
		cfg.path = "/"
	}
	if cfg.key == "" {
		cfg.key = NewKey()
	}
	req := UpgradeRequest(cfg.host, cfg.path, cfg.key)
	if len(cfg.header) > 0 {
		var extra bytes.Buffer
		for _, h := range cfg.header {
			fmt.Fprintf(&extra, "%s: %s\r\n", h[0], h[1])
		}
		req = append(req[:len(req)-2], append(extra.Bytes(), "\r\n"...)...)
	}
	if err := nc.SetDeadline(time.Now().Add(cfg.timeout)); err != nil {
		return nil, err
	}
	if _, err := nc.Write(req); err != nil {
		return nil, fmt.Errorf("wstest: write upgrade request: %w", err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("wstest: read upgrade response: %w", err)
	}
	status := resp.Proto + " " + resp.Status
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("wstest: upgrade refused: %q (body %q)", status, body)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return nil, fmt.Errorf("wstest: %q without Upgrade: websocket (got %q)", status, resp.Header.Get("Upgrade"))
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return nil, fmt.Errorf("wstest: %q without Connection: Upgrade (got %q)", status, resp.Header.Values("Connection"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(cfg.key); got != want {
		return nil, fmt.Errorf("wstest: %q with Sec-WebSocket-Accept %q, want %q", status, got, want)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &Conn{nc: nc, br: br, resp: resp}, nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// UpgradeRequest returns the bytes of a standard RFC 6455 upgrade request for
// host, path and key, ending with the blank line. Tests mutate a copy to
// probe the server's handshake parser.
func UpgradeRequest(host, path, key string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"User-Agent: wsloop-wstest\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n")
}

// NewKey returns a random Sec-WebSocket-Key (16 random bytes, base64).
func NewKey() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return base64.StdEncoding.EncodeToString(b[:])
}

// AcceptKey returns the Sec-WebSocket-Accept value a server must send for key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Response returns the server's 101 response (headers only).
func (c *Conn) Response() *http.Response { return c.resp }

// NetConn returns the underlying TCP connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the TCP connection without a closing handshake (the client
// "drops" it).
func (c *Conn) Close() error { return c.nc.Close() }

// ReadOutcome says how a read on the connection ended.
type ReadOutcome int

const (
	// ReadOK means the read succeeded.
	ReadOK ReadOutcome = iota
	// ServerEOF means the server closed the TCP connection (FIN).
	ServerEOF
	// ServerReset means the connection was reset (RST), which also ends it
	// from the server's side.
	ServerReset
	// ReadTimeout means the deadline passed with the connection still open.
	ReadTimeout
	// ReadFailed is any other error, including reads on a connection this
	// client already closed.
	ReadFailed
)

func (o ReadOutcome) String() string {
	switch o {
	case ReadOK:
		return "ok"
	case ServerEOF:
		return "server closed TCP (EOF)"
	case ServerReset:
		return "connection reset"
	case ReadTimeout:
		return "timeout"
	default:
		return "read failed"
	}
}

// ServerClosed reports whether the server ended the TCP connection (EOF or
// reset), as opposed to a timeout or a local failure.
func (o ReadOutcome) ServerClosed() bool { return o == ServerEOF || o == ServerReset }

// Classify maps a read error to a ReadOutcome. A frame cut short by EOF
// counts as ServerEOF.
func Classify(err error) ReadOutcome {
	switch {
	case err == nil:
		return ReadOK
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ServerEOF
	case errors.Is(err, syscall.ECONNRESET):
		return ServerReset
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReadTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReadTimeout
	}
	return ReadFailed
}

// setReadDeadline sets a deadline timeout from now; timeout <= 0 clears it.
func (c *Conn) setReadDeadline(timeout time.Duration) error {
	if timeout <= 0 {
		return c.nc.SetReadDeadline(time.Time{})
	}
	return c.nc.SetReadDeadline(time.Now().Add(timeout))
}

// WaitClosed reads until the TCP connection ends or timeout passes, and
// returns how it ended and how many bytes arrived meanwhile (after a closing
// handshake there should be none). On ReadTimeout the client drops the
// connection, as Autobahn's client does when the server does not.
func (c *Conn) WaitClosed(timeout time.Duration) (ReadOutcome, int) {
	if err := c.setReadDeadline(timeout); err != nil {
		return Classify(err), 0
	}
	var buf [4096]byte
	n := 0
	for {
		k, err := c.br.Read(buf[:])
		n += k
		if err != nil {
			o := Classify(err)
			if o == ReadTimeout {
				c.nc.Close()
			}
			return o, n
		}
	}
}
