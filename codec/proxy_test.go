package codec

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), proxyV2Sig...)
	b = append(b, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

func v2TCP4(src, dst [4]byte, sp, dp uint16, tlv []byte) []byte {
	body := append(append(src[:], dst[:]...), 0, 0, 0, 0)
	binary.BigEndian.PutUint16(body[8:], sp)
	binary.BigEndian.PutUint16(body[10:], dp)
	return v2(1, 0x11, append(body, tlv...))
}

func TestParseProxyHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	v6body := make([]byte, 36)
	copy(v6body, netip.MustParseAddr("2001:db8::1").AsSlice())
	copy(v6body[16:], netip.MustParseAddr("2001:db8::2").AsSlice())
	binary.BigEndian.PutUint16(v6body[32:], 40000)
	binary.BigEndian.PutUint16(v6body[34:], 443)
	good := []struct {
		name string
		in   string
		want ProxyHeader
	}{
		{"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /", ProxyHeader{Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.2:443")}},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", ProxyHeader{Source: ap("[2001:db8::1]:1"), Dest: ap("[2001:db8::2]:65535")}},
		{"v1 unknown", "PROXY UNKNOWN ffff::1 whatever\r\n", ProxyHeader{Local: true}},
		{"v1 unknown bare", "PROXY UNKNOWN\r\n", ProxyHeader{Local: true}},
		{"v2 tcp4", string(v2TCP4([4]byte{203, 0, 113, 7}, [4]byte{10, 0, 0, 1}, 51000, 443, nil)), ProxyHeader{Source: ap("203.0.113.7:51000"), Dest: ap("10.0.0.1:443")}},
		{"v2 tcp4 with TLVs", string(v2TCP4([4]byte{203, 0, 113, 7}, [4]byte{10, 0, 0, 1}, 51000, 443, []byte{0x04, 0, 3, 'a', 'b', 'c', 0x01, 0, 2, 'h', '2'})), ProxyHeader{Source: ap("203.0.113.7:51000"), Dest: ap("10.0.0.1:443")}},
		{"v2 tcp6", string(v2(1, 0x21, v6body)), ProxyHeader{Source: ap("[2001:db8::1]:40000"), Dest: ap("[2001:db8::2]:443")}},
		{"v2 local", string(v2(0, 0x00, nil)), ProxyHeader{Local: true}},
		{"v2 unix", string(v2(1, 0x31, make([]byte, 216))), ProxyHeader{Local: true}},
	}
	for _, tc := range good {
		h, n, err := ParseProxyHeader([]byte(tc.in))
		if err != nil || h != tc.want || n == 0 {
			t.Errorf("%s: %+v, %d, %v; want %+v", tc.name, h, n, err, tc.want)
			continue
		}
		// Every prefix is "not yet", never an error or a header.
		full := []byte(tc.in)[:n]
		for k := range n {
			if h, m, err := ParseProxyHeader(full[:k]); err != nil || m != 0 || h != (ProxyHeader{}) {
				t.Errorf("%s: prefix of %d bytes: %+v %d %v", tc.name, k, h, m, err)
				break
			}
		}
	}
	bad := map[string]string{
		"not proxy":          "GET / HTTP/1.1\r\n",
		"v1 bad proto":       "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"v1 family mismatch": "PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
		"v1 port too big":    "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"v1 port sign":       "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
		"v1 leading zero":    "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"v1 extra field":     "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"v1 missing field":   "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"v1 bare LF":         "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"v1 too long":        "PROXY TCP4 " + string(make([]byte, 120)),
		"v2 version 1":       string(v2(1, 0x11, make([]byte, 12)))[:12] + "\x11\x11\x00\x0c" + string(make([]byte, 12)),
		"v2 command 2":       string(v2(2, 0x11, make([]byte, 12))),
		"v2 short ipv4":      string(v2(1, 0x11, make([]byte, 8))),
		"v2 short ipv6":      string(v2(1, 0x21, make([]byte, 20))),
		"v2 bad family":      string(v2(1, 0x41, make([]byte, 12))),
	}
	for name, in := range bad {
		if _, _, err := ParseProxyHeader([]byte(in)); !errors.Is(err, ErrProxyHeader) {
			t.Errorf("%s: %v, want ErrProxyHeader", name, err)
		}
	}
}

func FuzzParseProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2TCP4([4]byte{1, 2, 3, 4}, [4]byte{5, 6, 7, 8}, 1, 2, []byte{1, 0, 1, 'x'}))
	f.Add(v2(0, 0, nil))
	f.Add(v2(1, 0x21, make([]byte, 36)))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseProxyHeader(b)
		switch {
		case err != nil:
			if n != 0 || h != (ProxyHeader{}) {
				t.Fatalf("error %v with n=%d h=%+v", err, n, h)
			}
		case n > 0:
			if n > len(b) || n > MaxProxyHeader {
				t.Fatalf("n=%d of %d bytes", n, len(b))
			}
			// The header's own bytes parse the same without what follows.
			h2, n2, err2 := ParseProxyHeader(b[:n])
			if err2 != nil || n2 != n || h2 != h {
				t.Fatalf("alone: %+v %d %v; with the rest: %+v %d", h2, n2, err2, h, n)
			}
			if !h.Local && (!h.Source.IsValid() || !h.Dest.IsValid()) {
				t.Fatalf("invalid addresses in %+v", h)
			}
		}
	})
}
