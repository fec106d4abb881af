package codec

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseDeflateOffer(t *testing.T) {
	cases := []struct {
		elem string
		want DeflateOffer
		ok   bool
		err  error
	}{
		{"permessage-deflate", DeflateOffer{}, true, nil},
		{"PERMESSAGE-DEFLATE", DeflateOffer{}, true, nil},
		{"permessage-deflate; client_max_window_bits", DeflateOffer{ClientMaxWindowBits: 1}, true, nil},
		{"permessage-deflate;client_max_window_bits=8", DeflateOffer{ClientMaxWindowBits: 8}, true, nil},
		{`permessage-deflate; client_max_window_bits="15"`, DeflateOffer{ClientMaxWindowBits: 15}, true, nil},
		{"permessage-deflate; server_max_window_bits=12; server_no_context_takeover; client_no_context_takeover",
			DeflateOffer{ServerMaxWindowBits: 12, ServerNoContextTakeover: true, ClientNoContextTakeover: true}, true, nil},
		{"permessage-deflate \t; server_max_window_bits = 9", DeflateOffer{ServerMaxWindowBits: 9}, true, nil},
		{"x-webkit-deflate-frame", DeflateOffer{}, false, nil},
		{"permessage-deflate-x", DeflateOffer{}, false, nil},
		{"x-other; a=\"unterminated", DeflateOffer{}, false, nil}, // not ours to judge
		// declined
		{"permessage-deflate; server_max_window_bits", DeflateOffer{}, false, nil},
		{"permessage-deflate; server_max_window_bits=7", DeflateOffer{}, false, nil},
		{"permessage-deflate; server_max_window_bits=16", DeflateOffer{}, false, nil},
		{"permessage-deflate; server_max_window_bits=08", DeflateOffer{}, false, nil},
		{"permessage-deflate; server_max_window_bits=+9", DeflateOffer{}, false, nil},
		{`permessage-deflate; server_max_window_bits="1\0"`, DeflateOffer{}, false, nil},
		{"permessage-deflate; client_max_window_bits=", DeflateOffer{}, false, ErrBadExtension},
		{"permessage-deflate; client_max_window_bits=abc", DeflateOffer{}, false, nil},
		{"permessage-deflate; server_no_context_takeover=true", DeflateOffer{}, false, nil},
		{`permessage-deflate; client_no_context_takeover=""`, DeflateOffer{}, false, nil},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", DeflateOffer{}, false, nil},
		{"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", DeflateOffer{}, false, nil},
		{"permessage-deflate; client_max_window_bits; client_max_window_bits", DeflateOffer{}, false, nil},
		{"permessage-deflate; mystery", DeflateOffer{}, false, nil},
		// malformed
		{"permessage-deflate;", DeflateOffer{}, false, ErrBadExtension},
		{"permessage-deflate; ; client_max_window_bits", DeflateOffer{}, false, ErrBadExtension},
		{"permessage-deflate; =9", DeflateOffer{}, false, ErrBadExtension},
		{"permessage-deflate; a b", DeflateOffer{}, false, ErrBadExtension},
		{`permessage-deflate; server_max_window_bits="10`, DeflateOffer{}, false, ErrBadExtension},
		{`permessage-deflate; server_max_window_bits="1"0"`, DeflateOffer{}, false, ErrBadExtension},
		{"permessage-deflate; server_max_window_bits=1 0", DeflateOffer{}, false, ErrBadExtension},
	}
	for _, tc := range cases {
		got, ok, err := ParseDeflateOffer([]byte(tc.elem))
		if got != tc.want || ok != tc.ok || err != tc.err {
			t.Errorf("%q: got %+v %v %v, want %+v %v %v", tc.elem, got, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

func TestDeflateAccept(t *testing.T) {
	takeover := func(bits uint8) DeflatePolicy {
		return DeflatePolicy{ClientContextTakeover: true, ClientMaxWindowBits: bits}
	}
	const both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	cases := []struct {
		pol  DeflatePolicy
		elem string
		want string
	}{
		{DeflatePolicy{}, "permessage-deflate", both},
		{DeflatePolicy{}, "permessage-deflate; client_max_window_bits", both},
		{DeflatePolicy{}, "permessage-deflate; server_max_window_bits=8", both + "; server_max_window_bits=8"},
		{DeflatePolicy{}, "permessage-deflate; server_max_window_bits=15", both + "; server_max_window_bits=15"},
		{takeover(15), "permessage-deflate", "permessage-deflate; server_no_context_takeover"},
		{takeover(15), "permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover"},
		{takeover(15), "permessage-deflate; client_max_window_bits=11", "permessage-deflate; server_no_context_takeover; client_max_window_bits=11"},
		{takeover(12), "permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"},
		{takeover(12), "permessage-deflate; client_max_window_bits=9", "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"},
		{takeover(12), "permessage-deflate", both}, // cannot bound the client's window: no takeover
		{takeover(12), "permessage-deflate; client_no_context_takeover", both},
		{DeflatePolicy{ServerContextTakeover: true}, "permessage-deflate", "permessage-deflate; client_no_context_takeover"},
		{DeflatePolicy{ServerContextTakeover: true}, "permessage-deflate; server_no_context_takeover", both},
		{DeflatePolicy{ServerContextTakeover: true}, "permessage-deflate; server_max_window_bits=10", both + "; server_max_window_bits=10"},
	}
	for _, tc := range cases {
		o, ok, err := ParseDeflateOffer([]byte(tc.elem))
		if !ok || err != nil {
			t.Fatalf("%q: %v %v", tc.elem, ok, err)
		}
		p := tc.pol.Accept(o)
		got := string(AppendDeflateResponse(nil, p))
		if got != tc.want {
			t.Errorf("%+v %q:\n got %s\nwant %s", tc.pol, tc.elem, got, tc.want)
		}
		// The response is itself a well-formed element with legal values.
		if _, ok, err := ParseDeflateOffer([]byte(got)); !ok || err != nil {
			t.Errorf("response %q does not parse: %v %v", got, ok, err)
		}
	}
}

// inflateStd decompresses a permessage-deflate payload with the standard
// library, independently of Inflater.
func inflateStd(t testing.TB, z, dict []byte) []byte {
	t.Helper()
	r := flate.NewReaderDict(io.MultiReader(bytes.NewReader(z), strings.NewReader(deflateTail)), dict)
	p, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflating: %v", err)
	}
	return p
}

func testMessages() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	for _, n := range []int{0, 1, 100, 4096, 70000, 1 << 20} {
		text := make([]byte, 0, n)
		for len(text) < n {
			text = fmt.Appendf(text, `{"id":%d,"name":"user-%d"},`, r.IntN(1000), r.IntN(50))
		}
		noise := make([]byte, n)
		for i := range noise {
			noise[i] = byte(r.Uint32())
		}
		msgs = append(msgs, text[:n], noise)
	}
	return msgs
}

// TestDeflateRoundTrip: what Deflater writes, at every level and window,
// the standard library inflates back, and Inflater inflates what the
// standard library writes.
func TestDeflateRoundTrip(t *testing.T) {
	inf := NewInflater()
	for _, level := range []int{1, 6, 9} {
		d := NewDeflater(level)
		for _, window := range []uint8{8, 9, 12, 15} {
			for _, m := range testMessages() {
				z := d.Append(nil, m, window, nil)
				if got := inflateStd(t, z, nil); !bytes.Equal(got, m) {
					t.Fatalf("level %d window %d: %d bytes came back as %d", level, window, len(m), len(got))
				}
				inf.Reset(z, nil)
				got, err := io.ReadAll(inf)
				if err != nil || !bytes.Equal(got, m) {
					t.Fatalf("Inflater: level %d window %d: %v", level, window, err)
				}
			}
		}
	}
	for _, m := range testMessages() {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.DefaultCompression)
		_, _ = w.Write(m)
		_ = w.Flush()
		inf.Reset(bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff}), nil)
		got, err := io.ReadAll(inf)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("Inflater on compress/flate output, %d bytes: %v", len(m), err)
		}
	}
}

