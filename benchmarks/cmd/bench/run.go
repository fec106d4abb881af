package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// jobSeq counts client processes started, to rotate source addresses.
var jobSeq atomic.Uint32

// children are the processes running now, killed on SIGINT.
var children proc.Children

func killChildren() { children.KillAll() }

// child is a started process whose stdout lines are delivered on Lines.
type child struct{ *proc.Child }

func start(name, cpus, bin string, args ...string) (*child, error) {
	c, err := proc.Start(name, proc.Taskset(cpus, bin, args...), &children, true)
	if err != nil {
		return nil, err
	}
	return &child{c}, nil
}

func (c *child) tail() string { return c.Tail() }

// running reports an early exit as an error.
func (c *child) running() error {
	select {
	case <-c.Exited:
		return fmt.Errorf("%s exited during the run (%v):\n%s", c.Name, c.Err, c.tail())
	default:
		return nil
	}
}

// stop sends SIGTERM and waits 5 s, then SIGKILL. A server must exit 0.
func (c *child) stop() error {
	select {
	case <-c.Exited:
		return c.running()
	default:
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	if c.Wait(5 * time.Second) {
		return fmt.Errorf("%s did not exit within 5s of SIGTERM (killed):\n%s", c.Name, c.tail())
	}
	if c.Err != nil {
		return fmt.Errorf("%s exited with %v after SIGTERM:\n%s", c.Name, c.Err, c.tail())
	}
	return nil
}

// startServer starts a server with -addr 127.0.0.1:0 -loops 1 and extra,
// and waits for its READY line.
func startServer(name string, extra ...string) (*child, string, error) {
	s, err := start(name, *serverCPU, bins[name], append([]string{"-addr", "127.0.0.1:0", "-loops", "1"}, extra...)...)
	if err != nil {
		return nil, "", err
	}
	s.Stdin.Close()
	addr, err := s.Expect("READY ", 10*time.Second)
	if err != nil {
		_ = s.Cmd.Process.Kill()
		<-s.Exited
		return nil, "", fmt.Errorf("server not ready: %w", err)
	}
	return s, addr, nil
}

// mallocs asks the server how many heap allocations it has made so far
// (every server of the suite answers SIGUSR1: internal/mallocs).
func serverMallocs(srv *child) (uint64, error) {
	if err := srv.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return 0, fmt.Errorf("asking %s for its allocations: %v", srv.Name, err)
	}
	line, err := srv.Expect(mallocs.Line, 10*time.Second)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: bad %s line %q", srv.Name, mallocs.Line, line)
	}
	return n, nil
}

