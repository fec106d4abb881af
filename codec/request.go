package codec

import (
	"bytes"
	"encoding/base64"
)

// FindHeaderEnd scans buf for the empty line that ends an HTTP header block,
// starting at from (a previous call's next, or 0). It returns end > 0, the
// length of the block including the terminating empty line, once found;
// otherwise end == 0 and next is where to resume scanning when more bytes
// have arrived, so that a byte-at-a-time sender costs O(n) in total, not
// O(n^2). next is never less than len(buf)-2.
//
// Lines end in CRLF; a bare LF is also accepted as a line end (RFC 9112
// 2.2). One empty line before the request line is ignored (RFC 9112 2.2);
// ParseRequest skips it too. buf must hold the same bytes from one call to
// the next, plus whatever arrived since. FindHeaderEnd does not allocate.
func FindHeaderEnd(buf []byte, from int) (end, next int) {
	start := leadingBlank(buf)
	if start < 0 {
		return 0, 0
	}
	i := max(from, start)
	for i < len(buf) {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			break
		}
		i += j // buf[i] ends a line; is the line after it empty?
		switch {
		case i+1 >= len(buf):
			return 0, i
		case buf[i+1] == '\n':
			return i + 2, i + 2
		case buf[i+1] != '\r':
		case i+2 >= len(buf):
			return 0, i
		case buf[i+2] == '\n':
			return i + 3, i + 3
		}
		i++
	}
	return 0, len(buf)
}

// leadingBlank returns the length of the one empty line that may precede
// the request line (0, 1 or 2), or -1 when buf is a lone CR, which may be
// the start of one.
func leadingBlank(buf []byte) int {
	switch {
	case len(buf) == 0:
		return 0
	case buf[0] == '\n':
		return 1
	case buf[0] != '\r':
		return 0
	case len(buf) == 1:
		return -1
	case buf[1] == '\n':
		return 2
	}
	return 0
}

// Request is a parsed upgrade request. Every []byte field aliases the block
// given to ParseRequest and is valid only as long as that block is; header
// values are trimmed of optional whitespace and nil when the header is
// absent. Repeated headers: Host, Sec-WebSocket-Key and
// Sec-WebSocket-Version must not repeat (ParseRequest refuses them);
// Origin holds the first occurrence; Protocols and Extensions hold the first
// occurrence, and VisitProtocols and VisitExtensions walk every occurrence.
//
// ParseRequest overwrites a Request completely without allocating, so one
// value can be reused for every request parsed on an event loop. A Request
// is not safe for concurrent use.
type Request struct {
	Method []byte
	Target []byte // the request-target as sent
	// Path and Query split Target at its first '?'; Query excludes the '?'
	// and is nil when there is none. For an absolute-form target
	// ("http://host/p?q", RFC 9112 3.2.2) Path is the path component only.
	Path, Query []byte

	ProtoMajor, ProtoMinor int

	Host, Key, Version, Origin []byte
	Protocols                  []byte // first Sec-WebSocket-Protocol value
	Extensions                 []byte // first Sec-WebSocket-Extensions value

	// Headers holds the raw header lines, each with its line end: from
	// after the request line to before the empty line.
	Headers []byte

	protocolsRepeated  bool
	extensionsRepeated bool
}

// Header returns the trimmed value of the first header named name (ASCII
// case-insensitive), or nil when there is none. It does not allocate.
func (r *Request) Header(name string) []byte {
	for h := r.Headers; len(h) > 0; {
		var n, v []byte
		n, v, h = nextHeader(h)
		if foldEqual(n, name) {
			return v
		}
	}
	return nil
}

// VisitHeaders calls fn with the name and trimmed value of each header
// line in order, until fn returns false. It does not allocate.
func (r *Request) VisitHeaders(fn func(name, value []byte) bool) {
	for h := r.Headers; len(h) > 0; {
		var n, v []byte
		n, v, h = nextHeader(h)
		if n != nil && !fn(n, v) {
			return
		}
	}
}

// VisitProtocols calls fn for each comma-separated token of every
// Sec-WebSocket-Protocol header, in order, until fn returns false. Empty
// list elements are skipped (RFC 9110 5.6.1). It does not allocate.
func (r *Request) VisitProtocols(fn func(proto []byte) bool) {
	r.visitList("sec-websocket-protocol", r.Protocols, r.protocolsRepeated, fn)
}

// VisitExtensions calls fn for each element of every
// Sec-WebSocket-Extensions header, in order, until fn returns false. An
// element is one extension with its parameters ("permessage-deflate;
// client_max_window_bits"), trimmed; commas inside quoted parameter values
// do not split. It does not allocate.
func (r *Request) VisitExtensions(fn func(ext []byte) bool) {
	r.visitList("sec-websocket-extensions", r.Extensions, r.extensionsRepeated, fn)
}

