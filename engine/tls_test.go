package engine

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	cws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// testCAPEM is testPKI's CA certificate, once testPKI has run.
var testCAPEM []byte

// testPKI is a CA and a server certificate for 127.0.0.1 and localhost,
// made once per test binary.
var testPKI = sync.OnceValues(func() (*tls.Config, *x509.CertPool) {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "wsloop test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	must(err)
	caCert, err := x509.ParseCertificate(caDER)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	must(err)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	testCAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der, caDER}, PrivateKey: key}}}, pool
})

func tlsServer(t *testing.T, h Handler, opts ...Option) (*Server, string) {
	cfg, _ := testPKI()
	return startServer(t, h, append([]Option{WithTLS(cfg)}, opts...)...)
}

func clientTLS(version uint16, suites ...uint16) *tls.Config {
	_, pool := testPKI()
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: version, MaxVersion: version, CipherSuites: suites, NextProtos: []string{"http/1.1"}}
}

// Echo over wss with gorilla/websocket and coder/websocket, on TLS 1.2
// with each cipher family and on TLS 1.3: small messages, a message of
// many records, and the close handshake.
func TestTLSEcho(t *testing.T) {
	rec := newRecorder()
	srv, addr := tlsServer(t, rec)
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: 20 records
	cases := []struct {
		name string
		cfg  *tls.Config
	}{
		{"1.3", clientTLS(tls.VersionTLS13)},
		{"1.2-aes128gcm", clientTLS(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)},
		{"1.2-aes256gcm", clientTLS(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)},
		{"1.2-chacha20", clientTLS(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)},
	}
	for _, tc := range cases {
		t.Run("gorilla-"+tc.name, func(t *testing.T) {
			d := websocket.Dialer{TLSClientConfig: tc.cfg, HandshakeTimeout: 5 * time.Second}
			c, resp, err := d.Dial("wss://"+addr+"/", nil)
			if err != nil {
				t.Fatalf("dial: %v %v", err, resp)
			}
			defer c.Close()
			if st := c.UnderlyingConn().(*tls.Conn).ConnectionState(); st.Version != tc.cfg.MaxVersion || st.NegotiatedProtocol != "http/1.1" ||
				(len(tc.cfg.CipherSuites) > 0 && st.CipherSuite != tc.cfg.CipherSuites[0]) {
				t.Fatalf("negotiated version %x, protocol %q, suite %x", st.Version, st.NegotiatedProtocol, st.CipherSuite)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for _, p := range [][]byte{[]byte("hello"), big, []byte("after")} {
				if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
					t.Fatal(err)
				}
				if _, got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, p) {
					t.Fatalf("echo of %d bytes: %d bytes, %v", len(p), len(got), err)
				}
			}
			if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, 1000) {
				t.Fatalf("close: %v", err)
			}
		})
	}
	t.Run("coder-1.3", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(tls.VersionTLS13), ForceAttemptHTTP2: false}}
		c, _, err := cws.Dial(ctx, "wss://"+addr+"/", &cws.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadLimit(1 << 20)
		for _, p := range [][]byte{[]byte("hi"), big} {
			if err := c.Write(ctx, cws.MessageText, p); err != nil {
				t.Fatal(err)
			}
			if _, got, err := c.Read(ctx); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("echo of %d bytes: %d, %v", len(p), len(got), err)
			}
		}
		if err := c.Close(cws.StatusNormalClosure, ""); err != nil {
			t.Fatal(err)
		}
	})
	waitFor(t, 5*time.Second, "every OnClose", func() bool { o, c := rec.counts(); return o == 5 && c == 5 })
	if n := srv.Stats().TLSHandshakeFailures; n != 0 {
		t.Fatalf("%d handshake failures", n)
	}
}

// A client that opens TCP and sends nothing, and one that stops halfway
// through its ClientHello, are dropped at the handshake deadline.
func TestTLSHandshakeDeadline(t *testing.T) {
	srv, addr := tlsServer(t, echoHandler{}, WithHandshakeTimeout(300*time.Millisecond))
	silent := dialTCP(t, addr)
	half := dialTCP(t, addr)
	hello := clientHello(t)
	if _, err := half.Write(hello[:len(hello)/2]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for name, c := range map[string]net.Conn{"silent": silent, "half a ClientHello": half} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("%s: %v (not closed within 5 s)", name, err)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("%s: closed after %v, before the deadline", name, d)
		}
		t.Logf("%s: closed by %v", name, time.Since(start))
	}
	waitFor(t, 5*time.Second, "no socket left", func() bool { return srv.Stats().Sockets == 0 })
}

