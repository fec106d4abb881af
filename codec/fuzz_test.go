package codec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// aliases reports whether f lies within block (cap(block) == len(block)).
func aliases(block, f []byte) bool {
	if f == nil {
		return true
	}
	off := cap(block) - cap(f)
	return off >= 0 && off+len(f) <= len(block) && (len(f) == 0 || &block[off] == &f[0])
}

func FuzzParseRequest(f *testing.F) {
	for _, c := range realClients {
		f.Add([]byte(c.req))
	}
	for _, tc := range requestCases[:8] {
		f.Add([]byte(tc.block))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end, next := FindHeaderEnd(data, 0)
		var r Request
		if end == 0 {
			if next < len(data)-2 || next > len(data) {
				t.Fatalf("next = %d for %d bytes", next, len(data))
			}
			_ = ParseRequest(data, &r) // must not panic
			return
		}
		if len(data) <= 2048 {
			byteAtATime(t, string(data), end)
		}
		block := data[:end:end]
		err := ParseRequest(block, &r)
		var ue *UpgradeError
		if err != nil && (!errors.As(err, &ue) || (ue.Status != 400 && ue.Status != 405 && ue.Status != 426)) {
			t.Fatalf("error %v", err)
		}
		for _, fld := range [][]byte{r.Method, r.Target, r.Path, r.Query, r.Host, r.Key, r.Version,
			r.Origin, r.Protocols, r.Extensions, r.Headers} {
			if !aliases(block, fld) {
				t.Fatalf("field %q does not alias the block", fld)
			}
		}
		if err == nil || err == ErrNotUpgrade {
			checkAccepted(t, &r, err == nil)
		}
	})
}

// checkAccepted checks a request that ParseRequest accepted against the
// rules, reading the headers back through Header and VisitHeaders.
func checkAccepted(t *testing.T, r *Request, upgrade bool) {
	if !isToken(r.Method) || len(r.Target) == 0 || r.ProtoMajor < 1 {
		t.Fatalf("accepted request line %q %q %d.%d", r.Method, r.Target, r.ProtoMajor, r.ProtoMinor)
	}
	hosts, keys, versions, ws := 0, 0, 0, false
	r.VisitHeaders(func(name, value []byte) bool {
		if !isToken(name) || !validValue(value) || !bytes.Equal(value, trimOWS(value)) {
			t.Fatalf("accepted header %q: %q", name, value)
		}
		switch strings.ToLower(string(name)) {
		case "host":
			hosts++
		case "sec-websocket-key":
			keys++
		case "sec-websocket-version":
			versions++
		case "upgrade":
			ws = ws || hasToken(value, "websocket")
		}
		return true
	})
	if hosts > 1 || (hosts == 0 && (r.ProtoMajor > 1 || r.ProtoMinor > 0)) || ws != upgrade {
		t.Fatalf("accepted %d Host headers, upgrade %v", hosts, ws)
	}
	if !upgrade {
		return
	}
	if string(r.Method) != "GET" || keys != 1 || versions != 1 || !validKey(r.Key) ||
		string(r.Version) != "13" || !hasToken(r.Header("Connection"), "upgrade") && !anyConnUpgrade(r) {
		t.Fatalf("accepted upgrade %q key %q version %q", r.Method, r.Key, r.Version)
	}
	if !bytes.Equal(r.Header("host"), r.Host) || !bytes.Equal(r.Header("SEC-WEBSOCKET-KEY"), r.Key) {
		t.Fatalf("Header disagrees with the fields")
	}
}

func anyConnUpgrade(r *Request) (found bool) {
	r.VisitHeaders(func(name, value []byte) bool {
		found = foldEqual(name, "connection") && hasToken(value, "upgrade")
		return !found
	})
	return found
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range [][]byte{
		{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'},
		{0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4},
		{0x02, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9},
		{0x88, 0x02, 0x03, 0xE8},
		{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1},
		{0xF9, 0x7D},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHeader(b)
		oracle, oerr := ws.ReadHeader(bytes.NewReader(b))
		switch {
		case err == ErrLengthMSB:
			// The oracle reads the mask with the length: give it the bytes.
			_, oerr = ws.ReadHeader(bytes.NewReader(append(b[:10:10], 0, 0, 0, 0)))
			if oerr != ws.ErrHeaderLengthMSB || n != 0 {
				t.Fatalf("ErrLengthMSB, oracle says %v", oerr)
			}
			return
		case err != nil:
			t.Fatalf("unexpected error %v", err)
		case n == 0:
			if oerr == nil || h != (ws.Header{}) {
				t.Fatalf("incomplete, but the oracle read %+v", oracle)
			}
			return
		case oerr != nil || h != oracle:
			t.Fatalf("ParseHeader = %+v, oracle %+v, %v", h, oracle, oerr)
		case n < 2 || n > MaxHeaderSize || n > len(b):
			t.Fatalf("n = %d", n)
		}
		enc := AppendHeader(nil, h)
		h2, n2, err := ParseHeader(enc)
		if err != nil || n2 != len(enc) || h2 != h || len(enc) != HeaderLen(h.Length, h.Masked) || len(enc) > n {
			t.Fatalf("re-encoding %+v gives %x: %+v, %d, %v", h, enc, h2, n2, err)
		}
		_ = CheckHeader(h, byte(n)) // must not panic
	})
}

func FuzzUTF8Validator(f *testing.F) {
	for _, s := range []string{"", "hello", "κόσμε", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82\xacb", "\xc0\xaf"} {
		f.Add([]byte(s), uint16(1), uint16(2))
	}
	f.Fuzz(func(t *testing.T, p []byte, i, j uint16) {
		a, b := int(i)%(len(p)+1), int(j)%(len(p)+1)
		a, b = min(a, b), max(a, b)
		checkSplit(t, p, p[:a], p[a:b], p[b:])
		checkSplit(t, p, p)
		if utf8.Valid(p) != func() bool { var v UTF8Validator; return v.Write(p) && v.Complete() }() {
			t.Fatal("disagrees with utf8.Valid")
		}
	})
}
