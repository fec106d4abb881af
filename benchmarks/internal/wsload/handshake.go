package wsload

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// MaxResponseHead bounds the upgrade response's head.
const MaxResponseHead = 8 << 10

// NewKey returns a Sec-WebSocket-Key: 16 random bytes, base64.
func NewKey() string {
	var k [16]byte
	_, _ = rand.Read(k[:])
	return base64.StdEncoding.EncodeToString(k[:])
}

// Accept returns the Sec-WebSocket-Accept a server must answer key with.
func Accept(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// AppendRequest appends an RFC 6455 opening handshake for path "/".
func AppendRequest(dst []byte, host, key string) []byte {
	dst = append(dst, "GET / HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	return append(dst, "\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
}

// ErrIncomplete means the response head has not all arrived yet.
var ErrIncomplete = errors.New("incomplete response head")

// CheckResponse checks the server's answer to a handshake sent with key:
// status 101, Upgrade: websocket, Connection: upgrade, the right
// Sec-WebSocket-Accept, and no extension or subprotocol (none was asked
// for). It returns the head's length (bytes after it are frames), or
// ErrIncomplete while b does not yet hold the whole head.
func CheckResponse(b []byte, key string) (int, error) { return checkResponse(b, key, false) }

func checkResponse(b []byte, key string, deflate bool) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > MaxResponseHead {
			return 0, fmt.Errorf("upgrade response head longer than %d bytes", MaxResponseHead)
		}
		return 0, ErrIncomplete
	}
	lines := strings.Split(string(b[:end]), "\r\n")
	status := lines[0]
	if !strings.HasPrefix(status, "HTTP/1.1 101") || (len(status) > 12 && status[12] != ' ') {
		return 0, fmt.Errorf("upgrade refused: %q", status)
	}
	var upgrade, connection, accept bool
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return 0, fmt.Errorf("malformed header line %q", l)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "upgrade":
			upgrade = strings.EqualFold(v, "websocket")
		case "connection":
			for _, t := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
					connection = true
				}
			}
		case "sec-websocket-accept":
			if v != Accept(key) {
				return 0, fmt.Errorf("Sec-WebSocket-Accept %q, want %q", v, Accept(key))
			}
			accept = true
		case "sec-websocket-extensions":
			if !deflate {
				return 0, fmt.Errorf("server chose %s %q that was not offered", k, v)
			}
			if err := checkDeflateResponse(v); err != nil {
				return 0, err
			}
			deflate = false // seen
		case "sec-websocket-protocol":
			return 0, fmt.Errorf("server chose %s %q that was not offered", k, v)
		}
	}
	switch {
	case !upgrade:
		return 0, errors.New("101 without Upgrade: websocket")
	case !connection:
		return 0, errors.New("101 without Connection: upgrade")
	case !accept:
		return 0, errors.New("101 without Sec-WebSocket-Accept")
	case deflate:
		return 0, errors.New("server declined permessage-deflate")
	}
	return end + 4, nil
}
