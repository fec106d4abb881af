package engine

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	cws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/codec"
)

// permessage-deflate against real clients: gorilla/websocket (no context
// takeover either way, the only mode it has) and coder/websocket (both
// modes), echoing compressible and incompressible messages of 0 B to 1 MiB,
// whole and fragmented.

var deflateSizes = []int{0, 1, 255, 256, 1000, 16 << 10, 100 << 10, 1 << 20}

// jsonLike returns n bytes of chat-like JSON: compressible text.
func jsonLike(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "高橋", "Zoë"}
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, `{"id":%d,"user":"%s","text":"hello %d","score":%d},`,
			r.IntN(1e6), names[r.IntN(len(names))], r.IntN(1000), r.IntN(5000))
	}
	return b.Bytes()[:n]
}

// deflatePayloads returns the messages a compression test echoes: for each
// size, compressible JSON (text) and random bytes (binary).
func deflatePayloads() (texts, binaries [][]byte) {
	for _, n := range deflateSizes {
		texts = append(texts, jsonLike(n, 7))
		binaries = append(binaries, payload(n, false, 7))
	}
	return
}

// countingDial returns a dial function whose connections add the bytes
// they read to *n: what the server sent, on the wire.
func countingDial(n *int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, n: n}, nil
	}
}

type countingConn struct {
	net.Conn
	n *int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	*c.n += int64(k)
	return k, err
}

func TestDeflateGorilla(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithMaxMessageSize(2<<20))
	texts, binaries := deflatePayloads()
	for _, fragmented := range []bool{false, true} {
		d := websocket.Dialer{EnableCompression: true, WriteBufferSize: 4 << 20}
		if fragmented {
			d.WriteBufferSize = 512 // a frame each time the buffer fills
		}
		var wire int64
		d.NetDialContext = countingDial(&wire)
		conn, resp, err := d.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if ext != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
			t.Fatalf("response extension %q", ext)
		}
		conn.SetReadLimit(4 << 20)
		var plain int64
		for i := range texts {
			for _, m := range []struct {
				mt int
				p  []byte
			}{{websocket.TextMessage, texts[i]}, {websocket.BinaryMessage, binaries[i]}} {
				name := fmt.Sprintf("fragmented=%v/size=%d/type=%d", fragmented, len(m.p), m.mt)
				if err := conn.WriteMessage(m.mt, m.p); err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				mt, got, err := conn.ReadMessage()
				if err != nil {
					t.Fatalf("%s: read: %v", name, err)
				}
				if mt != m.mt || !bytes.Equal(got, m.p) {
					t.Fatalf("%s: echo differs: type %d len %d", name, mt, len(got))
				}
				plain += int64(len(m.p))
			}
		}
		conn.Close()
		// Half of the bytes are random and do not shrink; the JSON does,
		// about 3 times.
		if wire > plain*3/4 {
			t.Errorf("fragmented=%v: %d bytes on the wire for %d bytes of messages: not compressed", fragmented, wire, plain)
		}
		t.Logf("fragmented=%v: %d bytes of messages, %d on the wire", fragmented, plain, wire)
	}
}

func TestDeflateCoder(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		opts := []Option{WithMaxMessageSize(2 << 20)}
		mode := cws.CompressionNoContextTakeover
		if takeover {
			opts = append(opts, WithContextTakeover(true, 15))
			mode = cws.CompressionContextTakeover
		}
		_, addr := startServer(t, echoHandler{}, opts...)
		texts, binaries := deflatePayloads()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, resp, err := cws.Dial(ctx, "ws://"+addr+"/", &cws.DialOptions{CompressionMode: mode, CompressionThreshold: 1})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		ext := resp.Header.Get("Sec-WebSocket-Extensions")
		if takeover == strings.Contains(ext, "client_no_context_takeover") || !strings.HasPrefix(ext, "permessage-deflate") {
			t.Fatalf("takeover=%v: response extension %q", takeover, ext)
		}
		conn.SetReadLimit(4 << 20)
		for i := range texts {
			for _, m := range []struct {
				mt cws.MessageType
				p  []byte
			}{{cws.MessageText, texts[i]}, {cws.MessageBinary, binaries[i]}} {
				name := fmt.Sprintf("takeover=%v/size=%d/type=%d", takeover, len(m.p), m.mt)
				// coder writes a message in frames of its buffer size
				// (4 KiB) through Writer: fragmented past that.
				w, err := conn.Writer(ctx, m.mt)
				if err == nil {
					_, err = w.Write(m.p)
				}
				if err == nil {
					err = w.Close()
				}
				if err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
				mt, got, err := conn.Read(ctx)
				if err != nil {
					t.Fatalf("%s: read: %v", name, err)
				}
				if mt != m.mt || !bytes.Equal(got, m.p) {
					t.Fatalf("%s: echo differs: type %d len %d", name, mt, len(got))
				}
			}
		}
		conn.Close(cws.StatusNormalClosure, "")
		cancel()
	}
}

