package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// clientArgs configure one client process (the hidden "client" mode).
type clientArgs struct {
	Addr     string        // the server, in 127.0.0.0/8
	CA       string        // PEM file of the server's certificate; empty: plain TCP
	Mode     string        // idle, echo, handshake or resume (handshake with a session cache)
	Conns    int           // idle, echo: connections; handshake: dials in flight
	Size     int           // echo: payload bytes
	Duration time.Duration // echo, handshake: the measured phase
	Src      []string      // source addresses, used round robin
}

// result is a client process's RESULT line.
type result struct {
	Done    uint64     `json:"done"`    // echo: messages; handshake: upgrades; idle: connections checked
	Resumed uint64     `json:"resumed"` // handshake: TLS sessions resumed
	Errors  int        `json:"errors"`  // anything that went wrong (the run fails on any)
	First   string     `json:"first,omitempty"`
	TLS     string     `json:"tls,omitempty"` // what was negotiated, e.g. "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"
	Latency *hist.Hist `json:"latency"`       // echo: round trip; handshake: dial to 101
	Elapsed float64    `json:"elapsed"`       // seconds of the measured phase
}

// client dials, upgrades and drives the connections; it speaks the
// orchestrator's line protocol: CONNECTED n, then GO (echo, handshake) or
// CHECK (idle), then RESULT {json}; it exits when its stdin closes.
func client(a clientArgs) error {
	if a.Conns < 1 {
		return fmt.Errorf("-conns %d: need at least 1", a.Conns)
	}
	var cfg *tls.Config
	if a.CA != "" {
		// No ClientSessionCache: every handshake is a full one, except
		// in mode resume.
		var err error
		if cfg, err = benchcert.ClientConfig(a.CA, a.Addr); err != nil {
			return err
		}
		if a.Mode == "resume" {
			// Keyed by server name: every worker takes the latest ticket.
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
		}
	}
	d := &dialer{addr: a.Addr, cfg: cfg, src: a.Src}
	stdin := proc.StdinLines()
	r := result{Latency: &hist.Hist{}}

	var conns []*wsConn
	churning := a.Mode == "handshake" || a.Mode == "resume"
	if !churning {
		var err error
		if conns, err = d.dialMany(a.Conns, 100); err != nil {
			return err
		}
		r.TLS = conns[0].tls
	}
	fmt.Println("CONNECTED", len(conns))
	cmd := <-stdin
	start := time.Now()
	switch {
	case a.Mode == "idle" && cmd == "CHECK":
		r.Done, r.Errors, r.First = checkAll(conns, a.Size)
	case a.Mode == "echo" && cmd == "GO":
		r.Done, r.Errors, r.First = echoAll(conns, a.Size, a.Duration, r.Latency)
	case churning && cmd == "GO":
		r.Done, r.Resumed, r.Errors, r.First, r.TLS = d.churn(a.Conns, a.Duration, r.Latency)
	default:
		return fmt.Errorf("mode %s: unexpected %q", a.Mode, cmd)
	}
	r.Elapsed = time.Since(start).Seconds()
	b, _ := json.Marshal(r)
	fmt.Println("RESULT", string(b))
	for range stdin {
	}
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// dialer opens upgraded connections, TLS or not.
type dialer struct {
	addr string
	cfg  *tls.Config
	src  []string
	next atomic.Uint32
}

// wsConn is an upgraded client connection.
type wsConn struct {
	net.Conn
	r       *bufio.Reader
	tls     string // what was negotiated
	resumed bool   // the TLS session was resumed
	id      uint32
	buf     []byte
	want    []byte // the payload sent, unmasked
	got     []byte // the echo read back
}

func (d *dialer) dial() (*wsConn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second}
	if len(d.src) > 0 {
		ip := d.src[int(d.next.Add(1))%len(d.src)]
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	}
	nc, err := nd.Dial("tcp", d.addr)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &wsConn{Conn: nc}
	if d.cfg != nil {
		tc := tls.Client(nc, d.cfg)
		if err := tc.HandshakeContext(context.Background()); err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		cs := tc.ConnectionState()
		if cs.NegotiatedProtocol != "http/1.1" {
			tc.Close()
			return nil, fmt.Errorf("ALPN: got %q, want http/1.1", cs.NegotiatedProtocol)
		}
		c.Conn = tc
		c.resumed = cs.DidResume
		c.tls = fmt.Sprintf("%s %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), cs.CurveID)
	}
	key := wsload.NewKey()
	if _, err := c.Write(wsload.AppendRequest(nil, d.addr, key)); err != nil {
		c.Close()
		return nil, err
	}
	// The response head is read up to its end; what follows it stays in
	// c.r, which every later read goes through.
	c.r = bufio.NewReaderSize(c.Conn, 512)
	var head []byte
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		b, err := c.r.ReadByte()
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("reading the upgrade response: %w", err)
		}
		if head = append(head, b); len(head) > wsload.MaxResponseHead {
			c.Close()
			return nil, errors.New("upgrade response head too long")
		}
	}
	if _, err := wsload.CheckResponse(head, key); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// dialMany opens n connections, par at a time.
