package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Bounds: the flood tests of the table in doc.go ("# Bounds"). Each drives
// one place where a peer's bytes wait in the server past its bound, from
// real sockets on 127.0.0.1, samples the heap every 10 ms while it runs
// (memPeak) and fails when the peak passes the figure the row states, and
// shows that another connection keeps getting echoes meanwhile
// (servingProbe). Clients and server share this process, so a peak
// includes the clients' few buffers: they are built before sampling starts.

// mib formats n bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// heapObjects is the bytes of heap objects, live or not yet swept (what
// runtime.MemStats calls HeapAlloc), read without stopping the world.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// memPeak samples heapObjects every 10 ms on its own goroutine and keeps
// the highest figure. While it runs the GC target is 10% (not the default
// 100%), so that the peak is what the process holds plus at most a tenth
// of it in garbage, not up to twice: a held buffer is live and counts
// whole, while garbage left by earlier tests or by the clients barely
// counts.
type memPeak struct {
	base  uint64
	peak  atomic.Uint64
	stop  chan struct{}
	done  chan struct{}
	gcPct int
	once  sync.Once
}

// startMemPeak collects garbage, takes the baseline and starts sampling;
// the test's end stops it if the test has not.
func startMemPeak(t testing.TB) *memPeak {
	t.Helper()
	m := &memPeak{stop: make(chan struct{}), done: make(chan struct{})}
	m.gcPct = debug.SetGCPercent(10)
	runtime.GC()
	runtime.GC()
	m.base = heapObjects()
	m.peak.Store(m.base)
	go m.run()
	t.Cleanup(func() { m.end() })
	return m
}

func (m *memPeak) run() {
	defer close(m.done)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stop:
			m.sample()
			return
		case <-tick.C:
			m.sample()
		}
	}
}

func (m *memPeak) sample() {
	h := heapObjects()
	for {
		p := m.peak.Load()
		if h <= p || m.peak.CompareAndSwap(p, h) {
			return
		}
	}
}

// growth is the peak's growth over the baseline so far.
func (m *memPeak) growth() int64 {
	m.sample()
	return int64(m.peak.Load()) - int64(m.base)
}

// retained collects garbage and returns what the heap holds now over the
// baseline: what stays after a flood.
func (m *memPeak) retained() int64 {
	runtime.GC()
	runtime.GC()
	return int64(heapObjects()) - int64(m.base)
}

// end stops sampling and returns the peak growth.
func (m *memPeak) end() int64 {
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		debug.SetGCPercent(m.gcPct)
	})
	return int64(m.peak.Load()) - int64(m.base)
}

// check stops sampling and fails t if the heap's peak grew by more than
// limit bytes.
func (m *memPeak) check(t testing.TB, limit int64, what string) {
	t.Helper()
	g := m.end()
	t.Logf("%s: the heap peaked %s above its start of %s (bound %s)", what, mib(g), mib(int64(m.base)), mib(limit))
	if g > limit {
		t.Errorf("%s: the heap peaked %s above its start, over the bound of %s", what, mib(g), mib(limit))
	}
}

// servingProbe is an upgraded connection that echoes a message every
// 10 ms on a goroutine of its own while a flood runs, to show that the
// server keeps serving other connections.
type servingProbe struct {
	dial   func(testing.TB) net.Conn
	c      net.Conn
	br     *bufio.Reader
	echoes atomic.Int64
	err    atomic.Pointer[error]
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

var probeFrame = clientFrame(ws.OpText, true, []byte("probe"))

// rawDialer upgrades a plain connection to addr.
func rawDialer(addr string) func(testing.TB) net.Conn {
	return func(t testing.TB) net.Conn { return upgradeRaw(t, addr) }
}

// startProbe opens the probe's connection with dial, checks one echo and
// starts echoing.
func startProbe(t testing.TB, dial func(testing.TB) net.Conn) *servingProbe {
	t.Helper()
	p := &servingProbe{dial: dial, stop: make(chan struct{}), done: make(chan struct{})}
	p.c = dial(t)
	p.br = bufio.NewReader(p.c)
	if err := echoOnce(p.c, p.br); err != nil {
		t.Fatalf("the probe's first echo: %v", err)
	}
	go p.run()
	t.Cleanup(p.halt)
	return p
}

// echoOnce sends the probe's message on c and reads its echo, within 20 s.
func echoOnce(c net.Conn, br *bufio.Reader) error {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(probeFrame); err != nil {
		return err
	}
	for {
		f, err := ws.ReadFrame(br)
		switch {
		case err != nil:
			return err
		case f.Header.OpCode == ws.OpPing:
			continue
		case f.Header.OpCode != ws.OpText || string(f.Payload) != "probe":
			return fmt.Errorf("the echo is %v %q", f.Header.OpCode, f.Payload)
		}
		return nil
	}
}

func (p *servingProbe) run() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if err := echoOnce(p.c, p.br); err != nil {
			p.err.Store(&err)
			return
		}
		p.echoes.Add(1)
	}
}

