package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

// server is one running server process.
type server struct {
	name   string
	cmd    *exec.Cmd
	addr   string
	stderr *tailBuffer
	exited chan struct{}
	err    error
}

// tailBuffer keeps the last few KiB of a process's stderr.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

func taskset(cpus string, bin string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus, bin}, args...)...)
}

func startServer(name string) (*server, error) {
	s := &server{name: name, stderr: &tailBuffer{}, exited: make(chan struct{})}
	s.cmd = taskset(*serverCPU, bins[name], "-addr", "127.0.0.1:0", "-loops", "1")
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- strings.TrimSpace(a)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	select {
	case s.addr = <-ready:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("%s exited before READY: %v\n%s", name, s.err, s.stderr)
	case <-time.After(10 * time.Second):
		s.kill()
		return nil, fmt.Errorf("%s: no READY within 10s\n%s", name, s.stderr)
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// alive reports an early exit as an error.
func (s *server) alive() error {
	select {
	case <-s.exited:
		return fmt.Errorf("server %s exited during the run: %v\n%s", s.name, s.err, s.stderr)
	default:
		return nil
	}
}

// stop sends SIGTERM, then SIGKILL after 5 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.kill()
	}
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// loadgen is one load generator process.
type loadgen struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *tailBuffer
	exited chan struct{}
	err    error
}

func startLoadgen(args []string) (*loadgen, error) {
	lg := &loadgen{lines: make(chan string, 16), stderr: &tailBuffer{}, exited: make(chan struct{})}
	lg.cmd = taskset(*loadCPUs, bins["loadgen"], args...)
	lg.cmd.Stderr = lg.stderr
	var err error
	if lg.stdin, err = lg.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := lg.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := lg.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lg.lines <- sc.Text()
		}
		close(lg.lines)
	}()
	go func() { lg.err = lg.cmd.Wait(); close(lg.exited) }()
	return lg, nil
}

// expect waits for a line starting with prefix.
func (lg *loadgen) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lg.lines:
			if !ok {
				<-lg.exited
				return "", fmt.Errorf("loadgen ended before %s: %v\n%s", prefix, lg.err, lg.stderr)
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-deadline:
			return "", fmt.Errorf("loadgen: no %s within %v\n%s", prefix, timeout, lg.stderr)
		}
	}
}

func (lg *loadgen) send(word string) { _, _ = io.WriteString(lg.stdin, word+"\n") }

func (lg *loadgen) kill() {
	_ = lg.cmd.Process.Kill()
	<-lg.exited
}

// lgResult is a loadgen RESULT line.
type lgResult struct {
	Mode        string     `json:"mode"`
	Conns       int        `json:"conns"`
	DurationS   float64    `json:"duration_s"`
	Messages    uint64     `json:"messages"`
	Errors      uint64     `json:"errors"`
	LoadgenCPUS float64    `json:"loadgen_cpu_s"`
	ConnectsPS  float64    `json:"connects_per_s"`
	Alive       int        `json:"alive"`
	Publishes   uint64     `json:"publishes"`
	Hist        *hist.Hist `json:"hist"`
}

// Run is one scenario against one server: what RESULTS.md and RESULTS.json hold.
type Run struct {
	Scenario     string  `json:"scenario"`
	Server       string  `json:"server"`
	Conns        int     `json:"conns"`
	Size         int     `json:"size,omitempty"`
	Depth        int     `json:"depth,omitempty"`
	Inflight     int     `json:"inflight,omitempty"`
	DurationS    float64 `json:"duration_s"`
	Messages     uint64  `json:"messages"`
	MsgsPerS     float64 `json:"msgs_per_s"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	P999us       float64 `json:"p999_us"`
	ServerCPUS   float64 `json:"server_cpu_s"`
	CPUPerMsgUs  float64 `json:"server_cpu_per_msg_us"`
	LoadgenCores float64 `json:"loadgen_cores"`
	RSSBefore    int64   `json:"rss_before,omitempty"`
	RSSAfter     int64   `json:"rss_after,omitempty"`
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"`
	Threads      int     `json:"threads,omitempty"`
	Alive        int     `json:"alive,omitempty"`
	ConnectsPS   float64 `json:"connects_per_s,omitempty"`
	Publishes    uint64  `json:"publishes,omitempty"`
	Errors       uint64  `json:"errors"`
	Failure      string  `json:"failure,omitempty"`
}

// job describes one run.
type job struct {
	scenario string
	server   string
	mode     string
	conns    int
	size     int
	depth    int
	inflight int
	dur      time.Duration
}