func (d *dialer) dialMany(n, par int) ([]*wsConn, error) {
	conns := make([]*wsConn, n)
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := d.dial()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("dial %d: %w", i, err)
				}
				return
			}
			c.id = uint32(i)
			conns[i] = c
		}()
	}
	wg.Wait()
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, firstErr
	}
	return conns, nil
}

// roundTrip sends one masked binary message of size bytes numbered seq and
// reads the echo back, checking every byte.
func (c *wsConn) roundTrip(size int, seq uint64) error {
	if size < 12 || size > 125 {
		return fmt.Errorf("size %d: want 12..125", size)
	}
	c.buf = c.buf[:0]
	c.buf = append(c.buf, 0x82, 0x80|byte(size))
	mask := [4]byte{byte(seq), 0x5a, byte(c.id), 0xa5}
	c.buf = append(c.buf, mask[:]...)
	p0 := len(c.buf)
	c.buf = binary.BigEndian.AppendUint64(c.buf, seq)
	c.buf = binary.BigEndian.AppendUint32(c.buf, c.id)
	for i := 12; i < size; i++ {
		c.buf = append(c.buf, byte(i)^byte(seq))
	}
	c.want = append(c.want[:0], c.buf[p0:]...)
	for i := p0; i < len(c.buf); i++ {
		c.buf[i] ^= mask[(i-p0)&3]
	}
	if _, err := c.Write(c.buf); err != nil {
		return err
	}
	var h [2]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return err
	}
	if h[0] != 0x82 || h[1] != byte(size) {
		return fmt.Errorf("echo header %x, want 82 %02x", h, size)
	}
	c.got = slices.Grow(c.got[:0], size)[:size]
	if _, err := io.ReadFull(c.r, c.got); err != nil {
		return err
	}
	if !bytes.Equal(c.got, c.want) {
		return fmt.Errorf("echo of message %d differs", seq)
	}
	return nil
}

// checkAll makes one round trip on every connection, 100 at a time.
func checkAll(conns []*wsConn, size int) (ok uint64, errs int, first string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 100)
	for _, c := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			err := c.roundTrip(size, 1)
			_ = c.SetDeadline(time.Time{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if errs++; first == "" {
					first = err.Error()
				}
				return
			}
			ok++
		}()
	}
	wg.Wait()
	return ok, errs, first
}

// echoAll runs a closed loop on every connection (one message in flight
// each) for dur.
func echoAll(conns []*wsConn, size int, dur time.Duration, lat *hist.Hist) (n uint64, errs int, first string) {
	var mu sync.Mutex // guards lat (512 KiB: one, not one per connection) and the counts
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			_ = c.SetDeadline(end.Add(30 * time.Second))
			for seq := uint64(1); time.Now().Before(end); seq++ {
				t0 := time.Now()
				if err = c.roundTrip(size, seq); err != nil {
					break
				}
				mu.Lock()
				lat.Record(int64(time.Since(t0)))
				n++
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				if errs++; first == "" {
					first = err.Error()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n, errs, first
}

// churn runs par workers for dur, each dialing, upgrading (over TLS: a
// handshake, full unless the config has a session cache) and closing, one
// connection after another.
func (d *dialer) churn(par int, dur time.Duration, lat *hist.Hist) (n, resumed uint64, errs int, first, negotiated string) {
	var mu sync.Mutex // guards lat and the counts
	var wg sync.WaitGroup
	end := time.Now().Add(dur)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				t0 := time.Now()
				c, err := d.dial()
				mu.Lock()
				if err != nil {
					if errs++; first == "" {
						first = err.Error()
					}
					mu.Unlock()
					return
				}
				lat.Record(int64(time.Since(t0)))
				n++
				if c.resumed {
					resumed++
				}
				if negotiated == "" {
					negotiated = c.tls
				}
				mu.Unlock()
				c.Close()
			}
		}()
	}
	wg.Wait()
	return n, resumed, errs, first, negotiated
}
