// Command loadgen is the benchmark's load generator: one process holds a
// share of the connections (the orchestrator starts several, each with its
// own loopback source addresses, to pass the per-process file limit).
//
// It is lean rather than event-driven: one goroutine per connection over a
// plain net.Conn (Go's netpoller underneath), masked frames written from a
// per-connection buffer, a reusable read buffer, no allocation per message.
// Every echoed byte is compared with what was sent; a mismatch, a wrong
// opcode, a close or an I/O error counts as an error and makes the process
// exit 1. Its own CPU time is reported so that a saturated client shows.
//
// Protocol with the orchestrator, one line each on stdout:
//
//	CONNECTED <n> <dial seconds>   after dialing (and warming up)
//	GO                             read from stdin: start measuring
//	CHECK                          read from stdin (idle mode): verify every connection
//	RESULT <json>                  the figures
//
// Modes: idle, echo (one message in flight per connection), pipeline
// (-depth frames in one write, then all echoes), connect (dial -conns
// after GO), fanout (-conns subscribers and one publisher on a room server).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

var (
	addr     = flag.String("addr", "127.0.0.1:9001", "server address")
	mode     = flag.String("mode", "echo", "idle, echo, pipeline, connect or fanout")
	conns    = flag.Int("conns", 100, "connections (fanout: subscribers)")
	size     = flag.Int("size", 64, "payload bytes")
	depth    = flag.Int("depth", 16, "pipeline: frames per write")
	duration = flag.Duration("duration", 10*time.Second, "measured phase")
	warmup   = flag.Duration("warmup", time.Second, "traffic before CONNECTED (echo, pipeline, fanout)")
	srcList  = flag.String("src", "", "comma-separated local source IPs, used round robin")
	dialConc = flag.Int("dial-concurrency", 200, "dials in flight")
	binFlag  = flag.Bool("binary", true, "binary messages (text when false)")
	inflight = flag.Int("inflight", 1, "fanout: publishes outstanding")
	goNow    = flag.Bool("go", false, "start at once instead of waiting for GO on stdin")
)

// Result is the RESULT line.
type Result struct {
	Mode        string     `json:"mode"`
	Conns       int        `json:"conns"`
	Size        int        `json:"size"`
	Depth       int        `json:"depth,omitempty"`
	Inflight    int        `json:"inflight,omitempty"`
	DurationS   float64    `json:"duration_s"`
	Messages    uint64     `json:"messages"`
	Bytes       uint64     `json:"bytes"`
	Errors      uint64     `json:"errors"`
	MsgsPerS    float64    `json:"msgs_per_s"`
	P50us       float64    `json:"p50_us"`
	P99us       float64    `json:"p99_us"`
	P999us      float64    `json:"p999_us"`
	MaxUs       float64    `json:"max_us"`
	LoadgenCPUS float64    `json:"loadgen_cpu_s"`
	ConnectsPS  float64    `json:"connects_per_s,omitempty"`
	Alive       int        `json:"alive,omitempty"`
	Publishes   uint64     `json:"publishes,omitempty"`
	Hist        *hist.Hist `json:"hist"`
}

var (
	errCount atomic.Uint64
	msgCount atomic.Uint64
	stop     atomic.Bool
	srcs     []net.IP
	opcode   = ws.OpBinary
)

func fail(format string, args ...any) {
	if errCount.Add(1) <= 10 {
		fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	}
}

// hists is a sharded histogram: workers record under one shard's lock.
type shardedHist [16]struct {
	sync.Mutex
	h hist.Hist
}

func (s *shardedHist) record(i int, d time.Duration) {
	sh := &s[i%len(s)]
	sh.Lock()
	sh.h.Record(int64(d))
	sh.Unlock()
}

func (s *shardedHist) merged() *hist.Hist {
	var h hist.Hist
	for i := range s {
		s[i].Lock()
		h.Merge(&s[i].h)
		s[i].Unlock()
	}
	return &h
}

var lat shardedHist

// fill writes a payload that identifies message seq of connection id:
// ASCII, so that it is valid text too, and cheap to make.
func fill(p []byte, id int, seq uint64) {
	const hexd = "0123456789abcdef"
	var head [16]byte
	v := uint64(uint32(id))<<32 | uint64(uint32(seq))
	for i := 15; i >= 0; i-- {
		head[i] = hexd[v&15]
		v >>= 4
	}
	n := copy(p, head[:])
	if n < len(p) {
		off := int((seq + uint64(id)) % 26)
		copy(p[n:], alphabet[off:off+len(p)-n])
	}
}

