package codec

// Upgrade requests as real clients send them, byte for byte. The Go and
// Node ones were captured from the named library dialing a TCP listener;
// the Chromium one follows the header order and values Chromium sends.

const (
	// gorilla/websocket v1.5.3, websocket.DefaultDialer.Dial.
	reqGorilla = "GET /chat?room=1 HTTP/1.1\r\n" +
		"Host: 127.0.0.1:46187\r\n" +
		"User-Agent: Go-http-client/1.1\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: ho2kUCEzm1QneGSJZKGxQg==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Upgrade: websocket\r\n" +
		"\r\n"

	// coder/websocket v1.8.15, websocket.Dial with nil options: net/http
	// canonicalises the names to Sec-Websocket-*.
	reqCoder = "GET /chat?room=1 HTTP/1.1\r\n" +
		"Host: 127.0.0.1:44739\r\n" +
		"User-Agent: Go-http-client/1.1\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-Websocket-Key: e3gWDG/dLCHxn3iarWnkIg==\r\n" +
		"Sec-Websocket-Version: 13\r\n" +
		"Upgrade: websocket\r\n" +
		"Accept-Encoding: gzip\r\n" +
		"\r\n"

	// Chromium (desktop, stable channel) opening new WebSocket("ws://localhost:8080/chat").
	reqChromium = "GET /chat HTTP/1.1\r\n" +
		"Host: localhost:8080\r\n" +
		"Connection: Upgrade\r\n" +
		"Pragma: no-cache\r\n" +
		"Cache-Control: no-cache\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
		"Upgrade: websocket\r\n" +
		"Origin: http://localhost:8080\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
		"\r\n"

	// Node.js ws 8.23.0: new WebSocket(url, ["chat", "superchat"], {origin: "http://example.com"}).
	reqNode = "GET /chat?room=1 HTTP/1.1\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: bIU8WoIUIbkqozBsmU9N3w==\r\n" +
		"Connection: Upgrade\r\n" +
		"Upgrade: websocket\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
		"Sec-WebSocket-Protocol: chat,superchat\r\n" +
		"Origin: http://example.com\r\n" +
		"Host: 127.0.0.1:36169\r\n" +
		"\r\n"

	// The example of RFC 6455 1.2 (with the Origin of 1.3's text).
	reqRFC = "GET /chat HTTP/1.1\r\n" +
		"Host: server.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Origin: http://example.com\r\n" +
		"Sec-WebSocket-Protocol: chat, superchat\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"\r\n"
)

// realClients names the requests above.
var realClients = []struct {
	name, req string
}{
	{"gorilla", reqGorilla},
	{"coder", reqCoder},
	{"chromium", reqChromium},
	{"node-ws", reqNode},
	{"rfc6455", reqRFC},
}