func (p *servingProbe) halt() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
	})
}

// mark returns the count of echoes so far, for since.
func (p *servingProbe) mark() int64 { return p.echoes.Load() }

// since returns the echoes after mark.
func (p *servingProbe) since(mark int64) int64 { return p.echoes.Load() - mark }

// waitEchoes waits until the probe has echoed n times after mark, for at
// most 20 s: the flood is still on while it waits.
func (p *servingProbe) waitEchoes(t testing.TB, mark, n int64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d echoes of the probe during the flood", n), func() bool {
		if e := p.err.Load(); e != nil {
			t.Fatalf("the probe failed during the flood: %v", *e)
		}
		return p.since(mark) >= n
	})
}

// end stops the probe and checks that its connection never failed and
// still echoes, and that a new connection is served too.
func (p *servingProbe) end(t testing.TB) {
	t.Helper()
	p.halt()
	if e := p.err.Load(); e != nil {
		t.Fatalf("the probe failed during the flood: %v", *e)
	}
	if err := echoOnce(p.c, p.br); err != nil {
		t.Fatalf("the probe's echo after the flood: %v", err)
	}
	c := p.dial(t)
	if err := echoOnce(c, bufio.NewReader(c)); err != nil {
		t.Fatalf("a new connection's echo after the flood: %v", err)
	}
	c.Close()
	t.Logf("the probe echoed %d times", p.echoes.Load())
}

// flood paces workers that send bytes at the server: it goes on until
// volume bytes were sent and the probe has echoed at least 3 times since
// the flood began, for at most 30 s.
type flood struct {
	volume   int64
	sent     atomic.Int64
	probe    *servingProbe
	mark     int64
	deadline time.Time
}

func newFlood(p *servingProbe, volume int64) *flood {
	return &flood{volume: volume, probe: p, mark: p.mark(), deadline: time.Now().Add(30 * time.Second)}
}

// more reports whether the workers should go on.
func (f *flood) more() bool {
	return time.Now().Before(f.deadline) && (f.sent.Load() < f.volume || f.probe.since(f.mark) < 3)
}

func (f *flood) add(n int) { f.sent.Add(int64(n)) }

// run runs n workers until more says stop, then checks that the flood
// was complete.
func (f *flood) run(t testing.TB, n int, worker func(w int)) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(w)
		}()
	}
	wg.Wait()
	sent, echoes := f.sent.Load(), f.probe.since(f.mark)
	t.Logf("flood: %s sent, %d echoes of the probe meanwhile", mib(sent), echoes)
	if e := f.probe.err.Load(); e != nil {
		t.Fatalf("the probe failed during the flood: %v", *e)
	}
	if sent < f.volume || echoes < 3 {
		t.Fatalf("flood incomplete after 30 s: %s of %s sent, %d echoes of the probe", mib(sent), mib(f.volume), echoes)
	}
}

// dialQuiet dials addr from the local address ip (nil: any) without
// failing the test; the caller closes the connection.
func dialQuiet(addr string, ip net.IP) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return d.Dial("tcp", addr)
}