// clientHello returns the first bytes a TLS 1.3 client sends.
func clientHello(t *testing.T) []byte { return clientHelloFor(t, "localhost") }

// clientHelloFor returns the first record a TLS 1.3 client sends for
// serverName.
func clientHelloFor(t *testing.T, serverName string) []byte {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		cfg := clientTLS(tls.VersionTLS13)
		cfg.ServerName = serverName
		_ = tls.Client(b, cfg).Handshake()
		b.Close()
	}()
	buf := make([]byte, 4096)
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := a.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// Garbage, a plain HTTP request and a TLS version the server refuses are
// closed cleanly, counted, and leave nothing behind; the server serves on.
func TestTLSBadInput(t *testing.T) {
	srv, addr := tlsServer(t, echoHandler{}, WithTLS(func() *tls.Config {
		cfg, _ := testPKI()
		cfg = cfg.Clone()
		cfg.MinVersion = tls.VersionTLS13
		return cfg
	}()))
	inputs := map[string][]byte{
		"garbage":      bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff, 0x42}, 2000),
		"zeros":        make([]byte, 5000),
		"plain HTTP":   []byte("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
		"random bytes": func() []byte { b := make([]byte, 3000); _, _ = rand.Read(b); return b }(),
	}
	for name, in := range inputs {
		for range 20 {
			c := dialTCP(t, addr)
			_, _ = c.Write(in)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%s: not closed within 5 s", name)
			}
			c.Close()
		}
	}
	// TLS 1.2 against a server that wants 1.3.
	d := websocket.Dialer{TLSClientConfig: clientTLS(tls.VersionTLS12)}
	if _, _, err := d.Dial("wss://"+addr+"/", nil); err == nil {
		t.Fatal("TLS 1.2 accepted by a 1.3-only server")
	}
	waitFor(t, 5*time.Second, "no socket left", func() bool { return srv.Stats().Sockets == 0 })
	if n := srv.Stats().TLSHandshakeFailures; n < 81 {
		t.Fatalf("%d handshake failures counted, want at least 81", n)
	}
	// And it serves.
	d = websocket.Dialer{TLSClientConfig: clientTLS(tls.VersionTLS13)}
	c, _, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("still here"))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("%q %v", p, err)
	}
}