// upgradeWith sends an upgrade request with extra header lines and returns
// the socket and the response head.
func upgradeWith(t testing.TB, addr, extra string) (net.Conn, string) {
	t.Helper()
	c := dialTCP(t, addr)
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return c, string(readHTTPHead(t, c))
}

// responseExtensions returns the Sec-WebSocket-Extensions value of a
// response head, "" when it has none.
func responseExtensions(head string) string {
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && strings.EqualFold(k, "Sec-WebSocket-Extensions") {
			return v
		}
	}
	return ""
}

// TestDeflateNegotiation: offers as browsers, libraries and broken clients
// send them, and what the 101 (or 400) says, per RFC 7692 7.
func TestDeflateNegotiation(t *testing.T) {
	const none = "-" // accepted upgrade, no extension
	const bad = "400"
	const noTakeover = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	cases := []struct {
		opts    []Option
		headers string
		want    string
	}{
		{nil, "", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate\r\n", noTakeover},
		// Chrome, Firefox and Safari send this.
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", noTakeover},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12\r\n", noTakeover},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n", noTakeover},
		{nil, "Sec-WebSocket-Extensions: PerMessage-Deflate; Client_No_Context_Takeover\r\n", noTakeover},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n", noTakeover + "; server_max_window_bits=10"},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\"9\"\r\n", noTakeover + "; server_max_window_bits=9"},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate ; server_max_window_bits = 15 \r\n", noTakeover + "; server_max_window_bits=15"},
		// Declined (RFC 7692 7): missing, invalid and repeated values,
		// unknown parameters.
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=010\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=0\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover=1\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_no_context_takeover\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; client_max_window_bits=10\r\n", none},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; x-unknown\r\n", none},
		{nil, "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n", none},
		// Offers in preference order: the first acceptable one wins, across
		// header lines too, and the response names one extension.
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=12\r\n", noTakeover + "; server_max_window_bits=12"},
		{nil, "Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=11, permessage-deflate\r\n", noTakeover + "; server_max_window_bits=11"},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=13\r\n", noTakeover + "; server_max_window_bits=13"},
		// Broken grammar (RFC 6455 9.1): not an offer, a bad request.
		{nil, "Sec-WebSocket-Extensions: permessage-deflate;\r\n", bad},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\r\n", bad},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\"10\r\n", bad},
		{nil, "Sec-WebSocket-Extensions: permessage-deflate; a b\r\n", bad},
		// Compression off: every offer declined.
		{[]Option{WithCompression(false)}, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", none},
		// Client context takeover allowed, window bounded to 1 KiB.
		{[]Option{WithContextTakeover(true, 10)}, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
			"permessage-deflate; server_no_context_takeover; client_max_window_bits=10"},
		{[]Option{WithContextTakeover(true, 10)}, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9\r\n",
			"permessage-deflate; server_no_context_takeover; client_max_window_bits=9"},
		{[]Option{WithContextTakeover(true, 10)}, "Sec-WebSocket-Extensions: permessage-deflate\r\n", noTakeover},
		{[]Option{WithContextTakeover(true, 15)}, "Sec-WebSocket-Extensions: permessage-deflate\r\n", "permessage-deflate; server_no_context_takeover"},
		{[]Option{WithContextTakeover(true, 15)}, "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n", noTakeover},
	}
	servers := map[string]string{}
	for _, tc := range cases {
		key := fmt.Sprint(len(tc.opts), tc.opts)
		addr, ok := servers[key]
		if !ok {
			_, addr = startServer(t, echoHandler{}, tc.opts...)
			servers[key] = addr
		}
		c, head := upgradeWith(t, addr, tc.headers)
		c.Close()
		got := none
		switch {
		case strings.HasPrefix(head, "HTTP/1.1 400 "):
			got = bad
		case !strings.HasPrefix(head, "HTTP/1.1 101 "):
			got = head
		case responseExtensions(head) != "":
			got = responseExtensions(head)
		}
		if got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.headers, got, tc.want)
		}
	}
}

