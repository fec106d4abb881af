package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
)

// echoServer echoes every message, with its first byte flipped when bad.
type echoServer struct {
	engine.BaseHandler
	bad bool
}

func (h echoServer) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	if h.bad {
		p = append([]byte(nil), p...)
		p[0] ^= 1
	}
	_ = c.WriteMessage(op, p)
}

func serve(t *testing.T, bad bool, cert tls.Certificate) string {
	srv, err := engine.New(echoServer{bad: bad}, engine.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ListenAndServe(ctx, "127.0.0.1:0") }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-srv.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
	return srv.Addr().String()
}

// TestClient checks the client's round trip over TLS against a server that
// echoes and one that flips a bit: the second must fail.
func TestClient(t *testing.T) {
	cert, err := devcert.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{tls.X25519}, NextProtos: []string{"http/1.1"}}
	for _, bad := range []bool{false, true} {
		d := &dialer{addr: serve(t, bad, cert), cfg: cfg}
		conns, err := d.dialMany(4, 2)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(conns[0].tls, "TLS 1.3 ") || !strings.HasSuffix(conns[0].tls, " X25519") {
			t.Errorf("negotiated %q", conns[0].tls)
		}
		ok, errs, first := checkAll(conns, 64)
		switch {
		case !bad && (ok != 4 || errs != 0):
			t.Errorf("good server: %d ok, %d errors (%s)", ok, errs, first)
		case bad && (errs != 4 || !strings.Contains(first, "differs")):
			t.Errorf("bit-flipping server: %d ok, %d errors (%s); want every echo to fail", ok, errs, first)
		}
		for _, c := range conns {
			c.Close()
		}
	}
}
