package wsload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/flate"
)

// permessage-deflate (RFC 7692) for the load generator: the offer a
// browser makes, messages compressed without context takeover (klauspost's
// stateless encoder, so that the client stays cheap), echoes inflated and
// checked whole.

// DeflateOffer is the offer every browser sends.
const DeflateOffer = "permessage-deflate; client_max_window_bits"

// AppendRequestDeflate is AppendRequest with DeflateOffer.
func AppendRequestDeflate(dst []byte, host, key string) []byte {
	dst = AppendRequest(dst, host, key)
	return append(dst[:len(dst)-2], "Sec-WebSocket-Extensions: "+DeflateOffer+"\r\n\r\n"...)
}

// CheckResponseDeflate is CheckResponse for a request made with
// AppendRequestDeflate: the server must accept permessage-deflate without
// server context takeover (the client keeps no history between messages).
func CheckResponseDeflate(b []byte, key string) (int, error) {
	return checkResponse(b, key, true)
}

// checkDeflateResponse checks a Sec-WebSocket-Extensions value.
func checkDeflateResponse(v string) error {
	params := strings.Split(v, ";")
	if strings.TrimSpace(params[0]) != "permessage-deflate" || strings.Contains(v, ",") {
		return fmt.Errorf("server accepted %q, not permessage-deflate alone", v)
	}
	for _, p := range params[1:] {
		if strings.TrimSpace(p) == "server_no_context_takeover" {
			return nil
		}
	}
	return fmt.Errorf("server keeps its compression context (%q): the load generator does not", v)
}

// JSONText returns n bytes of chat-like JSON records, ASCII only.
func JSONText(n int, seed uint64) []byte {
	var b bytes.Buffer
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	words := []string{"hello", "gg", "nice shot", "lol", "wave 3 incoming", "need healer", "brb", "push mid"}
	s := seed
	next := func(k int) int { s = splitmix(s); return int(s % uint64(k)) }
	for b.Len() < n {
		fmt.Fprintf(&b, `{"type":"chat","room":"match-%d","user":"%s","text":"%s","ts":%d,"hp":%d},`,
			next(50), names[next(len(names))], words[next(len(words))], 1764000000000+next(1e6), next(100))
	}
	return b.Bytes()[:n]
}

// Deflate compresses p for one message into dst (reusing it), without
// the four bytes RFC 7692 7.2.1 strips.
func Deflate(dst *bytes.Buffer, p []byte) []byte {
	dst.Reset()
	_ = flate.StatelessDeflate(dst, p, false, nil)
	return bytes.TrimSuffix(dst.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// Inflater decompresses whole messages; one per goroutine (the zero value
// is ready).
type Inflater struct {
	src tailReader
	r   io.ReadCloser
	out []byte
}

// tailReader reads body, then deflateTail, without copying body.
type tailReader struct {
	body []byte
	tail int
}

func (t *tailReader) Read(p []byte) (int, error) {
	if len(t.body) > 0 {
		n := copy(p, t.body)
		t.body = t.body[n:]
		return n, nil
	}
	if t.tail == len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(p, deflateTail[t.tail:])
	t.tail += n
	return n, nil
}

func (t *tailReader) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := t.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

var deflateTail = []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}

// Inflate returns z decompressed, at most limit bytes (more is an error).
// The result is valid until the next call.
func (f *Inflater) Inflate(z []byte, limit int) ([]byte, error) {
	f.src = tailReader{body: z}
	if f.r == nil {
		f.r = flate.NewReader(&f.src)
	} else {
		_ = f.r.(flate.Resetter).Reset(&f.src, nil)
	}
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := f.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return nil, fmt.Errorf("echo inflates past the %d bytes sent", limit)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("echo does not inflate: %v", err)
		}
	}
	f.out = out
	return out, nil
}
