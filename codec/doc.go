// Package codec implements the wire format of RFC 6455 on byte slices: the
// opening handshake, frame headers, close payloads and UTF-8 validation. It
// does no I/O, starts no goroutines and allocates nothing on its hot paths:
// parsers take the bytes a caller already holds (an event loop's inbound
// buffer) and return values that alias them; writers append to a buffer the
// caller owns. Every function is safe for concurrent use; the values that
// carry state (Request, UTF8Validator) belong to one goroutine at a time.
// It uses the vocabulary of github.com/gobwas/ws: ws.OpCode, ws.StatusCode,
// ws.Header, and ws.Cipher to unmask payloads.
//
// # Handshake
//
// Use FindHeaderEnd on the bytes received so far until it reports the end of
// the header block, then ParseRequest to validate it into a reusable
// Request. Answer with AppendSwitchingProtocols, or with
// AppendErrorResponse using the Status and Reason of the *UpgradeError
// that ParseRequest returned. ErrNotUpgrade marks a plain HTTP request (a
// health check), which AppendResponse can answer. ParseRequest applies the
// rules in this order, and the first that fails decides the answer:
//
//   - request line: "METHOD SP request-target SP HTTP/x.y", method a token,
//     target non-empty without whitespace or control characters -> 400;
//     HTTP/0.x -> 400
//   - header lines (RFC 9112 5): a colon, a token name with no whitespace
//     before the colon, no obsolete line folding, no control character but
//     HTAB in the value -> 400
//   - Host: more than one -> 400; none in an HTTP/1.1 or later request ->
//     400 (RFC 9112 3.2)
//   - no Upgrade header with the token "websocket" -> ErrNotUpgrade (any
//     method, HTTP/1.0 too)
//   - an upgrade on HTTP/1.0 -> 400; a method other than GET -> 405
//   - Connection without the token "upgrade" -> 400
//   - Sec-WebSocket-Key missing, repeated, or not 16 bytes in base64 -> 400
//   - Sec-WebSocket-Version missing or repeated -> 400; not "13" -> 426
//
// # Compression
//
// ParseDeflateOffer reads one permessage-deflate offer (RFC 7692) from an
// element that Request.VisitExtensions yields, DeflatePolicy.Accept picks
// the parameters, AppendDeflateResponse writes them for the 101. A
// malformed element is ErrBadExtension (400); an offer with an unknown,
// repeated or invalid parameter is declined (RFC 7692 7). Deflater
// compresses a message payload for a given window, Inflater decompresses
// one; both use github.com/klauspost/compress/flate.
//
// # Frames
//
// ParseHeader parses a frame header from the front of a buffer and
// CheckHeader applies the receive rules that need no connection state.
// AppendFrame, AppendFrameString and AppendCloseFrame write whole unmasked
// frames, AppendHeader any header. ParseClosePayload and
// ValidReceivedCloseCode check a received close frame, UTF8Validator checks
// text as it arrives. The errors a peer can cause are *ProtocolError
// values carrying the close code to fail the connection with (CloseCodeOf).
package codec
