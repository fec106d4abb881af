package engine

import (
	"bytes"
)

// Chunked request bodies (RFC 9112 7.1), decoded on the loop as they
// arrive. A size line, the CRLF after a chunk's data, and each trailer
// line wait in gnet's buffer until whole (a line is at most
// maxChunkLine bytes, the trailer section at most WithMaxHeaderBytes);
// a chunk's data is moved into the body as it comes.

// Chunked decoder states.
const (
	csSize    uint8 = iota // waiting for a chunk-size line
	csData                 // reading a chunk's data (exchangeLoop.need left)
	csDataEnd              // waiting for the CRLF after a chunk's data
	csTrailer              // reading the trailer section, up to its empty line
)

// maxChunkLine caps a chunk-size line with its extensions.
const maxChunkLine = 4096

// readChunked decodes what has arrived of a chunked body into ex.body. It
// reports whether the body is complete, or a status to refuse it with
// (400 malformed, 413 past max).
func (c *Conn) readChunked(ex *exchange, max int) (complete bool, status int) {
	gc, x := c.gc, &ex.lx
	for {
		avail := gc.InboundBuffered()
		if avail == 0 {
			return false, 0
		}
		if x.cs == csData {
			n := int(min(int64(avail), x.need, 64<<10))
			p, _ := gc.Peek(n)
			ex.body = appendBounded(ex.body, p, max)
			_, _ = gc.Discard(n)
			if x.need -= int64(n); x.need == 0 {
				x.cs = csDataEnd
			}
			continue
		}
		b, _ := gc.Peek(min(avail, maxChunkLine))
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) >= maxChunkLine {
				return false, 400
			}
			return false, 0
		}
		line := b[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		switch x.cs {
		case csDataEnd:
			if len(line) != 0 {
				return false, 400
			}
			x.cs = csSize
		case csSize:
			size, ok := chunkSize(line)
			switch {
			case !ok:
				return false, 400
			case size == 0:
				x.cs = csTrailer
			case size > int64(max-len(ex.body)):
				return false, 413
			default:
				x.cs, x.need = csData, size
			}
		case csTrailer:
			if len(line) == 0 {
				_, _ = gc.Discard(i + 1)
				return true, 0
			}
			if x.trailer += i + 1; x.trailer > c.loop.srv.opts.maxHeaderBytes {
				return false, 400
			}
		}
		_, _ = gc.Discard(i + 1)
	}
}

// chunkSize parses a chunk-size line: hex digits, then optional
// whitespace and extensions after ';', which are ignored.
func chunkSize(line []byte) (int64, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
		return 0, false
	}
	var n int64
	for _, ch := range line {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}

// appendBounded appends p to dst, growing it by doubling but never past
// limit bytes of capacity (the caller checked that the data fits).
func appendBounded(dst, p []byte, limit int) []byte {
	if need := len(dst) + len(p); need > cap(dst) {
		grown := make([]byte, len(dst), min(max(2*cap(dst), need, 4096), max(limit, need)))
		copy(grown, dst)
		dst = grown
	}
	return append(dst, p...)
}