// KeepAlive reports whether the connection may stay open after the
// response to this (plain HTTP) request, by RFC 9112 9.3: HTTP/1.1 unless a
// Connection header has the token "close", HTTP/1.0 only with the token
// "keep-alive"; and, since a server that answers without reading a body
// cannot find the next request, only when the request has no body (no
// Transfer-Encoding, and no Content-Length other than 0). It does not
// allocate.
func (r *Request) KeepAlive() bool { return r.keepAlive(true) }

// KeepAliveReadingBody is KeepAlive for a server that reads the request's
// body before it answers: RFC 9112 9.3's Connection rules alone, whatever
// the body. It does not allocate.
func (r *Request) KeepAliveReadingBody() bool { return r.keepAlive(false) }

// keepAlive is KeepAlive, or with bodyless false KeepAliveReadingBody.
func (r *Request) keepAlive(bodyless bool) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	keep, closing := r.ProtoMinor >= 1, false
	for h := r.Headers; len(h) > 0; {
		var n, v []byte
		n, v, h = nextHeader(h)
		switch {
		case foldEqual(n, "connection"):
			visitElements(v, func(tok []byte) bool {
				switch {
				case foldEqual(tok, "close"):
					closing = true
				case foldEqual(tok, "keep-alive"):
					keep = true
				}
				return true
			})
		case !bodyless:
		case foldEqual(n, "transfer-encoding"):
			return false
		case foldEqual(n, "content-length"):
			if string(v) != "0" {
				return false
			}
		}
	}
	return keep && !closing
}

// visitList walks the list elements of the header name: only first when the
// header does not repeat, every occurrence in Headers otherwise.
func (r *Request) visitList(name string, first []byte, repeated bool, fn func([]byte) bool) {
	if !repeated {
		visitElements(first, fn)
		return
	}
	for h := r.Headers; len(h) > 0; {
		var n, v []byte
		n, v, h = nextHeader(h)
		if foldEqual(n, name) && !visitElements(v, fn) {
			return
		}
	}
}

// visitElements calls fn for each non-empty, trimmed element of the comma
// list v, treating quoted strings as opaque. It returns false when fn did.
func visitElements(v []byte, fn func([]byte) bool) bool {
	for v != nil {
		var e []byte
		e, v = cutOutside(v, ',')
		if e = trimOWS(e); len(e) > 0 && !fn(e) {
			return false
		}
	}
	return true
}

// cutOutside splits s at its first sep outside a quoted string (a
// backslash inside one escapes the next byte). rest is nil when there is
// none.
func cutOutside(s []byte, sep byte) (before, rest []byte) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, nil
}

// nextHeader splits the first line of h into a name and a trimmed value
// and returns the lines after it. A line without a colon (not possible
// after ParseRequest) yields a nil name.
func nextHeader(h []byte) (name, value, rest []byte) {
	line := h
	if i := bytes.IndexByte(h, '\n'); i >= 0 {
		line, rest = trimCR(h[:i]), h[i+1:]
	}
	c := bytes.IndexByte(line, ':')
	if c < 0 {
		return nil, nil, rest
	}
	return line[:c], trimOWS(line[c+1:]), rest
}

// ParseRequest parses and validates a complete header block, as delimited
// by FindHeaderEnd, into r. It returns nil for a valid RFC 6455 opening
// handshake (section 4.2.1), ErrNotUpgrade for a well-formed request that
// does not ask for an upgrade (r is complete then), or an *UpgradeError
// with the status to answer (r may be partly filled). See the package
// documentation for the rules and their order. ParseRequest does not
// allocate, not even on failure.
func ParseRequest(block []byte, r *Request) error {
	*r = Request{}
	b := block[max(leadingBlank(block), 0):]
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return errBadRequestLine
	}
	if err := r.parseRequestLine(trimCR(b[:i])); err != nil {
		return err
	}
	hdrs, ok := cutFinalBlank(b[i+1:])
	if !ok {
		return errNoEmptyLine
	}
	r.Headers = hdrs
	var s scan
	for h := hdrs; len(h) > 0; {
		j := bytes.IndexByte(h, '\n')
		if err := r.parseHeader(trimCR(h[:j]), &s); err != nil {
			return err
		}
		h = h[j+1:]
	}
	return r.check(&s)
}

// scan counts what the header lines said.
type scan struct {
	hosts, keys, versions int
	upgrade, connUpgrade  bool // Upgrade has "websocket", Connection has "upgrade"
}

// cutFinalBlank returns b without its final empty line, reporting whether
// there was one.
func cutFinalBlank(b []byte) ([]byte, bool) {
	switch {
	case bytes.HasSuffix(b, []byte("\n\r\n")):
		return b[:len(b)-2], true
	case bytes.HasSuffix(b, []byte("\n\n")):
		return b[:len(b)-1], true
	case len(b) == 2 && b[0] == '\r' && b[1] == '\n':
		return b[:0], true
	case len(b) == 1 && b[0] == '\n':
		return b[:0], true
	}
	return nil, false
}

