package codec

import (
	"bytes"
	"strconv"
)

// permessage-deflate negotiation (RFC 7692 section 7), allocation-free.
//
// A client lists its offers in Sec-WebSocket-Extensions, most preferred
// first (Request.VisitExtensions walks them). ParseDeflateOffer reads one
// offer; DeflatePolicy.Accept decides whether the server accepts it and
// with which parameters; AppendDeflateResponse writes the one extension the
// 101 response names.
//
// What is declined and what is refused: RFC 7692 section 7 says a server
// declines an offer with an unknown parameter, an invalid value or a
// repeated parameter, so such an offer is skipped (a later offer may still
// be accepted) and the connection goes on without compression. An element
// that breaks the header grammar itself (RFC 6455 9.1: a parameter that is
// not a token, "=" without a value, an unterminated quoted string) is not
// an offer at all: the request is malformed, and the server answers 400.

// DeflateName is the extension token of RFC 7692.
const DeflateName = "permessage-deflate"

// ErrBadExtension is a permessage-deflate element of Sec-WebSocket-Extensions
// that does not follow the header grammar of RFC 6455 9.1; the answer is 400.
var ErrBadExtension error = badRequest("malformed Sec-WebSocket-Extensions")

// DeflateOffer is one permessage-deflate offer as the client sent it.
type DeflateOffer struct {
	ServerNoContextTakeover bool
	ClientNoContextTakeover bool
	// ServerMaxWindowBits is 0 when absent, else 8 to 15: the largest LZ77
	// window the server may use when compressing.
	ServerMaxWindowBits uint8
	// ClientMaxWindowBits is 0 when absent, 1 when present without a value
	// (the client supports the parameter and lets the server choose), else
	// 8 to 15: the client's own limit.
	ClientMaxWindowBits uint8
}

// DeflateParams are the accepted parameters: what the response says and
// what both sides then do.
type DeflateParams struct {
	// ServerNoContextTakeover: the server compresses every message on its
	// own, so that the client may drop its decompression context between
	// messages, and the server keeps no compression state per connection.
	ServerNoContextTakeover bool
	// ClientNoContextTakeover: the client compresses every message on its
	// own; the server keeps no decompression window per connection.
	ClientNoContextTakeover bool
	// ServerMaxWindowBits is the server's LZ77 window, 8 to 15; it is in
	// the response only when the offer had it (WindowInResponse).
	ServerMaxWindowBits uint8
	// ClientMaxWindowBits is the client's LZ77 window, 8 to 15; it is in
	// the response only when the server limits it.
	ClientMaxWindowBits uint8

	serverBitsInResponse bool
	clientBitsInResponse bool
}

// ParseDeflateOffer reads one element of Sec-WebSocket-Extensions
// ("permessage-deflate; client_max_window_bits"). ok reports whether the
// element is a permessage-deflate offer the server may accept: false for
// another extension, and false for an offer that RFC 7692 7 says to
// decline (an unknown parameter, a value where none belongs or a missing
// or invalid one, a repeated parameter). err is ErrBadExtension when a
// permessage-deflate element breaks the header grammar. Names compare
// ASCII case-insensitively; values may be tokens or quoted strings. It
// does not allocate.
func ParseDeflateOffer(elem []byte) (o DeflateOffer, ok bool, err error) {
	name, rest := cutOutside(elem, ';')
	if !foldEqual(trimOWS(name), DeflateName) {
		return DeflateOffer{}, false, nil
	}
	ok = true
	var seen uint8
	for rest != nil {
		var p []byte
		p, rest = cutOutside(rest, ';')
		k, v, hasValue, valid := splitParam(p)
		if !valid {
			return DeflateOffer{}, false, ErrBadExtension
		}
		var bit uint8
		switch {
		case foldEqual(k, "server_no_context_takeover"):
			bit = 1
			o.ServerNoContextTakeover = true
			ok = ok && !hasValue
		case foldEqual(k, "client_no_context_takeover"):
			bit = 2
			o.ClientNoContextTakeover = true
			ok = ok && !hasValue
		case foldEqual(k, "server_max_window_bits"):
			bit = 4
			o.ServerMaxWindowBits = windowBits(v)
			ok = ok && hasValue && o.ServerMaxWindowBits != 0
		case foldEqual(k, "client_max_window_bits"):
			bit = 8
			o.ClientMaxWindowBits = 1
			if hasValue {
				o.ClientMaxWindowBits = windowBits(v)
				ok = ok && o.ClientMaxWindowBits != 0
			}
		default:
			ok = false
		}
		ok = ok && seen&bit == 0
		seen |= bit
	}
	if !ok {
		return DeflateOffer{}, false, nil
	}
	return o, true, nil
}

