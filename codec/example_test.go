package codec_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gobwas/ws"
	"github.com/wsloop/wsloop/codec"
)

// A server reads until FindHeaderEnd finds the end of the request, parses
// it, and answers with a 101 or with the error's status.
func Example_handshake() {
	in := []byte("GET /chat?room=lobby HTTP/1.1\r\n" +
		"Host: server.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Protocol: chat, superchat\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n")

	end, _ := codec.FindHeaderEnd(in, 0)
	if end == 0 {
		return // wait for more bytes, then call again from next
	}
	var r codec.Request // reused for every request on a loop
	var out []byte
	var ue *codec.UpgradeError
	switch err := codec.ParseRequest(in[:end], &r); {
	case errors.Is(err, codec.ErrNotUpgrade):
		out = codec.AppendResponse(out, 200, nil, []byte("ok")) // a health check
	case errors.As(err, &ue):
		out = codec.AppendErrorResponse(out, ue.Status, ue.Reason, nil)
	default:
		proto := ""
		r.VisitProtocols(func(p []byte) bool {
			if string(p) == "chat" {
				proto = "chat"
			}
			return proto == ""
		})
		fmt.Printf("path %s, query %s\n", r.Path, r.Query)
		out = codec.AppendSwitchingProtocols(out, r.Key, proto, nil, nil)
	}
	fmt.Print(strings.ReplaceAll(string(out), "\r\n", "\n"))
	// Output:
	// path /chat, query room=lobby
	// HTTP/1.1 101 Switching Protocols
	// Upgrade: websocket
	// Connection: Upgrade
	// Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
	// Sec-WebSocket-Protocol: chat
}

// Frames are parsed from the front of the inbound bytes, checked, and
// unmasked in place.
func ExampleParseHeader() {
	in := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58} // RFC 6455 5.7
	h, n, err := codec.ParseHeader(in)
	if err == nil && n == 0 {
		return // too few bytes: wait for more
	}
	if err == nil {
		err = codec.CheckHeader(h, 0)
	}
	if err != nil {
		out := codec.AppendCloseFrame(nil, codec.CloseCodeOf(err), err.Error())
		_ = out // write it, then close
		return
	}
	payload := in[n : n+int(h.Length)]
	ws.Cipher(payload, h.Mask, 0)
	fmt.Printf("%v fin=%v %q\n", h.OpCode == ws.OpText, h.Fin, payload)
	// Output: true fin=true "Hello"
}

// Text is validated as it arrives, so that a bad byte fails the connection
// at once.
func ExampleUTF8Validator() {
	var v codec.UTF8Validator
	fmt.Println(v.Write([]byte("caf\xc3")), v.Complete()) // é split across fragments
	fmt.Println(v.Write([]byte("\xa9")), v.Complete())
	fmt.Println(v.Write([]byte("\xed\xa0"))) // a surrogate: invalid already
	// Output:
	// true false
	// true true
	// false
}
