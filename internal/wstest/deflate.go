package wstest

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// permessage-deflate (RFC 7692) on the client side, as autobahn's
// PerMessageDeflate does it, on the standard library's compress/flate (an
// implementation independent of any server under test).

// deflateOffer is autobahn's PerMessageDeflateOffer.
type deflateOffer struct {
	acceptNoContextTakeover  bool // "client_no_context_takeover": the client may be told not to keep its context
	acceptMaxWindowBits      bool // "client_max_window_bits": the server may limit the client's window
	requestNoContextTakeover bool // "server_no_context_takeover"
	requestMaxWindowBits     int  // "server_max_window_bits=N", 0 for none
}

// defaultOffer is autobahn's PerMessageDeflateOffer().
var defaultOffer = deflateOffer{acceptNoContextTakeover: true, acceptMaxWindowBits: true}

// String is autobahn's get_extension_string.
func (o deflateOffer) String() string {
	s := "permessage-deflate"
	if o.acceptNoContextTakeover {
		s += "; client_no_context_takeover"
	}
	if o.acceptMaxWindowBits {
		s += "; client_max_window_bits"
	}
	if o.requestNoContextTakeover {
		s += "; server_no_context_takeover"
	}
	if o.requestMaxWindowBits != 0 {
		s += fmt.Sprintf("; server_max_window_bits=%d", o.requestMaxWindowBits)
	}
	return s
}

// deflateState is a negotiated permessage-deflate: the agreed parameters,
// the client's compressor and its decompressor.
type deflateState struct {
	serverNoTakeover, clientNoTakeover bool
	serverBits, clientBits             int

	w    *flate.Writer
	out  bytes.Buffer
	hist []byte // the server's context (server takeover): its last 32 KiB
}

// acceptResponse parses the server's Sec-WebSocket-Extensions for the
// offers made (autobahn's PerMessageDeflateResponse and its accept). It
// returns nil, "" when the server declined, and an error text when the
// response is not one the client can accept.
func acceptResponse(header []string, offers []deflateOffer) (*deflateState, string) {
	var exts []string
	for _, h := range header {
		for _, e := range splitOutsideQuotes(h, ',') {
			if e = strings.TrimSpace(e); e != "" {
				exts = append(exts, e)
			}
		}
	}
	if len(exts) == 0 {
		return nil, ""
	}
	if len(exts) > 1 {
		return nil, fmt.Sprintf("the server accepted %d extensions: %q", len(exts), exts)
	}
	params := splitOutsideQuotes(exts[0], ';')
	if strings.TrimSpace(params[0]) != "permessage-deflate" {
		return nil, fmt.Sprintf("the server accepted an extension not offered: %q", exts[0])
	}
	d := &deflateState{serverBits: 15, clientBits: 15}
	seen := map[string]bool{}
	for _, p := range params[1:] {
		k, v, hasValue := strings.Cut(strings.TrimSpace(p), "=")
		k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `"`)
		if seen[k] {
			return nil, fmt.Sprintf("parameter %s repeated in %q", k, exts[0])
		}
		seen[k] = true
		bits, err := strconv.Atoi(v)
		// autobahn accepts window sizes of 9 to 15 (zlib's range).
		badBits := !hasValue || err != nil || bits < 9 || bits > 15 || v != strconv.Itoa(bits)
		switch k {
		case "server_no_context_takeover":
			d.serverNoTakeover = true
		case "client_no_context_takeover":
			d.clientNoTakeover = true
		case "server_max_window_bits":
			if badBits {
				return nil, fmt.Sprintf("invalid server_max_window_bits in %q", exts[0])
			}
			d.serverBits = bits
		case "client_max_window_bits":
			if badBits {
				return nil, fmt.Sprintf("invalid client_max_window_bits in %q", exts[0])
			}
			d.clientBits = bits
		default:
			return nil, fmt.Sprintf("unknown parameter %q in %q", k, exts[0])
		}
		if hasValue && (k == "server_no_context_takeover" || k == "client_no_context_takeover") {
			return nil, fmt.Sprintf("%s with a value in %q", k, exts[0])
		}
	}
	// The response must fit one of the offers (RFC 7692 7.1).
	for _, o := range offers {
		switch {
		case o.requestNoContextTakeover && !d.serverNoTakeover:
		case o.requestMaxWindowBits != 0 && d.serverBits > o.requestMaxWindowBits:
		case !o.acceptMaxWindowBits && seen["client_max_window_bits"]:
		default:
			d.w, _ = flate.NewWriter(&d.out, flate.BestSpeed)
			return d, ""
		}
	}
	return nil, fmt.Sprintf("the response %q fits none of the offers", exts[0])
}

// splitOutsideQuotes splits s at sep outside quoted strings.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// compress returns p compressed as one message: with the client's context
// kept from earlier messages unless the server said client_no_context_takeover,
// and, for a client window under 15 bits, in chunks of that size, each
// compressed on its own, so that no distance passes the window.
func (d *deflateState) compress(p []byte) []byte {
	d.out.Reset()
	if d.clientBits < 15 {
		chunk := 1 << d.clientBits
		for len(p) > 0 || d.out.Len() == 0 {
			n := min(chunk, len(p))
			d.w.Reset(&d.out)
			_, _ = d.w.Write(p[:n])
			_ = d.w.Flush()
			p = p[n:]
		}
	} else {
		if d.clientNoTakeover {
			d.w.Reset(&d.out)
		}
		_, _ = d.w.Write(p)
		_ = d.w.Flush()
	}
	return bytes.Clone(bytes.TrimSuffix(d.out.Bytes(), []byte{0, 0, 0xff, 0xff}))
}

// decompress inflates a compressed message from the server.
func (d *deflateState) decompress(z []byte) ([]byte, error) {
	var dict []byte
	if !d.serverNoTakeover {
		dict = d.hist
	}
	r := flate.NewReaderDict(io.MultiReader(bytes.NewReader(z),
		bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})), dict)
	p, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if !d.serverNoTakeover {
		d.hist = append(d.hist, p...)
		if len(d.hist) > 32<<10 {
			d.hist = append([]byte(nil), d.hist[len(d.hist)-32<<10:]...)
		}
	}
	return p, nil
}
