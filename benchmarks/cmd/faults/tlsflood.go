package main

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
)

// The TLS handshake flood (issue 22, item 1). A server that runs its TLS
// handshakes in a bounded pool queues the sockets beyond the bound; if it
// keeps reading what a queued socket sends, one client can make it hold
// any number of bytes. The scenario takes the pool's slots with
// -tls-holders sockets that stay silent (or send a ClientHello less its
// last byte, -tls-holders-hello), then floods with more sockets, and
// watches the server's memory, the bytes it reads, its echo latency on
// connections opened before, and whether a new client is still served.

// tlsResult is one server's rows of the TLS flood tables, for one number
// of flooding sockets.
type tlsResult struct {
	Server         string         `json:"server"`
	Sockets        int            `json:"sockets"` // flooding sockets
	Failure        string         `json:"failure,omitempty"`
	Holders        int            `json:"holders"`                 // holders connected
	HolderFailed   map[string]int `json:"holder_failed,omitempty"` // holder dials that failed, by reason
	Written        int64          `json:"written"`                 // bytes the flood wrote, all sockets
	ServerRead     int64          `json:"server_read"`             // of those, read by the server (see readBySocket)
	ReadLowerBound bool           `json:"read_lower_bound"`        // some socket was gone when the writes ended: its figure is the last sample
	WriteS         float64        `json:"write_s"`                 // from the first write to the last socket's end
	Ends           map[string]int `json:"ends"`                    // how each flooding socket's writes ended
	RSSBefore      int64          `json:"rss_before"`              // echo connections up, before the holders
	RSSHolders     int64          `json:"rss_holders"`             // holders up, before the flood
	ReadS          float64        `json:"read_s"`                  // from the first write to the server read figure: the server stopped reading for 1 s, or the bound
	RSSPeak        int64          `json:"rss_peak"`                // the largest VmRSS sampled from the flood's start to RSSAfter
	HWM            int64          `json:"hwm"`                     // VmHWM at RSSAfter
	RSSEnd         int64          `json:"rss_end"`                 // when the writes ended
	RSSAfter       int64          `json:"rss_after"`               // -settle after the flood's sockets closed
	EchoBefore     []latency      `json:"echo_before"`             // per echo connection, with the holders, before the flood
	EchoDuring     []latency      `json:"echo_during"`             // per echo connection, from the flood's start to its sockets' close
	ProbeHolders   string         `json:"probe_holders"`           // fresh wss upgrade+echo with the holders alone
	ProbeDuring    string         `json:"probe_during"`
	ProbeDuringAt  int64          `json:"probe_during_at"` // bytes written when it began
	ProbeAfter     string         `json:"probe_after"`     // the flood's sockets closed, holders still open
	ProbeReleased  string         `json:"probe_released"`  // the holders closed too
	Alive          bool           `json:"alive"`
	Stop           string         `json:"stop,omitempty"`
	Notes          []string       `json:"notes,omitempty"`
	Tail           []string       `json:"tail,omitempty"`
}

// latency sums up one connection's echo round trips in one phase.
type latency struct {
	N      int     `json:"n"`      // echoes that came back
	Errors int     `json:"errors"` // echoes that failed (the connection is dropped then)
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	MaxUs  float64 `json:"max_us"`
}

// certFiles is the run's certificate, which every server serves, and the
// client side: the configuration that trusts it and a ClientHello.
type certFiles struct {
	cert, key string
	client    *tls.Config
	hello     []byte // a ClientHello record as client sends it
}

func newCert(dir string) (*certFiles, error) {
	c := &certFiles{}
	var err error
	if c.cert, c.key, err = benchcert.Write(dir); err != nil {
		return nil, err
	}
	if c.client, err = benchcert.ClientConfig(c.cert, "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if c.hello, err = clientHello(c.client); err != nil {
		return nil, err
	}
	return c, nil
}

// clientHello returns the first record a TLS client with cfg sends: its
// ClientHello.
func clientHello(cfg *tls.Config) ([]byte, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _ = tls.Client(a, cfg).Handshake() }()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	rec := make([]byte, 5)
	if _, err := io.ReadFull(b, rec); err != nil {
		return nil, fmt.Errorf("ClientHello: %w", err)
	}
	if rec[0] != 0x16 {
		return nil, fmt.Errorf("ClientHello: record type %#x", rec[0])
	}
	rec = append(rec, make([]byte, binary.BigEndian.Uint16(rec[3:]))...)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		return nil, fmt.Errorf("ClientHello: %w", err)
	}
	return rec, nil
}