// deflated compresses p as a client would, with the standard library's
// compress/flate (an implementation independent of the server's), and
// strips the sync-flush tail (RFC 7692 7.2.1).
func deflated(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// rsv1Frame is clientFrame with RSV1 set.
func rsv1Frame(op ws.OpCode, fin bool, p []byte) []byte {
	f := clientFrame(op, fin, p)
	f[0] |= 0x40
	return f
}

// upgradeDeflate opens a raw connection that negotiated permessage-deflate.
func upgradeDeflate(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, head := upgradeWith(t, addr, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 101 ") || !strings.Contains(responseExtensions(head), "permessage-deflate") {
		t.Fatalf("no compression negotiated:\n%s", head)
	}
	return c
}

// TestDeflateProtocolErrors: RFC 7692 6.1 and what a decompressed payload
// must still satisfy; each fails the connection with the RFC's code and
// the handler learns why.
func TestDeflateProtocolErrors(t *testing.T) {
	invalidUTF8 := deflated([]byte("valid so far \xc3\x28 then not"))
	cases := []struct {
		name   string
		plain  bool // the connection did not negotiate compression
		frames [][]byte
		code   ws.StatusCode
	}{
		{"rsv1 on ping", false, [][]byte{rsv1Frame(ws.OpPing, true, nil)}, 1002},
		{"rsv1 on close", false, [][]byte{rsv1Frame(ws.OpClose, true, []byte{3, 232})}, 1002},
		{"rsv1 on continuation", false, [][]byte{rsv1Frame(ws.OpText, false, deflated([]byte("a"))), rsv1Frame(ws.OpContinuation, true, nil)}, 1002},
		{"rsv1 not negotiated", true, [][]byte{rsv1Frame(ws.OpText, true, deflated([]byte("hello")))}, 1002},
		{"not deflate data", false, [][]byte{rsv1Frame(ws.OpBinary, true, []byte{0xff, 0xff, 0xff, 0xff, 0xff})}, 1007},
		{"invalid utf-8 inside", false, [][]byte{rsv1Frame(ws.OpText, true, invalidUTF8)}, 1007},
		{"invalid utf-8 inside, fragmented", false, [][]byte{
			rsv1Frame(ws.OpText, false, invalidUTF8[:3]), clientFrame(ws.OpContinuation, true, invalidUTF8[3:])}, 1007},
	}
	rec := newRecorder()
	_, addr := startServer(t, closer{rec})
	for _, tc := range cases {
		var c net.Conn
		if tc.plain {
			c = upgradeRaw(t, addr)
		} else {
			c = upgradeDeflate(t, addr)
		}
		for _, f := range tc.frames {
			if _, err := c.Write(f); err != nil {
				t.Fatal(err)
			}
		}
		expectClose(t, c, tc.code)
		if ce := rec.nextClose(t); ce.Code != tc.code || ce.Err == nil {
			t.Errorf("%s: OnClose got %+v, want code %d with a cause", tc.name, ce, tc.code)
		}
	}
}

// bomb returns a compressed message of about 1 MiB that inflates to 1,000
// MiB of zeros: 1,000 copies of 1 MiB of zeros compressed from a fresh state,
// each ending in a sync flush, so that their concatenation is one valid
// DEFLATE stream.
func bomb() []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	_, _ = w.Write(make([]byte, 1<<20))
	_ = w.Flush()
	return bytes.TrimSuffix(bytes.Repeat(b.Bytes(), 1000), []byte{0, 0, 0xff, 0xff})
}

