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
	for _, n := range []int{1024, 16 << 10} {
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