// floodChunk is the size of the flood's writes.
const floodChunk = 64 << 10

// Echo connections: one 16-byte message in flight each, one every
// echoPace, each given echoTimeout.
const (
	echoPace    = 10 * time.Millisecond
	echoTimeout = 5 * time.Second
	baseline    = time.Second // echoes with the holders alone, before the flood
)

func runTLSFlood(spec serverSpec, cert *certFiles, sockets int) (r tlsResult) {
	r = tlsResult{Server: spec.Name, Sockets: sockets, Ends: map[string]int{}}
	srv, failure := launch(spec, "-tls-cert", cert.cert, "-tls-key", cert.key)
	if failure != "" {
		r.Failure = failure
		return r
	}
	defer func() {
		if srv.Alive() {
			r.Stop = srv.stop()
		} else if r.Tail == nil {
			r.Tail = srv.Out.LastLines(6)
		}
	}()

	// Echo connections, then the holders.
	ec, err := startEchoes(srv.addr, cert.client, *tlsEchoConns)
	if err != nil {
		r.Failure = "wss echo connection: " + err.Error()
		return r
	}
	defer ec.close()
	time.Sleep(200 * time.Millisecond)
	if r.RSSBefore, err = vmRSS(srv.Pid()); err != nil {
		r.Failure = "VmRSS: " + err.Error()
		return r
	}
	var holderBytes []byte
	if *tlsHello {
		holderBytes = cert.hello[:len(cert.hello)-1]
	}
	holders, failed := dialHolders(srv.addr, *tlsHolders, holderBytes)
	defer closeAll(holders)
	r.Holders, r.HolderFailed = len(holders), failed
	time.Sleep(300 * time.Millisecond)
	r.RSSHolders, _ = vmRSS(srv.Pid())
	time.Sleep(baseline)
	r.ProbeHolders = probe(srv.addr, cert.client, *probeTimeout)
	ec.next(phaseFlood)

	// The flood.
	fl, err := dialFlood(srv.addr, sockets)
	if err != nil {
		r.Failure = "flood: " + err.Error()
		return r
	}
	defer fl.close()
	smp := startTLSSampler(srv.Pid(), fl)
	sampling := true
	defer func() {
		if sampling {
			smp.end()
		}
	}()
	t0 := time.Now()
	fl.start(cert.hello)
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		r.ProbeDuringAt = fl.waitProgress(*tlsProbeAt, time.Second)
		r.ProbeDuring = probe(srv.addr, cert.client, *probeTimeout)
	}()
	fl.wait()
	r.WriteS = time.Since(t0).Seconds()
	r.RSSEnd, _ = vmRSS(srv.Pid())
	r.Written = fl.totalWritten()
	for _, e := range fl.ends {
		r.Ends[e]++
	}
	<-probed

	// What the server read. It may still be taking what waits in its
	// receive queues: wait until that stops growing for 1 s, or the
	// flood's bound.
	last, since := int64(-1), time.Now()
	for {
		n, lower, err := fl.serverRead(smp)
		if err != nil {
			r.Notes = append(r.Notes, "/proc/net/tcp: "+err.Error())
			break
		}
		r.ServerRead, r.ReadLowerBound = n, lower
		if n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) >= time.Second || time.Since(t0) >= *tlsFloodTime {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.ReadS = time.Since(t0).Seconds()
	fl.close()
	r.EchoBefore, r.EchoDuring = ec.stop()
	if ec.firstErr != "" {
		r.Notes = append(r.Notes, "first echo error: "+ec.firstErr)
	}

	// After the flood, with the holders, then without.
	time.Sleep(*settle)
	r.RSSAfter, _ = vmRSS(srv.Pid())
	r.RSSPeak = max(smp.end(), r.RSSEnd, r.RSSAfter)
	sampling = false
	_, r.HWM, _ = vmRSSHWM(srv.Pid())
	r.ProbeAfter = probe(srv.addr, cert.client, *probeTimeout)
	closeAll(holders)
	time.Sleep(100 * time.Millisecond)
	r.ProbeReleased = probe(srv.addr, cert.client, *probeTimeout)
	r.Alive = srv.Alive()
	if !r.Alive {
		<-srv.Exited
		r.Tail = srv.Out.LastLines(6)
	}
	fmt.Fprintf(os.Stderr, "  %s: %.1f MiB written, %.1f MiB read by the server, VmRSS %.1f -> peak %.1f -> %.1f MiB; wss: %s / %s / %s / %s\n",
		spec.Name, mib(r.Written), mib(r.ServerRead), mib(r.RSSBefore), mib(r.RSSPeak), mib(r.RSSAfter),
		r.ProbeHolders, r.ProbeDuring, r.ProbeAfter, r.ProbeReleased)
	return r
}

