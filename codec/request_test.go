package codec

import (
	"errors"
	"strings"
	"testing"
)

var baseHeaders = []string{
	"Host: server.example.com",
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	"Sec-WebSocket-Version: 13",
}

// build returns a header block: the request line, the headers, CRLF line ends.
func build(line string, headers ...string) string {
	var b strings.Builder
	b.WriteString(line + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	return b.String() + "\r\n"
}

// with returns baseHeaders without the ones named drop (if any) and with add.
func with(drop string, add ...string) []string {
	var h []string
	for _, l := range baseHeaders {
		if drop == "" || !strings.HasPrefix(strings.ToLower(l), strings.ToLower(drop)+":") {
			h = append(h, l)
		}
	}
	return append(h, add...)
}

var get = "GET /chat HTTP/1.1"

type requestCase struct {
	name   string
	block  string
	want   error // nil, ErrNotUpgrade or the *UpgradeError expected
	status int   // the status of want, spelled out
}

var requestCases = []requestCase{
	// RFC 9112 3: request line.
	{"valid RFC 6455 4.2.1 request", build(get, baseHeaders...), nil, 0},
	{"RFC 9112 3 request line without target", build("GET HTTP/1.1", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 request line without version", build("GET /chat", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 empty target (two spaces)", build("GET  HTTP/1.1", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 two spaces after method", build("GET  /chat HTTP/1.1", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 two spaces before version", build("GET /chat  HTTP/1.1", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 trailing space", build("GET /chat HTTP/1.1 ", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 leading space", build(" GET /chat HTTP/1.1", baseHeaders...), errBadRequestLine, 400},
	{"RFC 9112 3 header line in place of the request line", build("", baseHeaders...), errBadMethod, 400},
	{"RFC 9110 9.1 method is a token", build("G(T /chat HTTP/1.1", baseHeaders...), errBadMethod, 400},
	{"RFC 9112 3 tab is not a separator", build("GET\t/chat HTTP/1.1", baseHeaders...), errBadMethod, 400},
	{"RFC 9112 3.2 control character in target", build("GET /ch\x01at HTTP/1.1", baseHeaders...), errBadTarget, 400},
	{"RFC 9112 3.2 DEL in target", build("GET /ch\x7fat HTTP/1.1", baseHeaders...), errBadTarget, 400},
	{"RFC 9112 2.2 bare CR in request line", build("GET /chat\r HTTP/1.1", baseHeaders...), errBadTarget, 400},
	{"RFC 9112 2.3 lower-case protocol name", build("GET /chat http/1.1", baseHeaders...), errBadVersion, 400},
	{"RFC 9112 2.3 two-digit version", build("GET /chat HTTP/11", baseHeaders...), errBadVersion, 400},
	{"RFC 9112 2.3 version with trailing garbage", build("GET /chat HTTP/1.1x", baseHeaders...), errBadVersion, 400},
	{"RFC 6455 4.1 HTTP/1.0 upgrade", build("GET /chat HTTP/1.0", baseHeaders...), errOldVersion, 400},
	{"RFC 6455 4.1 HTTP/0.9", build("GET /chat HTTP/0.9", baseHeaders...), errOldVersion, 400},
	{"RFC 6455 4.1 HTTP/1.2 accepted", build("GET /chat HTTP/1.2", baseHeaders...), nil, 0},
	{"RFC 6455 4.1 HTTP/2.0 accepted", build("GET /chat HTTP/2.0", baseHeaders...), nil, 0},
	{"RFC 9112 3.2.2 absolute-form target", build("GET ws://server.example.com/chat?a=1 HTTP/1.1", baseHeaders...), nil, 0},

	// RFC 9112 5: header lines.
	{"RFC 9112 5 header line without colon", build(get, with("", "X-Foo bar")...), errBadHeaderLine, 400},
	{"RFC 9112 5 empty header name", build(get, with("", ": bar")...), errBadHeaderName, 400},
	{"RFC 9110 5.1 header name not a token", build(get, with("", "X(Foo): bar")...), errBadHeaderName, 400},
	{"RFC 9110 5.1 header name with inner space", build(get, with("", "X Foo: bar")...), errBadHeaderName, 400},
	{"RFC 9112 5.1 whitespace before colon", build(get, with("", "Host : server.example.com")...), errSpaceBeforeColon, 400},
	{"RFC 9112 5.1 tab before colon", build(get, with("", "X-Foo\t: bar")...), errSpaceBeforeColon, 400},
	{"RFC 9112 5.2 obs-fold continuation", build(get, with("", "X-Foo: bar", " baz")...), errObsFold, 400},
	{"RFC 9112 5.2 obs-fold with tab", build(get, with("", "X-Foo: bar", "\tbaz")...), errObsFold, 400},
	{"RFC 9110 5.5 NUL in value", build(get, with("", "X-Foo: b\x00r")...), errBadHeaderValue, 400},
	{"RFC 9110 5.5 control character in value", build(get, with("", "X-Foo: b\x1br")...), errBadHeaderValue, 400},
	{"RFC 9110 5.5 DEL in value", build(get, with("", "X-Foo: b\x7fr")...), errBadHeaderValue, 400},
	{"RFC 9112 2.2 bare CR in value", build(get, with("", "X-Foo: b\rr")...), errBadHeaderValue, 400},
	{"RFC 9110 5.5 HTAB and obs-text in value accepted", build(get, with("", "X-Foo: a\tb \xe9")...), nil, 0},
	{"RFC 9110 5.5 empty value accepted", build(get, with("", "X-Foo:")...), nil, 0},
	{"header block ends with its empty line", build(get, baseHeaders...) + "Host: x\r\n\r\n", errBlankLine, 400},
	{"header block without its empty line", get + "\r\n" + strings.Join(baseHeaders, "\r\n") + "\r\n", errNoEmptyLine, 400},

	// RFC 6455 4.2.1 item 1: GET. Item 3: Upgrade.
	{"RFC 6455 4.2.1.1 POST upgrade", build("POST /chat HTTP/1.1", baseHeaders...), errMethodNotAllowed, 405},
	{"RFC 9110 9.1 method is case-sensitive", build("get /chat HTTP/1.1", baseHeaders...), errMethodNotAllowed, 405},
	{"RFC 6455 4.2.1.1 POST without upgrade is plain HTTP", build("POST /chat HTTP/1.1", with("Upgrade")...), ErrNotUpgrade, 426},
	{"RFC 6455 4.2.1.3 GET without Upgrade", build(get, with("Upgrade")...), ErrNotUpgrade, 426},
	{"RFC 6455 4.2.1.3 Upgrade to another protocol", build(get, with("Upgrade", "Upgrade: h2c")...), ErrNotUpgrade, 426},
	{"RFC 6455 4.2.1.3 Upgrade token is exact", build(get, with("Upgrade", "Upgrade: websocket2")...), ErrNotUpgrade, 426},
	{"RFC 6455 4.2.1.3 Upgrade is case-insensitive", build(get, with("Upgrade", "upgrade: WebSocket")...), nil, 0},
	{"RFC 6455 4.2.1.3 Upgrade list", build(get, with("Upgrade", "Upgrade: h2c, websocket")...), nil, 0},
	{"RFC 6455 4.2.1.3 Upgrade repeated", build(get, with("Upgrade", "Upgrade: h2c", "Upgrade: websocket")...), nil, 0},
	{"RFC 9112 3.2 HTTP/1.0 plain request", build("GET / HTTP/1.0"), ErrNotUpgrade, 426},
	{"RFC 9112 3.2 HTTP/1.1 plain request", build("GET /healthz HTTP/1.1", "Host: a"), ErrNotUpgrade, 426},

	// RFC 6455 4.2.1 item 2, RFC 9112 3.2: Host.
	{"RFC 9112 3.2 missing Host", build(get, with("Host")...), errMissingHost, 400},
	{"RFC 9112 3.2 missing Host in a plain request", build("GET / HTTP/1.1", "Accept: */*"), errMissingHost, 400},
	{"RFC 9112 3.2 repeated Host", build(get, with("", "Host: other.example.com")...), errRepeatedHost, 400},
	{"RFC 9112 3.2 repeated Host differing in case", build(get, with("", "HOST: server.example.com")...), errRepeatedHost, 400},
	{"RFC 9112 3.2 empty Host accepted", build(get, with("Host", "Host:")...), nil, 0},

	// RFC 6455 4.2.1 item 4: Connection.
	{"RFC 6455 4.2.1.4 missing Connection", build(get, with("Connection")...), errNoConnUpgrade, 400},
	{"RFC 6455 4.2.1.4 Connection without upgrade", build(get, with("Connection", "Connection: keep-alive")...), errNoConnUpgrade, 400},
	{"RFC 6455 4.2.1.4 Connection token is exact", build(get, with("Connection", "Connection: upgrades")...), errNoConnUpgrade, 400},
	{"RFC 6455 4.2.1.4 Connection list", build(get, with("Connection", "Connection: keep-alive, Upgrade")...), nil, 0},
	{"RFC 6455 4.2.1.4 Connection repeated", build(get, with("Connection", "Connection: keep-alive", "connection: UPGRADE")...), nil, 0},

	// RFC 6455 4.2.1 item 5, 11.3.1: Sec-WebSocket-Key.
	{"RFC 6455 4.2.1.5 missing key", build(get, with("Sec-WebSocket-Key")...), errMissingKey, 400},
	{"RFC 6455 11.3.1 repeated key", build(get, with("", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")...), errRepeatedKey, 400},
	{"RFC 6455 4.2.1.5 key not base64", build(get, with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=")...), errBadKey, 400},
	{"RFC 6455 4.2.1.5 key without padding", build(get, with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ")...), errBadKey, 400},
	{"RFC 6455 4.2.1.5 key of 15 bytes", build(get, with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j")...), errBadKey, 400},
	{"RFC 6455 4.2.1.5 key of 17 bytes", build(get, with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZT8=")...), errBadKey, 400},
	{"RFC 6455 4.2.1.5 key in URL alphabet", build(get, with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j-_==")...), errBadKey, 400},
	{"RFC 6455 4.2.1.5 empty key", build(get, with("Sec-WebSocket-Key", "Sec-WebSocket-Key:")...), errBadKey, 400},

	// RFC 6455 4.2.1 item 6, 4.4, 11.3.5: Sec-WebSocket-Version.
	{"RFC 6455 4.2.1.6 missing version", build(get, with("Sec-WebSocket-Version")...), errMissingVersion, 400},
	{"RFC 6455 11.3.5 repeated version", build(get, with("", "Sec-WebSocket-Version: 13")...), errRepeatedVersion, 400},
	{"RFC 6455 4.4 version 8", build(get, with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")...), errUnsupportedWSVer, 426},
	{"RFC 6455 4.4 version list", build(get, with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 13, 8")...), errUnsupportedWSVer, 426},
	{"RFC 6455 4.4 empty version", build(get, with("Sec-WebSocket-Version", "Sec-WebSocket-Version:")...), errUnsupportedWSVer, 426},

	// Line ends.
	{"RFC 9112 2.2 bare LF line ends", strings.ReplaceAll(build(get, baseHeaders...), "\r\n", "\n"), nil, 0},
	{"RFC 9112 2.2 one empty line before the request", "\r\n" + build(get, baseHeaders...), nil, 0},
	{"RFC 9112 2.2 two empty lines before the request", "\r\n\r\n" + build(get, baseHeaders...), errBadRequestLine, 400},
}

func TestParseRequestRules(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			var r Request
			err := ParseRequest([]byte(tc.block), &r)
			if err != tc.want {
				t.Fatalf("ParseRequest(%q) = %v, want %v", tc.block, err, tc.want)
			}
			var ue *UpgradeError
			switch {
			case tc.status == 0 && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.status != 0 && (!errors.As(err, &ue) || ue.Status != tc.status):
				t.Fatalf("error %v: want status %d", err, tc.status)
			}
			if end, _ := FindHeaderEnd([]byte(tc.block), 0); err == nil && end != len(tc.block) {
				t.Fatalf("FindHeaderEnd = %d, want %d", end, len(tc.block))
			}
		})
	}
}

func TestUpgradeErrorsDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, tc := range requestCases {
		var ue *UpgradeError
		if !errors.As(tc.want, &ue) {
			continue
		}
		if ue.Reason == "" {
			t.Errorf("%s: empty reason", tc.name)
		}
		if other, ok := seen[ue.Reason]; ok && tc.want != errByReason(other) {
			t.Errorf("reason %q used by two errors", ue.Reason)
		}
		seen[ue.Reason] = ue.Reason
	}
	if !errors.Is(ErrNotUpgrade, ErrNotUpgrade) || errors.Is(errMissingHost, ErrNotUpgrade) {
		t.Fatal("errors.Is does not single out ErrNotUpgrade")
	}
}

func errByReason(reason string) error {
	for _, tc := range requestCases {
		var ue *UpgradeError
		if errors.As(tc.want, &ue) && ue.Reason == reason {
			return tc.want
		}
	}
	return nil
}

func TestParseRequestFields(t *testing.T) {
	block := []byte(build("GET http://server.example.com/chat?a=1&b=2 HTTP/1.1",
		"host: server.example.com",
		"Upgrade: websocket",
		"Connection: keep-alive, Upgrade",
		"Sec-WebSocket-Key:  dGhlIHNhbXBsZSBub25jZQ==\t",
		"Origin: http://example.com",
		"Sec-WebSocket-Protocol: chat, , superchat",
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
		"Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Protocol: v2.chat",
		"X-Quoted: a",
		"Sec-WebSocket-Extensions: x-ext; p=\"a,b\", y-ext",
	))
	var r Request
	if err := ParseRequest(block, &r); err != nil {
		t.Fatal(err)
	}
	fields := []struct{ name, got, want string }{
		{"Method", string(r.Method), "GET"},
		{"Target", string(r.Target), "http://server.example.com/chat?a=1&b=2"},
		{"Path", string(r.Path), "/chat"},
		{"Query", string(r.Query), "a=1&b=2"},
		{"Host", string(r.Host), "server.example.com"},
		{"Key", string(r.Key), "dGhlIHNhbXBsZSBub25jZQ=="},
		{"Version", string(r.Version), "13"},
		{"Origin", string(r.Origin), "http://example.com"},
		{"Protocols", string(r.Protocols), "chat, , superchat"},
		{"Extensions", string(r.Extensions), "permessage-deflate; client_max_window_bits"},
		{"Header(X-QUOTED)", string(r.Header("X-QUOTED")), "a"},
		{"protocols", strings.Join(protocols(&r), "|"), "chat|superchat|v2.chat"},
		{"extensions", strings.Join(extensions(&r), "|"),
			"permessage-deflate; client_max_window_bits|x-ext; p=\"a,b\"|y-ext"},
	}
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		t.Errorf("version %d.%d", r.ProtoMajor, r.ProtoMinor)
	}
	if r.Header("Missing") != nil {
		t.Error("Header of a missing header is not nil")
	}
	if !strings.HasPrefix(string(r.Headers), "host:") || !strings.HasSuffix(string(r.Headers), "y-ext\r\n") {
		t.Errorf("Headers = %q", r.Headers)
	}
}

func protocols(r *Request) (out []string) {
	r.VisitProtocols(func(p []byte) bool { out = append(out, string(p)); return true })
	return out
}

func extensions(r *Request) (out []string) {
	r.VisitExtensions(func(p []byte) bool { out = append(out, string(p)); return true })
	return out
}

func TestVisitStops(t *testing.T) {
	var r Request
	if err := ParseRequest([]byte(build(get, with("",
		"Sec-WebSocket-Protocol: a, b", "Sec-WebSocket-Protocol: c")...)), &r); err != nil {
		t.Fatal(err)
	}
	n := 0
	r.VisitProtocols(func([]byte) bool { n++; return n < 2 })
	if n != 2 {
		t.Errorf("VisitProtocols went on after false: %d calls", n)
	}
	n = 0
	r.VisitHeaders(func(name, value []byte) bool { n++; return n < 3 })
	if n != 3 {
		t.Errorf("VisitHeaders went on after false: %d calls", n)
	}
	var names []string
	r.VisitHeaders(func(name, value []byte) bool { names = append(names, string(name)); return true })
	if len(names) != len(baseHeaders)+2 || names[0] != "Host" {
		t.Errorf("VisitHeaders saw %q", names)
	}
}

func TestRealClients(t *testing.T) {
	type want struct{ path, query, host, key, origin, protos, exts string }
	wants := map[string]want{
		"gorilla":  {"/chat", "room=1", "127.0.0.1:46187", "ho2kUCEzm1QneGSJZKGxQg==", "", "", ""},
		"coder":    {"/chat", "room=1", "127.0.0.1:44739", "e3gWDG/dLCHxn3iarWnkIg==", "", "", ""},
		"chromium": {"/chat", "", "localhost:8080", "dGhlIHNhbXBsZSBub25jZQ==", "http://localhost:8080", "", "permessage-deflate; client_max_window_bits"},
		"node-ws":  {"/chat", "room=1", "127.0.0.1:36169", "bIU8WoIUIbkqozBsmU9N3w==", "http://example.com", "chat|superchat", "permessage-deflate; client_max_window_bits"},
		"rfc6455":  {"/chat", "", "server.example.com", "dGhlIHNhbXBsZSBub25jZQ==", "http://example.com", "chat|superchat", ""},
	}
	for _, c := range realClients {
		t.Run(c.name, func(t *testing.T) {
			buf := []byte(c.req + "\x81\x85") // a frame follows the request
			end, _ := FindHeaderEnd(buf, 0)
			if end != len(c.req) {
				t.Fatalf("FindHeaderEnd = %d, want %d", end, len(c.req))
			}
			var r Request
			if err := ParseRequest(buf[:end], &r); err != nil {
				t.Fatal(err)
			}
			w := wants[c.name]
			got := want{string(r.Path), string(r.Query), string(r.Host), string(r.Key), string(r.Origin),
				strings.Join(protocols(&r), "|"), strings.Join(extensions(&r), "|")}
			if got != w {
				t.Errorf("got %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		block string
		want  bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false},
	} {
		var r Request
		if err := ParseRequest([]byte(tc.block), &r); err != ErrNotUpgrade {
			t.Fatalf("%q: %v", tc.block, err)
		}
		if got := r.KeepAlive(); got != tc.want {
			t.Errorf("%q: KeepAlive() = %v, want %v", tc.block, got, tc.want)
		}
	}
}
