package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsloop/wsloop/codec"
)

// Plain HTTP through a standard http.Handler, the worker's side: the
// request is rebuilt with net/http's own parser from the head the loop
// copied, the handler runs, and its answer goes to the connection as
// c.out, the road every off-loop writer takes (write.go). The answer is
// buffered up to WithMaxResponseBuffer: one that fits leaves whole with
// Content-Length when the handler returns; a larger one, or one the
// handler flushes, is streamed chunked (close-delimited for HTTP/1.0). A
// writer that finds that much already waiting for the socket blocks
// until it drains: the worker waits, the loop never does.

// errConnGone is what a handler's Write returns once its client has gone.
var errConnGone = errors.New("wsloop: the HTTP client has gone away")

// readerPool holds the bufio.Readers http.ReadRequest parses heads with.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// serve runs the handler for ex on a worker goroutine; the worker then
// hands the exchange back to the loop (handBack).
func (ex *exchange) serve() {
	c := ex.c
	s := c.loop.srv
	defer ex.cancel()
	w := &responseWriter{ex: ex, header: make(http.Header), declared: -1, max: s.opts.maxResponseBuf}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(ex.head))
	req, err := http.ReadRequest(br)
	br.Reset(nil)
	readerPool.Put(br)
	if err != nil {
		w.status, w.wroteHeader = 400, true
		w.closeAfter = true
		_, _ = io.WriteString(w, "bad request\n")
		w.finish()
		return
	}
	if len(ex.body) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(ex.body))
	} else {
		req.Body = http.NoBody
	}
	if req.ContentLength < 0 || len(req.TransferEncoding) > 0 {
		// De-chunked on the loop: the body is whole, its length known.
		req.ContentLength, req.TransferEncoding = int64(len(ex.body)), nil
	}
	req.RemoteAddr = c.remote.String()
	req.TLS = c.TLS()
	req = req.WithContext(context.WithValue(ex.ctx, http.LocalAddrContextKey, ex.local))
	w.req = req
	w.head = req.Method == http.MethodHead
	w.http10 = req.ProtoMinor == 0
	if !w.run(s) {
		return
	}
	w.finish()
}

// run calls the handler, recovering a panic as net/http does: logged
// (unless it is http.ErrAbortHandler), a 500 if nothing was sent yet,
// else the connection is cut. It reports whether the answer may be
// finished.
func (w *responseWriter) run(s *Server) (ok bool) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		ok = false
		if l := s.opts.logger; l != nil && r != http.ErrAbortHandler {
			l.Error("wsloop: panic in HTTP handler", "panic", r, "stack", string(debug.Stack()))
		}
		if w.headSent || r == http.ErrAbortHandler {
			w.ex.abort = true
			w.done()
			return
		}
		w.header = http.Header{"Content-Type": {"text/plain; charset=utf-8"}}
		w.status, w.wroteHeader, w.closeAfter, w.buf = 500, true, true, append(w.buf[:0], "internal server error\n"...)
		w.finish()
	}()
	s.opts.httpHandler.ServeHTTP(w, w.req)
	return true
}

// responseWriter is the http.ResponseWriter (and http.Flusher) given to
// the handler. Like net/http's, it is not safe for concurrent use.
type responseWriter struct {
	ex          *exchange
	req         *http.Request
	header      http.Header
	status      int
	max         int
	declared    int64 // the handler's Content-Length, -1 when none
	written     int64 // body bytes accepted
	buf         []byte
	out         []byte // the bytes being handed to the connection
	wroteHeader bool
	headSent    bool
	chunked     bool
	closeAfter  bool
	head        bool // a HEAD request: no body goes out
	http10      bool
	pollWait    time.Duration
}

// Header returns the header map the answer will carry.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader sets the status. Informational statuses (1xx) are not sent;
// a second call is ignored.
func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 200 {
		if code < 100 || code > 999 {
			panic(fmt.Sprintf("invalid WriteHeader code %v", code))
		}
		return
	}
	if code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.status, w.wroteHeader = code, true
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

// bodyAllowed reports whether the status lets the answer have a body.
func (w *responseWriter) bodyAllowed() bool {
	return w.status != 204 && w.status != 304
}

// Write buffers p, sending what exceeds the buffer; it blocks while the
// client is that far behind.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.ex.gone.Load() {
		return 0, errConnGone
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.head {
		return len(p), nil
	}
	n := 0
	for len(w.buf)+len(p) > w.max {
		k := w.max - len(w.buf)
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		n += k
		if err := w.send(false); err != nil {
			return n, err
		}
	}
	w.buf = append(w.buf, p...)
	return n + len(p), nil
}

// WriteString is Write for a string.
func (w *responseWriter) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Flush sends what is buffered (http.Flusher).
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	_ = w.send(false)
}

// finish sends the rest of the answer and hands the exchange back.
func (w *responseWriter) finish() {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	if w.declared >= 0 && w.written != w.declared && !w.head {
		w.closeAfter = true // short of what it declared: the client cannot find the end
	}
	_ = w.send(true)
	w.done()
}

// done records whether the answer leaves the connection usable.
func (w *responseWriter) done() {
	w.ex.keepAfter = w.ex.keep && !w.closeAfter
}

// handBack gives the exchange back to its loop, which writes the answer.
func (ex *exchange) handBack() {
	if ex.gone.Load() {
		return
	}
	_ = ex.c.loop.el.Execute(context.Background(), (*exchangeDone)(ex))
}