// TestDeflateTakeover: with context takeover, a message may refer to the
// history, and only a reader given that history reads it back.
func TestDeflateTakeover(t *testing.T) {
	hist := bytes.Repeat([]byte(`{"event":"score","team":"red","points":`), 100)
	msg := []byte(`{"event":"score","team":"red","points":3}`)
	for _, level := range []int{1, 6} {
		d := NewDeflater(level)
		plain := d.Append(nil, msg, 15, nil)
		z := d.Append(nil, msg, 15, hist)
		if len(z) >= len(plain) {
			t.Errorf("level %d: %d bytes with history, %d without: history unused", level, len(z), len(plain))
		}
		if got := inflateStd(t, z, hist); !bytes.Equal(got, msg) {
			t.Fatalf("level %d: %q", level, got)
		}
		inf := NewInflater()
		inf.Reset(z, hist)
		if got, err := io.ReadAll(inf); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("level %d: Inflater with history: %q %v", level, got, err)
		}
	}
}

func TestInflateInvalid(t *testing.T) {
	inf := NewInflater()
	for _, z := range [][]byte{{0xff, 0xff, 0xff}, {0x07}, {0x02, 0xff}} {
		inf.Reset(z, nil)
		if _, err := io.ReadAll(inf); err != ErrInvalidDeflate {
			t.Errorf("% x: %v, want ErrInvalidDeflate", z, err)
		}
	}
}

