package wstest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Sections 12 and 13: permessage-deflate. Each case offers compression,
// sends compressed messages cut from a test data set (one after the other,
// wrapping around) and expects each echoed before sending the next. The
// suite sends 1,000 messages per case; WithCompressionCases sets the count.
// The suite's data files (Goethe's Faust, the Lena bitmap, a PDF, a JSON
// and an HTML file) are not shipped here: synthetic stand-ins of the same
// kinds and sizes take their place, so ratios and timings differ from the
// suite's while what is checked (every message echoed intact, the close
// handshake) does not.

// offersFor returns the offers a case makes, in order: none outside
// sections 12 and 13.
func offersFor(id string) []deflateOffer {
	var j int
	switch {
	case strings.HasPrefix(id, "12."):
		return []deflateOffer{defaultOffer}
	case strings.HasPrefix(id, "13.") && len(id) > 4:
		j = int(id[3] - '1')
	}
	if j < 0 || j >= len(deflateParams) || !strings.HasPrefix(id, "13.") {
		return nil
	}
	return deflateParams[j]
}

// deflateParams are the suite's DEFLATE_PARAMS for section 13 (with 9 for
// the 8 of old: zlib refuses to compress with an 8-bit window, and the
// suite moved to 9 in v0.8.2).
var deflateParams = func() [][]deflateOffer {
	offer := func(noTakeover bool, bits int) deflateOffer {
		o := defaultOffer
		o.requestNoContextTakeover, o.requestMaxWindowBits = noTakeover, bits
		return o
	}
	return [][]deflateOffer{
		{offer(false, 0)},
		{offer(true, 0)},
		{offer(false, 9)},
		{offer(false, 15)},
		{offer(true, 9)},
		{offer(true, 15)},
		{offer(true, 9), offer(true, 0), offer(false, 0)},
	}
}()

// compressionSizes is the suite's MSG_SIZES: payload length, case timeout
// in seconds, auto-fragment size (0: one frame).
var compressionSizes = []struct{ size, wait, frag int }{
	{16, 60, 0}, {64, 60, 0}, {256, 120, 0}, {1024, 240, 0}, {4096, 480, 0},
	{8192, 480, 0}, {16384, 480, 0}, {32768, 480, 0}, {65536, 480, 0}, {131072, 480, 0},
	{8192, 480, 256}, {16384, 480, 256}, {32768, 480, 256}, {65536, 480, 256}, {131072, 480, 256},
	{131072, 480, 1024}, {131072, 480, 4096}, {131072, 480, 32768},
}

type dataset struct {
	desc   string
	binary bool
	data   []byte
}

// datasets are the stand-ins for the suite's WS_COMPRESSION_TESTDATA, in
// its order; text ones are ASCII, so any cut of them is valid UTF-8.
func datasets() []dataset {
	return []dataset{
		{"Human readable text, German prose (stand-in for Goethe's Faust I)", true, proseData(300 << 10)},
		{"Bitmap 512x512 grayscale (stand-in for the Lena picture)", true, bitmapData()},
		{"A larger PDF-like file: text objects around incompressible streams", true, pdfData(400 << 10)},
		{"Large JSON data file", false, jsonData(300 << 10)},
		{"Large HTML file", false, htmlData(300 << 10)},
	}
}

func proseData(n int) []byte {
	r := rand.New(rand.NewPCG(12, 1))
	words := strings.Fields("Habe nun ach Philosophie Juristerei und Medizin und leider auch Theologie durchaus studiert " +
		"mit heißem Bemühn da steh ich nun ich armer Tor und bin so klug als wie zuvor heiße Magister heiße Doktor gar " +
		"und ziehe schon an die zehen Jahr herauf herab und quer und krumm meine Schüler an der Nase herum Geist Mephistopheles Gretchen")
	var b bytes.Buffer
	for b.Len() < n {
		line := r.IntN(9) + 4
		for i := 0; i < line; i++ {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString(",\n")
	}
	return b.Bytes()[:n]
}

func bitmapData() []byte {
	r := rand.New(rand.NewPCG(12, 2))
	b := make([]byte, 1078, 1078+512*512)
	copy(b, "BM")
	for y := 0; y < 512; y++ {
		for x := 0; x < 512; x++ {
			v := (x*x+y*y)/2048 + (x*y)/1024 + r.IntN(12)
			b = append(b, byte(v))
		}
	}
	return b
}

func pdfData(n int) []byte {
	r := rand.New(rand.NewPCG(12, 3))
	var b bytes.Buffer
	for obj := 1; b.Len() < n; obj++ {
		fmt.Fprintf(&b, "%d 0 obj\n<< /Type /Page /Parent 2 0 R /Resources << /Font << /F1 %d 0 R >> >> /Length %d >>\nstream\n", obj, obj+1, 4096)
		for i := 0; i < 4096; i++ {
			b.WriteByte(byte(r.Uint32()))
		}
		b.WriteString("\nendstream\nendobj\n")
	}
	return b.Bytes()[:n]
}

func jsonData(n int) []byte {
	r := rand.New(rand.NewPCG(12, 4))
	var b bytes.Buffer
	b.WriteString(`{"records":[`)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, `{"id":%d,"guid":"%08x-%04x","isActive":%t,"balance":"$%d.%02d","age":%d,"eyeColor":"%s","name":"%s %s","tags":["%s","%s"]},`,
			i, r.Uint32(), r.IntN(1<<16), r.IntN(2) == 0, r.IntN(4000), r.IntN(100), 20+r.IntN(40),
			[]string{"blue", "brown", "green"}[r.IntN(3)], []string{"Ann", "Bob", "Cleo", "Dan"}[r.IntN(4)],
			[]string{"Lee", "Moss", "Nash"}[r.IntN(3)], []string{"et", "sunt", "culpa", "irure"}[r.IntN(4)],
			[]string{"nisi", "amet", "ex"}[r.IntN(3)])
	}
	return b.Bytes()[:n]
}