// send hands the head (when not sent yet) and the buffered body to the
// connection; final ends the answer. Unless final, it then waits while
// more than the buffer's size waits for the socket.
func (w *responseWriter) send(final bool) error {
	out := w.out[:0]
	if !w.headSent {
		out = w.appendHead(out, final)
		w.headSent = true
	}
	if w.bodyAllowed() && !w.head {
		switch {
		case w.chunked && len(w.buf) > 0:
			out = strconv.AppendInt(out, int64(len(w.buf)), 16)
			out = append(out, "\r\n"...)
			out = append(append(out, w.buf...), "\r\n"...)
		case !w.chunked:
			out = append(out, w.buf...)
		}
		if final && w.chunked {
			out = append(out, "0\r\n\r\n"...)
		}
	}
	w.buf = w.buf[:0]
	w.out = out
	if len(out) == 0 {
		return nil
	}
	if err := w.ex.queue(out, final); err != nil {
		return err
	}
	if final {
		return nil
	}
	return w.waitRoom()
}

// appendHead appends the status line and header. final says the whole
// body is in w.buf, so its length can be declared.
func (w *responseWriter) appendHead(out []byte, final bool) []byte {
	h := w.header
	allowed := w.bodyAllowed()
	if allowed && len(w.buf) > 0 && !hasKey(h, "Content-Type") {
		h.Set("Content-Type", http.DetectContentType(w.buf))
	}
	if hasCloseToken(h["Connection"]) {
		w.closeAfter = true
	}
	h.Del("Connection")
	h.Del("Transfer-Encoding")
	switch {
	case !allowed:
		h.Del("Content-Length")
	case w.declared >= 0:
	case final && (w.written > 0 || !w.head):
		h.Set("Content-Length", strconv.Itoa(int(w.written)))
	case final:
	case w.http10:
		w.closeAfter = true // no chunked coding in HTTP/1.0: the close ends the body
	default:
		w.chunked = true
	}
	if w.ex.c.loop.srv.refusing() {
		w.closeAfter = true // Shutdown: this answer is the last
	}
	keep := w.ex.keep && !w.closeAfter
	if w.http10 {
		out = append(out, "HTTP/1.0 "...)
	} else {
		out = append(out, "HTTP/1.1 "...)
	}
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, codec.StatusText(w.status)...)
	out = append(out, "\r\n"...)
	if !hasKey(h, "Date") {
		out = append(append(append(out, "Date: "...), httpDate()...), "\r\n"...)
	}
	for k, vs := range h {
		if !isToken(k) {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				continue
			}
			out = append(append(append(append(out, k...), ": "...), v...), "\r\n"...)
		}
	}
	if w.chunked {
		out = append(out, "Transfer-Encoding: chunked\r\n"...)
	}
	switch {
	case !keep && !w.http10:
		out = append(out, "Connection: close\r\n"...)
	case keep && w.http10:
		out = append(out, "Connection: keep-alive\r\n"...)
	}
	return append(out, "\r\n"...)
}

// hasCloseToken reports whether a Connection header's values hold the
// token "close".
func hasCloseToken(vs []string) bool {
	for _, v := range vs {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "close") {
				return true
			}
		}
	}
	return false
}

// hasKey reports whether h has the (canonical) key at all, even with no
// value: net/http's way to ask for no Content-Type and no Date.
func hasKey(h http.Header, key string) bool {
	_, ok := h[key]
	return ok
}

// queue appends p to the connection's output. Unless final, a flush is
// queued as for any off-loop write; the final piece is written by
// exchangeDone, which the caller queues next.
func (ex *exchange) queue(p []byte, final bool) error {
	c := ex.c
	c.mu.Lock()
	if ex.gone.Load() || c.state.Load() == stateClosed {
		c.mu.Unlock()
		return errConnGone
	}
	flush := false
	if final {
		c.ensureOutLocked()
	} else {
		flush = c.reserveLocked()
	}
	c.out = append(c.out, p...)
	c.mu.Unlock()
	if flush {
		if err := c.queueFlush(); err != nil {
			return errConnGone
		}
	}
	return nil
}

// waitRoom blocks while more than the response buffer's size waits for
// the client's socket, in c.out or in gnet's buffer. gnet drains its
// buffer without telling wsloop, so the writer asks the loop for the
// figure (roomTask), every millisecond at first, backing off to every
// 50 ms while the client stays stuck.
func (w *responseWriter) waitRoom() error {
	ex := w.ex
	c := ex.c
	wait := time.Millisecond
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		c.mu.Lock()
		pending := len(c.out) + int(c.sockBuffered.Load())
		c.mu.Unlock()
		if ex.gone.Load() {
			return errConnGone
		}
		if pending <= w.max {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ex.room:
			continue
		case <-ex.ctx.Done():
			return errConnGone
		case <-timer.C:
		}
		if err := c.loop.el.Execute(context.Background(), (*roomTask)(ex)); err != nil {
			return errConnGone
		}
		select {
		case <-ex.room:
		case <-ex.ctx.Done():
			return errConnGone
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// dateCache holds the Date header's value for the current second.
var dateCache atomic.Pointer[dateValue]

type dateValue struct {
	sec int64
	s   string
}

// httpDate returns the current time in HTTP's date format, formatted
// once a second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dateValue{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}
