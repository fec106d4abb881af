package wstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// CloseError is a close frame received where a message was expected.
type CloseError struct {
	Code   int // CloseNoStatus when the frame had no body
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("wstest: server sent close %d %q", e.Code, e.Reason)
}

// CloseResult is what ExpectClose saw.
type CloseResult struct {
	// Received reports whether a close frame arrived. It is false when the
	// server ended the TCP connection without one (End says how).
	Received bool
	Code     int // CloseNoStatus when the close frame had no body
	Reason   string
	// Before holds the frames that arrived before the close frame: pings
	// (answered), pongs, and data frames when they were allowed.
	Before []ServerFrame
	// End is how the TCP connection ended: ServerEOF or ServerReset when the
	// server closed it, ReadTimeout when the client had to drop it.
	End ReadOutcome
	// Trailing counts bytes the server sent after its close frame.
	Trailing int
}

// ServerClosed reports whether the server, not the client, ended the TCP
// connection.
func (r CloseResult) ServerClosed() bool { return r.End.ServerClosed() }

func (r CloseResult) String() string {
	if !r.Received {
		return fmt.Sprintf("no close frame, %s", r.End)
	}
	return fmt.Sprintf("close %d %q, then %s", r.Code, r.Reason, r.End)
}

// errNoClose is wrapped by ExpectClose when no close frame came in time.
var errNoClose = errors.New("wstest: no close frame")

// ExpectClose reads until the server's close frame, waiting at most timeout,
// answers pings on the way, and fails on data frames unless allowData. It
// then answers the close with a close frame of its own (code 1000, unless
// the client already sent a close, as Autobahn's client does) and waits up
// to timeout again for the server to close the TCP connection; if it does
// not, the client drops it and End is ReadTimeout.
//
// A malformed close frame (one byte of body, a code not allowed on the
// wire, a reason that is not UTF-8) is an error, and the client drops the
// connection, as Autobahn's client fails it. If the server ends the TCP
// connection without a close frame, Received is false and err is nil.
func (c *Conn) ExpectClose(timeout time.Duration, allowData bool) (CloseResult, error) {
	var res CloseResult
	var body []byte
	if err := c.setReadDeadline(timeout); err != nil {
		return res, err
	}
	for {
		f, err := c.readFrame()
		if err != nil {
			res.End = Classify(err)
			switch res.End {
			case ServerEOF, ServerReset:
				return res, nil
			case ReadTimeout:
				c.nc.Close()
				return res, fmt.Errorf("%w within %v", errNoClose, timeout)
			}
			c.nc.Close()
			return res, err
		}
		if f.Masked {
			c.nc.Close()
			return res, ErrMaskedFrame
		}
		if f.Op == OpClose {
			res.Received, body = true, f.Payload
			break
		}
		res.Before = append(res.Before, f)
		switch {
		case f.Op == OpPing:
			if !c.sentClose.Load() {
				if err := c.WriteMessage(OpPong, f.Payload); err != nil {
					return res, err
				}
			}
		case f.Op == OpPong:
		case !allowData:
			c.nc.Close()
			return res, fmt.Errorf("wstest: data frame (%v) before close", f)
		}
	}
	code, reason, err := parseCloseBody(body)
	res.Code, res.Reason = code, reason
	if err != nil {
		c.nc.Close()
		return res, err
	}
	if !c.sentClose.Load() {
		if err := c.WriteClose(CloseNormal, ""); err != nil {
			// The server may already be gone; how the connection ended is
			// what the caller wants to know.
			res.End = Classify(err)
		}
	}
	res.End, res.Trailing = c.WaitClosed(timeout)
	return res, nil
}

// parseCloseBody splits a close body into code and reason and checks them as
// Autobahn's client does: a one-byte body, a code not allowed on the wire and
// a reason that is not UTF-8 are errors.
func parseCloseBody(p []byte) (int, string, error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", nil
	case len(p) == 1:
		return 0, "", errors.New("wstest: close frame with a 1-byte body")
	}
	code := int(binary.BigEndian.Uint16(p))
	reason := string(p[2:])
	if !ValidCloseCode(code) {
		return code, reason, fmt.Errorf("wstest: close code %d is not allowed on the wire", code)
	}
	if !utf8.ValidString(reason) {
		return code, reason, fmt.Errorf("wstest: close reason %q is not UTF-8", reason)
	}
	return code, reason, nil
}

// ValidCloseCode reports whether code may appear in a close frame: 1000 to
// 1003, 1007 to 1013, and 3000 to 4999 (the codes Autobahn's client accepts).
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1013:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