// upgradeQuiet upgrades a connection to addr with the extra header lines,
// without failing the test (flood workers run on goroutines of their
// own); it returns the connection, its reader after the 101, and the
// response head. The caller closes the connection.
func upgradeQuiet(addr, extra string) (net.Conn, *bufio.Reader, string, error) {
	c, err := dialQuiet(addr, nil)
	if err != nil {
		return nil, nil, "", err
	}
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	br := bufio.NewReader(c)
	var head strings.Builder
	_, err = c.Write([]byte(req))
	for err == nil {
		var line string
		line, err = br.ReadString('\n')
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	if err == nil && !strings.HasPrefix(head.String(), "HTTP/1.1 101 ") {
		err = fmt.Errorf("no upgrade: %q", head.String())
	}
	if err != nil {
		c.Close()
		return nil, nil, head.String(), err
	}
	return c, br, head.String(), nil
}

// statusOf reads the status code of the HTTP answer on c, 0 if none
// arrives within 10 s.
func statusOf(c net.Conn) int {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBoundsSocketFlood: sockets the kernel queues and the acceptor takes
// (3,000 connects, each sending a request head just under
// WithMaxHeaderBytes and never ending it) hold no more than the socket
// cap allows: the excess is answered with 503 and closed, and the heap
// grows by at most the cap times (WithMaxHeaderBytes + 4 KiB), plus the
// clients' own sockets.
func TestBoundsSocketFlood(t *testing.T) {
	const capSockets, sockets = 300, 3000
	const headerBytes = 8 << 10 // the default WithMaxHeaderBytes
	srv, addr := startServer(t, echoHandler{}, WithMaxConnections(capSockets), WithHandshakeTimeout(time.Minute))
	probe := startProbe(t, rawDialer(addr))
	partial := []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", headerBytes-128) + "\r\n")
	conns := make([]net.Conn, sockets)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	mem := startMemPeak(t)
	var next, dialed atomic.Int64
	var maxSockets atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < sockets; i = next.Add(1) - 1 {
				c, err := dialQuiet(addr, nil)
				if err != nil {
					continue // a full backlog drops SYNs: the kernel's bound
				}
				conns[i] = c
				dialed.Add(1)
				_, _ = c.Write(partial)
				if n := int64(srv.Stats().Sockets); n > maxSockets.Load() {
					maxSockets.Store(n)
				}
			}
		}()
	}
	wg.Wait()
	// The flood's sockets are held while the probe echoes, and the
	// acceptor takes the last ones off the kernel's queue.
	probe.waitEchoes(t, probe.mark(), 3)
	var st Stats
	waitFor(t, 20*time.Second, "every socket to be admitted or refused", func() bool {
		st = srv.Stats()
		return int64(st.RejectedUpgrades)+int64(st.Sockets-1) >= dialed.Load()
	})
	t.Logf("%d connects: %d sockets held at most, %d refused with 503", dialed.Load(), maxSockets.Load(), st.RejectedUpgrades)
	if maxSockets.Load() > capSockets || st.Sockets > capSockets {
		t.Errorf("%d sockets held, over the cap of %d", max(maxSockets.Load(), int64(st.Sockets)), capSockets)
	}
	if want := dialed.Load() - (capSockets - 1); int64(st.RejectedUpgrades) < want {
		t.Errorf("%d sockets refused; %d were over the cap", st.RejectedUpgrades, want)
	}
	for i := sockets - 1; i >= 0; i-- { // the last one connected: the cap was full by then
		if c := conns[i]; c != nil {
			if got := statusOf(c); got != 503 {
				t.Errorf("the last socket got status %d, want 503", got)
			}
			break
		}
	}
	// Each client socket costs the test about 1 KiB of heap too.
	mem.check(t, capSockets*(headerBytes+4<<10)+sockets*(1<<10)+4<<20, "3,000 sockets against a cap of 300")
	for i, c := range conns {
		if c != nil {
			c.Close()
			conns[i] = nil
		}
	}
	waitFor(t, 10*time.Second, "the flood's sockets to close", func() bool { return srv.Stats().Sockets == 1 })
	probe.end(t)
}

// blockHandler echoes, except that the message "block" blocks its event
// loop until the test releases it (or 20 s pass): a stalled loop.
type blockHandler struct {
	echoHandler
	blocked chan struct{}
	release chan struct{}
}

func newBlockHandler() *blockHandler {
	return &blockHandler{blocked: make(chan struct{}, 1), release: make(chan struct{})}
}

func (h *blockHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if string(p) != "block" {
		h.echoHandler.OnMessage(c, op, p)
		return
	}
	h.blocked <- struct{}{}
	select {
	case <-h.release:
	case <-time.After(20 * time.Second):
	}
}