// alphabet repeats a-z; payloads are windows of it.
var alphabet []byte

func makeAlphabet(n int) {
	alphabet = make([]byte, n+26)
	for i := range alphabet {
		alphabet[i] = 'a' + byte(i%26)
	}
}

func dial(i int) (*wsload.Conn, error) {
	var src net.IP
	if len(srcs) > 0 {
		src = srcs[i%len(srcs)]
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var c *wsload.Conn
		if c, err = wsload.Dial(*addr, src, 10*time.Second); err == nil {
			return c, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, err
}

// dialAll opens n connections with -dial-concurrency in flight.
func dialAll(n int) ([]*wsload.Conn, time.Duration) {
	out := make([]*wsload.Conn, n)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < *dialConc && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := dial(i)
				if err != nil {
					fail("dial %d: %v", i, err)
					continue
				}
				out[i] = c
			}
		}()
	}
	wg.Wait()
	return out, time.Since(start)
}

// echoOnce sends one message and verifies its echo.
func echoOnce(c *wsload.Conn, id int, seq uint64, payload []byte, scratch *[]byte) bool {
	fill(payload, id, seq)
	c.AppendFrame(opcode, payload)
	if err := c.Flush(); err != nil {
		fail("conn %d: write: %v", id, err)
		return false
	}
	op, p, err := c.ReadMessage(scratch)
	if err != nil {
		fail("conn %d: read: %v", id, err)
		return false
	}
	if op != opcode || string(p) != string(payload) {
		fail("conn %d: echo mismatch (opcode %v, %d bytes, want %d)", id, op, len(p), len(payload))
		return false
	}
	return true
}

func lines() <-chan string {
	ch := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- strings.TrimSpace(sc.Text())
		}
		close(ch)
	}()
	return ch
}

func waitFor(in <-chan string, word string) {
	if *goNow && word == "GO" {
		return
	}
	for l := range in {
		if l == word {
			return
		}
	}
	if !*goNow {
		fmt.Fprintf(os.Stderr, "loadgen: stdin closed before %s\n", word)
		os.Exit(1)
	}
}

func main() {
	flag.Parse()
	if !*binFlag {
		opcode = ws.OpText
	}
	for _, s := range strings.Split(*srcList, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ip := net.ParseIP(s)
			if ip == nil {
				fmt.Fprintf(os.Stderr, "loadgen: bad -src %q\n", s)
				os.Exit(2)
			}
			srcs = append(srcs, ip)
		}
	}
	if *size < 16 && *mode == "fanout" {
		*size = 16
	}
	makeAlphabet(*size)
	in := lines()
	res := Result{Mode: *mode, Conns: *conns, Size: *size}
	switch *mode {
	case "echo", "pipeline":
		runEcho(in, &res)
	case "idle":
		runIdle(in, &res)
	case "connect":
		runConnect(in, &res)
	case "fanout":
		runFanout(in, &res)
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown -mode %q\n", *mode)
		os.Exit(2)
	}
	res.Errors = errCount.Load()
	if res.Hist == nil {
		res.Hist = lat.merged()
	}
	h := res.Hist
	res.P50us = us(h.Quantile(0.5))
	res.P99us = us(h.Quantile(0.99))
	res.P999us = us(h.Quantile(0.999))
	res.MaxUs = us(h.Max())
	if res.DurationS > 0 && res.MsgsPerS == 0 {
		res.MsgsPerS = float64(res.Messages) / res.DurationS
	}
	js, _ := json.Marshal(&res)
	fmt.Printf("RESULT %s\n", js)
	fmt.Fprintf(os.Stderr, "loadgen %s: conns=%d size=%d msgs=%d (%.0f/s) p50=%.0fµs p99=%.0fµs p99.9=%.0fµs cpu=%.2fs errors=%d\n",
		res.Mode, res.Conns, res.Size, res.Messages, res.MsgsPerS, res.P50us, res.P99us, res.P999us, res.LoadgenCPUS, res.Errors)
	if res.Errors > 0 {
		os.Exit(1)
	}
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func connected(n int, d time.Duration) {
	fmt.Printf("CONNECTED %d %.3f\n", n, d.Seconds())
}