func htmlData(n int) []byte {
	r := rand.New(rand.NewPCG(12, 5))
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html>\n<html><head><title>Report</title></head><body>\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "<div class=\"row r%d\"><a href=\"/item/%d\">Item %d</a><span class=\"price\">%d.%02d</span><p>%s</p></div>\n",
			i%7, r.IntN(100000), i, r.IntN(500), r.IntN(100), []string{"in stock", "sold out", "on order"}[r.IntN(3)])
	}
	return b.Bytes()[:n]
}

// compressionCase is case12_x_x.py's class: count messages of size bytes
// from data, each echoed before the next.
func compressionCase(id, desc string, data dataset, size, wait, frag int) abCase {
	return abCase{id, desc, func(s *session) {
		s.expectClose(true, true, CloseNormal)
		if s.pmd == nil {
			s.behavior, s.result = OutcomeUnimplemented, "The server declined permessage-deflate."
			s.sendCloseFrame(CloseNormal, "", false)
			return
		}
		s.behavior = OutcomeFailed
		s.result = fmt.Sprintf("Case did not finish within %d seconds.", wait)
		s.closeAfter(time.Duration(wait) * time.Second)
		count := s.cfg.compressCount
		ptr, sent := 0, 0
		var want []byte
		sendOne := func() {
			want = want[:0]
			for len(want) < size {
				n := min(size-len(want), len(data.data)-ptr)
				want = append(want, data.data[ptr:ptr+n]...)
				ptr = (ptr + n) % len(data.data)
			}
			s.sendCompressed(want, data.binary, frag)
			sent++
		}
		s.onMessage = func(p []byte, binary bool) {
			switch {
			case binary != data.binary:
				s.result = fmt.Sprintf("Echo'ed message type differs from what I sent (got binary %t, expected binary %t).", binary, data.binary)
			case len(p) != size:
				s.result = fmt.Sprintf("Echo'ed message length differs from what I sent (got length %d, expected length %d).", len(p), size)
			case !bytes.Equal(p, want):
				s.result = "Echo'ed message contents differs from what I sent."
			case sent < count:
				sendOne()
				return
			default:
				s.behavior = OutcomeOK
				s.result = "Ok, received all echo'ed messages in time."
			}
			s.sendCloseFrame(CloseNormal, "", false)
		}
		sendOne()
	}}
}

// sendCompressed sends p as one compressed message: RSV1 on the first
// frame, the compressed payload cut into frames of frag bytes (0: one).
func (s *session) sendCompressed(p []byte, binary bool, frag int) {
	op := OpText
	if binary {
		op = OpBinary
	}
	z := s.pmd.compress(p)
	if frag <= 0 || len(z) <= frag {
		s.sendFrame(op, string(z), rsv(4))
		return
	}
	for i := 0; i < len(z); i += frag {
		j := min(i+frag, len(z))
		opts := []frameOpt{fin(j == len(z))}
		if i == 0 {
			opts = append(opts, rsv(4))
		}
		s.sendFrame(op, string(z[i:j]), opts...)
		op = OpContinuation
	}
}

func cases12() []abCase {
	var cs []abCase
	for j, d := range datasets() {
		for i, m := range compressionSizes {
			cs = append(cs, compressionCase(fmt.Sprintf("12.%d.%d", j+1, i+1),
				fmt.Sprintf("Send 1000 compressed messages each of payload size %d, auto-fragment to %d octets. Use default permessage-deflate offer. (%s)", m.size, m.frag, d.desc),
				d, m.size, m.wait, m.frag))
		}
	}
	return cs
}

func cases13() []abCase {
	data := datasets()[3]
	var cs []abCase
	for j, offers := range deflateParams {
		var desc []string
		for _, o := range offers {
			desc = append(desc, fmt.Sprintf("(%t, %d)", o.requestNoContextTakeover, o.requestMaxWindowBits))
		}
		for i, m := range compressionSizes {
			cs = append(cs, compressionCase(fmt.Sprintf("13.%d.%d", j+1, i+1),
				fmt.Sprintf("Send 1000 compressed messages each of payload size %d, auto-fragment to %d octets. Use permessage-deflate client offers (requestNoContextTakeover, requestMaxWindowBits): [%s]",
					m.size, m.frag, strings.Join(desc, ", ")),
				data, m.size, m.wait, m.frag))
		}
	}
	return cs
}