// splitParam splits "name[=value]" (with optional whitespace around the
// '=') into its name and value, unquoting a quoted-string value in place
// of the escapes it holds only when it has none (a window size never
// needs one). valid is false when p breaks the grammar.
func splitParam(p []byte) (name, value []byte, hasValue, valid bool) {
	p = trimOWS(p)
	eq := bytes.IndexByte(p, '=')
	if eq < 0 {
		return p, nil, false, isToken(p)
	}
	name, value = trimOWS(p[:eq]), trimOWS(p[eq+1:])
	if !isToken(name) {
		return nil, nil, false, false
	}
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		inner := value[1 : len(value)-1]
		for i := 0; i < len(inner); i++ {
			switch c := inner[i]; {
			case c == '\\':
				if i+1 == len(inner) {
					return nil, nil, false, false
				}
				i++
			case c == '"' || (c < ' ' && c != '\t') || c == 0x7f:
				return nil, nil, false, false
			}
		}
		return name, inner, true, true
	}
	return name, value, true, isToken(value)
}

// windowBits parses a window size, "8" to "15" without leading zeros
// (RFC 7692 7.1.2), returning 0 for anything else.
func windowBits(v []byte) uint8 {
	switch {
	case len(v) == 1 && (v[0] == '8' || v[0] == '9'):
		return v[0] - '0'
	case len(v) == 2 && v[0] == '1' && '0' <= v[1] && v[1] <= '5':
		return 10 + v[1] - '0'
	}
	return 0
}

// DeflatePolicy is what a server is willing to do.
type DeflatePolicy struct {
	// ServerContextTakeover lets the server keep its compression context
	// between messages when the client does not forbid it.
	ServerContextTakeover bool
	// ClientContextTakeover lets the client keep its compression context
	// between messages, which makes the server keep a decompression window
	// per connection: at most 2^ClientMaxWindowBits bytes.
	ClientContextTakeover bool
	// ClientMaxWindowBits bounds that window (8 to 15; 0 means 15). An offer
	// that cannot be held to it (it lacks client_max_window_bits and the
	// bound is below 15) is accepted with client_no_context_takeover.
	ClientMaxWindowBits uint8
}

// Accept returns the parameters for accepting o, following RFC 7692 7.1.
// Every well-formed offer can be accepted: the server honours any
// server_max_window_bits (8 to 15), and answers client_no_context_takeover
// or server_no_context_takeover whenever its policy or the offer asks.
func (pol DeflatePolicy) Accept(o DeflateOffer) DeflateParams {
	p := DeflateParams{ServerMaxWindowBits: 15, ClientMaxWindowBits: 15}
	// 7.1.1.1: an offer with server_no_context_takeover must be answered
	// with it; the server may add it on its own.
	p.ServerNoContextTakeover = o.ServerNoContextTakeover || !pol.ServerContextTakeover
	// 7.1.2.1: the server's window is at most the offered one; the
	// response names it when the offer did.
	// A window below 15 is honoured by compressing in chunks of that size,
	// each on its own, so it comes without server context takeover.
	if o.ServerMaxWindowBits != 0 {
		p.ServerMaxWindowBits, p.serverBitsInResponse = o.ServerMaxWindowBits, true
		p.ServerNoContextTakeover = p.ServerNoContextTakeover || o.ServerMaxWindowBits < 15
	}
	// 7.1.1.2: the server may always answer client_no_context_takeover.
	// 7.1.2.2: client_max_window_bits is in the response only if the offer
	// had it, with a value no larger than the offered one.
	bound := pol.ClientMaxWindowBits
	if bound == 0 {
		bound = 15
	}
	switch {
	case !pol.ClientContextTakeover || o.ClientNoContextTakeover:
		p.ClientNoContextTakeover = true
	case o.ClientMaxWindowBits == 0:
		p.ClientNoContextTakeover = bound < 15
	default:
		offered := o.ClientMaxWindowBits
		if offered == 1 {
			offered = 15
		}
		p.ClientMaxWindowBits = min(offered, bound)
		p.clientBitsInResponse = p.ClientMaxWindowBits < 15 || o.ClientMaxWindowBits > 1
	}
	return p
}

// AppendDeflateResponse appends the Sec-WebSocket-Extensions value that
// accepts an offer with p: "permessage-deflate" and the parameters the
// response must or may carry. It does not allocate when dst has room.
func AppendDeflateResponse(dst []byte, p DeflateParams) []byte {
	dst = append(dst, DeflateName...)
	if p.ServerNoContextTakeover {
		dst = append(dst, "; server_no_context_takeover"...)
	}
	if p.ClientNoContextTakeover {
		dst = append(dst, "; client_no_context_takeover"...)
	}
	if p.serverBitsInResponse {
		dst = append(dst, "; server_max_window_bits="...)
		dst = strconv.AppendUint(dst, uint64(p.ServerMaxWindowBits), 10)
	}
	if p.clientBitsInResponse && !p.ClientNoContextTakeover {
		dst = append(dst, "; client_max_window_bits="...)
		dst = strconv.AppendUint(dst, uint64(p.ClientMaxWindowBits), 10)
	}
	return dst
}
