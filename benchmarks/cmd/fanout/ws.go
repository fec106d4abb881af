package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// The client side of RFC 6455, just what the benchmark needs: the opening
// handshake, masked frames from the client, and a frame parser over a
// connection's own buffer.

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// dialWS connects to addr and upgrades (and with -proto centrifuge,
// connects and subscribes); with -tls it runs the TLS handshake first
// (tlsConfig) and upgrades over it. It returns the connection (a
// *net.TCPConn, or a *tls.Conn over one) and any bytes that followed in
// the same reads (frames the server sent at once), which belong to the
// frame stream.
func dialWS(addr string, timeout time.Duration) (net.Conn, []byte, error) {
	d := net.Dialer{Timeout: timeout}
	if srcIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: srcIP}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	var c net.Conn = nc
	if tlsConfig != nil {
		tc := tls.Client(nc, tlsConfig)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err == nil {
			err = checkTLS(tc.ConnectionState())
		}
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	rest, err := upgrade(c, addr, timeout)
	if err == nil && *protoFlag == "centrifuge" {
		rest, err = cfJoin(c, rest, timeout)
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, rest, nil
}

// tlsConfig is the client's TLS configuration with -tls (nil without):
// it trusts the run's certificate (-tls-ca) alone, and asks for TLS 1.3
// with X25519 and ALPN http/1.1 (internal/benchcert), the default cipher
// suites, no session cache.
var tlsConfig *tls.Config

// checkTLS wants TLS 1.3 and ALPN http/1.1.
func checkTLS(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
	}
	if cs.NegotiatedProtocol != "http/1.1" {
		return fmt.Errorf("ALPN: got %q, want http/1.1", cs.NegotiatedProtocol)
	}
	return nil
}

// tlsName says what a connection negotiated, e.g. "TLS 1.3
// TLS_AES_128_GCM_SHA256 X25519"; "" without TLS.
func tlsName(c net.Conn) string {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ""
	}
	cs := tc.ConnectionState()
	return fmt.Sprintf("%s %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
}

// upgrade runs the opening handshake with the suite's own client side
// (wsload): the same request and the same strict check of the 101.
func upgrade(c net.Conn, host string, timeout time.Duration) ([]byte, error) {
	key := wsload.NewKey()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	req, check := wsload.AppendRequest(nil, host, key), wsload.CheckResponse
	if *deflateFlag {
		req, check = wsload.AppendRequestDeflate(nil, host, key), wsload.CheckResponseDeflate
	}
	if _, err := c.Write(req); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 1024)
	for {
		n, err := check(buf, key)
		if err == nil {
			if err := c.SetDeadline(time.Time{}); err != nil {
				return nil, err
			}
			return buf[n:], nil
		}
		if err != wsload.ErrIncomplete {
			return nil, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		m, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, fmt.Errorf("reading upgrade response: %w", err)
		}
	}
}

// frame is one parsed server frame; payload points into the read buffer.
type frame struct {
	fin, masked bool
	rsv, op     byte
	payload     []byte
}

var errFrameTooLarge = errors.New("frame larger than the read buffer")

// parseFrame parses the frame at the start of b. It returns the frame and
// its length, or n == 0 when b does not hold all of it yet. A frame whose
// length exceeds max is an error at once, whether or not it is all there.
func parseFrame(b []byte, max int) (f frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.fin = b[0]&0x80 != 0
	f.rsv = b[0] & 0x70
	f.op = b[0] & 0x0f
	f.masked = b[1]&0x80 != 0
	hdr := 2
	ln := uint64(b[1] & 0x7f)
	switch ln {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		ln, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		ln, hdr = binary.BigEndian.Uint64(b[2:]), 10
	}
	var mask []byte
	if f.masked {
		if len(b) < hdr+4 {
			return f, 0, nil
		}
		mask = b[hdr : hdr+4]
		hdr += 4
	}
	if ln > uint64(max) {
		return f, 0, fmt.Errorf("%w: opcode %#x, %d bytes", errFrameTooLarge, f.op, ln)
	}
	total := hdr + int(ln)
	if len(b) < total {
		return f, 0, nil
	}
	f.payload = b[hdr:total]
	if mask != nil { // a protocol error, reported by the caller; unmask to show it
		for i := range f.payload {
			f.payload[i] ^= mask[i&3]
		}
	}
	return f, total, nil
}
