package codec

import (
	"bytes"
	stdflate "compress/flate"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
)

// The choice of flate implementation: the standard library's
// compress/flate against github.com/klauspost/compress/flate, as a pooled
// writer at level 1 and as klauspost's stateless encoder (what Deflater
// uses at level 1), on chat-like JSON.
//
//	go test ./codec -run XXX -bench 'Flate' -benchmem

func jsonMessage(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"user":"user-%d","room":"lobby","text":"message number %d","ts":%d},`, i*7919%100000, i%37, i, 1764000000+i*13)
	}
	return b.Bytes()[:n]
}

func BenchmarkFlateCompress(b *testing.B) {
	for _, n := range []int{256, 1024, 16 << 10} {
		msg := jsonMessage(n)
		run := func(name string, compress func(dst []byte) []byte) {
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				var out []byte
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					out = compress(out[:0])
				}
				b.ReportMetric(float64(len(out))/float64(n), "ratio")
			})
		}
		var sw sliceWriter
		std, _ := stdflate.NewWriter(&sw, stdflate.BestSpeed)
		run("std-level1", func(dst []byte) []byte {
			sw.b = dst
			std.Reset(&sw)
			_, _ = std.Write(msg)
			_ = std.Flush()
			return sw.b
		})
		kp, _ := flate.NewWriter(&sw, 1)
		run("klauspost-level1", func(dst []byte) []byte {
			sw.b = dst
			kp.Reset(&sw)
			_, _ = kp.Write(msg)
			_ = kp.Flush()
			return sw.b
		})
		d := NewDeflater(1)
		run("klauspost-stateless", func(dst []byte) []byte { return d.Append(dst, msg, 15, nil) })
		d6 := NewDeflater(6)
		run("klauspost-level6", func(dst []byte) []byte { return d6.Append(dst, msg, 15, nil) })
	}
}

func BenchmarkFlateInflate(b *testing.B) {
	for _, n := range []int{64, 1024, 16 << 10} {
		msg := jsonMessage(n)
		z := NewDeflater(1).Append(nil, msg, 15, nil)
		buf := make([]byte, 4096)
		b.Run(fmt.Sprintf("std/%d", n), func(b *testing.B) {
			var src strings.Reader
			r := stdflate.NewReader(nil)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(string(z) + deflateTail)
				_ = r.(stdflate.Resetter).Reset(&src, nil)
				for {
					if _, err := r.Read(buf); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
		})
		b.Run(fmt.Sprintf("klauspost/%d", n), func(b *testing.B) {
			inf := NewInflater()
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				inf.Reset(z, nil)
				for {
					if _, err := inf.Read(buf); err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
				}
			}
		})
	}
}

// BenchmarkFlateTakeover measures what server context takeover would buy
// on a stream of small chat messages (each 256 B of JSON like its
// neighbours): ratio and time per message without context (what wsloop
// does), with the last 8 KiB of the stream as a dictionary (stateless
// encoder), and with one klauspost writer kept across messages (the
// takeover every peer that offers it implements; it holds 0.5 MB per
// connection).
func BenchmarkFlateTakeover(b *testing.B) {
	stream := jsonMessage(1 << 20)
	const size = 256
	msgs := make([][]byte, 0, len(stream)/size)
	for i := 0; i+size <= len(stream); i += size {
		msgs = append(msgs, stream[i:i+size])
	}
	report := func(b *testing.B, in, out int) {
		b.ReportMetric(float64(out)/float64(in), "ratio")
	}
	b.Run("none", func(b *testing.B) {
		d := NewDeflater(1)
		var buf []byte
		in, out := 0, 0
		for i := 0; b.Loop(); i++ {
			m := msgs[i%len(msgs)]
			buf = d.Append(buf[:0], m, 15, nil)
			in, out = in+len(m), out+len(buf)
		}
		report(b, in, out)
	})
	b.Run("dict-8KiB", func(b *testing.B) {
		d := NewDeflater(1)
		var buf, hist []byte
		in, out := 0, 0
		for i := 0; b.Loop(); i++ {
			m := msgs[i%len(msgs)]
			buf = d.Append(buf[:0], m, 15, hist)
			hist = append(hist, m...)
			if len(hist) > MaxDeflateDict {
				hist = append(hist[:0], hist[len(hist)-MaxDeflateDict:]...)
			}
			in, out = in+len(m), out+len(buf)
		}
		report(b, in, out)
	})
	b.Run("writer-kept", func(b *testing.B) {
		var sw sliceWriter
		w, _ := flate.NewWriter(&sw, 1)
		in, out := 0, 0
		for i := 0; b.Loop(); i++ {
			m := msgs[i%len(msgs)]
			sw.b = sw.b[:0]
			_, _ = w.Write(m)
			_ = w.Flush()
			in, out = in+len(m), out+len(sw.b)-4
		}
		report(b, in, out)
	})
}