// With WithMaxTLSHandshakes(2), two clients that stall after their
// ClientHello hold both slots; a third waits in the queue (no goroutine,
// not refused) and completes once the stalled ones give up.
func TestTLSHandshakeBound(t *testing.T) {
	srv, addr := tlsServer(t, echoHandler{}, WithMaxTLSHandshakes(2), WithHandshakeTimeout(5*time.Second))
	var freed atomic.Int64 // when the first stalled client let its slot go
	hello := clientHello(t)
	for range 2 {
		c := dialTCP(t, addr)
		if _, err := c.Write(hello); err != nil { // then nothing: its handshake goroutine waits for the client's Finished
			t.Fatal(err)
		}
		time.AfterFunc(600*time.Millisecond, func() {
			freed.CompareAndSwap(0, time.Now().UnixNano())
			c.Close()
		})
	}
	waitFor(t, 5*time.Second, "both slots taken", func() bool { return srv.Stats().TLSHandshakes == 2 })
	start := time.Now()
	d := websocket.Dialer{TLSClientConfig: clientTLS(tls.VersionTLS13), HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial("wss://"+addr+"/", nil)
	done := time.Now()
	if err != nil {
		t.Fatalf("the queued handshake: %v", err)
	}
	defer c.Close()
	if f := freed.Load(); f == 0 || done.UnixNano() < f {
		t.Fatalf("the third handshake finished %v after it began, before a stalled client let its slot go", done.Sub(start))
	}
	t.Logf("the third handshake waited %v for a slot", done.Sub(start))
}

func TestTLSOptionErrors(t *testing.T) {
	if _, err := New(echoHandler{}, WithTLS(&tls.Config{})); err == nil {
		t.Fatal("a TLS config without a certificate was accepted")
	}
	cfg, _ := testPKI()
	if _, err := New(echoHandler{}, WithTLS(cfg), WithMaxTLSHandshakes(0)); err == nil {
		t.Fatal("WithMaxTLSHandshakes(0) was accepted")
	}
}

// roomEcho joins every connection to "r" and echoes.
type roomEcho struct{ echoHandler }

func (roomEcho) OnOpen(c *Conn) { _ = c.Join("r") }

func dialWSS(t *testing.T, addr string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: clientTLS(tls.VersionTLS13), HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c
}

// Rooms, heartbeats, the slow-consumer policy and Shutdown behave over
// TLS as they do over TCP.
func TestTLSSameBehaviour(t *testing.T) {
	cfg, _ := testPKI()
	srv, errc := serve(t, roomEcho{}, "127.0.0.1:0", WithTLS(cfg), WithPingInterval(100*time.Millisecond),
		WithIdleTimeout(5*time.Second), WithMaxOutboundBytes(256<<10), WithSlowConsumerPolicy(ClosePolicyViolation))
	addr := srv.Addr().String()

	a, b := dialWSS(t, addr), dialWSS(t, addr)
	waitFor(t, 5*time.Second, "both in the room", func() bool { return srv.RoomLen("r") == 2 })
	// Rooms: one publish reaches both.
	if err := srv.Publish("r", 1, []byte("to the room")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{a, b} {
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "to the room" {
			t.Fatalf("%q %v", p, err)
		}
	}
	// Heartbeat: the server pings a silent client (gorilla answers while
	// it reads).
	pinged := make(chan struct{}, 1)
	a.SetPingHandler(func(string) error {
		select {
		case pinged <- struct{}{}:
		default:
		}
		return nil
	})
	aDone := make(chan error, 1)
	go func() {
		for {
			if _, _, err := a.ReadMessage(); err != nil {
				aDone <- err
				return
			}
		}
	}()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("no ping within 5 s")
	}

	// Slow consumer: c never reads; sends fill the socket and the outbound
	// cap, and the connection is closed with 1008.
	slow := dialWSS(t, addr)
	var sc *Conn
	waitFor(t, 5*time.Second, "the slow one in the room", func() bool {
		for _, m := range srv.RoomMembers("r") { // joins the loop has applied
			if m.RemoteAddr().String() == slow.LocalAddr().String() {
				sc = m
			}
		}
		return sc != nil
	})
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var sendErr error
	for i := 0; i < 2000 && sendErr == nil; i++ {
		sendErr = sc.WriteMessage(2, chunk)
		if i%16 == 15 {
			time.Sleep(time.Millisecond)
		}
	}
	if !errors.Is(sendErr, ErrSlowConsumer) && !errors.Is(sendErr, ErrClosed) {
		t.Fatalf("sends to a client that does not read: %v", sendErr)
	}

	// Shutdown: every wss client gets 1001.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = srv.Shutdown(ctx) }()
	for {
		if _, _, err := b.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, 1001) {
				t.Fatalf("at shutdown: %v", err)
			}
			break
		}
	}
	if err := <-aDone; !websocket.IsCloseError(err, 1001) {
		t.Fatalf("at shutdown: %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatal(err)
	}
}

// TestTLSEchoAllocs: over TLS, in steady state, the allocations of an echo
// are crypto/tls's own: a record read allocates one 16-byte reader
// (crypto/tls's readFromUntil, when fewer bytes are buffered than a record
// header). The server reads only when a whole record is there, so it
// never pays for a read that finds nothing: one allocation a record each
// way, 2 per round trip, client and server together; nothing of wsloop's.
// (Before the server looked first, it was 4.)
func TestTLSEchoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	_, addr := tlsServer(t, echoHandler{})
	tc := tls.Client(dialTCP(t, addr), clientTLS(tls.VersionTLS13))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := upgradeOver(t, tc, addr)
	frame := clientFrame(2, true, bytes.Repeat([]byte("x"), 64))
	reply := make([]byte, 2+64)
	for range 200 {
		echoRoundTrip(t, c, frame, reply)
	}
	if allocs := testing.AllocsPerRun(2000, func() { echoRoundTrip(t, c, frame, reply) }); allocs > 2 {
		t.Errorf("%v allocations per echoed message over TLS, want crypto/tls's 2", allocs)
	}
}

// capture remembers the last connection opened.
type capture struct {
	echoHandler
	c chan *Conn
}

func (h capture) OnOpen(c *Conn) { h.c <- c }

type loopFunc func()

func (f loopFunc) Run(context.Context) error { f(); return nil }

