package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/url"

	"github.com/wsloop/wsloop/codec"
)

// Request is the HTTP request seen by the origin check, the upgrade hook
// and the loop's plain-HTTP handler (WithLoopHTTPHandler; an http.Handler
// given to WithHTTPHandler gets an *http.Request instead).
//
// It and every slice it returns are only valid during that call: they alias
// the connection's read buffer. Copy what you keep.
type Request struct {
	srv         *Server
	r           *codec.Request
	remote      net.Addr
	tls         *tlsState
	subprotocol string
	respHeaders []HeaderField
	hr          *http.Request // the net/http request, for an upgrade through ServeHTTP
}

// Server returns the server handling the request, for an HTTP handler
// that reports on it (Stats, Connections, RoomLen).
func (r *Request) Server() *Server { return r.srv }

// Method returns the request method.
func (r *Request) Method() []byte { return r.r.Method }

// Path returns the path of the request target, without the query.
func (r *Request) Path() []byte { return r.r.Path }

// Query returns the raw query of the request target, without the '?'.
func (r *Request) Query() []byte { return r.r.Query }

// QueryValue returns the first value of the query parameter name (matched
// as sent, not percent-decoded), its value percent-decoded ("+" is a
// space, as in a form), or "" when there is
// none or it does not decode: a token in the URL, say, read in the
// upgrade hook (browsers cannot set headers on a WebSocket request). It
// allocates the value it returns.
func (r *Request) QueryValue(name string) string {
	for q := r.r.Query; len(q) > 0; {
		var pair []byte
		pair, q, _ = bytes.Cut(q, []byte{'&'})
		k, v, _ := bytes.Cut(pair, []byte{'='})
		if string(k) != name {
			continue
		}
		s, err := url.QueryUnescape(string(v))
		if err != nil {
			return ""
		}
		return s
	}
	return ""
}

// Host returns the Host header.
func (r *Request) Host() []byte { return r.r.Host }

// Origin returns the Origin header, or nil.
func (r *Request) Origin() []byte { return r.r.Origin }

// Header returns the first value of the named header (case-insensitive),
// or nil.
func (r *Request) Header(name string) []byte { return r.r.Header(name) }

// VisitHeaders calls fn for every header line in order until it returns
// false.
func (r *Request) VisitHeaders(fn func(name, value []byte) bool) { r.r.VisitHeaders(fn) }

// RemoteAddr returns the client's address.
func (r *Request) RemoteAddr() net.Addr { return r.remote }

// Subprotocol returns the subprotocol selected for this upgrade ("" when
// none). Valid in the upgrade hook.
func (r *Request) Subprotocol() string { return r.subprotocol }

// AddResponseHeader adds a header line to the 101 response (from the
// upgrade hook) or to the loop's plain-HTTP response. Lines with a name that is not
// a token or a value holding CR or LF are dropped.
func (r *Request) AddResponseHeader(name, value string) {
	r.respHeaders = append(r.respHeaders, HeaderField{Name: name, Value: value})
}

// TLS returns the TLS connection's state, as net/http's Request.TLS does:
// version, cipher suite, the negotiated ALPN protocol, the server name
// the client asked for (SNI), and the client's certificates when the
// config asks for them (ClientAuth). Nil without TLS.
func (r *Request) TLS() *tls.ConnectionState {
	if r.hr != nil {
		return r.hr.TLS
	}
	return r.tls.state()
}

// HTTPRequest returns net/http's request for an upgrade that came through
// ServeHTTP (a server mounted on net/http), with the context its middleware
// set; nil for a request on wsloop's own listener. The hooks run on
// net/http's goroutine then.
func (r *Request) HTTPRequest() *http.Request { return r.hr }

// Context returns net/http's request context for an upgrade through
// ServeHTTP, with the values middleware put in it (an authenticated user,
// a trace), and context.Background() on wsloop's own listener.
func (r *Request) Context() context.Context {
	if r.hr != nil {
		return r.hr.Context()
	}
	return context.Background()
}

func (r *Request) reset(req *codec.Request, remote net.Addr, st *tlsState) {
	r.r, r.remote, r.tls, r.subprotocol, r.hr = req, remote, st, "", nil
	clear(r.respHeaders)
	r.respHeaders = r.respHeaders[:0]
}