// TestDeflateBomb: a message that inflates past WithMaxMessageSize is
// closed with 1009 after at most that many bytes were inflated, whole or
// fragmented, and the server allocates a few MiB for it, not 1 GiB.
func TestDeflateBomb(t *testing.T) {
	z := bomb()
	const limit = 1 << 20
	if len(z) > limit {
		t.Fatalf("the bomb is %d bytes: over the limit before it inflates", len(z))
	}
	whole := rsv1Frame(ws.OpBinary, true, z)
	var frag []byte
	for i := 0; i < len(z); i += 64 << 10 {
		part := z[i:min(i+64<<10, len(z))]
		fin := i+len(part) == len(z)
		switch {
		case i == 0:
			frag = append(frag, rsv1Frame(ws.OpBinary, fin, part)...)
		default:
			frag = append(frag, clientFrame(ws.OpContinuation, fin, part)...)
		}
	}
	rec := newRecorder()
	_, addr := startServer(t, closer{rec}, WithMaxMessageSize(limit))
	for _, tc := range []struct {
		name string
		wire []byte
	}{{"whole", whole}, {"fragmented", frag}} {
		c := upgradeDeflate(t, addr)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		go func() { _, _ = c.Write(tc.wire) }()
		expectClose(t, c, ws.StatusMessageTooBig)
		runtime.ReadMemStats(&after)
		if ce := rec.nextClose(t); ce.Code != ws.StatusMessageTooBig || !errors.Is(ce, ErrMessageTooBig) {
			t.Errorf("%s: OnClose got %+v, want 1009 ErrMessageTooBig", tc.name, ce)
		}
		// The client's own buffers were made before; what was allocated
		// meanwhile is the server's reassembly and inflation buffers.
		grew := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes on the wire, %.1f MiB allocated while serving it", tc.name, len(tc.wire), float64(grew)/(1<<20))
		if grew > 8<<20 {
			t.Errorf("%s: %d bytes allocated while serving a bomb against a 1 MiB limit", tc.name, grew)
		}
	}
	// The server still serves.
	c := upgradeDeflate(t, addr)
	msg := jsonLike(4000, 1)
	if _, err := c.Write(rsv1Frame(ws.OpText, true, deflated(msg))); err != nil {
		t.Fatal(err)
	}
	f := readServerFrame(t, c)
	if got := inflateFrame(t, f); !bytes.Equal(got, msg) {
		t.Fatalf("echo after the bombs differs: %d bytes", len(got))
	}
}