// parseRequestLine parses "METHOD SP request-target SP HTTP/x.y".
func (r *Request) parseRequestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	r.Method, line = line[:sp], line[sp+1:]
	if !isToken(r.Method) {
		return errBadMethod
	}
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 { // no version, or an empty target / a second space
		return errBadRequestLine
	}
	r.Target, line = line[:sp], line[sp+1:]
	if !validTarget(r.Target) {
		return errBadTarget
	}
	r.Path, r.Query = splitTarget(r.Target)
	if bytes.IndexByte(line, ' ') >= 0 {
		return errBadRequestLine
	}
	if len(line) != 8 || string(line[:5]) != "HTTP/" || line[6] != '.' ||
		!isDigit(line[5]) || !isDigit(line[7]) {
		return errBadVersion
	}
	r.ProtoMajor, r.ProtoMinor = int(line[5]-'0'), int(line[7]-'0')
	if r.ProtoMajor < 1 {
		return errOldVersion
	}
	return nil
}

// validTarget reports whether t holds no whitespace or control character.
// Bytes above 0x7E are let through: clients are meant to percent-encode
// them, but refusing them gains nothing.
func validTarget(t []byte) bool {
	for _, c := range t {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// splitTarget returns the path and query of a request-target; for the
// absolute form, the path and query of its URI.
func splitTarget(t []byte) (path, query []byte) {
	if t[0] != '/' {
		if i := bytes.Index(t, []byte("://")); i > 0 && isToken(t[:i]) {
			t = t[i+3:]
			j := bytes.IndexAny(t, "/?")
			if j < 0 {
				return t[len(t):], nil
			}
			t = t[j:]
		}
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		return t[:q], t[q+1:]
	}
	return t, nil
}

// parseHeader validates one header line and records it in r and s.
func (r *Request) parseHeader(line []byte, s *scan) error {
	if len(line) == 0 {
		return errBlankLine
	}
	if line[0] == ' ' || line[0] == '\t' {
		return errObsFold
	}
	c := bytes.IndexByte(line, ':')
	if c < 0 {
		return errBadHeaderLine
	}
	name, value := line[:c], trimOWS(line[c+1:])
	if c > 0 && (name[c-1] == ' ' || name[c-1] == '\t') {
		return errSpaceBeforeColon
	}
	if !isToken(name) {
		return errBadHeaderName
	}
	if !validValue(value) {
		return errBadHeaderValue
	}
	r.record(name, value, s)
	return nil
}

// record notes the headers that the handshake depends on. name is a valid
// token, so OR-ing 0x20 folds exactly the letters the names below hold.
func (r *Request) record(name, value []byte, s *scan) {
	switch len(name) {
	case 4:
		if lowerEqual(name, "host") {
			s.hosts++
			r.Host = first(r.Host, value)
		}
	case 6:
		if lowerEqual(name, "origin") {
			r.Origin = first(r.Origin, value)
		}
	case 7:
		if lowerEqual(name, "upgrade") {
			s.upgrade = s.upgrade || hasToken(value, "websocket")
		}
	case 10:
		if lowerEqual(name, "connection") {
			s.connUpgrade = s.connUpgrade || hasToken(value, "upgrade")
		}
	case 17:
		if lowerEqual(name, "sec-websocket-key") {
			s.keys++
			r.Key = first(r.Key, value)
		}
	case 21:
		if lowerEqual(name, "sec-websocket-version") {
			s.versions++
			r.Version = first(r.Version, value)
		}
	case 22:
		if lowerEqual(name, "sec-websocket-protocol") {
			r.protocolsRepeated = r.Protocols != nil
			r.Protocols = first(r.Protocols, value)
		}
	case 24:
		if lowerEqual(name, "sec-websocket-extensions") {
			r.extensionsRepeated = r.Extensions != nil
			r.Extensions = first(r.Extensions, value)
		}
	}
}

// first returns have, or v when have is nil (v, a slice of a line, is
// never nil, so an empty value still reads as present).
func first(have, v []byte) []byte {
	if have != nil {
		return have
	}
	return v
}

// check applies the rules that depend on the whole header block, in the
// documented order.
func (r *Request) check(s *scan) error {
	http11 := r.ProtoMajor > 1 || r.ProtoMinor >= 1
	switch {
	case s.hosts > 1:
		return errRepeatedHost
	case s.hosts == 0 && http11:
		return errMissingHost
	case !s.upgrade:
		return ErrNotUpgrade
	case !http11:
		return errOldVersion
	case string(r.Method) != "GET":
		return errMethodNotAllowed
	case !s.connUpgrade:
		return errNoConnUpgrade
	case s.keys == 0:
		return errMissingKey
	case s.keys > 1:
		return errRepeatedKey
	case !validKey(r.Key):
		return errBadKey
	case s.versions == 0:
		return errMissingVersion
	case s.versions > 1:
		return errRepeatedVersion
	case string(r.Version) != "13":
		return errUnsupportedWSVer
	}
	return nil
}

// validKey reports whether key is the base64 (standard alphabet, padded)
// encoding of 16 bytes (RFC 6455 4.2.1, item 5).
func validKey(key []byte) bool {
	if len(key) != 24 {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], key)
	return err == nil && n == 16
}
