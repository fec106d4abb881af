package wsload

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/wsloop/wsloop/codec"
)

// permessage-deflate (RFC 7692) for the load generator: the offer a
// browser makes, messages compressed without context takeover, echoes
// inflated and checked whole, with wsloop's codec (klauspost's stateless
// encoder and its decoder, so that the client stays cheap).

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

// Deflater compresses whole messages with wsloop's codec.Deflater at level
// 1 (klauspost's stateless encoder), without context takeover; one per
// goroutine, the zero value is ready.
type Deflater struct {
	d   *codec.Deflater
	out []byte
}

// Deflate returns p compressed as one message's payload, without the four
// bytes RFC 7692 7.2.1 strips. The result is valid until the next call.
func (f *Deflater) Deflate(p []byte) []byte {
	if f.d == nil {
		f.d = codec.NewDeflater(1)
	}
	f.out = f.d.Append(f.out[:0], p, 15, nil)
	return f.out
}

// Inflater decompresses whole messages with wsloop's codec.Inflater (the
// same klauspost decoder the load generator would use otherwise); one per
// goroutine, the zero value is ready.
type Inflater struct {
	inf *codec.Inflater
	out []byte
}

// Inflate returns z decompressed, at most limit bytes (more is an error).
// The result is valid until the next call.
func (f *Inflater) Inflate(z []byte, limit int) ([]byte, error) {
	if f.inf == nil {
		f.inf = codec.NewInflater()
	}
	f.inf.Reset(z, nil)
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := f.inf.Read(out[len(out):cap(out)])
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
