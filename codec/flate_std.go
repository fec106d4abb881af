//go:build wsloop_stdflate

package codec

import (
	"compress/flate"
	"io"
)

// The DEFLATE backend with -tags wsloop_stdflate: the standard library's
// compress/flate, for measuring it against klauspost's in the benchmarks.

// encoder is a compress/flate writer with klauspost's ResetDict.
type encoder = *stdEncoder

type stdEncoder struct {
	*flate.Writer
	level int
}

type resetter = flate.Resetter

func newEncoder(w io.Writer, level int) encoder {
	fw, _ := flate.NewWriter(w, level)
	return &stdEncoder{fw, level}
}

// ResetDict is Reset, or a new writer when there is a dictionary (which
// compress/flate takes only at creation).
func (e *stdEncoder) ResetDict(w io.Writer, dict []byte) {
	if dict == nil {
		e.Reset(w)
		return
	}
	e.Writer, _ = flate.NewWriterDict(w, e.level, dict)
}

func newDecoder(r io.Reader) io.ReadCloser { return flate.NewReader(r) }

// stateless compresses p at level 1 after dict with a writer kept in the
// Deflater: compress/flate has no stateless mode.
func (d *Deflater) stateless(p, dict []byte) {
	if d.fw == nil || d.fw.level != 1 {
		d.fw = newEncoder(&d.out, 1)
	}
	d.fw.ResetDict(&d.out, dict)
	_, _ = d.fw.Write(p)
	_ = d.fw.Flush()
}
