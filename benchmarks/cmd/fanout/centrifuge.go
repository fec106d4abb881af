package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// -proto centrifuge: the client side of centrifuge's JSON protocol, for
// servers/centrifuge-room. Every connection sends connect and then
// subscribe to cfChannel, each waiting for its reply; the publisher sends
// each message as a publish command whose data is the payload as a JSON
// string; a subscriber receives it as a publication push. The server joins
// up to 16 queued replies and pushes into one text frame, separated by
// newlines, and pings with an empty reply, {}, which the client answers
// with an empty command. The payload's bytes are the same as in the plain
// protocol: its checks are the same.

const cfChannel = "room"

// cfPushPrefix is how centrifuge's JSON encoder starts a publication push
// on cfChannel; the data follows.
const cfPushPrefix = `{"push":{"channel":"` + cfChannel + `","pub":{"data":`

// cfReply is the part of a reply the client looks at, decoded with
// encoding/json when it is not a publication (connect, subscribe and
// publish replies, errors).
type cfReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// cfMaxFrame bounds a server frame: 16 messages, each at worst the payload
// escaped (six bytes for a header byte, two for a body byte) plus the
// push's envelope.
func cfMaxFrame(size int) int { return 16 * (6*headerLen + 2*size + 128) }

// cfJoin runs connect and subscribe on an upgraded connection; rest is
// what followed the 101. It returns what followed the subscribe reply.
func cfJoin(c net.Conn, rest []byte, timeout time.Duration) ([]byte, error) {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	buf := append(make([]byte, 0, 4096), rest...)
	var err error
	for id, cmd := range []string{`{"id":1,"connect":{}}`, `{"id":2,"subscribe":{"channel":"` + cfChannel + `"}}`} {
		if err := cfWrite(c, []byte(cmd)); err != nil {
			return nil, err
		}
		if buf, err = cfAwait(c, buf, uint32(id+1)); err != nil {
			return nil, err
		}
	}
	return buf, c.SetDeadline(time.Time{})
}

// cfAwait reads frames until the reply with id, which must not be an
// error; it returns the bytes after that reply's frame.
func cfAwait(c net.Conn, buf []byte, id uint32) ([]byte, error) {
	for {
		f, n, err := parseFrame(buf, 1<<16)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			if len(buf) == cap(buf) {
				buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
			}
			m, err := c.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err != nil {
				return nil, fmt.Errorf("waiting for reply %d: %w", id, err)
			}
			continue
		}
		if f.op != opText || !f.fin || f.rsv != 0 || f.masked {
			return nil, fmt.Errorf("waiting for reply %d: unexpected frame, opcode %#x", id, f.op)
		}
		found := false
		for line := range bytes.SplitSeq(f.payload, []byte{'\n'}) {
			var r cfReply
			if err := json.Unmarshal(line, &r); err != nil {
				return nil, fmt.Errorf("waiting for reply %d: %v in %q", id, err, line)
			}
			if r.Error != nil {
				return nil, fmt.Errorf("reply %d: error %d %s", r.ID, r.Error.Code, r.Error.Message)
			}
			found = found || r.ID == id
		}
		buf = buf[:copy(buf, buf[n:])]
		if found {
			return buf, nil
		}
	}
}

func cfWrite(c net.Conn, cmd []byte) error {
	_, err := c.Write(wsload.AppendClientFrame(nil, opText, cmd, [4]byte{1, 2, 3, 4}))
	return err
}

// appendPublish appends a publish command with id carrying payload p as a
// JSON string.
func appendPublish(b []byte, id uint64, p []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"publish":{"channel":"`+cfChannel+`","data":"`...)
	b = appendJSONString(b, p)
	return append(b, `"}}`...)
}

// appendJSONString appends p (ASCII) escaped for a JSON string.
func appendJSONString(b, p []byte) []byte {
	const hex = "0123456789abcdef"
	for _, c := range p {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return b
}

var errBadString = errors.New("bad JSON string")

// unescapeJSONString decodes the JSON string at the start of s (which
// starts with its quote) into dst, for strings of ASCII; it returns the
// decoded bytes and the rest of s after the closing quote.
func unescapeJSONString(dst, s []byte) ([]byte, []byte, error) {
	if len(s) == 0 || s[0] != '"' {
		return nil, nil, errBadString
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return dst, s[i+1:], nil
		case c < 0x20 || c >= 0x80:
			return nil, nil, errBadString
		case c != '\\':
			dst = append(dst, c)
			continue
		}
		if i++; i == len(s) {
			return nil, nil, errBadString
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if i+4 >= len(s) {
				return nil, nil, errBadString
			}
			v, err := strconv.ParseUint(string(s[i+1:i+5]), 16, 16)
			if err != nil || v >= 0x80 {
				return nil, nil, errBadString
			}
			dst = append(dst, byte(v))
			i += 4
		default:
			return nil, nil, errBadString
		}
	}
	return nil, nil, errBadString
}

// cfFrame handles one text frame from a centrifuge server: every
// publication in it goes through message as the plain protocol's frames
// do, a ping is answered, and a reply must not be an error.
func (s *sub) cfFrame(b *bench, f frame) error {
	if f.op != opText || !f.fin {
		return fmt.Errorf("unexpected frame: opcode %#x fin %v (one final text frame expected)", f.op, f.fin)
	}
	for line := range bytes.SplitSeq(f.payload, []byte{'\n'}) {
		if data, ok := bytes.CutPrefix(line, []byte(cfPushPrefix)); ok {
			p, tail, err := unescapeJSONString(s.scratch[:0], data)
			if err != nil || len(tail) == 0 || (tail[0] != '}' && tail[0] != ',') {
				return fmt.Errorf("message after %d: malformed publication %.80q", s.next.Load(), line)
			}
			s.scratch = p
			if err := s.message(b, frame{fin: true, op: opText, payload: p}); err != nil {
				return err
			}
			continue
		}
		if string(line) == "{}" { // a ping
			if err := s.send(wsload.AppendClientFrame(make([]byte, 0, 8), opText, line, [4]byte{})); err != nil {
				return fmt.Errorf("answering a ping: %w", err)
			}
			continue
		}
		var r cfReply
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("message after %d: %v in %.80q", s.next.Load(), err, line)
		}
		if r.Error != nil {
			return fmt.Errorf("reply %d: error %d %s", r.ID, r.Error.Code, r.Error.Message)
		}
	}
	return nil
}
