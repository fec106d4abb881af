package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// pingResult is one server's row of the ping flood table.
type pingResult struct {
	Server     string   `json:"server"`
	Failure    string   `json:"failure,omitempty"`
	Sent       int64    `json:"sent"`      // bytes of ping frames written
	WriteS     float64  `json:"write_s"`   // time to write them
	WriteEnd   string   `json:"write_end"` // "complete", or why writing stopped
	RSSBefore  int64    `json:"rss_before"`
	RSSAtEnd   int64    `json:"rss_at_end"`  // right after the last byte was written
	RSSSettled int64    `json:"rss_settled"` // after -settle more
	Alive      bool     `json:"alive"`
	Probe      string   `json:"probe"`
	Stop       string   `json:"stop,omitempty"`
	Tail       []string `json:"tail,omitempty"`
}

// pingPayload is the 125 bytes every ping carries: the most a control
// frame may.
var pingPayload = func() []byte {
	p := make([]byte, 125)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}()

// pingFrameLen is the size of one ping frame on the wire: 2 bytes of
// header, 4 of mask, 125 of payload.
var pingFrameLen = len(wsload.AppendClientFrame(nil, opPing, pingPayload, [4]byte{}))

// pingBatch returns whole masked ping frames filling about size bytes.
func pingBatch(size int) []byte {
	one := wsload.AppendClientFrame(nil, opPing, pingPayload, randomMask())
	b := make([]byte, 0, size+len(one))
	for len(b)+len(one) <= max(size, len(one)) {
		b = append(b, one...)
	}
	return b
}

// dialSmallRcvbuf dials addr with SO_RCVBUF set before connect, so that
// the window the client advertises stays small.
func dialSmallRcvbuf(addr string, rcvbuf int) (net.Conn, error) {
	d := net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		},
	}
	return d.Dial("tcp", addr)
}

func runPingFlood(spec serverSpec) (r pingResult) {
	r = pingResult{Server: spec.Name}
	srv, failure := launch(spec)
	if failure != "" {
		r.Failure = failure
		return r
	}
	defer func() {
		if srv.Alive() {
			r.Stop = srv.stop()
		}
	}()
	c, err := dialSmallRcvbuf(srv.addr, 128<<10)
	if err != nil {
		r.Failure = "dial: " + classify(err)
		return r
	}
	defer c.Close()
	if _, err := upgrade(c, time.Now().Add(5*time.Second)); err != nil {
		r.Failure = "upgrade: " + classify(err)
		return r
	}
	time.Sleep(200 * time.Millisecond)
	if r.RSSBefore, err = vmRSS(srv.Pid()); err != nil {
		r.Failure = "VmRSS: " + err.Error()
		return r
	}

	// Write the pings in batches and never read.
	t0 := time.Now()
	var sent atomic.Int64
	r.WriteEnd = floodWrite(c, nil, pingBatch(*pingBatchSize), *pingBytes, *pingTimeout, *stall, &sent)
	r.Sent = sent.Load()
	r.WriteS = time.Since(t0).Seconds()
	r.RSSAtEnd, _ = vmRSS(srv.Pid())
	time.Sleep(*settle)
	r.RSSSettled, _ = vmRSS(srv.Pid())
	r.Alive = srv.Alive()
	r.Probe = probe(srv.addr, nil, *probeTimeout)
	if !r.Alive || !srv.Alive() {
		r.Alive = false
		r.Tail = srv.Out.LastLines(6)
	}
	fmt.Fprintf(os.Stderr, "  %s: %.1f MiB of pings in %.1fs (%s), probe %s\n", spec.Name, mib(r.Sent), r.WriteS, r.WriteEnd, r.Probe)
	return r
}

// floodWrite writes total bytes to c and never reads: first, then batch
// after batch (the last cut short). It stops at total, when a write
// makes no progress for stall, at bound, or on an error, and says which:
// "complete", "stalled: no progress for 5s", "stopped at the 30s bound",
// "write: RST". written counts the bytes as the writes return.
func floodWrite(c net.Conn, first, batch []byte, total int64, bound, stall time.Duration, written *atomic.Int64) string {
	end := time.Now().Add(bound)
	for sent := int64(0); sent < total; {
		b := batch
		if sent == 0 && len(first) > 0 {
			b = first
		}
		b = b[:min(int64(len(b)), total-sent)]
		for len(b) > 0 {
			_ = c.SetWriteDeadline(minTime(time.Now().Add(stall), end))
			n, err := c.Write(b)
			sent += int64(n)
			written.Add(int64(n))
			b = b[n:]
			if err == nil {
				continue
			}
			var ne net.Error
			switch {
			case !time.Now().Before(end):
				return fmt.Sprintf("stopped at the %v bound", bound)
			case errors.As(err, &ne) && ne.Timeout() && n == 0:
				return fmt.Sprintf("stalled: no progress for %v", stall)
			case errors.As(err, &ne) && ne.Timeout():
				continue // progress, only slow
			default:
				return "write: " + classify(err)
			}
		}
	}
	return "complete"
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