// dialHolders opens n TCP connections to addr, 32 dials at a time, and
// writes send on each (nothing when empty).
func dialHolders(addr string, n int, send []byte) ([]net.Conn, map[string]int) {
	var mu sync.Mutex
	var conns []net.Conn
	failed := map[string]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(32, max(n, 1)) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err == nil && len(send) > 0 {
					_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if _, err = c.Write(send); err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					failed[classify(err)]++
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(failed) == 0 {
		failed = nil
	}
	return conns, failed
}

// flood is the flooding sockets and what each has written.
type flood struct {
	conns   []net.Conn
	keys    []tcpKey // client end first
	written []atomic.Int64
	ends    []string
	total   int64 // bytes to write over all sockets
	wg      sync.WaitGroup
	done    chan struct{} // closed when every socket's writes have ended
	once    sync.Once
}

func dialFlood(addr string, n int) (*flood, error) {
	fl := &flood{written: make([]atomic.Int64, n), ends: make([]string, n), total: *tlsFloodBytes, done: make(chan struct{})}
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fl.close()
			return nil, fmt.Errorf("dial %d of %d: %s", len(fl.conns)+1, n, classify(err))
		}
		local, _ := netip.ParseAddrPort(c.LocalAddr().String())
		remote, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		fl.conns = append(fl.conns, c)
		fl.keys = append(fl.keys, tcpKey{local, remote})
	}
	return fl, nil
}

// start makes every socket write its share of the flood: hello, then
// zeros.
func (fl *flood) start(hello []byte) {
	n := int64(len(fl.conns))
	first := append(slices.Clone(hello), make([]byte, floodChunk-len(hello))...)
	zeros := make([]byte, floodChunk)
	for i, c := range fl.conns {
		share := fl.total / n
		if int64(i) < fl.total%n {
			share++
		}
		fl.wg.Go(func() {
			fl.ends[i] = floodWrite(c, first, zeros, share, *tlsFloodTime, *stall, &fl.written[i])
		})
	}
	go func() { fl.wg.Wait(); close(fl.done) }()
}

// wait waits for every socket's writes to end.
func (fl *flood) wait() { <-fl.done }

// serverRead is what the server has read of the flood so far (see
// readBySocket); for a socket that is gone, the sampler's last figure,
// and then lower is true.
func (fl *flood) serverRead(smp *tlsSampler) (n int64, lower bool, err error) {
	w := fl.writtenEach()
	q, err := readTCPQueues()
	if err != nil {
		return 0, false, err
	}
	for i := range fl.conns {
		if k, ok := fl.readBySocket(i, w[i], q); ok {
			n += k
		} else {
			n += smp.lastRead(i)
			lower = true
		}
	}
	return n, lower, nil
}

// writtenEach returns what each socket has written so far.
func (fl *flood) writtenEach() []int64 {
	w := make([]int64, len(fl.written))
	for i := range fl.written {
		w[i] = fl.written[i].Load()
	}
	return w
}

func (fl *flood) totalWritten() int64 {
	var t int64
	for i := range fl.written {
		t += fl.written[i].Load()
	}
	return t
}