// TestBoundsEnrollQueue: while the only event loop is stalled, accepted
// sockets wait in the acceptor's queue for it; the socket cap bounds the
// queue (1,000 connects against a cap of 200: the excess is answered with
// 503 at once, the loop stalled or not), and the queued sockets are
// served once the loop is back.
func TestBoundsEnrollQueue(t *testing.T) {
	const capSockets, sockets = 200, 1000
	h := newBlockHandler()
	srv, addr := startServer(t, h, WithEventLoops(1), WithMaxConnections(capSockets), WithHandshakeTimeout(time.Minute))
	probe := startProbe(t, rawDialer(addr))
	blocker := upgradeRaw(t, addr)
	conns := make([]net.Conn, 0, sockets)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	mem := startMemPeak(t)
	if _, err := blocker.Write(clientFrame(ws.OpText, true, []byte("block"))); err != nil {
		t.Fatal(err)
	}
	<-h.blocked
	maxSockets := 0
	for range sockets {
		c, err := dialQuiet(addr, nil)
		if err != nil {
			continue
		}
		conns = append(conns, c)
		maxSockets = max(maxSockets, srv.Stats().Sockets)
	}
	last := statusOf(conns[len(conns)-1]) // answered by the acceptor, the loop still stalled
	st := srv.Stats()
	close(h.release)
	t.Logf("%d connects while the loop was stalled: %d sockets held at most, %d refused", len(conns), maxSockets, st.RejectedUpgrades)
	if maxSockets > capSockets {
		t.Errorf("%d sockets held, over the cap of %d", maxSockets, capSockets)
	}
	if last != 503 {
		t.Errorf("the last socket got status %d while the loop was stalled, want 503", last)
	}
	if want := uint64(len(conns) - (capSockets - 2)); st.RejectedUpgrades < want { // the probe and the blocker hold two
		t.Errorf("%d sockets refused, want at least %d", st.RejectedUpgrades, want)
	}
	mem.check(t, capSockets*(4<<10)+sockets*(1<<10)+4<<20, "1,000 connects to a stalled loop against a cap of 200")
	// The queued sockets reach the loop.
	waitFor(t, 10*time.Second, "the queued sockets to reach the loop", func() bool {
		s := srv.Stats()
		return s.ConnsPerLoop[0] == s.Sockets
	})
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, 10*time.Second, "the flood's sockets to close", func() bool { return srv.Stats().Sockets == 2 })
	probe.end(t)
}

