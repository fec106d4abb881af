package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
)

// The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer that
// passes TCP through (HAProxy in TCP mode, AWS NLB) opens each connection
// with a header naming the client's address.
//
//	v1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" (at most 107 bytes)
//	v2: a 12-byte signature, version and command, family and protocol, a
//	    16-bit length, the addresses, then TLVs (skipped)

// ProxyHeader is a parsed PROXY protocol header.
type ProxyHeader struct {
	// Local is true when the header names no client: a v2 LOCAL command
	// (the balancer's own health check) or v1 "UNKNOWN", or a v2 family
	// other than TCP over IPv4 or IPv6. The socket's own addresses apply.
	Local bool
	// Source and Dest are the client's address and the one it connected
	// to, when Local is false.
	Source, Dest netip.AddrPort
}

// ErrProxyHeader is returned (wrapped) for a malformed PROXY header.
var ErrProxyHeader = errors.New("malformed PROXY protocol header")

// MaxProxyHeader bounds what ParseProxyHeader waits for: a v2 header with
// 4 KiB of TLVs, more than any balancer sends.
const MaxProxyHeader = 16 + 4096

var (
	proxyV1Prefix = []byte("PROXY ")
	proxyV2Sig    = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// LooksLikeProxyHeader reports whether b starts like a PROXY header (v1 or
// v2), and whether that is already certain (false: b is too short to
// tell, but may become one).
func LooksLikeProxyHeader(b []byte) (proxy, sure bool) {
	for _, sig := range [][]byte{proxyV1Prefix, proxyV2Sig} {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n == len(sig) {
				return true, true
			}
			return true, false
		}
	}
	return false, true
}

func proxyErr(reason string) error { return &proxyError{reason} }

type proxyError struct{ reason string }

func (e *proxyError) Error() string { return "codec: " + ErrProxyHeader.Error() + ": " + e.reason }
func (e *proxyError) Unwrap() error { return ErrProxyHeader }

// ParseProxyHeader parses the PROXY header at the start of b. It returns
// the header and its length, or n == 0 and no error when b holds only the
// beginning of one, or an error wrapping ErrProxyHeader. It runs once per
// connection.
func ParseProxyHeader(b []byte) (h ProxyHeader, n int, err error) {
	proxy, sure := LooksLikeProxyHeader(b)
	switch {
	case !proxy:
		return h, 0, proxyErr("no PROXY signature")
	case !sure:
		return h, 0, nil
	case b[0] == 'P':
		return parseProxyV1(b)
	}
	return parseProxyV2(b)
}

func parseProxyV1(b []byte) (h ProxyHeader, n int, err error) {
	const max = 107
	end := bytes.Index(b[:min(len(b), max)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= max {
			return h, 0, proxyErr("v1 line longer than 107 bytes")
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return h, 0, proxyErr("v1 line not ended by CRLF")
		}
		return h, 0, nil
	}
	line := b[len(proxyV1Prefix):end]
	n = end + 2
	var f [5][]byte
	k := 0
	for len(line) > 0 && k < 5 {
		i := bytes.IndexByte(line, ' ')
		if i < 0 {
			f[k], line = line, nil
		} else {
			f[k], line = line[:i], line[i+1:]
		}
		k++
	}
	if k >= 1 && string(f[0]) == "UNKNOWN" {
		return ProxyHeader{Local: true}, n, nil // the rest of the line is to be ignored
	}
	if k != 5 || len(line) != 0 {
		return h, 0, proxyErr("v1 needs a protocol, two addresses and two ports")
	}
	var want4 bool
	switch string(f[0]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return h, 0, proxyErr("v1 protocol is not TCP4, TCP6 or UNKNOWN")
	}
	src, err1 := netip.ParseAddr(string(f[1]))
	dst, err2 := netip.ParseAddr(string(f[2]))
	sp, err3 := parsePort(f[3])
	dp, err4 := parsePort(f[4])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || src.Zone() != "" || dst.Zone() != "" ||
		src.Is4() != want4 || dst.Is4() != want4 {
		return h, 0, proxyErr("v1 addresses or ports do not parse")
	}
	return ProxyHeader{Source: netip.AddrPortFrom(src, sp), Dest: netip.AddrPortFrom(dst, dp)}, n, nil
}

// parsePort accepts 0 to 65535 in decimal, without a sign or leading zero.
func parsePort(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, ErrProxyHeader
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrProxyHeader
		}
	}
	v := 0
	for _, c := range b {
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, ErrProxyHeader
	}
	return uint16(v), nil
}

func parseProxyV2(b []byte) (h ProxyHeader, n int, err error) {
	if len(b) < 16 {
		return h, 0, nil
	}
	verCmd, fam := b[12], b[13]
	if verCmd>>4 != 2 {
		return h, 0, proxyErr("v2 version is not 2")
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if 16+length > MaxProxyHeader {
		return h, 0, proxyErr("v2 header too long")
	}
	if len(b) < 16+length {
		return h, 0, nil
	}
	n = 16 + length
	body := b[16:n]
	switch verCmd & 0xf {
	case 0: // LOCAL: the balancer's own connection; the body is ignored
		return ProxyHeader{Local: true}, n, nil
	case 1: // PROXY
	default:
		return h, 0, proxyErr("v2 command is neither LOCAL nor PROXY")
	}
	alen := 0
	switch fam {
	case 0x11: // TCP over IPv4
		alen = 4
	case 0x21: // TCP over IPv6
		alen = 16
	}
	if alen > 0 {
		if len(body) < 2*alen+4 {
			return h, 0, proxyErr("v2 addresses truncated")
		}
		src, _ := netip.AddrFromSlice(body[:alen])
		dst, _ := netip.AddrFromSlice(body[alen : 2*alen])
		ports := body[2*alen:]
		return ProxyHeader{Source: netip.AddrPortFrom(src, binary.BigEndian.Uint16(ports)),
			Dest: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ports[2:]))}, n, nil
	}
	switch fam {
	case 0x00, 0x12, 0x22, 0x31, 0x32: // UNSPEC, UDP, Unix: no TCP client address to use
		return ProxyHeader{Local: true}, n, nil
	}
	return h, 0, proxyErr("v2 unknown address family or protocol")
}
