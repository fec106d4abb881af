package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// whoAmI tells each connection the address it has.
type whoAmI struct{ BaseHandler }

func (whoAmI) OnOpen(c *Conn) { _ = c.SendText(c.RemoteAddr().String()) }

func proxyV2(cmd, fam byte, body []byte) []byte {
	b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

func proxyV2TCP4(src netip.AddrPort, tlv []byte) []byte {
	body := append(src.Addr().AsSlice(), 127, 0, 0, 1, 0, 0, 0x1f, 0x90)
	binary.BigEndian.PutUint16(body[8:], src.Port())
	return proxyV2(1, 0x11, append(body, tlv...))
}

// dialThrough dials addr as a balancer would: header first, written in
// pieces of step bytes (a header split across reads), then the client's
// own bytes (tlsCfg: a TLS handshake).
func dialThrough(t *testing.T, addr string, header []byte, step int, tlsCfg *tls.Config) (*websocket.Conn, error) {
	t.Helper()
	scheme := "ws://"
	if tlsCfg != nil {
		scheme = "wss://"
	}
	d := websocket.Dialer{TLSClientConfig: tlsCfg, HandshakeTimeout: 5 * time.Second,
		NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, a)
			if err != nil {
				return nil, err
			}
			for len(header) > 0 {
				k := min(step, len(header))
				if _, err := c.Write(header[:k]); err != nil {
					return nil, err
				}
				header = header[k:]
				time.Sleep(2 * time.Millisecond)
			}
			return c, nil
		}}
	c, _, err := d.Dial(scheme+addr+"/", nil)
	if err == nil {
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	return c, err
}

func remoteSeen(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// From a trusted balancer, v1 and v2 headers, whole or split across
// reads, set the client's address; LOCAL and UNKNOWN keep the socket's.
func TestProxyProtocolTrusted(t *testing.T) {
	srv, addr := startServer(t, whoAmI{}, WithProxyProtocol(netip.MustParsePrefix("127.0.0.0/8")))
	v6 := make([]byte, 36)
	copy(v6, netip.MustParseAddr("2001:db8::7").AsSlice())
	copy(v6[16:], netip.MustParseAddr("2001:db8::1").AsSlice())
	binary.BigEndian.PutUint16(v6[32:], 4242)
	cases := []struct {
		name   string
		header []byte
		step   int
		want   string
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\n"), 1 << 20, "203.0.113.9:51000"},
		{"v1 split", []byte("PROXY TCP6 2001:db8::9 2001:db8::1 51001 443\r\n"), 3, "[2001:db8::9]:51001"},
		{"v2 with TLVs", proxyV2TCP4(netip.MustParseAddrPort("198.51.100.4:40000"), []byte{0x04, 0, 2, 'i', 'd'}), 1 << 20, "198.51.100.4:40000"},
		{"v2 split", proxyV2TCP4(netip.MustParseAddrPort("198.51.100.5:40001"), nil), 1, "198.51.100.5:40001"},
		{"v2 tcp6", proxyV2(1, 0x21, v6), 7, "[2001:db8::7]:4242"},
		{"v2 local", proxyV2(0, 0, nil), 1 << 20, "127.0.0.1:"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), 1 << 20, "127.0.0.1:"},
	}
	for _, tc := range cases {
		c, err := dialThrough(t, addr, tc.header, tc.step, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := remoteSeen(t, c); got != tc.want && !(tc.want == "127.0.0.1:" && bytes.HasPrefix([]byte(got), []byte(tc.want))) {
			t.Fatalf("%s: RemoteAddr %s, want %s", tc.name, got, tc.want)
		}
	}
	// A trusted source must send the header.
	if _, err := dialThrough(t, addr, nil, 1, nil); err == nil {
		t.Fatal("an upgrade without a PROXY header from a trusted balancer was accepted")
	}
	if n := srv.Stats().ProxyRejected; n != 1 {
		t.Fatalf("ProxyRejected %d, want 1", n)
	}
}

// From anywhere else, a PROXY header is refused (anyone could claim any
// address), and a plain client is served with its own address.
func TestProxyProtocolUntrusted(t *testing.T) {
	srv, addr := startServer(t, whoAmI{}, WithProxyProtocol(netip.MustParsePrefix("10.0.0.0/8")))
	for name, h := range map[string][]byte{
		"v1": []byte("PROXY TCP4 203.0.113.9 10.0.0.1 51000 443\r\n"),
		"v2": proxyV2TCP4(netip.MustParseAddrPort("198.51.100.4:40000"), nil),
	} {
		if _, err := dialThrough(t, addr, h, 5, nil); err == nil {
			t.Fatalf("%s: a PROXY header from an untrusted source was accepted", name)
		}
	}
	c, err := dialThrough(t, addr, nil, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := remoteSeen(t, c); !bytes.HasPrefix([]byte(got), []byte("127.0.0.1:")) {
		t.Fatalf("RemoteAddr %s", got)
	}
	if n := srv.Stats().ProxyRejected; n != 2 {
		t.Fatalf("ProxyRejected %d, want 2", n)
	}
}

// Malformed headers are closed at once; a truncated one at the handshake
// deadline.
func TestProxyProtocolMalformed(t *testing.T) {
	srv, addr := startServer(t, whoAmI{}, WithProxyProtocol(netip.MustParsePrefix("127.0.0.1/32")),
		WithHandshakeTimeout(300*time.Millisecond))
	for _, h := range []string{
		"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
		"PROXY TCP4 1.2.3.4\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		string(proxyV2(3, 0x11, make([]byte, 12))),
		string(proxyV2(1, 0x11, make([]byte, 4))),
		"GET / HTTP/1.1\r\n\r\n",
	} {
		c := dialTCP(t, addr)
		_, _ = c.Write([]byte(h))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("%q: %q %v, want a silent close", h, b, err)
		}
	}
	start := time.Now()
	c := dialTCP(t, addr)
	_, _ = c.Write([]byte("PROXY TCP4 1.2.3.4 5.6"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("truncated header: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("a truncated header was closed after %v, before the deadline", d)
	}
	waitFor(t, 5*time.Second, "no socket left", func() bool { return srv.Stats().Sockets == 0 })
}

// Behind a balancer with TLS: the header comes first, in clear, then the
// TLS handshake.
func TestProxyProtocolTLS(t *testing.T) {
	cfg, _ := testPKI()
	_, addr := startServer(t, whoAmI{}, WithTLS(cfg), WithProxyProtocol(netip.MustParsePrefix("127.0.0.0/8")))
	c, err := dialThrough(t, addr, proxyV2TCP4(netip.MustParseAddrPort("192.0.2.200:6000"), nil), 4, clientTLS(tls.VersionTLS13))
	if err != nil {
		t.Fatal(err)
	}
	if got := remoteSeen(t, c); got != "192.0.2.200:6000" {
		t.Fatalf("RemoteAddr %s", got)
	}
	if _, err := New(whoAmI{}, WithProxyProtocol()); err == nil {
		t.Fatal("WithProxyProtocol() with no network was accepted")
	}
}
