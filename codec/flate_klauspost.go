//go:build !wsloop_stdflate

package codec

import (
	"io"

	"github.com/klauspost/compress/flate"
)

// The DEFLATE backend: github.com/klauspost/compress/flate.

// encoder is a DEFLATE writer kept in a Deflater (levels 2 to 9).
type encoder = *flate.Writer

type resetter = flate.Resetter

func newEncoder(w io.Writer, level int) encoder {
	fw, _ := flate.NewWriter(w, level)
	return fw
}

func newDecoder(r io.Reader) io.ReadCloser { return flate.NewReader(r) }

// stateless compresses p at level 1 after dict (at most its last 8 KiB)
// and ends with a sync flush, keeping no state.
func (d *Deflater) stateless(p, dict []byte) {
	_ = flate.StatelessDeflate(&d.out, p, false, dict)
}