// waitProgress returns the bytes written once they reach at, once the
// writes have made no progress for idle, or once they have all ended.
func (fl *flood) waitProgress(at int64, idle time.Duration) int64 {
	last, since := int64(-1), time.Now()
	for {
		w := fl.totalWritten()
		if w != last {
			last, since = w, time.Now()
		}
		if w >= at || time.Since(since) >= idle {
			return w
		}
		select {
		case <-fl.done:
			return fl.totalWritten()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readBySocket is what the server has read of socket i's bytes: w, what
// the client had written before q was read, less what waits in the
// client's send queue and in the server's receive queue. It reports false
// when either socket is not in q (closed). While the client writes, the
// figure is a lower bound: w counts a write once it returns, and bytes
// that have reached the server but whose acknowledgment has not reached
// the client are in both queues.
func (fl *flood) readBySocket(i int, w int64, q map[tcpKey]tcpQueues) (int64, bool) {
	k := fl.keys[i]
	cq, ok1 := q[k]
	sq, ok2 := q[tcpKey{k.remote, k.local}]
	if !ok1 || !ok2 {
		return 0, false
	}
	return max(0, w-cq.tx-sq.rx), true
}

// close resets the flooding sockets (SO_LINGER 0), so that what waits in
// the server's receive queues is dropped: the flood ends here, and the
// server does not go on reading it.
func (fl *flood) close() {
	fl.once.Do(func() {
		for _, c := range fl.conns {
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
}

// tlsSampler reads the server's VmRSS and the flood's bytes read by the
// server every 50 ms.
type tlsSampler struct {
	mu   sync.Mutex
	peak int64
	read []int64 // the last figure of each socket while it was there
	stop chan struct{}
	done chan struct{}
}

func startTLSSampler(pid int, fl *flood) *tlsSampler {
	s := &tlsSampler{read: make([]int64, len(fl.conns)), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			rss, _ := vmRSS(pid)
			w := fl.writtenEach() // before the queues (see readBySocket)
			q, _ := readTCPQueues()
			s.mu.Lock()
			s.peak = max(s.peak, rss)
			for i := range fl.conns {
				if n, ok := fl.readBySocket(i, w[i], q); ok {
					s.read[i] = max(s.read[i], n)
				}
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *tlsSampler) lastRead(i int) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read[i]
}

// end stops the sampler and returns the peak VmRSS.
func (s *tlsSampler) end() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Echo phases.
const (
	phaseBefore = iota
	phaseFlood
	phaseStop
)

// echoes keeps wss connections echoing, one message in flight each, and
// records each round trip under the phase it began in.
type echoes struct {
	conns    []*wsConn
	phase    atomic.Int32
	mu       sync.Mutex
	lat      [][2][]time.Duration // per connection, per phase (before, flood)
	errs     [][2]int
	firstErr string
	wg       sync.WaitGroup
}

// startEchoes opens n wss connections to addr and starts their echoes.
func startEchoes(addr string, cfg *tls.Config, n int) (*echoes, error) {
	e := &echoes{lat: make([][2][]time.Duration, n), errs: make([][2]int, n)}
	for range n {
		c, step, err := dialWS(addr, cfg, time.Now().Add(5*time.Second))
		if err != nil {
			e.close()
			return nil, fmt.Errorf("%s: %s", step, classify(err))
		}
		e.conns = append(e.conns, c)
	}
	for i, c := range e.conns {
		e.wg.Go(func() { e.run(i, c) })
	}
	return e, nil
}

func (e *echoes) run(i int, c *wsConn) {
	for {
		ph := e.phase.Load()
		if ph >= phaseStop {
			return
		}
		t := time.Now()
		err := c.echo(fmt.Appendf(nil, "echo %11d", t.UnixNano()%1e11), t.Add(echoTimeout))
		d := time.Since(t)
		e.mu.Lock()
		if err != nil {
			e.errs[i][ph]++
			if e.firstErr == "" {
				e.firstErr = fmt.Sprintf("connection %d: %s after %s", i, classify(err), fmtDuration(d))
			}
		} else {
			e.lat[i][ph] = append(e.lat[i][ph], d)
		}
		e.mu.Unlock()
		if err != nil {
			return // the connection's stream is lost
		}
		time.Sleep(echoPace)
	}
}

// next moves the echoes to phase ph.
func (e *echoes) next(ph int32) { e.phase.Store(ph) }

// stop ends the echoes and sums up both phases.
func (e *echoes) stop() (before, flood []latency) {
	e.next(phaseStop)
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.lat {
		before = append(before, summarize(e.lat[i][phaseBefore], e.errs[i][phaseBefore]))
		flood = append(flood, summarize(e.lat[i][phaseFlood], e.errs[i][phaseFlood]))
	}
	return before, flood
}

func (e *echoes) close() {
	for _, c := range e.conns {
		c.Close()
	}
}

// summarize sums up round trips.
func summarize(ds []time.Duration, errs int) latency {
	l := latency{N: len(ds), Errors: errs}
	if len(ds) == 0 {
		return l
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	us := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))].Nanoseconds()) / 1e3
	}
	l.P50us, l.P99us, l.MaxUs = us(0.5), us(0.99), float64(ds[len(ds)-1].Nanoseconds())/1e3
	return l
}
