package benchcert

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestRoundTrip serves the written certificate over a real socket and
// dials it with ClientConfig: the handshake must be TLS 1.3 over X25519
// with ALPN http/1.1, and a client that trusts another certificate must
// fail.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				var b [1]byte
				_, _ = c.Read(b[:])
			}()
		}
	}()
	addr := ln.Addr().String()

	cfg, err := ClientConfig(certFile, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := c.ConnectionState()
	c.Close()
	if cs.Version != tls.VersionTLS13 || cs.CurveID != tls.X25519 || cs.NegotiatedProtocol != "http/1.1" {
		t.Errorf("negotiated version %x, curve %v, ALPN %q", cs.Version, cs.CurveID, cs.NegotiatedProtocol)
	}

	otherCert, _, err := Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	other, err := ClientConfig(otherCert, addr)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, other); err == nil {
		c.Close()
		t.Error("a client that trusts another certificate completed the handshake")
	}
	if _, err := ClientConfig(keyFile, addr); err == nil {
		t.Error("ClientConfig took a key file for a certificate")
	}
}