// TestDeflateMessageLimit: WithMaxMessageSize caps a compressed message's
// decompressed size to the byte: one that inflates to exactly the limit is
// delivered, one that inflates to one byte more is closed with 1009 (and
// OnClose gets ErrMessageTooBig), compressible or not (incompressible data
// is a little larger on the wire than inflated), whole or fragmented.
func TestDeflateMessageLimit(t *testing.T) {
	const limit = 100_000 // not a power of two: a rounded or doubled limit shows
	rec := newRecorder()
	_, addr := startServer(t, closer{rec}, WithMaxMessageSize(limit))
	for _, n := range []int{limit, limit + 1} {
		for _, kind := range []struct {
			name string
			op   ws.OpCode
			p    []byte
		}{
			{"compressible text", ws.OpText, jsonLike(n, 3)},
			{"incompressible binary", ws.OpBinary, payload(n, false, 3)},
		} {
			z := deflated(kind.p)
			whole := rsv1Frame(kind.op, true, z)
			half := len(z) / 2
			frag := append(rsv1Frame(kind.op, false, z[:half]), clientFrame(ws.OpContinuation, true, z[half:])...)
			for _, wire := range []struct {
				name string
				b    []byte
			}{{"whole", whole}, {"fragmented", frag}} {
				name := fmt.Sprintf("%s of %d bytes (%d compressed), %s", kind.name, n, len(z), wire.name)
				c := upgradeDeflate(t, addr)
				if _, err := c.Write(wire.b); err != nil {
					t.Fatal(err)
				}
				f := readServerFrame(t, c)
				switch {
				case n <= limit && f.Header.OpCode == ws.OpClose:
					code, reason := ws.ParseCloseFrameData(f.Payload)
					t.Errorf("%s, limit %d: closed with %d %q, want it delivered", name, limit, code, reason)
				case n <= limit:
					if got := inflateFrame(t, f); f.Header.OpCode != kind.op || !bytes.Equal(got, kind.p) {
						t.Errorf("%s: echo is opcode %v, %d bytes, want the message", name, f.Header.OpCode, len(got))
					}
				case f.Header.OpCode != ws.OpClose:
					t.Errorf("%s, limit %d: delivered (echo of %d bytes), want close 1009", name, limit, len(inflateFrame(t, f)))
				default:
					code, _ := ws.ParseCloseFrameData(f.Payload)
					if code != ws.StatusMessageTooBig {
						t.Errorf("%s: close code %d, want 1009", name, code)
					}
					_, _ = c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(code, "")))
					if ce := rec.nextClose(t); ce.Code != ws.StatusMessageTooBig || !errors.Is(ce, ErrMessageTooBig) {
						t.Errorf("%s: OnClose got %+v, want 1009 ErrMessageTooBig", name, ce)
					}
					c.Close()
					continue
				}
				c.Close()
				rec.nextClose(t) // this connection's, before the next one's
			}
		}
	}
}

