package codec

import (
	"errors"
	"strconv"

	"github.com/gobwas/ws"
)

// ProtocolError is a violation of RFC 6455 by the peer. Code is the close
// status the connection must be failed with (1002 or 1007 for the errors
// of this package) and Reason a short description, fit for a close frame.
// ProtocolError values are immutable and safe for concurrent use.
type ProtocolError struct {
	Code   ws.StatusCode
	Reason string
}

// Error returns the reason with its close code.
func (e *ProtocolError) Error() string {
	return "websocket: protocol error " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

// Errors that fail a connection. Each is a *ProtocolError.
var (
	// ErrUnmasked is a client frame without the mask bit (RFC 6455 5.1).
	ErrUnmasked error = protocolError("client frame is not masked")
	// ErrReservedBits is an RSV bit set that no negotiated extension defines (RFC 6455 5.2).
	ErrReservedBits error = protocolError("reserved bits set without a negotiated extension")
	// ErrReservedOpcode is an opcode 0x3-0x7 or 0xB-0xF (RFC 6455 5.2).
	ErrReservedOpcode error = protocolError("reserved opcode")
	// ErrFragmentedControl is a control frame without FIN (RFC 6455 5.5).
	ErrFragmentedControl error = protocolError("fragmented control frame")
	// ErrControlTooLong is a control frame payload over 125 bytes (RFC 6455 5.5).
	ErrControlTooLong error = protocolError("control frame payload over 125 bytes")
	// ErrLengthMSB is a 64-bit payload length with the most significant bit set (RFC 6455 5.2).
	ErrLengthMSB error = protocolError("payload length has the most significant bit set")
	// ErrCloseTooShort is a close payload of one byte (RFC 6455 5.5.1).
	ErrCloseTooShort error = protocolError("close payload of one byte")
	// ErrInvalidCloseCode is a close code that must not appear on the wire (RFC 6455 7.4).
	ErrInvalidCloseCode error = protocolError("invalid close code")
	// ErrInvalidUTF8 is text or a close reason that is not valid UTF-8 (RFC 6455 8.1).
	ErrInvalidUTF8 error = &ProtocolError{Code: ws.StatusInvalidFramePayloadData, Reason: "invalid UTF-8"}
)

func protocolError(reason string) *ProtocolError {
	return &ProtocolError{Code: ws.StatusProtocolError, Reason: reason}
}

// CloseCodeOf returns the close code of the *ProtocolError in err's chain
// (1002 if that error leaves Code zero), or 0 when err has none.
func CloseCodeOf(err error) ws.StatusCode {
	var pe *ProtocolError
	if !errors.As(err, &pe) {
		return 0
	}
	if pe.Code == 0 {
		return ws.StatusProtocolError
	}
	return pe.Code
}

// UpgradeError is a handshake failure with the HTTP status the server must
// answer and a short reason, fit for the response body. The values returned
// by ParseRequest are package-level and immutable.
type UpgradeError struct {
	Status int
	Reason string
}

// Error returns the status and the reason.
func (e *UpgradeError) Error() string {
	return "websocket: upgrade refused (" + strconv.Itoa(e.Status) + "): " + e.Reason
}

// ErrNotUpgrade is returned by ParseRequest for a well-formed HTTP/1.x
// request that does not ask for a WebSocket upgrade at all (no Upgrade
// header carrying the token "websocket"). The Request is filled in, so a
// caller may route it to a plain-HTTP handler (health checks). It is an
// *UpgradeError with Status 426, so errors.As works too;
// errors.Is(err, ErrNotUpgrade) identifies it.
var ErrNotUpgrade error = &UpgradeError{Status: 426, Reason: "not a WebSocket upgrade request"}

// Handshake failures: one value per rule, so that a response can say
// exactly what was wrong.
var (
	errBadRequestLine   = badRequest("malformed request line")
	errBadMethod        = badRequest("malformed method")
	errBadTarget        = badRequest("malformed request-target")
	errBadVersion       = badRequest("malformed HTTP version")
	errOldVersion       = badRequest("HTTP/1.1 or later required")
	errNoEmptyLine      = badRequest("header block does not end with an empty line")
	errBlankLine        = badRequest("empty line inside the header block")
	errBadHeaderLine    = badRequest("malformed header line: no colon")
	errBadHeaderName    = badRequest("malformed header name")
	errSpaceBeforeColon = badRequest("whitespace between header name and colon")
	errObsFold          = badRequest("obsolete line folding in header")
	errBadHeaderValue   = badRequest("control character in header value")
	errMissingHost      = badRequest("missing Host")
	errRepeatedHost     = badRequest("more than one Host")
	errNoConnUpgrade    = badRequest("Connection header lacks the upgrade token")
	errMissingKey       = badRequest("missing Sec-WebSocket-Key")
	errRepeatedKey      = badRequest("more than one Sec-WebSocket-Key")
	errBadKey           = badRequest("Sec-WebSocket-Key is not 16 bytes in base64")
	errMissingVersion   = badRequest("missing Sec-WebSocket-Version")
	errRepeatedVersion  = badRequest("more than one Sec-WebSocket-Version")
	errMethodNotAllowed = &UpgradeError{Status: 405, Reason: "WebSocket upgrade requires GET"}
	errUnsupportedWSVer = &UpgradeError{Status: 426, Reason: "unsupported Sec-WebSocket-Version; 13 required"}
)

func badRequest(reason string) *UpgradeError {
	return &UpgradeError{Status: 400, Reason: reason}
}