// TestTLSIdleTrim: crypto/tls's buffers are found on this Go, and an idle
// wss connection (silent for a ping interval) holds none of them.
func TestTLSIdleTrim(t *testing.T) {
	if len(tlsIdleBufs) != 3 {
		t.Fatalf("tls.Conn's buffers not found (%v): idle TLS connections keep their handshake's buffers on this Go", tlsIdleBufs)
	}
	h := capture{c: make(chan *Conn, 1)}
	_, addr := tlsServer(t, h, WithPingInterval(100*time.Millisecond))
	c := dialWSS(t, addr)
	sc := <-h.c
	if err := c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 3000)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	caps := func() (r, hs, in int) {
		done := make(chan struct{})
		_ = sc.loop.el.Execute(context.Background(), loopFunc(func() {
			st := sc.tlsOf()
			p := unsafe.Pointer(st.conn)
			r = (*bytes.Buffer)(unsafe.Add(p, tlsIdleBufs[0])).Cap()
			hs = (*bytes.Buffer)(unsafe.Add(p, tlsIdleBufs[1])).Cap()
			in = int((*bytes.Reader)(unsafe.Add(p, tlsIdleBufs[2])).Size())
			// The engine's own: what the client sent during the handshake,
			// and the plaintext.
			if st.in != nil { // even an empty slice of it keeps the array
				r += 1 + cap(st.in)
			}
			r += cap(st.plain)
			close(done)
		}))
		<-done
		return
	}
	if r, _, _ := caps(); r < 3000 {
		t.Fatalf("the raw input buffer holds %d bytes after a 3000-byte message; the test cannot tell trimming from nothing", r)
	}
	waitFor(t, 5*time.Second, "the idle connection's buffers dropped", func() bool {
		r, hs, in := caps()
		return r == 0 && hs == 0 && in == 0
	})
}

// The upgrade hook and the connection see the TLS state: version, ALPN,
// the server name the client asked for, and a client certificate when the
// config asks for one (here any, so that the hook decides); a client
// without one is refused by TLS, and without TLS the state is nil.
func TestTLSConnectionState(t *testing.T) {
	cfg, _ := testPKI()
	cfg = cfg.Clone()
	cfg.ClientAuth = tls.RequireAnyClientCert
	h := capture{c: make(chan *Conn, 1)}
	_, addr := startServer(t, h, WithTLS(cfg), WithUpgradeHook(func(r *Request) (any, error) {
		cs := r.TLS()
		if cs == nil || len(cs.PeerCertificates) == 0 {
			return nil, errors.New("no client certificate")
		}
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "a player" {
			return nil, fmt.Errorf("client %q", cn)
		}
		return cs.ServerName, nil
	}))
	clientCert := selfSignedClient(t, "a player")
	ccfg := clientTLS(tls.VersionTLS13)
	ccfg.Certificates = []tls.Certificate{clientCert}
	d := websocket.Dialer{TLSClientConfig: ccfg, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc := <-h.c
	if sc.Value() != "localhost" {
		t.Errorf("the hook saw server name %v, want localhost", sc.Value())
	}
	cs := sc.TLS()
	if cs == nil || cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "http/1.1" || len(cs.PeerCertificates) != 1 {
		t.Fatalf("Conn.TLS: %+v", cs)
	}
	// Without a certificate, TLS refuses the client.
	d.TLSClientConfig = clientTLS(tls.VersionTLS13)
	if c2, _, err := d.Dial("wss://"+addr+"/", nil); err == nil {
		_, _, err = c2.ReadMessage() // TLS 1.3: the server's alert comes after the client's Finished
		if err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
	// Plain: nil.
	h2 := capture{c: make(chan *Conn, 1)}
	_, paddr := startServer(t, h2)
	pc := upgradeRaw(t, paddr)
	defer pc.Close()
	if cs := (<-h2.c).TLS(); cs != nil {
		t.Fatalf("TLS state without TLS: %+v", cs)
	}
}

// selfSignedClient is a self-signed client certificate for cn.
func selfSignedClient(t *testing.T, cn string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TLS 1.3 and 1.2 session resumption works through the engine: the
// tickets crypto/tls sends from the handshake goroutine (1.3: after the
// handshake, 1.2: inside it) reach the client, and its next connection
// resumes without a certificate.
func TestTLSResumption(t *testing.T) {
	_, addr := tlsServer(t, echoHandler{})
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		cfg := clientTLS(v)
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for i := range 3 {
			tc, err := tls.Dial("tcp", addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			c := upgradeOver(t, tc, addr) // reading the 101 also reads a TLS 1.3 ticket
			if _, err := c.Write(clientFrame(ws.OpText, true, []byte("again"))); err != nil {
				t.Fatal(err)
			}
			if f := readServerFrame(t, c); string(f.Payload) != "again" {
				t.Fatalf("echo %q", f.Payload)
			}
			if resumed := tc.ConnectionState().DidResume; resumed != (i > 0) {
				t.Fatalf("%s, connection %d: resumed %v", tls.VersionName(v), i, resumed)
			}
			tc.Close()
		}
	}
}