// TestBoundsHeaderFlood: request heads that never end (one endless line,
// or endless header lines), 64 MiB of them on four sockets at a time, are
// answered with 431 once WithMaxHeaderBytes has arrived, and what follows
// is discarded until the socket closes: a socket holds at most the bound
// plus one read.
func TestBoundsHeaderFlood(t *testing.T) {
	srv, addr := startServer(t, echoHandler{})
	probe := startProbe(t, rawDialer(addr))
	lines := bytes.Repeat([]byte("X-Flood: "+strings.Repeat("a", 1013)+"\r\n"), 64) // 64 KiB
	endless := bytes.Repeat([]byte("a"), 64<<10)
	mem := startMemPeak(t)
	f := newFlood(probe, 64<<20)
	var statuses sync.Map // status -> *atomic.Int64
	f.run(t, 4, func(w int) {
		chunk := lines
		if w%2 == 1 {
			chunk = endless
		}
		for f.more() {
			c, err := dialQuiet(addr, nil)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			got := make(chan int, 1)
			go func() { got <- statusOf(c) }()
			_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
			for f.more() {
				n, err := c.Write(chunk)
				f.add(n)
				if err != nil {
					break // the server closed the socket after its answer
				}
			}
			c.Close()
			n, _ := statuses.LoadOrStore(<-got, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	})
	// A socket holds at most WithMaxHeaderBytes plus one read (64 KiB).
	mem.check(t, 4*(8<<10+64<<10)+4<<20, "64 MiB of request heads")
	statuses.Range(func(k, v any) bool {
		t.Logf("status %d: %d sockets", k, v.(*atomic.Int64).Load())
		if k.(int) != 431 {
			t.Errorf("%d sockets got status %d, want 431", v.(*atomic.Int64).Load(), k)
		}
		return true
	})
	waitFor(t, 10*time.Second, "the flood's sockets to close", func() bool { return srv.Stats().Sockets == 1 })
	probe.end(t)
}

// TestBoundsProxyHeader: with WithProxyProtocol, a trusted peer's PROXY
// header waits for the rest of it up to codec.MaxProxyHeader (4,112
// bytes); 100 sockets holding a partial one hold that much each, and a
// flood of headers that cannot end (a v1 line without CRLF, a v2 header
// announcing 64 KiB) is closed as soon as that is certain.
func TestBoundsProxyHeader(t *testing.T) {
	balancer := net.IP{127, 0, 0, 2}
	srv, addr := startServer(t, echoHandler{}, WithProxyProtocol(netip.MustParsePrefix("127.0.0.2/32")),
		WithHandshakeTimeout(time.Minute))
	probe := startProbe(t, rawDialer(addr)) // from 127.0.0.1: not a balancer, served as usual
	v2 := func(length int) []byte {
		h := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x00")
		h[14], h[15] = byte(length>>8), byte(length)
		return h
	}
	partial := append(v2(4096), make([]byte, 4000)...) // 96 bytes short
	junk := bytes.Repeat([]byte("a"), 64<<10)
	const held = 100
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	mem := startMemPeak(t)
	for range held {
		c, err := dialQuiet(addr, balancer)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(partial); err != nil {
			t.Fatal(err)
		}
	}
	f := newFlood(probe, 32<<20)
	f.run(t, 4, func(w int) {
		head := []byte("PROXY ")
		if w%2 == 1 {
			head = v2(0xffff)
		}
		for f.more() {
			c, err := dialQuiet(addr, balancer)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			_, _ = c.Write(head)
			for f.more() {
				n, err := c.Write(junk)
				f.add(n)
				if err != nil {
					break // closed by the server
				}
			}
			c.Close()
		}
	})
	if st := srv.Stats(); st.Sockets < held+1 || st.ProxyRejected == 0 {
		t.Errorf("%d sockets open (want the %d partial headers and the probe), %d PROXY headers rejected",
			st.Sockets, held, st.ProxyRejected)
	}
	mem.check(t, held*(8<<10)+4*(64<<10)+4<<20, "100 partial PROXY headers and 32 MiB of endless ones")
	probe.end(t)
}

// TestBoundsHTTPPipeline: clients that pipeline plain HTTP requests (8
// sockets, 2,000 requests each, answered with 4 KiB) and never read get
// answers until those not yet read reach WithMaxOutboundBytes (64 KiB),
// the last with Connection: close; the requests after it are discarded.
func TestBoundsHTTPPipeline(t *testing.T) {
	const sockets, requests, capBytes = 8, 2000, 64 << 10
	body := make([]byte, 4096)
	var served atomic.Int64
	srv, addr := startServer(t, echoHandler{}, WithMaxOutboundBytes(capBytes), WithLoopHTTPHandler(func(*Request) HTTPResponse {
		served.Add(1)
		return HTTPResponse{Body: body}
	}))
	probe := startProbe(t, rawDialer(addr))
	reqs := bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), requests)
	conns := make([]net.Conn, sockets)
	for i := range conns {
		conns[i] = dialSlowReader(t, addr)
	}
	mem := startMemPeak(t)
	mark := probe.mark()
	for _, c := range conns {
		if _, err := c.Write(reqs); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the requests to be served", func() bool { return served.Load() >= sockets*10 })
	probe.waitEchoes(t, mark, 3)
	t.Logf("%d of %d pipelined requests (%s of answers) served", served.Load(), sockets*requests, mib(sockets*requests*int64(len(body))))
	mem.check(t, sockets*(capBytes+int64(len(body)))+4<<20, "pipelined requests never read")
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		n := 0
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("socket %d, after %d answers: %v", i, n, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			n++
			if resp.Close {
				break
			}
		}
		if n > 2*capBytes/len(body) {
			t.Errorf("socket %d got %d answers before the close; the cap allows about %d", i, n, capBytes/len(body))
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			t.Errorf("socket %d after the close: %d bytes, %v", i, len(rest), err)
		}
	}
	waitFor(t, 10*time.Second, "the sockets to close", func() bool { return srv.Stats().Sockets == 1 })
	probe.end(t)
}
