// Command loadgen is the benchmark's load generator. One process holds a
// share of the connections; the orchestrator (cmd/bench) starts several,
// each with its own loopback source addresses, to pass the per-process
// open-file limit and the per-address port range.
//
// Design: epoll-driven, not a goroutine per connection. The engine
// (internal/wsload) runs one epoll loop per GOMAXPROCS (one when pinned to
// one CPU) over raw non-blocking sockets: thousands of idle sockets cost a
// small struct each and no goroutine stack or read buffer, and an echo
// costs the client one write, one read and a share of an epoll_wait, with
// frames built in the loop's buffer and bytes checked as they arrive. The
// orchestrator reports the load generators' CPU (loadgen_cpu_s) so that a
// saturated client is visible.
//
// Every client frame is masked (a random mask per connection); the
// upgrade is a real RFC 6455 request and the 101, Upgrade, Connection and
// Sec-WebSocket-Accept are checked. Every echo is checked byte for byte
// against what was sent (a counter and a pseudo-random window that differ
// per message), with its opcode; masked frames from the server are
// unmasked and accepted. A mismatch, a wrong opcode, a close, a stall past
// -timeout or an I/O error counts as an error, and the process exits 1
// when there was any.
//
// Protocol with the orchestrator, one line each on stdout (human-readable
// lines go to stderr):
//
//	CONNECTED <n> <dial seconds>  all dialed and upgraded (echo, pipeline: warmed up too; connect: "0 0")
//	GO                            read from stdin: start the measured phase
//	CHECK                         read from stdin (idle): echo once on every connection
//	RESULT <json>                 the figures; then exit (with -hold: once stdin closes)
//
// Modes: idle (connections sit; CHECK verifies them), echo (one message in
// flight per connection for -duration), pipeline (-depth frames in one
// write, then all their echoes), connect (after GO, dial -conns with
// -dial-concurrency in flight; upgrades/s and per-upgrade latency, each
// new connection checked with one echo), churn (after GO, -conns
// connect/upgrade/echo/close cycles with -dial-concurrency in flight: even
// cycles close with a close frame and wait for the server's close frame
// and its FIN, odd ones close the socket without a close frame; cycles/s
// and per-cycle latency, socket() to the end of the close; connects_per_s
// and alive then count cycles).
//
// -json sends chat-like JSON instead of random characters; -deflate also
// offers permessage-deflate as a browser does, sends every message
// compressed (without context takeover) and inflates the echoes to check
// them. wire_bytes in RESULT counts what went over the sockets.
//
// By hand: loadgen -addr 127.0.0.1:9001 -mode echo -conns 100 -go
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

var (
	addrFlag = flag.String("addr", "127.0.0.1:9001", "server address (127.0.0.0/8 only)")
	mode     = flag.String("mode", "echo", "idle, echo, pipeline, connect or churn")
	conns    = flag.Int("conns", 100, "connections")
	size     = flag.Int("size", 64, "payload bytes")
	depth    = flag.Int("depth", 16, "pipeline: frames written at once per connection")
	duration = flag.Duration("duration", 10*time.Second, "measured phase (echo, pipeline; idle with -go: time before the check)")
	warmup   = flag.Duration("warmup", time.Second, "echo, pipeline: traffic before CONNECTED")
	srcList  = flag.String("src", "", "comma-separated local source IPs in 127.0.0.0/8, used round robin")
	dialConc = flag.Int("dial-concurrency", 200, "dials in flight")
	binFlag  = flag.Bool("binary", true, "binary messages (text when false)")
	timeout  = flag.Duration("timeout", 10*time.Second, "bound on one dial+upgrade and on one round trip")
	pollers  = flag.Int("pollers", 0, "epoll loops (0: GOMAXPROCS)")
	goNow    = flag.Bool("go", false, "do not wait for GO (nor CHECK) on stdin")
	hold     = flag.Bool("hold", false, "after RESULT keep the connections open until stdin closes or says EXIT")
	jsonFlag = flag.Bool("json", false, "chat-like JSON payloads (compressible) instead of random characters")
	deflate  = flag.Bool("deflate", false, "offer permessage-deflate as a browser does and send every message compressed (no context takeover); implies -json")
)

