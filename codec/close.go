package codec

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ParseClosePayload validates a received close frame payload (RFC 6455
// 5.5.1 and 7.4). An empty payload gives (ws.StatusNoStatusRcvd, nil, nil);
// one byte is ErrCloseTooShort; a code that may not appear on the wire is
// ErrInvalidCloseCode; a reason that is not valid UTF-8 is ErrInvalidUTF8.
// reason aliases payload (it is valid only as long as payload is). On
// error, code is the code received, if any. It does not allocate.
func ParseClosePayload(payload []byte) (code ws.StatusCode, reason []byte, err error) {
	switch len(payload) {
	case 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case 1:
		return 0, nil, ErrCloseTooShort
	}
	code = ws.StatusCode(binary.BigEndian.Uint16(payload))
	if !ValidReceivedCloseCode(code) {
		return code, nil, ErrInvalidCloseCode
	}
	reason = payload[2:]
	if !utf8.Valid(reason) {
		return code, nil, ErrInvalidUTF8
	}
	return code, reason, nil
}

// ValidReceivedCloseCode reports whether code may appear in a received
// close frame: 1000-1003 and 1007-1014 (defined by RFC 6455 7.4.1 and the
// IANA registry), and 3000-4999 (libraries, frameworks and applications).
// 0-999, 1004 (reserved), 1005, 1006 and 1015 (never sent on the wire),
// 1016-2999 (unassigned) and 5000 and up are invalid.
func ValidReceivedCloseCode(code ws.StatusCode) bool {
	switch {
	case 1000 <= code && code <= 1003:
		return true
	case 1007 <= code && code <= 1014:
		return true
	}
	return 3000 <= code && code <= 4999
}
