package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// Raw-socket tests: each protocol violation gets the exact close code or
// HTTP status that RFC 6455 names, the server closes the TCP connection,
// OnClose says why, and other connections keep working.

// rawFrame builds a client frame from raw header fields, so that invalid
// frames can be sent.
func rawFrame(b0 byte, masked bool, length int, payload []byte) []byte {
	var out []byte
	out = append(out, b0)
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch {
	case length < 126:
		out = append(out, mbit|byte(length))
	case length < 1<<16:
		out = append(out, mbit|126, byte(length>>8), byte(length))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(length))
	}
	p := append([]byte(nil), payload...)
	if masked {
		mask := [4]byte{1, 2, 3, 4}
		out = append(out, mask[:]...)
		ws.Cipher(p, mask, 0)
	}
	return append(out, p...)
}

// expectClose reads server frames until a close frame, checks its code,
// answers it, and checks that the server then closes the TCP connection.
func expectClose(t *testing.T, c net.Conn, want ws.StatusCode) {
	t.Helper()
	for {
		f := readServerFrame(t, c)
		if f.Header.OpCode != ws.OpClose {
			continue // echoes of what came before the violation
		}
		code, _ := ws.ParseCloseFrameData(f.Payload)
		if code != want {
			t.Fatalf("close code %d, want %d", code, want)
		}
		break
	}
	_, _ = c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(want, "")))
	expectEOF(t, c)
}

// expectEOF checks that the server closes the connection within 3 s.
func expectEOF(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1024)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("server did not close the TCP connection")
		}
		return // EOF or reset: closed by the server
	}
}

// checkStillServing echoes one message on a fresh connection, then closes
// it with 1000.
func checkStillServing(t *testing.T, addr string) {
	t.Helper()
	c := upgradeRaw(t, addr)
	if _, err := c.Write(clientFrame(ws.OpText, true, []byte("still here"))); err != nil {
		t.Fatal(err)
	}
	f := readServerFrame(t, c)
	if f.Header.OpCode != ws.OpText || string(f.Payload) != "still here" {
		t.Fatalf("echo after violation: %v %q", f.Header.OpCode, f.Payload)
	}
	_, _ = c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(1000, "")))
	if f := readServerFrame(t, c); f.Header.OpCode != ws.OpClose {
		t.Fatalf("close answered with %v", f.Header.OpCode)
	}
	expectEOF(t, c)
}