// runJob starts the server and the load generators, measures and stops.
func runJob(j job) (r Run) {
	r = Run{Scenario: j.scenario, Server: j.server, Conns: j.conns, Size: j.size, Depth: j.depth, Inflight: j.inflight}
	failf := func(format string, args ...any) Run {
		r.Failure = fmt.Sprintf(format, args...)
		r.Errors++
		return r
	}
	srv, err := startServer(j.server)
	if err != nil {
		return failf("%v", err)
	}
	defer srv.stop()
	time.Sleep(time.Second)
	rss0, _, _ := proc.Status(srv.pid())
	r.RSSBefore = rss0

	procs := 1
	if j.conns > 5000 && j.mode != "fanout" {
		procs = *nprocs
	}
	var lgs []*loadgen
	defer func() {
		for _, lg := range lgs {
			lg.kill()
		}
	}()
	for p := 0; p < procs; p++ {
		n := j.conns / procs
		if p < j.conns%procs {
			n++
		}
		args := []string{"-addr", srv.addr, "-mode", j.mode, "-conns", fmt.Sprint(n),
			"-size", fmt.Sprint(j.size), "-duration", j.dur.String()}
		if j.depth > 0 {
			args = append(args, "-depth", fmt.Sprint(j.depth))
		}
		if j.inflight > 0 {
			args = append(args, "-inflight", fmt.Sprint(j.inflight))
		}
		if procs > 1 {
			args = append(args, "-src", fmt.Sprintf("127.0.0.%d", p+2))
		}
		lg, err := startLoadgen(args)
		if err != nil {
			return failf("loadgen: %v", err)
		}
		lgs = append(lgs, lg)
	}
	for _, lg := range lgs {
		if _, err := lg.expect("CONNECTED", 3*time.Minute); err != nil {
			return failf("%v", err)
		}
	}
	if err := srv.alive(); err != nil {
		return failf("%v", err)
	}
	if j.mode == "idle" {
		time.Sleep(3 * time.Second)
		rss, threads, _ := proc.Status(srv.pid())
		r.RSSAfter, r.Threads = rss, threads
		r.BytesPerConn = float64(rss-rss0) / float64(j.conns)
	}
	cpu0, _ := proc.CPU(srv.pid())
	for _, lg := range lgs {
		lg.send("GO")
		if j.mode == "idle" {
			lg.send("CHECK")
		}
	}
	var merged hist.Hist
	var lgCPU float64
	for _, lg := range lgs {
		line, err := lg.expect("RESULT", j.dur+3*time.Minute)
		if err != nil {
			return failf("%v", err)
		}
		var res lgResult
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return failf("bad RESULT %q: %v", line, err)
		}
		<-lg.exited
		if lg.err != nil && res.Errors == 0 {
			return failf("loadgen failed: %v\n%s", lg.err, lg.stderr)
		}
		if res.Errors > 0 {
			r.Failure = strings.TrimSpace(firstLines(lg.stderr.String(), 5))
		}
		r.Errors += res.Errors
		r.Messages += res.Messages
		r.Alive += res.Alive
		r.Publishes += res.Publishes
		r.ConnectsPS += res.ConnectsPS
		if res.DurationS > r.DurationS {
			r.DurationS = res.DurationS
		}
		lgCPU += res.LoadgenCPUS
		if res.Hist != nil {
			merged.Merge(res.Hist)
		}
	}
	cpu1, _ := proc.CPU(srv.pid())
	if err := srv.alive(); err != nil {
		return failf("%v", err)
	}
	r.ServerCPUS = (cpu1 - cpu0).Seconds()
	if r.Messages > 0 {
		r.CPUPerMsgUs = r.ServerCPUS * 1e6 / float64(r.Messages)
	}
	if r.DurationS > 0 {
		r.MsgsPerS = float64(r.Messages) / r.DurationS
		r.LoadgenCores = lgCPU / r.DurationS
	}
	if j.mode == "connect" && r.DurationS > 0 {
		r.ConnectsPS = float64(j.conns) / r.DurationS
	}
	r.DurationS = round(r.DurationS, 3)
	r.P50us = us(merged.Quantile(0.5))
	r.P99us = us(merged.Quantile(0.99))
	r.P999us = us(merged.Quantile(0.999))
	if j.mode == "idle" && r.Alive != j.conns {
		r.Errors++
		r.Failure = fmt.Sprintf("%d of %d connections alive at the end", r.Alive, j.conns)
	}
	return r
}

func firstLines(s string, n int) string {
	ls := strings.SplitN(s, "\n", n+1)
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, "\n")
}

func us(d time.Duration) float64 { return round(float64(d)/1e3, 1) }

func round(v float64, places int) float64 {
	p := 1.0
	for i := 0; i < places; i++ {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// machine describes the host for the report.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	goVersion, _ := exec.Command("go", "version").Output()
	kernel, _ := exec.Command("uname", "-r").Output()
	ncpu, _ := exec.Command("nproc").Output()
	return fmt.Sprintf("%s, %s cores, Linux %s, %s", model, bytes.TrimSpace(ncpu), bytes.TrimSpace(kernel), bytes.TrimSpace(goVersion))
}