// Result is the RESULT line.
type Result struct {
	Mode         string         `json:"mode"`
	Conns        int            `json:"conns"`
	Size         int            `json:"size"`
	Depth        int            `json:"depth"`
	DurationS    float64        `json:"duration_s"`
	Messages     uint64         `json:"messages"`
	Bytes        uint64         `json:"bytes"`
	WireBytes    uint64         `json:"wire_bytes"` // written and read during the measured phase, frame headers included
	Errors       int64          `json:"errors"`
	MsgsPerS     float64        `json:"msgs_per_s"`
	P50us        float64        `json:"p50_us"`
	P99us        float64        `json:"p99_us"`
	P999us       float64        `json:"p999_us"`
	MaxUs        float64        `json:"max_us"`
	Hist         *hist.Hist     `json:"hist"`
	MsgP50us     float64        `json:"msg_p50_us,omitempty"`
	MsgP99us     float64        `json:"msg_p99_us,omitempty"`
	MsgHist      *hist.Hist     `json:"msg_hist,omitempty"`
	PerConn      *wsload.Spread `json:"per_conn,omitempty"` // echo, pipeline: round trips per connection
	LoadgenCPUS  float64        `json:"loadgen_cpu_s"`
	ConnectsPerS float64        `json:"connects_per_s"`
	Alive        int            `json:"alive"`
	Open         int            `json:"open"`
	DialS        float64        `json:"dial_s"`
	DialRetries  int64          `json:"dial_retries"`
	ErrorSamples []string       `json:"error_samples,omitempty"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

func die(format string, args ...any) {
	logf(format, args...)
	os.Exit(2)
}

func waitFor(in <-chan string, word string) {
	if *goNow {
		return
	}
	for l := range in {
		if l == word {
			return
		}
	}
	die("stdin closed before %s", word)
}

// raiseNoFile lifts the soft open-file limit to the hard one.
func raiseNoFile() {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
	}
}

func main() {
	flag.Parse()
	addr, err := netip.ParseAddrPort(*addrFlag)
	if err != nil || !wsload.IsLoopback4(addr.Addr()) {
		die("-addr %q: want an IPv4 address:port in 127.0.0.0/8", *addrFlag)
	}
	var srcs []netip.Addr
	for _, s := range strings.Split(*srcList, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !wsload.IsLoopback4(a) {
			die("-src %q: want IPv4 addresses in 127.0.0.0/8", s)
		}
		srcs = append(srcs, a)
	}
	switch *mode {
	case "idle", "echo", "pipeline", "connect", "churn":
	default:
		die("unknown -mode %q", *mode)
	}
	if *conns < 0 || *size < 0 || *depth < 1 {
		die("bad -conns, -size or -depth")
	}
	raiseNoFile()
	d := 1
	if *mode == "pipeline" {
		d = *depth
	}
	e, err := wsload.New(wsload.Config{
		Addr:            addr,
		Srcs:            srcs,
		Size:            *size,
		Text:            !*binFlag,
		Depth:           d,
		DialConcurrency: *dialConc,
		Pollers:         *pollers,
		Timeout:         *timeout,
		JSON:            *jsonFlag || *deflate,
		Deflate:         *deflate,
		Logf:            logf,
	})
	if err != nil {
		die("%v", err)
	}
	in := proc.StdinLines()
	res := Result{Mode: *mode, Conns: *conns, Size: *size, Depth: d}
	switch *mode {
	case "idle":
		runIdle(e, in, &res)
	case "echo", "pipeline":
		runEcho(e, in, &res)
	case "connect":
		runConnect(e, in, &res)
	case "churn":
		runChurn(e, in, &res)
	}
	st := e.Stats()
	res.Messages = st.Messages
	res.Bytes = st.Messages * uint64(*size)
	res.WireBytes = st.Wire
	res.Open = st.Open
	res.Errors = e.Errors()
	res.DialRetries = e.Retries()
	res.ErrorSamples = e.ErrorSamples()
	res.Hist = &st.Batch
	res.P50us = us(st.Batch.Quantile(0.5))
	res.P99us = us(st.Batch.Quantile(0.99))
	res.P999us = us(st.Batch.Quantile(0.999))
	res.MaxUs = us(st.Batch.Max())
	if *mode == "echo" || *mode == "pipeline" {
		res.PerConn = &st.PerConn
	}
	if d > 1 {
		res.MsgHist = &st.PerMsg
		res.MsgP50us = us(st.PerMsg.Quantile(0.5))
		res.MsgP99us = us(st.PerMsg.Quantile(0.99))
	}
	if res.DurationS > 0 {
		res.MsgsPerS = float64(res.Messages) / res.DurationS
	}
	js, err := json.Marshal(&res)
	if err != nil {
		die("%v", err)
	}
	fmt.Printf("RESULT %s\n", js)
	what := fmt.Sprintf("msgs=%d (%.0f/s) p50=%.0fµs p99=%.0fµs p99.9=%.0fµs max=%.0fµs spread=%.2f%%",
		res.Messages, res.MsgsPerS, res.P50us, res.P99us, res.P999us, res.MaxUs, 100*st.PerConn.CV())
	switch *mode {
	case "idle":
		what = fmt.Sprintf("alive=%d/%d check p99=%.0fµs", res.Alive, res.Conns, res.P99us)
	case "connect":
		what = fmt.Sprintf("%.0f upgrades/s, upgrade p50=%.0fµs p99=%.0fµs, alive=%d/%d", res.ConnectsPerS, res.P50us, res.P99us, res.Alive, res.Conns)
	case "churn":
		what = fmt.Sprintf("%.0f cycles/s, cycle p50=%.0fµs p99=%.0fµs, completed=%d/%d, open=%d", res.ConnectsPerS, res.P50us, res.P99us, res.Alive, res.Conns, res.Open)
	}
	logf("%s conns=%d size=%d %s cpu=%.2fs (%.2f cores) dial=%.2fs retries=%d errors=%d",
		res.Mode, res.Conns, res.Size, what, res.LoadgenCPUS, cores(res), res.DialS, res.DialRetries, res.Errors)
	if *hold && !*goNow {
		for l := range in {
			if l == "EXIT" {
				break
			}
		}
	}
	e.Close()
	if res.Errors > 0 {
		os.Exit(1)
	}
}

func cores(r Result) float64 {
	if r.DurationS <= 0 {
		return 0
	}
	return r.LoadgenCPUS / r.DurationS
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

func connected(n int, d time.Duration) {
	fmt.Printf("CONNECTED %d %.3f\n", n, d.Seconds())
}

func runIdle(e *wsload.Engine, in <-chan string, res *Result) {
	dr := e.Dial(*conns, false, false)
	res.DialS = dr.Elapsed.Seconds()
	connected(dr.Open, dr.Elapsed)
	waitFor(in, "GO")
	if *goNow {
		time.Sleep(*duration)
	}
	waitFor(in, "CHECK")
	cpu0 := proc.SelfCPU()
	start := time.Now()
	res.Alive = e.Check()
	res.DurationS = time.Since(start).Seconds()
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	if res.Alive != *conns && e.Errors() == 0 {
		logf("%d of %d connections alive", res.Alive, *conns)
	}
}

func runEcho(e *wsload.Engine, in <-chan string, res *Result) {
	dr := e.Dial(*conns, false, false)
	res.DialS = dr.Elapsed.Seconds()
	if *warmup > 0 && dr.Open > 0 {
		e.Run(*warmup, false)
	}
	connected(e.Stats().Open, dr.Elapsed)
	waitFor(in, "GO")
	cpu0 := proc.SelfCPU()
	res.DurationS = e.Run(*duration, true).Seconds()
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	res.Alive = e.Stats().Open
}

func runConnect(e *wsload.Engine, in <-chan string, res *Result) {
	connected(0, 0)
	waitFor(in, "GO")
	cpu0 := proc.SelfCPU()
	dr := e.Dial(*conns, true, true)
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	res.DialS = dr.Elapsed.Seconds()
	res.DurationS = dr.LastUpgrade.Seconds()
	if dr.LastUpgrade > 0 {
		res.ConnectsPerS = float64(dr.Upgrades) / dr.LastUpgrade.Seconds()
	}
	res.Alive = dr.Alive
}

func runChurn(e *wsload.Engine, in <-chan string, res *Result) {
	connected(0, 0)
	waitFor(in, "GO")
	cpu0 := proc.SelfCPU()
	cr := e.Churn(*conns)
	res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
	res.DialS = cr.Elapsed.Seconds()
	res.DurationS = cr.LastCycle.Seconds()
	if cr.LastCycle > 0 {
		res.ConnectsPerS = float64(cr.Cycles) / cr.LastCycle.Seconds()
	}
	res.Alive = cr.Cycles
}