func TestProtocolViolations(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, rec, WithMaxMessageSize(1000))
	long := bytes.Repeat([]byte("a"), 126)
	cases := []struct {
		name  string // the rule, with its RFC 6455 section
		bytes []byte
		code  ws.StatusCode
		cause error
	}{
		{"5.1 unmasked client frame", rawFrame(0x81, false, 2, []byte("hi")), 1002, codec.ErrUnmasked},
		{"5.2 RSV1 without extension", rawFrame(0xC1, true, 2, []byte("hi")), 1002, codec.ErrReservedBits},
		{"5.2 RSV2 without extension", rawFrame(0xA1, true, 2, []byte("hi")), 1002, codec.ErrReservedBits},
		{"5.2 RSV3 without extension", rawFrame(0x91, true, 2, []byte("hi")), 1002, codec.ErrReservedBits},
		{"5.2 reserved data opcode 3", rawFrame(0x83, true, 0, nil), 1002, codec.ErrReservedOpcode},
		{"5.2 reserved control opcode 0xB", rawFrame(0x8B, true, 0, nil), 1002, codec.ErrReservedOpcode},
		{"5.5 fragmented ping", rawFrame(0x09, true, 2, []byte("hi")), 1002, codec.ErrFragmentedControl},
		{"5.5 ping over 125 bytes", rawFrame(0x89, true, 126, long), 1002, codec.ErrControlTooLong},
		{"5.4 continuation without start", rawFrame(0x80, true, 2, []byte("hi")), 1002, errContinuationWithoutStart},
		{"5.4 new message inside fragmented one",
			append(rawFrame(0x01, true, 2, []byte("hi")), rawFrame(0x81, true, 2, []byte("hi"))...), 1002, errExpectedContinuation},
		{"5.2 64-bit length with MSB set", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, 1002, codec.ErrLengthMSB},
		{"8.1 invalid UTF-8 in text", rawFrame(0x81, true, 2, []byte{0xC0, 0xAF}), 1007, codec.ErrInvalidUTF8},
		{"8.1 invalid UTF-8 across fragments",
			append(rawFrame(0x01, true, 3, []byte("a\xE2\x82")), rawFrame(0x80, true, 1, []byte{0x28})...), 1007, codec.ErrInvalidUTF8},
		{"8.1 truncated UTF-8 at message end", rawFrame(0x81, true, 2, []byte("a\xE2")), 1007, codec.ErrInvalidUTF8},
		{"5.5.1 close with 1-byte payload", rawFrame(0x88, true, 1, []byte{3}), 1002, codec.ErrCloseTooShort},
		{"7.4 close with invalid code 1005", rawFrame(0x88, true, 2, []byte{0x03, 0xED}), 1002, codec.ErrInvalidCloseCode},
		{"7.4 close with invalid code 999", rawFrame(0x88, true, 2, []byte{0x03, 0xE7}), 1002, codec.ErrInvalidCloseCode},
		{"5.5.1 close reason not UTF-8", rawFrame(0x88, true, 4, []byte{0x03, 0xE8, 0xFF, 0xFE}), 1007, codec.ErrInvalidUTF8},
		{"10.4 message over the limit (one frame)", rawFrame(0x82, true, 1001, make([]byte, 1001)), 1009, ErrMessageTooBig},
		{"10.4 message over the limit (fragments)",
			append(rawFrame(0x02, true, 600, make([]byte, 600)), rawFrame(0x80, true, 600, make([]byte, 600))...), 1009, ErrMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := upgradeRaw(t, addr)
			if _, err := c.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			expectClose(t, c, tc.code)
			ce := rec.nextClose(t)
			if ce.Code != tc.code || ce.Remote || !errors.Is(ce, tc.cause) {
				t.Fatalf("OnClose got %+v (%v), want code %d caused by %v", ce, ce.Err, tc.code, tc.cause)
			}
			checkStillServing(t, addr)
			if ce := rec.nextClose(t); !ce.Remote || ce.Code != 1000 {
				t.Fatalf("OnClose of the check connection got %+v", ce)
			}
		})
	}
}

// TestFailFastUTF8: an invalid byte fails the connection as soon as it
// arrives, before the rest of the frame is sent.
func TestFailFastUTF8(t *testing.T) {
	_, addr := startServer(t, echoHandler{})
	c := upgradeRaw(t, addr)
	frame := rawFrame(0x81, true, 20, []byte("hello\xF4\x90\x80\x80world!!!!!!"))
	if _, err := c.Write(frame[:6+8]); err != nil { // header, mask, "hello" and F4 90 80
		t.Fatal(err)
	}
	expectClose(t, c, 1007)
}

func TestPingPong(t *testing.T) {
	_, addr := startServer(t, echoHandler{})
	c := upgradeRaw(t, addr)
	// A ping between two fragments of a message is answered at once.
	_, _ = c.Write(clientFrame(ws.OpText, false, []byte("frag1 ")))
	_, _ = c.Write(clientFrame(ws.OpPing, true, []byte("are you there")))
	f := readServerFrame(t, c)
	if f.Header.OpCode != ws.OpPong || string(f.Payload) != "are you there" {
		t.Fatalf("got %v %q, want pong with the ping's payload", f.Header.OpCode, f.Payload)
	}
	_, _ = c.Write(clientFrame(ws.OpContinuation, true, []byte("frag2")))
	f = readServerFrame(t, c)
	if f.Header.OpCode != ws.OpText || string(f.Payload) != "frag1 frag2" {
		t.Fatalf("got %v %q, want the reassembled message", f.Header.OpCode, f.Payload)
	}
	// An unsolicited pong is ignored.
	_, _ = c.Write(clientFrame(ws.OpPong, true, []byte("x")))
	_, _ = c.Write(clientFrame(ws.OpText, true, []byte("after pong")))
	if f = readServerFrame(t, c); string(f.Payload) != "after pong" {
		t.Fatalf("got %q", f.Payload)
	}
}