// inflateFrame returns a server frame's payload, decompressed when RSV1 is
// set, with the standard library.
func inflateFrame(t testing.TB, f ws.Frame) []byte {
	t.Helper()
	if f.Header.Rsv&0x4 == 0 {
		return f.Payload
	}
	r := flate.NewReader(io.MultiReader(bytes.NewReader(f.Payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflating a server frame: %v", err)
	}
	return p
}

// TestDeflateServerWindow: a client that asks for server_max_window_bits N
// gets messages whose back-references stay within 2^N bytes. zlib, which
// refuses a distance past the window it was given, checks them.
func TestDeflateServerWindow(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 (for zlib) is needed: apt-get install -y python3")
	}
	_, addr := startServer(t, echoHandler{}, WithMaxMessageSize(2<<20))
	msg := jsonLike(100<<10, 3)
	for bits := 8; bits <= 15; bits++ {
		c, head := upgradeWith(t, addr, fmt.Sprintf("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=%d\r\n", bits))
		if ext := responseExtensions(head); !strings.HasSuffix(ext, fmt.Sprintf("; server_max_window_bits=%d", bits)) {
			t.Fatalf("bits %d: response extension %q", bits, ext)
		}
		if _, err := c.Write(clientFrame(ws.OpText, true, msg)); err != nil {
			t.Fatal(err)
		}
		f := readServerFrame(t, c)
		if f.Header.Rsv != 0x4 {
			t.Fatalf("bits %d: echo not compressed (rsv %x)", bits, f.Header.Rsv)
		}
		if got := inflateFrame(t, f); !bytes.Equal(got, msg) {
			t.Fatalf("bits %d: echo differs", bits)
		}
		script := fmt.Sprintf("import sys, zlib\nd = zlib.decompressobj(-%d)\nout = d.decompress(sys.stdin.buffer.read() + b'\\x00\\x00\\xff\\xff')\nsys.stdout.write(str(len(out)))", bits)
		cmd := exec.Command(python, "-c", script)
		cmd.Stdin = bytes.NewReader(f.Payload)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != fmt.Sprint(len(msg)) {
			t.Errorf("bits %d: zlib with that window: %v: %s", bits, err, out)
		}
		c.Close()
	}
}

// TestDeflatePublishOnce: a publish is compressed once; members that
// negotiated the usual parameters get the same compressed frame, the
// others (no compression, a smaller window) the plain one, and every
// member reads the exact message, in publish order.
func TestDeflatePublishOnce(t *testing.T) {
	srv, addr := startServer(t, roomHandler{newRecorder()}, WithUpgradeHook(roomHook))
	type member struct {
		name string
		c    net.Conn
		br   *bufio.Reader
		rsv  byte // expected RSV bits
	}
	var members []member
	for i, offer := range []string{
		"permessage-deflate; client_max_window_bits", "permessage-deflate", "",
		"permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_no_context_takeover",
	} {
		extra := ""
		if offer != "" {
			extra = "Sec-WebSocket-Extensions: " + offer + "\r\n"
		}
		c := dialTCP(t, addr)
		req := "GET /room/r HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		head := string(readHTTPHead(t, c))
		if (offer != "") != strings.Contains(head, "permessage-deflate") {
			t.Fatalf("offer %q: response\n%s", offer, head)
		}
		rsv := byte(0)
		if offer != "" && !strings.Contains(offer, "server_max_window_bits") {
			rsv = 0x4
		}
		members = append(members, member{fmt.Sprintf("member %d (%q)", i, offer), c, bufio.NewReader(c), rsv})
	}
	// gorilla's compressing client, for an independent decompressor.
	d := websocket.Dialer{EnableCompression: true}
	gc, _, err := d.Dial("ws://"+addr+"/room/r", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	waitFor(t, 5*time.Second, "every join", func() bool { return srv.RoomLen("r") == len(members)+1 })

	before := srv.Stats().Deflated
	const n = 20
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = jsonLike(1024+i, uint64(i))
		if err := srv.Publish("r", ws.OpText, msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		for i := range msgs {
			_ = m.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			f, err := ws.ReadFrame(m.br)
			if err != nil {
				t.Fatalf("%s: message %d: %v", m.name, i, err)
			}
			if f.Header.Rsv != m.rsv || f.Header.OpCode != ws.OpText {
				t.Fatalf("%s: message %d: rsv %x opcode %v, want rsv %x", m.name, i, f.Header.Rsv, f.Header.OpCode, m.rsv)
			}
			if got := inflateFrame(t, f); !bytes.Equal(got, msgs[i]) {
				t.Fatalf("%s: message %d differs", m.name, i)
			}
		}
	}
	for i := range msgs {
		_ = gc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := gc.ReadMessage()
		if err != nil || !bytes.Equal(got, msgs[i]) {
			t.Fatalf("gorilla: message %d: %v (%d bytes)", i, err, len(got))
		}
	}
	if got := srv.Stats().Deflated - before; got != n {
		t.Errorf("%d publishes compressed %d times, want once each", n, got)
	}
}

// TestDeflateEchoAllocs: in steady state a compressed message is inflated,
// delivered, and its echo compressed without allocating.
func TestDeflateEchoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the pooled compressors allocate under -race (sync.Pool drops items); .ci/run runs this test without it")
	}
	_, addr := startServer(t, echoHandler{})
	c := upgradeDeflate(t, addr)
	msg := jsonLike(1024, 5)
	frame := rsv1Frame(ws.OpText, true, deflated(msg))
	// The reply's size: compress once through the server.
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
	first := readServerFrame(t, c)
	if first.Header.Rsv != 0x4 || !bytes.Equal(inflateFrame(t, first), msg) {
		t.Fatalf("echo: rsv %x", first.Header.Rsv)
	}
	reply := make([]byte, codec.HeaderLen(int64(len(first.Payload)), false)+len(first.Payload))
	for range 200 {
		echoRoundTrip(t, c, frame, reply)
	}
	if allocs := testing.AllocsPerRun(1000, func() { echoRoundTrip(t, c, frame, reply) }); allocs != 0 {
		t.Errorf("%v allocations per compressed echo, want 0", allocs)
	}
}

// TestConnSize: compression adds no byte to an idle connection; Conn stays
// in its 288-byte allocation class.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 288 {
		t.Errorf("Conn is %d bytes, past the 288-byte size class", n)
	}
}
