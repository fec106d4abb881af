package codec

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

var testLengths = []int64{0, 1, 125, 126, 127, 65535, 65536, 1 << 32, 1<<63 - 1}

// randomHeaders returns headers over every opcode, FIN, RSV and mask
// combination and the boundary lengths, plus random ones.
func randomHeaders(rng *rand.Rand, n int) []ws.Header {
	var hs []ws.Header
	for op := range 16 {
		for _, l := range testLengths {
			h := ws.Header{OpCode: ws.OpCode(op), Length: l, Fin: op%2 == 0, Rsv: byte(op % 8), Masked: op%3 == 0}
			if h.Masked {
				h.Mask = [4]byte{byte(op), 2, 3, 4}
			}
			hs = append(hs, h)
		}
	}
	for range n {
		h := ws.Header{
			Fin:    rng.IntN(2) == 0,
			Rsv:    byte(rng.IntN(8)),
			OpCode: ws.OpCode(rng.IntN(16)),
			Masked: rng.IntN(2) == 0,
			Length: int64(rng.Uint64() >> (1 + rng.IntN(63))),
		}
		if h.Masked {
			h.Mask = [4]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		}
		hs = append(hs, h)
	}
	return hs
}

// TestHeaderAgainstGobwas checks the codec against gobwas/ws as an oracle.
func TestHeaderAgainstGobwas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, h := range randomHeaders(rng, 5000) {
		var w bytes.Buffer
		if err := ws.WriteHeader(&w, h); err != nil {
			t.Fatal(err)
		}
		want := w.Bytes()
		got := AppendHeader(nil, h)
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendHeader(%+v) = %x, ws.WriteHeader %x", h, got, want)
		}
		if HeaderLen(h.Length, h.Masked) != len(want) || ws.HeaderSize(h) != len(want) {
			t.Fatalf("HeaderLen(%d, %v) = %d, want %d", h.Length, h.Masked, HeaderLen(h.Length, h.Masked), len(want))
		}
		oracle, err := ws.ReadHeader(bytes.NewReader(want))
		if err != nil {
			t.Fatal(err)
		}
		ph, n, err := ParseHeader(append(want, "payload"...))
		if err != nil || n != len(want) || ph != oracle || ph != h {
			t.Fatalf("ParseHeader(%x) = %+v, %d, %v; ws.ReadHeader %+v", want, ph, n, err, oracle)
		}
		for k := range len(want) {
			if ph, n, err := ParseHeader(want[:k]); n != 0 || err != nil || ph != (ws.Header{}) {
				t.Fatalf("ParseHeader(%x) truncated to %d = %+v, %d, %v", want, k, ph, n, err)
			}
		}
	}
}

func TestParseHeaderNonMinimal(t *testing.T) {
	// RFC 6455 5.2: minimal encoding binds the sender; a receiver accepts others.
	for _, b := range [][]byte{
		{0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4},
		{0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4},
	} {
		h, n, err := ParseHeader(b)
		if err != nil || n != len(b) || h.Length != 5 || h.Mask != [4]byte{1, 2, 3, 4} {
			t.Errorf("ParseHeader(%x) = %+v, %d, %v", b, h, n, err)
		}
	}
}

func TestParseHeaderLengthMSB(t *testing.T) {
	b := []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}
	for _, in := range [][]byte{b, b[:10]} {
		if _, n, err := ParseHeader(in); err != ErrLengthMSB || n != 0 {
			t.Errorf("ParseHeader(%x) = %d, %v, want ErrLengthMSB", in, n, err)
		}
	}
	if _, err := ws.ReadHeader(bytes.NewReader(b)); err != ws.ErrHeaderLengthMSB {
		t.Errorf("oracle disagrees: %v", err)
	}
}

func TestCheckHeader(t *testing.T) {
	ok := ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 10}
	mod := func(f func(*ws.Header)) ws.Header { h := ok; f(&h); return h }
	cases := []struct {
		name       string
		h          ws.Header
		allowedRsv byte
		want       error
	}{
		{"valid masked text frame", ok, 0, nil},
		{"RFC 6455 5.1 unmasked client frame", mod(func(h *ws.Header) { h.Masked = false }), 0, ErrUnmasked},
		{"RFC 6455 5.2 RSV1 without extension", mod(func(h *ws.Header) { h.Rsv = ws.Rsv(true, false, false) }), 0, ErrReservedBits},
		{"RFC 6455 5.2 RSV2 without extension", mod(func(h *ws.Header) { h.Rsv = ws.Rsv(false, true, false) }), 0, ErrReservedBits},
		{"RFC 6455 5.2 RSV3 without extension", mod(func(h *ws.Header) { h.Rsv = ws.Rsv(false, false, true) }), 0, ErrReservedBits},
		{"RFC 7692 6 RSV1 with permessage-deflate", mod(func(h *ws.Header) { h.Rsv = ws.Rsv(true, false, false) }), ws.Rsv(true, false, false), nil},
		{"RFC 6455 5.2 RSV2 with only RSV1 negotiated", mod(func(h *ws.Header) { h.Rsv = ws.Rsv(true, true, false) }), ws.Rsv(true, false, false), ErrReservedBits},
		{"RFC 6455 5.2 reserved data opcode 0x3", mod(func(h *ws.Header) { h.OpCode = 3 }), 0, ErrReservedOpcode},
		{"RFC 6455 5.2 reserved data opcode 0x7", mod(func(h *ws.Header) { h.OpCode = 7 }), 0, ErrReservedOpcode},
		{"RFC 6455 5.2 reserved control opcode 0xB", mod(func(h *ws.Header) { h.OpCode = 0xB }), 0, ErrReservedOpcode},
		{"RFC 6455 5.2 reserved control opcode 0xF", mod(func(h *ws.Header) { h.OpCode = 0xF }), 0, ErrReservedOpcode},
		{"RFC 6455 5.4 continuation frame", mod(func(h *ws.Header) { h.OpCode = ws.OpContinuation; h.Fin = false }), 0, nil},
		{"RFC 6455 5.4 data frame not final", mod(func(h *ws.Header) { h.Fin = false; h.Length = 1 << 40 }), 0, nil},
		{"RFC 6455 5.5 fragmented ping", mod(func(h *ws.Header) { h.OpCode = ws.OpPing; h.Fin = false }), 0, ErrFragmentedControl},
		{"RFC 6455 5.5 fragmented close", mod(func(h *ws.Header) { h.OpCode = ws.OpClose; h.Fin = false }), 0, ErrFragmentedControl},
		{"RFC 6455 5.5 pong of 125 bytes", mod(func(h *ws.Header) { h.OpCode = ws.OpPong; h.Length = 125 }), 0, nil},
		{"RFC 6455 5.5 ping of 126 bytes", mod(func(h *ws.Header) { h.OpCode = ws.OpPing; h.Length = 126 }), 0, ErrControlTooLong},
		{"RFC 6455 5.5 close of 126 bytes", mod(func(h *ws.Header) { h.OpCode = ws.OpClose; h.Length = 126 }), 0, ErrControlTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckHeader(tc.h, tc.allowedRsv); err != tc.want {
				t.Fatalf("CheckHeader(%+v, %d) = %v, want %v", tc.h, tc.allowedRsv, err, tc.want)
			}
			if tc.want != nil && CloseCodeOf(tc.want) != ws.StatusProtocolError {
				t.Fatalf("close code %d", CloseCodeOf(tc.want))
			}
		})
	}
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte{'a'}, n)
		got := AppendFrame([]byte("x"), ws.OpBinary, true, p)
		var w bytes.Buffer
		w.WriteString("x")
		if err := ws.WriteFrame(&w, ws.NewBinaryFrame(p)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.Bytes()) {
			t.Fatalf("AppendFrame of %d bytes differs from ws.WriteFrame", n)
		}
		if s := AppendFrameString([]byte("x"), ws.OpBinary, true, string(p)); !bytes.Equal(s, got) {
			t.Fatalf("AppendFrameString of %d bytes differs from AppendFrame", n)
		}
	}
	if got := AppendFrame(nil, ws.OpText, false, []byte("hi")); !bytes.Equal(got, []byte{0x01, 0x02, 'h', 'i'}) {
		t.Fatalf("non-final text frame %x", got)
	}
}

func TestAppendCloseFrame(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes; 123 is inside a character
	cases := []struct {
		name   string
		code   ws.StatusCode
		reason string
		want   []byte // the payload
	}{
		{"RFC 6455 5.5.1 code 0 means an empty body", 0, "ignored", nil},
		{"RFC 6455 7.4.1 1005 is never sent", ws.StatusNoStatusRcvd, "", nil},
		{"code only", ws.StatusNormalClosure, "", []byte{0x03, 0xE8}},
		{"code and reason", ws.StatusGoingAway, "bye", []byte{0x03, 0xE9, 'b', 'y', 'e'}},
		{"RFC 6455 5.5 reason cut at 123 bytes", 4000, strings.Repeat("a", 200), append([]byte{0x0F, 0xA0}, strings.Repeat("a", 123)...)},
		{"RFC 6455 5.5.1 reason cut at a UTF-8 boundary", 4000, long, append([]byte{0x0F, 0xA0}, long[:122]...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := AppendCloseFrame(nil, tc.code, tc.reason)
			want := append([]byte{0x88, byte(len(tc.want))}, tc.want...)
			if !bytes.Equal(f, want) {
				t.Fatalf("AppendCloseFrame = %x, want %x", f, want)
			}
			if len(f)-2 > 125 || (len(f) > 4 && !utf8.Valid(f[4:])) {
				t.Fatalf("invalid close payload %x", f[2:])
			}
			if code, _, err := ParseClosePayload(f[2:]); err != nil || (tc.want != nil && code != tc.code) {
				t.Fatalf("ParseClosePayload = %d, %v", code, err)
			}
		})
	}
}

func TestAppendHeaderNegativeLength(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("AppendHeader accepted a negative length")
		}
	}()
	AppendHeader(nil, ws.Header{Length: -1})
}