// TestByteAtATime feeds the upgrade and two messages one byte per write.
func TestByteAtATime(t *testing.T) {
	_, addr := startServer(t, echoHandler{})
	c := dialTCP(t, addr)
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	data := append([]byte(req), clientFrame(ws.OpText, true, []byte("héllo"))...)
	data = append(data, clientFrame(ws.OpBinary, true, bytes.Repeat([]byte{7}, 300))...)
	for i := range data {
		if _, err := c.Write(data[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond) // let some bytes arrive alone
		}
	}
	readHTTPHead(t, c)
	if f := readServerFrame(t, c); string(f.Payload) != "héllo" {
		t.Fatalf("got %q", f.Payload)
	}
	if f := readServerFrame(t, c); len(f.Payload) != 300 || f.Header.OpCode != ws.OpBinary {
		t.Fatalf("got %v len %d", f.Header.OpCode, len(f.Payload))
	}
}

// TestFramesWithUpgrade: frames sent in the same write as the upgrade
// request are served after the 101.
func TestFramesWithUpgrade(t *testing.T) {
	_, addr := startServer(t, echoHandler{})
	c := dialTCP(t, addr)
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_, _ = c.Write(append([]byte(req), clientFrame(ws.OpText, true, []byte("early"))...))
	readHTTPHead(t, c)
	if f := readServerFrame(t, c); string(f.Payload) != "early" {
		t.Fatalf("got %q", f.Payload)
	}
}

func TestUpgradeRejections(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithMaxHeaderBytes(1024))
	const key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	good := "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\n"
	cases := []struct {
		name    string
		request string
		status  string
		header  string // a header line the response must carry
	}{
		{"4.2.1 method must be GET", "POST / HTTP/1.1\r\n" + good + "\r\n", "405", "Allow: GET"},
		{"4.2.1 HTTP/1.1 or later", "GET / HTTP/1.0\r\n" + good + "\r\n", "400", ""},
		{"4.2.1 Host required", "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", "400", ""},
		{"4.2.1 Connection must include Upgrade", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", "400", ""},
		{"4.2.1 key must decode to 16 bytes", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", "400", ""},
		{"4.2.1 key required", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", "400", ""},
		{"4.4 unsupported version", "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" + key + "Sec-WebSocket-Version: 8\r\n\r\n", "426", "Sec-WebSocket-Version: 13"},
		{"header block over the limit", "GET / HTTP/1.1\r\n" + good + "X-Big: " + strings.Repeat("b", 2000) + "\r\n\r\n", "431", ""},
		{"malformed request line", "GET  / HTTP/1.1\r\n" + good + "\r\n", "400", ""},
		{"plain HTTP gets 426", "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "426", "Upgrade: websocket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialTCP(t, addr)
			if _, err := c.Write([]byte(tc.request)); err != nil {
				t.Fatal(err)
			}
			head := readHTTPHead(t, c)
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 "+tc.status+" ")) {
				t.Fatalf("response:\n%s\nwant status %s", head, tc.status)
			}
			if tc.header != "" && !bytes.Contains(head, []byte("\r\n"+tc.header+"\r\n")) {
				t.Fatalf("response:\n%s\nwant header %q", head, tc.header)
			}
			expectEOF(t, c)
			checkStillServing(t, addr)
		})
	}
}

func TestHTTPHandler(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithLoopHTTPHandler(func(r *Request) HTTPResponse {
		if string(r.Path()) != "/health" {
			return HTTPResponse{Status: 404, Body: []byte("no")}
		}
		return HTTPResponse{Header: []HeaderField{{Name: "Content-Type", Value: "text/plain"}}, Body: []byte("ok")}
	}))
	c := dialTCP(t, addr)
	_, _ = c.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := io.ReadAll(c) // the server closes after answering, as asked
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.HasSuffix(resp, []byte("\r\n\r\nok")) ||
		!bytes.Contains(resp, []byte("Content-Type: text/plain\r\n")) {
		t.Fatalf("response:\n%s", resp)
	}
	checkStillServing(t, addr)
}