func TestDeflateNoAllocs(t *testing.T) {
	elem := []byte("permessage-deflate; client_max_window_bits; server_max_window_bits=12")
	var o DeflateOffer
	assertNoAllocs(t, "ParseDeflateOffer", func() { o, _, _ = ParseDeflateOffer(elem) })
	out := make([]byte, 0, 256)
	assertNoAllocs(t, "AppendDeflateResponse", func() { out = AppendDeflateResponse(out[:0], DeflatePolicy{}.Accept(o)) })
	if raceEnabled {
		t.Skip("klauspost's encoder pools its buffers, which allocates under -race; .ci/run runs this test without it")
	}
	msg := testMessages()[6] // 4 KiB of JSON
	d := NewDeflater(1)
	buf := d.Append(make([]byte, 0, 8192), msg, 15, nil)
	assertNoAllocs(t, "Deflater.Append", func() { buf = d.Append(buf[:0], msg, 15, nil) })
	if stdFlate {
		// compress/flate's Reset drops its Huffman decoders, whose tables
		// for codes over 9 bits are allocated again for every message that
		// has such codes (4 allocations for this one); klauspost's keeps them.
		t.Skip("the Inflater allocates with -tags wsloop_stdflate (compress/flate)")
	}
	inf := NewInflater()
	dst := make([]byte, 8192)
	assertNoAllocs(t, "Inflater", func() {
		inf.Reset(buf, nil)
		for {
			if _, err := inf.Read(dst); err != nil {
				break
			}
		}
	})
}

func FuzzParseDeflateOffer(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate", "permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
		`permessage-deflate; client_max_window_bits="12"`, "permessage-deflate; a=\"b;c\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, elem []byte) {
		o, ok, err := ParseDeflateOffer(elem)
		if err != nil && ok {
			t.Fatal("both an offer and an error")
		}
		if !ok {
			return
		}
		for _, pol := range []DeflatePolicy{{}, {ClientContextTakeover: true, ClientMaxWindowBits: 10}, {ServerContextTakeover: true}} {
			resp := AppendDeflateResponse(nil, pol.Accept(o))
			r, ok, err := ParseDeflateOffer(resp)
			if !ok || err != nil {
				t.Fatalf("response %q to %q does not parse", resp, elem)
			}
			if o.ServerNoContextTakeover && !r.ServerNoContextTakeover ||
				o.ServerMaxWindowBits != 0 && (r.ServerMaxWindowBits == 0 || r.ServerMaxWindowBits > o.ServerMaxWindowBits) ||
				o.ClientMaxWindowBits == 0 && r.ClientMaxWindowBits != 0 ||
				o.ClientMaxWindowBits > 1 && r.ClientMaxWindowBits > o.ClientMaxWindowBits {
				t.Fatalf("response %q breaks RFC 7692 7.1 for offer %q", resp, elem)
			}
		}
	})
}

// FuzzInflate feeds arbitrary payloads to the Inflater: errors, never a
// panic, and never more output than asked for.
func FuzzInflate(f *testing.F) {
	d := NewDeflater(1)
	f.Add(d.Append(nil, []byte("hello hello hello"), 15, nil))
	f.Add([]byte{0x00})
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})
	inf := NewInflater()
	buf := make([]byte, 4096)
	f.Fuzz(func(t *testing.T, z []byte) {
		inf.Reset(z, nil)
		total := 0
		for total < 1<<20 {
			n, err := inf.Read(buf)
			total += n
			if err != nil {
				if err != io.EOF && err != ErrInvalidDeflate {
					t.Fatalf("error %v", err)
				}
				return
			}
		}
	})
}
