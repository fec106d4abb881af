package engine

import (
	"net"
	"net/netip"

	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
)

// WithProxyProtocol accepts the PROXY protocol (versions 1 and 2, as
// HAProxy, AWS NLB and other L4 balancers send it) from the networks in
// trusted: a socket from there must start with a PROXY header, and
// Conn.RemoteAddr (and Request.RemoteAddr) is then the client it names (a
// LOCAL or UNKNOWN header keeps the socket's own address: a health
// check). A socket from anywhere else is served as usual, unless it starts
// with a PROXY header: then it is closed, since anyone could claim any
// address. A malformed header is closed too, and both count in
// Stats.ProxyRejected. A peer on a Unix socket counts as trusted. The
// header must arrive within the handshake deadline; with WithTLS it comes
// before the TLS handshake, as balancers send it. Off by default.
func WithProxyProtocol(trusted ...netip.Prefix) Option {
	return func(o *options) { o.proxyTrusted = append([]netip.Prefix{}, trusted...) }
}

// trustedProxy reports whether a socket from a is a balancer's.
func (s *Server) trustedProxy(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return true // a Unix socket: only local processes reach it
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, p := range s.opts.proxyTrusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// readProxy reads a trusted balancer's PROXY header, or checks that an
// untrusted peer does not send one, from the socket's first bytes. It
// reports whether to go on with what follows, or to close the socket. On
// the loop.
func (c *Conn) readProxy(raw gnet.Conn) (proceed, refuse bool) {
	avail := raw.InboundBuffered()
	if c.lflags&lfProxyCheck != 0 {
		b, _ := raw.Peek(min(avail, 12))
		proxy, sure := codec.LooksLikeProxyHeader(b)
		switch {
		case proxy && sure:
			c.loop.srv.proxyRejected.Add(1)
			return false, true
		case proxy:
			return false, false // too short to tell: wait
		}
		c.lflags &^= lfProxyCheck
		return true, false
	}
	b, _ := raw.Peek(min(avail, codec.MaxProxyHeader))
	h, n, err := codec.ParseProxyHeader(b)
	if err != nil {
		c.loop.srv.proxyRejected.Add(1)
		return false, true
	}
	if n == 0 {
		return false, false // wait for the rest, within the handshake deadline
	}
	_, _ = raw.Discard(n)
	c.lflags &^= lfProxyWait
	if !h.Local {
		c.remote = net.TCPAddrFromAddrPort(h.Source)
	}
	s := c.loop.srv
	if s.opts.tls != nil {
		s.newTLS(c, raw)
	}
	return raw.InboundBuffered() > 0, false
}