func runEcho(in <-chan string, res *Result) {
	cs, dialTime := dialAll(*conns)
	d := 1
	if *mode == "pipeline" {
		d = *depth
		res.Depth = d
	}
	var warm, done sync.WaitGroup
	goCh := make(chan struct{})
	warmEnd := time.Now().Add(*warmup)
	for i, c := range cs {
		if c == nil {
			continue
		}
		warm.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			payloads := make([][]byte, d)
			for k := range payloads {
				payloads[k] = make([]byte, *size)
			}
			var scratch []byte
			var seq uint64
			round := func(record bool) bool {
				for k := range payloads {
					fill(payloads[k], i, seq+uint64(k))
					c.AppendFrame(opcode, payloads[k])
				}
				t0 := time.Now()
				if err := c.Flush(); err != nil {
					fail("conn %d: write: %v", i, err)
					return false
				}
				for k := range payloads {
					op, p, err := c.ReadMessage(&scratch)
					if err != nil {
						fail("conn %d: read: %v", i, err)
						return false
					}
					if op != opcode || string(p) != string(payloads[k]) {
						fail("conn %d: echo mismatch at message %d (opcode %v, %d bytes, want %d)", i, seq+uint64(k), op, len(p), len(payloads[k]))
						return false
					}
				}
				seq += uint64(d)
				if record {
					lat.record(i, time.Since(t0))
					msgCount.Add(uint64(d))
				}
				return true
			}
			ok := true
			for ok && time.Now().Before(warmEnd) {
				ok = round(false)
			}
			warm.Done()
			if !ok {
				return
			}
			<-goCh
			for !stop.Load() && round(true) {
			}
		}()
	}
	warm.Wait()
	connected(len(cs), dialTime)
	waitFor(in, "GO")
	cpu0 := proc.SelfCPU()
	start := time.Now()
	close(goCh)
	time.AfterFunc(*duration, func() { stop.Store(true) })
	done.Wait()
	res.DurationS = time.Since(start).Seconds()
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	res.Messages = msgCount.Load()
	res.Bytes = res.Messages * uint64(*size)
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

// verifyAll echoes one message on every connection, 500 at a time.
func verifyAll(cs []*wsload.Conn) int {
	var alive atomic.Int64
	sem := make(chan struct{}, 500)
	var wg sync.WaitGroup
	for i, c := range cs {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			payload := make([]byte, *size)
			var scratch []byte
			if echoOnce(c, i, 1<<31, payload, &scratch) {
				alive.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(alive.Load())
}

func runIdle(in <-chan string, res *Result) {
	cs, dialTime := dialAll(*conns)
	connected(len(cs), dialTime)
	waitFor(in, "GO")
	waitFor(in, "CHECK")
	cpu0 := proc.SelfCPU()
	start := time.Now()
	res.Alive = verifyAll(cs)
	res.DurationS = time.Since(start).Seconds()
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	res.Messages = uint64(res.Alive)
	if res.Alive != *conns {
		fail("%d of %d idle connections alive", res.Alive, *conns)
	}
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

func runConnect(in <-chan string, res *Result) {
	connected(0, 0)
	waitFor(in, "GO")
	cpu0 := proc.SelfCPU()
	cs := make([]*wsload.Conn, *conns)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var last atomic.Int64
	for w := 0; w < *dialConc && w < *conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *conns {
					return
				}
				t0 := time.Now()
				c, err := dial(i)
				if err != nil {
					fail("dial %d: %v", i, err)
					continue
				}
				lat.record(i, time.Since(t0))
				last.Store(int64(time.Since(start)))
				cs[i] = c
			}
		}()
	}
	wg.Wait()
	upgrades := time.Duration(last.Load())
	res.DurationS = upgrades.Seconds()
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	res.Alive = verifyAll(cs)
	res.Messages = uint64(res.Alive)
	if upgrades > 0 {
		res.ConnectsPS = float64(*conns) / upgrades.Seconds()
	}
	res.MsgsPerS = res.ConnectsPS
	if res.Alive != *conns {
		fail("%d of %d new connections alive", res.Alive, *conns)
	}
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}