// lgResult is the part of a loadgen or fanout RESULT line the report uses.
type lgResult struct {
	Mode         string         `json:"mode"`
	DurationS    float64        `json:"duration_s"`
	Messages     uint64         `json:"messages"`
	Errors       int64          `json:"errors"`
	LoadgenCPUS  float64        `json:"loadgen_cpu_s"`
	ConnectsPerS float64        `json:"connects_per_s"`
	Alive        int            `json:"alive"`
	DialRetries  int64          `json:"dial_retries"`
	Hist         *hist.Hist     `json:"hist"`
	MsgHist      *hist.Hist     `json:"msg_hist"`
	PerConn      *wsload.Spread `json:"per_conn"`
	ErrorSamples []string       `json:"error_samples"`
	// fanout
	Subscribers   int     `json:"subscribers"`
	Publishes     uint64  `json:"publishes"`
	Delivered     uint64  `json:"delivered"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	MaxUs         float64 `json:"max_us"`
	WireBytes     uint64  `json:"wire_bytes"`
	Reencoded     uint64  `json:"reencoded"`
	Inflated      uint64  `json:"inflated"`
	TLS           string  `json:"tls"`
}

// Run is one scenario configuration against one server: what the report
// and the JSON file hold.
type Run struct {
	Scenario     string            `json:"scenario"`
	Server       string            `json:"server"`
	Variant      string            `json:"variant,omitempty"` // json, deflate (compression scenarios)
	WirePerMsg   float64           `json:"wire_bytes_per_msg,omitempty"`
	Reencoded    uint64            `json:"reencoded,omitempty"` // deflate-fanout: deliveries compressed apart from other copies of their message
	Inflated     uint64            `json:"inflated,omitempty"`  // deflate-fanout: deliveries the client inflated (one per publish when every copy is the same)
	Conns        int               `json:"conns"`
	Size         int               `json:"size"`
	Depth        int               `json:"depth,omitempty"`
	Inflight     int               `json:"inflight,omitempty"`
	TLS          string            `json:"tls,omitempty"`    // wss-fanout: what the client negotiated, e.g. "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"
	Round        int               `json:"round,omitempty"`  // of a configuration that runs -rounds times
	Rounds       int               `json:"rounds,omitempty"` // a median over this many rounds (report only)
	P99Min       float64           `json:"p99_min_us,omitempty"`
	P99Max       float64           `json:"p99_max_us,omitempty"`
	CPUMin       float64           `json:"-"` // a median's range over its rounds (report only): server CPU per message
	CPUMax       float64           `json:"-"`
	RateMin      float64           `json:"-"` // and connects (cycles) per second
	RateMax      float64           `json:"-"`
	Procs        int               `json:"loadgen_procs"`
	DurationS    float64           `json:"duration_s"`
	Messages     uint64            `json:"messages"`
	MsgsPerS     float64           `json:"msgs_per_s"`
	P50us        float64           `json:"p50_us"`
	P99us        float64           `json:"p99_us"`
	P999us       float64           `json:"p999_us"`
	MaxUs        float64           `json:"max_us"`
	MsgP99us     float64           `json:"msg_p99_us,omitempty"`
	SpreadCV     float64           `json:"per_conn_cv,omitempty"` // echo, pipeline: round trips per connection, sd/mean
	ServerCPUS   float64           `json:"server_cpu_s"`
	CPUPerMsgUs  float64           `json:"server_cpu_per_msg_us"`
	AllocsPerMsg float64           `json:"server_allocs_per_msg"` // heap allocations in the server over the measured phase (and the RESULT lines' wait), per message (connect: per upgrade)
	ServerCores  float64           `json:"server_cores"`
	LoadgenCPUS  float64           `json:"loadgen_cpu_s"`
	LoadgenCores float64           `json:"loadgen_cores"`
	RSSBefore    int64             `json:"rss_before,omitempty"`
	RSSAfter     int64             `json:"rss_after,omitempty"`
	BytesPerConn float64           `json:"bytes_per_conn,omitempty"`
	Threads      int               `json:"threads,omitempty"`
	Alive        int               `json:"alive"`
	ConnectsPerS float64           `json:"connects_per_s,omitempty"`
	Publishes    uint64            `json:"publishes,omitempty"`
	DialRetries  int64             `json:"dial_retries,omitempty"`
	FDsBefore    int               `json:"server_fds_before,omitempty"` // churn: the server's descriptors before GO
	FDsAfter     int               `json:"server_fds_after,omitempty"`  // churn: and after the last cycle (once back at FDsBefore, or after 5 s)
	Errors       int64             `json:"errors"`
	Failure      string            `json:"failure,omitempty"`
	Raw          []json.RawMessage `json:"raw,omitempty"` // every client's RESULT
}

func (r Run) summary() string {
	s := fmt.Sprintf("%-8s %-11s conns=%-5d size=%-4d", r.Scenario, r.Server, r.Conns, r.Size)
	if r.Round > 0 {
		s += fmt.Sprintf(" round=%d", r.Round)
	}
	switch r.Scenario {
	case "idle":
		s += fmt.Sprintf(" bytes/conn=%.0f threads=%d alive=%d", r.BytesPerConn, r.Threads, r.Alive)
	case "connect":
		s += fmt.Sprintf(" upgrades/s=%.0f cpu/upgrade=%.1fµs p99=%.0fµs", r.ConnectsPerS, r.CPUPerMsgUs, r.P99us)
	case "churn":
		s += fmt.Sprintf(" cycles/s=%.0f cpu/cycle=%.1fµs p99=%.0fµs fds=%d→%d", r.ConnectsPerS, r.CPUPerMsgUs, r.P99us, r.FDsBefore, r.FDsAfter)
	case "fanout", "wss-fanout":
		s += fmt.Sprintf(" inflight=%d delivered/s=%.0f cpu/delivered=%.3fµs p99=%.0fµs rss=%s", r.Inflight, r.MsgsPerS, r.CPUPerMsgUs, r.P99us, size(float64(r.RSSAfter)))
	default:
		s += fmt.Sprintf(" msgs/s=%.0f cpu/msg=%.2fµs p99=%.0fµs", r.MsgsPerS, r.CPUPerMsgUs, r.P99us)
	}
	s += fmt.Sprintf(" server=%.2f loadgen=%.2f cores", r.ServerCores, r.LoadgenCores)
	if r.Errors > 0 {
		s += "  FAILED: " + firstLines(r.Failure, 1)
	}
	return s
}

// runJob starts the server and the clients, measures and stops them.
func runJob(j job) (r Run) {
	r = Run{Scenario: j.scenario, Server: j.server, Variant: j.variant, Conns: j.conns, Size: j.size, Depth: j.depth, Inflight: j.inflight, Round: j.round}
	var failures []string
	failf := func(format string, args ...any) {
		r.Errors++
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	defer func() { r.Failure = strings.Join(failures, "\n") }()

	var sargs []string
	wss := j.scenario == "wss-fanout"
	if wss {
		sargs = []string{"-tls-cert", tlsCert, "-tls-key", tlsKey}
	}
	srv, addr, err := startServer(j.server, sargs...)
	if err != nil {
		failf("%v", err)
		return r
	}
	var clients []*child
	defer func() {
		for _, c := range clients {
			c.Stdin.Close()
			if c.Wait(30*time.Second) && r.Errors == 0 {
				failf("%s did not exit within 30s after its RESULT (killed)", c.Name)
			}
		}
		if err := srv.stop(); err != nil {
			failf("%v", err)
		}
	}()
	time.Sleep(time.Second)
	if rss, _, err := proc.Status(srv.Pid()); err == nil {
		r.RSSBefore = rss
	}

	// Start the clients.
	// A churn run keeps at most 200 sockets open: one load generator,
	// with -procs source addresses for the TIME_WAIT sockets its cycles
	// leave behind.
	procs, srcsPer := 1, 1
	if j.conns > splitAbove && j.mode != "fanout" && *nprocs > 1 {
		procs = *nprocs
		if j.mode == "churn" {
			procs, srcsPer = 1, *nprocs
		}
	}
	r.Procs = procs
	// Each job's clients bind source addresses of their own (127.0.0.2 up
	// to 127.0.0.254, rotating from job to job), so that the TIME_WAIT
	// sockets a run leaves behind never take the ephemeral ports the next
	// run needs.
	nsrc := uint32(procs * srcsPer)
	srcBase := int(jobSeq.Add(nsrc) - nsrc)
	src := func(p int) string {
		var as []string
		for i := 0; i < srcsPer; i++ {
			as = append(as, fmt.Sprintf("127.0.0.%d", 2+(srcBase+p*srcsPer+i)%253))
		}
		return strings.Join(as, ",")
	}
	for p := 0; p < procs; p++ {
		var c *child
		if j.mode == "fanout" {
			args := []string{"-addr", addr, "-subs", fmt.Sprint(j.conns),
				"-size", fmt.Sprint(j.size), "-duration", j.dur.String(), "-inflight", fmt.Sprint(j.inflight), "-src", src(p)}
			if j.variant != "" {
				args = append(args, "-"+j.variant) // -json or -deflate
			}
			if proto := fanoutProto[j.server]; proto != "" {
				args = append(args, "-proto", proto)
			}
			if wss {
				// A goroutine per subscriber reads through crypto/tls.
				args = append(args, "-tls", "-tls-ca", tlsCert)
			} else if *fanReader != "" {
				args = append(args, "-reader", *fanReader)
			}
			c, err = start("fanout", *loadCPUs, bins["fanout"], args...)
		} else {
			n := j.conns / procs
			if p < j.conns%procs {
				n++
			}
			args := []string{"-addr", addr, "-mode", j.mode, "-conns", fmt.Sprint(n), "-size", fmt.Sprint(j.size),
				"-duration", j.dur.String(), "-warmup", warmup.String(), "-hold"}
			if j.depth > 0 {
				args = append(args, "-depth", fmt.Sprint(j.depth))
			}
			if j.variant != "" {
				args = append(args, "-"+j.variant) // -json or -deflate
			}
			args = append(args, "-src", src(p))
			if procs > 1 {
				// The 200 dials in flight are shared.
				args = append(args, "-dial-concurrency", fmt.Sprint((dialConcurrency+procs-1)/procs))
			}
			c, err = start(fmt.Sprintf("loadgen %d", p), *loadCPUs, bins["loadgen"], args...)
		}
		if err != nil {
			failf("%v", err)
			return r
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		if _, err := c.Expect("CONNECTED ", 3*time.Minute); err != nil {
			failf("%v", err)
			return r
		}
	}
	if err := srv.running(); err != nil {
		failf("%v", err)
		return r
	}
	if j.mode == "idle" {
		time.Sleep(idleSettle())
		rss, threads, err := proc.Status(srv.Pid())
		if err != nil {
			failf("reading the server's memory: %v", err)
			return r
		}
		r.RSSAfter, r.Threads = rss, threads
		r.BytesPerConn = float64(rss-r.RSSBefore) / float64(j.conns)
	}

	// The measured phase.
	var m0 uint64
	if j.mode != "idle" {
		if m0, err = serverMallocs(srv); err != nil {
			failf("%v", err)
			return r
		}
	}
	if j.mode == "churn" {
		if r.FDsBefore, err = proc.FDs(srv.Pid()); err != nil {
			failf("counting the server's descriptors: %v", err)
			return r
		}
	}
	cpu0, err := proc.CPU(srv.Pid())
	if err != nil {
		failf("reading the server's CPU time: %v", err)
		return r
	}
	var stopRSS func() int64
	if j.mode == "fanout" {
		// The server's peak memory over the measured phase, every
		// subscriber connected (cmd/fanout closes them before its RESULT).
		stopRSS = peakRSS(srv.Pid(), 250*time.Millisecond)
		defer stopRSS() // on an early return
	}
	for _, c := range clients {
		c.Send("GO")
		if j.mode == "idle" {
			c.Send("CHECK")
		}
	}
	var results []lgResult
	for _, c := range clients {
		line, err := c.Expect("RESULT ", j.dur+3*time.Minute)
		if err != nil {
			failf("%v", err)
			return r
		}
		var res lgResult
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			failf("%s: bad RESULT %.200q: %v", c.Name, line, err)
			return r
		}
		r.Raw = append(r.Raw, json.RawMessage(line))
		results = append(results, res)
	}
	cpu1, cpuErr := proc.CPU(srv.Pid())
	if stopRSS != nil {
		r.RSSAfter = stopRSS()
	}
	var m1 uint64
	if err := srv.running(); err != nil {
		failf("%v", err)
	} else if cpuErr != nil {
		failf("reading the server's CPU time: %v", cpuErr)
	} else {
		r.ServerCPUS = (cpu1 - cpu0).Seconds()
		if j.mode != "idle" {
			if m1, err = serverMallocs(srv); err != nil {
				failf("%v", err)
			}
		}
		if j.mode == "churn" {
			// Every cycle's socket must be closed on the server too.
			deadline := time.Now().Add(5 * time.Second)
			for {
				r.FDsAfter, err = proc.FDs(srv.Pid())
				if err != nil || r.FDsAfter <= r.FDsBefore || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				failf("counting the server's descriptors: %v", err)
			} else if r.FDsAfter > r.FDsBefore {
				failf("the server holds %d descriptors 5 s after the last cycle, %d before the first", r.FDsAfter, r.FDsBefore)
			}
		}
	}

	// Merge the clients' figures.
	var merged, perMsg hist.Hist
	var spread wsload.Spread
	for i, res := range results {
		if res.Errors > 0 {
			r.Errors += res.Errors
			failures = append(failures, fmt.Sprintf("%s: %d errors: %s", clients[i].Name, res.Errors, strings.Join(res.ErrorSamples, "; ")))
			if len(res.ErrorSamples) == 0 {
				failures = append(failures, clients[i].tail())
			}
		}
		r.DurationS = max(r.DurationS, res.DurationS)
		r.LoadgenCPUS += res.LoadgenCPUS
		r.Alive += res.Alive
		r.DialRetries += res.DialRetries
		if res.Hist != nil {
			merged.Merge(res.Hist)
		}
		if res.MsgHist != nil {
			perMsg.Merge(res.MsgHist)
		}
		spread.Merge(res.PerConn)
		if j.mode == "fanout" {
			r.Messages += res.Delivered
			r.WirePerMsg += float64(res.WireBytes) // divided below
			r.Reencoded += res.Reencoded
			r.Inflated += res.Inflated
			r.Publishes += res.Publishes
			r.P50us, r.P99us, r.MaxUs = res.P50us, res.P99us, res.MaxUs
			r.Alive += res.Subscribers
			r.TLS = res.TLS
		} else {
			r.Messages += res.Messages
			r.WirePerMsg += float64(res.WireBytes) // divided below
		}
	}
	if j.mode != "fanout" {
		r.P50us = us(merged.Quantile(0.5))
		r.P99us = us(merged.Quantile(0.99))
		r.P999us = us(merged.Quantile(0.999))
		r.MaxUs = us(merged.Max())
		if perMsg.Count() > 0 {
			r.MsgP99us = us(perMsg.Quantile(0.99))
		}
		r.SpreadCV = spread.CV()
	}
	units := r.Messages // what the server's CPU is divided by
	if j.mode == "connect" || j.mode == "churn" {
		units = uint64(j.conns)
		if r.DurationS > 0 {
			r.ConnectsPerS = float64(j.conns) / r.DurationS
		}
	}
	if units > 0 {
		r.CPUPerMsgUs = r.ServerCPUS * 1e6 / float64(units)
		if m1 > m0 {
			r.AllocsPerMsg = float64(m1-m0) / float64(units)
		}
	}
	if r.Messages > 0 {
		r.WirePerMsg /= float64(r.Messages)
	} else {
		r.WirePerMsg = 0
	}
	if r.DurationS > 0 {
		r.MsgsPerS = float64(r.Messages) / r.DurationS
		r.ServerCores = r.ServerCPUS / r.DurationS
		r.LoadgenCores = r.LoadgenCPUS / r.DurationS
	}
	if (j.mode == "idle" || j.mode == "connect") && r.Alive != j.conns {
		failf("%d of %d connections verified alive at the end", r.Alive, j.conns)
	}
	if j.mode == "churn" && r.Alive != j.conns {
		failf("%d of %d cycles completed", r.Alive, j.conns)
	}
	if j.mode == "fanout" && r.Alive != j.conns {
		failf("fanout reports %d subscribers, want %d", r.Alive, j.conns)
	}
	if wss && !strings.HasPrefix(r.TLS, "TLS 1.3 ") && r.Errors == 0 {
		failf("fanout negotiated %q, want TLS 1.3", r.TLS)
	}
	// The clients' exit status: 1 with errors (already counted), 0 without.
	for i, c := range clients {
		c.Stdin.Close()
		if c.Wait(30 * time.Second) {
			failf("%s did not exit within 30s after its RESULT (killed)", c.Name)
			continue
		}
		var ee *exec.ExitError
		if c.Err != nil && (results[i].Errors == 0 || !errors.As(c.Err, &ee)) {
			failf("%s exited with %v after a RESULT with %d errors:\n%s", c.Name, c.Err, results[i].Errors, c.tail())
		}
	}
	return r
}

// peakRSS samples pid's VmRSS every interval, from now until the
// function it returns is first called; that function returns the highest
// sample.
func peakRSS(pid int, interval time.Duration) func() int64 {
	var peak int64
	var once sync.Once
	sample := func() {
		if rss, _, err := proc.Status(pid); err == nil {
			peak = max(peak, rss)
		}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		once.Do(func() { close(stop) })
		<-done
		return peak
	}
}

// idleSettle is the wait between the last CONNECTED and reading the
// server's RSS in the idle scenario.
func idleSettle() time.Duration {
	if *quick {
		return time.Second
	}
	return 3 * time.Second
}

func firstLines(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, "\n")
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }
