package codec

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func BenchmarkParseRequest(b *testing.B) {
	block := []byte(reqChromium)
	var r Request
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	for b.Loop() {
		end, _ := FindHeaderEnd(block, 0)
		if err := ParseRequest(block[:end], &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendSwitchingProtocols(b *testing.B) {
	out := make([]byte, 0, 512)
	key := []byte("dGhlIHNhbXBsZSBub25jZQ==")
	b.ReportAllocs()
	for b.Loop() {
		out = AppendSwitchingProtocols(out[:0], key, "chat", nil, nil)
	}
}

func BenchmarkParseHeader(b *testing.B) {
	for _, bc := range []struct {
		name string
		b    []byte
	}{
		{"7bit", []byte{0x81, 0x85, 1, 2, 3, 4}},
		{"16bit", []byte{0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4}},
		{"64bit", []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, _, err := ParseHeader(bc.b)
				if err != nil || CheckHeader(h, 0) != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, n := range []int{64, 4096} {
		payload := bytes.Repeat([]byte{'x'}, n)
		out := make([]byte, 0, MaxHeaderSize+n)
		b.Run(strconv.Itoa(n)+"B", func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				out = AppendFrame(out[:0], ws.OpText, true, payload)
			}
		})
	}
}

// benchTexts are the inputs of the UTF-8 benchmarks.
func benchTexts() []struct {
	name string
	p    []byte
} {
	mixed := strings.Repeat("Hello, wörld! Καλημέρα κόσμε, こんにちは世界 🎮 game state update #42; ", 64)
	return []struct {
		name string
		p    []byte
	}{
		{"ascii-64B", []byte(strings.Repeat("a", 64))},
		{"ascii-16KiB", []byte(strings.Repeat("{\"x\":1,\"y\":2} ", 1200))[:16384]},
		{"mixed-64B", runeCut(mixed, 64)},
		{"mixed-4KiB", runeCut(mixed, 4096)},
	}
}

// runeCut returns s cut to at most n bytes at a character boundary.
func runeCut(s string, n int) []byte { return []byte(truncateUTF8(s, n)) }

// BenchmarkUTF8 compares the validator, whole and in 1 KiB chunks, with
// utf8.Valid on the same bytes.
func BenchmarkUTF8(b *testing.B) {
	for _, tc := range benchTexts() {
		p := tc.p
		b.Run(tc.name+"/utf8.Valid", func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if !utf8.Valid(p) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(tc.name+"/Validator", func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			var v UTF8Validator
			for b.Loop() {
				v.Reset()
				if !v.Write(p) || !v.Complete() {
					b.Fatal("invalid")
				}
			}
		})
		if len(p) < 2048 {
			continue
		}
		b.Run(tc.name+"/Validator-1021B-chunks", func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			var v UTF8Validator
			for b.Loop() {
				v.Reset()
				for q := p; len(q) > 0; q = q[min(1021, len(q)):] {
					v.Write(q[:min(1021, len(q))])
				}
				if !v.Complete() {
					b.Fatal("invalid")
				}
			}
		})
	}
}
