package codec

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

func TestAppendAcceptKey(t *testing.T) {
	// RFC 6455 1.3.
	got := string(AppendAcceptKey([]byte("x"), []byte("dGhlIHNhbXBsZSBub25jZQ==")))
	if got != "xs3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("AppendAcceptKey = %q", got)
	}
	// A key longer than the stack buffer takes the other path, same result.
	long := strings.Repeat("k", 100)
	sum := sha1.Sum([]byte(long + acceptGUID))
	if got, want := string(AppendAcceptKey(nil, []byte(long))), base64.StdEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("AppendAcceptKey(long) = %q, want %q", got, want)
	}
}

func TestAppendSwitchingProtocols(t *testing.T) {
	got := string(AppendSwitchingProtocols(nil, []byte("dGhlIHNhbXBsZSBub25jZQ=="), "chat",
		[]byte("permessage-deflate"), []HeaderField{{"X-Server", "wsloop"}}))
	want := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" +
		"Sec-WebSocket-Protocol: chat\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate\r\n" +
		"X-Server: wsloop\r\n" +
		"\r\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	minimal := string(AppendSwitchingProtocols(nil, []byte("dGhlIHNhbXBsZSBub25jZQ=="), "", nil, nil))
	if strings.Contains(minimal, "Protocol:") || strings.Contains(minimal, "Extensions:") ||
		!strings.HasSuffix(minimal, "xOo=\r\n\r\n") {
		t.Fatalf("minimal response %q", minimal)
	}
}

func TestResponseInjection(t *testing.T) {
	extra := []HeaderField{
		{"X-Ok", "fine\tvalue"},
		{"X-Evil", "a\r\nSet-Cookie: x=1"},
		{"X-Evil-LF", "a\nb"},
		{"X-Nul", "a\x00b"},
		{"Bad Name", "v"},
		{"Bad:Name", "v"},
		{"", "v"},
		{"Content-Length", "0"},
		{"transfer-encoding", "chunked"},
	}
	for _, resp := range []string{
		string(AppendSwitchingProtocols(nil, []byte("dGhlIHNhbXBsZSBub25jZQ=="), "a\r\nb", []byte("x\r\ny"), extra[:7])),
		string(AppendErrorResponse(nil, 403, "no", extra)),
		string(AppendResponse(nil, 200, extra, []byte("ok"))),
	} {
		if !strings.Contains(resp, "X-Ok: fine\tvalue\r\n") {
			t.Errorf("safe field dropped: %q", resp)
		}
		for _, bad := range []string{"Evil", "Set-Cookie", "X-Nul", "Name", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "chunked", "Content-Length: 0"} {
			if strings.Contains(resp, bad) {
				t.Errorf("unsafe field %q written: %q", bad, resp)
			}
		}
		if _, err := http.ReadResponse(bufio.NewReader(strings.NewReader(resp)), nil); err != nil {
			t.Errorf("net/http cannot read %q: %v", resp, err)
		}
	}
}

func TestAppendErrorResponse(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"400", 400, "missing Host", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 12\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n\r\nmissing Host"},
		{"RFC 6455 4.4 426 names the version", 426, "", "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Length: 0\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"},
		{"RFC 9110 15.5.6 405 lists Allow", 405, "x", "HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 1\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nAllow: GET\r\n\r\nx"},
		{"unknown status has an empty reason phrase", 499, "", "HTTP/1.1 499 \r\nConnection: close\r\nContent-Length: 0\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendErrorResponse(nil, tc.status, tc.body, nil))
			if got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil || resp.StatusCode != tc.status || !resp.Close || resp.ContentLength != int64(len(tc.body)) {
				t.Fatalf("net/http reads %+v, %v", resp, err)
			}
		})
	}
}

func TestAppendResponse(t *testing.T) {
	got := string(AppendResponse([]byte("prefix"), 200,
		[]HeaderField{{"Content-Type", "application/json"}}, []byte(`{"ok":true}`)))
	want := "prefixHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n" +
		"Content-Type: application/json\r\n\r\n{\"ok\":true}"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	if got := string(AppendResponse(nil, 42, nil, nil)); !strings.HasPrefix(got, "HTTP/1.1 500 Internal Server Error\r\n") {
		t.Fatalf("status out of range: %q", got)
	}
	for status := 100; status < 600; status++ {
		// RFC 9110 renamed these two; net/http keeps the RFC 7231 names.
		if s := StatusText(status); s != "" && s != http.StatusText(status) && status != 413 && status != 414 {
			t.Errorf("StatusText(%d) = %q, net/http says %q", status, s, http.StatusText(status))
		}
	}
}

func TestAppendKeepAliveResponse(t *testing.T) {
	body := []byte(`{"ok":true}`)
	extra := []HeaderField{{"Content-Type", "application/json"}, {"Content-Length", "99"}, {"Connection", "close"}}
	got := string(AppendKeepAliveResponse(nil, 200, extra, body, false))
	want := "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"ok\":true}"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	got = string(AppendKeepAliveResponse(nil, 200, extra[:1], body, false))
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	if err != nil || resp.StatusCode != 200 || resp.Close || resp.ContentLength != int64(len(body)) {
		t.Fatalf("net/http reads %+v, %v", resp, err)
	}
	head := string(AppendKeepAliveResponse(nil, 200, nil, body, true))
	if head != "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n" {
		t.Fatalf("HEAD: %q", head)
	}
	if n := testing.AllocsPerRun(100, func() { AppendKeepAliveResponse(make([]byte, 0, 256)[:0], 200, extra, body, false) }); n > 1 {
		t.Fatalf("%v allocations", n)
	}
}

// Responses without a body are framed as such, closed or kept alive.
func TestBodylessResponses(t *testing.T) {
	body := []byte("ignored")
	for _, tc := range []struct {
		status int
		want   string
	}{
		{204, "HTTP/1.1 204 No Content\r\n\r\n"},
		{304, "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"},
		{101, "HTTP/1.1 101 Switching Protocols\r\n\r\n"},
	} {
		if got := string(AppendKeepAliveResponse(nil, tc.status, nil, body, false)); got != tc.want {
			t.Errorf("%d kept alive: %q, want %q", tc.status, got, tc.want)
		}
		closed := string(AppendResponse(nil, tc.status, nil, body))
		if want := strings.Replace(tc.want, "\r\n", "\r\nConnection: close\r\n", 1); closed != want {
			t.Errorf("%d closed: %q, want %q", tc.status, closed, want)
		}
	}
}
