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
// Deflater: compress/flate has no stateless mode. With a dict it uses level
// 2: compress/flate's level 1 ignores a dictionary (its fillWindow returns
// below level 2), so the message could not refer to the history.
func (d *Deflater) stateless(p, dict []byte) {
	level := 1
	if dict != nil {
		level = 2
	}
	if d.fw == nil || d.fw.level != level {
		d.fw = newEncoder(&d.out, level)
	}
	d.fw.ResetDict(&d.out, dict)
	_, _ = d.fw.Write(p)
	_ = d.fw.Flush()
}
