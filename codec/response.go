package codec

import (
	"crypto/sha1"
	"encoding/base64"
	"strconv"
)

// HeaderField is one extra response header line. The Append*Response
// functions drop a field whose Name is not a token or whose Value contains
// CR, LF or NUL, so that a value taken from user input cannot add lines to
// a response (RFC 9110 5.5).
type HeaderField struct{ Name, Value string }

// acceptGUID is the key suffix of RFC 6455 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AppendAcceptKey appends the Sec-WebSocket-Accept value for key to dst:
// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), 28 bytes
// (RFC 6455 4.2.2). It does not allocate when dst has room and key is at
// most 64 bytes long (a valid key is 24).
func AppendAcceptKey(dst, key []byte) []byte {
	var sum [sha1.Size]byte
	if len(key) <= 64 {
		var buf [64 + len(acceptGUID)]byte
		n := copy(buf[:], key)
		n += copy(buf[n:], acceptGUID)
		sum = sha1.Sum(buf[:n])
	} else {
		h := sha1.New()
		h.Write(key)
		h.Write([]byte(acceptGUID))
		h.Sum(sum[:0])
	}
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// AppendSwitchingProtocols appends a complete 101 response accepting the
// handshake for key: Upgrade: websocket, Connection: Upgrade,
// Sec-WebSocket-Accept, Sec-WebSocket-Protocol if subprotocol != "",
// Sec-WebSocket-Extensions if len(extensions) > 0, then each extra field,
// then the empty line. A subprotocol that is not a token, extensions or an
// extra field that could break the response (see HeaderField) are left
// out. It does not allocate when dst has room.
func AppendSwitchingProtocols(dst, key []byte, subprotocol string, extensions []byte, extra []HeaderField) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = AppendAcceptKey(dst, key)
	dst = append(dst, "\r\n"...)
	if isToken(subprotocol) {
		dst = appendField(dst, "Sec-WebSocket-Protocol", subprotocol)
	}
	if len(extensions) > 0 && safeValue(extensions) {
		dst = append(dst, "Sec-WebSocket-Extensions: "...)
		dst = append(dst, extensions...)
		dst = append(dst, "\r\n"...)
	}
	dst = appendFields(dst, extra, false)
	return append(dst, "\r\n"...)
}

// AppendErrorResponse appends a complete error response: the status line
// with status and its standard reason phrase, Connection: close,
// Content-Type: text/plain; charset=utf-8, Content-Length, for 426 also
// Upgrade: websocket and Sec-WebSocket-Version: 13 (RFC 6455 4.4), for 405
// Allow: GET, then the extra fields, the empty line and body (typically an
// UpgradeError's Reason; it may be empty). Extra fields named
// Content-Length or Transfer-Encoding are dropped, as are the ones
// HeaderField describes. It does not allocate when dst has room.
func AppendErrorResponse(dst []byte, status int, body string, extra []HeaderField) []byte {
	dst = appendHead(dst, status, len(body))
	dst = append(dst, "Content-Type: text/plain; charset=utf-8\r\n"...)
	switch status {
	case 426:
		dst = append(dst, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"...)
	case 405:
		dst = append(dst, "Allow: GET\r\n"...)
	}
	dst = appendFields(dst, extra, true)
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}

// AppendResponse appends a complete response for a plain HTTP request
// (a health check, say): the status line, Connection: close,
// Content-Length, the extra fields (the caller supplies Content-Type if it
// wants one), the empty line and body. Extra fields are dropped as
// AppendErrorResponse says. A status outside 100-999 is written as 500.
// It does not allocate when dst has room.
//
// Responses that cannot have a body (RFC 9110 6.4.1) are framed as such:
// 1xx and 204 get neither Content-Length nor body, 304 gets the length of
// body but not body; so do AppendKeepAliveResponse's.
func AppendResponse(dst []byte, status int, extra []HeaderField, body []byte) []byte {
	status = validStatus(status)
	dst = appendStatus(dst, status)
	dst = append(dst, "Connection: close\r\n"...)
	return appendFramed(dst, status, extra, body, false)
}

// appendFramed appends Content-Length (unless status forbids it), the
// extra fields, the empty line and body (unless status or head forbids
// it).
func appendFramed(dst []byte, status int, extra []HeaderField, body []byte, head bool) []byte {
	if status >= 200 && status != 204 {
		dst = appendLength(dst, len(body))
	}
	dst = appendFields(dst, extra, true)
	dst = append(dst, "\r\n"...)
	if head || status < 200 || status == 204 || status == 304 {
		return dst
	}
	return append(dst, body...)
}

// validStatus maps a status outside 100-999 to 500.
func validStatus(status int) int {
	if status < 100 || status > 999 {
		return 500
	}
	return status
}

// AppendKeepAliveResponse is AppendResponse for a request after which the
// connection stays open (Request.KeepAlive): no Connection: close. With
// head set (the answer to a HEAD request) it announces body's length but
// leaves body out (RFC 9110 9.3.2). It does not allocate when dst has
// room.
func AppendKeepAliveResponse(dst []byte, status int, extra []HeaderField, body []byte, head bool) []byte {
	status = validStatus(status)
	dst = appendStatus(dst, status)
	return appendFramed(dst, status, extra, body, head)
}

// appendHead appends the status line, Connection: close and Content-Length.
func appendHead(dst []byte, status, length int) []byte {
	dst = appendStatus(dst, status)
	dst = append(dst, "Connection: close\r\n"...)
	return appendLength(dst, length)
}

// appendStatus appends the status line; a status outside 100-999 is 500.
func appendStatus(dst []byte, status int) []byte {
	status = validStatus(status)
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, StatusText(status)...)
	return append(dst, "\r\n"...)
}

func appendLength(dst []byte, length int) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(length), 10)
	return append(dst, "\r\n"...)
}

// appendFields appends the fields that are safe to write; with framing set,
// it also drops those that would contradict the Content-Length written.
func appendFields(dst []byte, fields []HeaderField, framing bool) []byte {
	for _, f := range fields {
		if !isToken(f.Name) || !safeValue(f.Value) {
			continue
		}
		if framing && (foldEqual(f.Name, "content-length") ||
			foldEqual(f.Name, "transfer-encoding")) {
			continue
		}
		dst = appendField(dst, f.Name, f.Value)
	}
	return dst
}

func appendField(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// safeValue reports whether v holds no CR, LF or NUL.
func safeValue[T string | []byte](v T) bool {
	for i := range len(v) {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// StatusText returns the standard reason phrase of an HTTP status code
// (RFC 9110 15) for the codes a WebSocket server or its health checks
// answer with, and "" for the others (a status line may have an empty
// reason phrase).
func StatusText(status int) string {
	switch status {
	case 101:
		return "Switching Protocols"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 204:
		return "No Content"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	}
	return statusText4xx5xx(status)
}

func statusText4xx5xx(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}
