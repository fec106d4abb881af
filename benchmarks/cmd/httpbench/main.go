// Command httpbench measures plain HTTP on wsloop's listener against
// net/http serving the same handler, side by side in one run:
//
//	cd benchmarks && go run ./cmd/httpbench -json RESULTS-http.json   # the full run (about a minute)
//	cd benchmarks && go run ./cmd/httpbench -quick                    # CI smoke test
//
// Three servers, each a process of its own (this binary re-executed as
// "httpbench serve KIND"), pinned with taskset to -server-cpu:
//
//   - wsloop: engine.WithHTTPHandler with the handler below, run by an HTTP
//     worker goroutine (the request is read on the loop, rebuilt with
//     net/http's parser, answered through an http.ResponseWriter);
//   - wsloop-loop: engine.WithLoopHTTPHandler, the same answer written on
//     the event loop itself (no goroutine, no http.Request);
//   - net/http: http.Server with the same handler.
//
// The handler answers GET /hello with "hello, world\n" (text/plain). The
// wsloop servers run one event loop (the server has one CPU).
//
// Load: -conns keep-alive connections, each sending -requests requests one
// after another (a closed loop, one request in flight per connection),
// from a client process (this binary as "httpbench load"; a minimal
// HTTP/1.1 client that checks every status and body) pinned to
// -load-cpus. Each round runs every server once, in an order that rotates
// from round to round; the report gives each server's median over -rounds
// of requests per second (over the client's wall time) and of server CPU
// per request (utime+stime from /proc/PID/stat over the run, all threads).
// -json FILE keeps every round's raw figures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
	"github.com/wsloop/wsloop/engine"
)

var (
	quick     = flag.Bool("quick", false, "smoke test: a few hundred requests per server, one round; fails only on errors")
	conns     = flag.Int("conns", 64, "keep-alive connections")
	requests  = flag.Int("requests", 3000, "requests per connection per run")
	rounds    = flag.Int("rounds", 5, "rounds; each runs every server once")
	serverCPU = flag.String("server-cpu", "0", "taskset CPU list for the servers (empty: no pinning)")
	loadCPUs  = flag.String("load-cpus", "1", "taskset CPU list for the client (empty: no pinning)")
	jsonOut   = flag.String("json", "", "write the raw figures of every run to this file")
)

// kinds are the servers, in the report's order.
var kinds = []string{"wsloop", "wsloop-loop", "net/http"}

var body = []byte("hello, world\n")

// hello is the handler every server runs.
func hello(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/hello" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(body)
}

// helloLoop is the same answer for WithLoopHTTPHandler.
func helloLoop(r *engine.Request) engine.HTTPResponse {
	if string(r.Path()) != "/hello" {
		return engine.HTTPResponse{Status: 404, Body: []byte("404 page not found\n")}
	}
	return engine.HTTPResponse{Header: []engine.HeaderField{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}}, Body: body}
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "serve" {
		serve(os.Args[2])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "load" {
		load(os.Args[2:])
		return
	}
	flag.Parse()
	if *quick {
		*conns, *requests, *rounds = 4, 200, 1
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "httpbench:", err)
		children.KillAll()
		os.Exit(1)
	}
}

var children proc.Children

// Run is one server's figures in one round.
type Run struct {
	Server      string        `json:"server"`
	Round       int           `json:"round"`
	Requests    int           `json:"requests"`
	Wall        time.Duration `json:"wall_ns"`
	ServerCPU   time.Duration `json:"server_cpu_ns"`
	PerSecond   float64       `json:"requests_per_second"`
	CPUPerReqUS float64       `json:"server_cpu_us_per_request"`
}

// Report is what -json keeps.
type Report struct {
	Command  string          `json:"command"`
	Machine  runinfo.Machine `json:"machine"`
	Tree     runinfo.Tree    `json:"tree"`
	Conns    int             `json:"conns"`
	Requests int             `json:"requests_per_conn"`
	Runs     []Run           `json:"runs"`
}

func run() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	servers := map[string]*proc.Child{}
	addrs := map[string]string{}
	defer func() {
		for _, c := range servers {
			_ = c.Stdin.Close()
			c.Wait(5 * time.Second)
		}
	}()
	for _, k := range kinds {
		c, err := proc.Start(k, proc.Taskset(*serverCPU, self, "serve", k), &children, true)
		if err != nil {
			return err
		}
		servers[k] = c
		if addrs[k], err = c.Expect("READY ", 10*time.Second); err != nil {
			return err
		}
	}
	rep := Report{Command: "go run ./cmd/httpbench" + runinfo.QuoteArgs(os.Args[1:]), Machine: runinfo.This(), Tree: runinfo.GitTree(".."),
		Conns: *conns, Requests: *requests}
	fmt.Fprintf(os.Stderr, "httpbench: %d connections x %d requests per server per round, %d rounds\n", *conns, *requests, *rounds)
	for round := range *rounds {
		order := slices.Clone(kinds)
		for range round % len(order) {
			order = append(order[1:], order[0])
		}
		for _, k := range order {
			r, err := measure(self, k, servers[k].Pid(), addrs[k])
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", k, round+1, err)
			}
			r.Round = round + 1
			rep.Runs = append(rep.Runs, r)
			fmt.Fprintf(os.Stderr, "  round %d %-12s %9.0f req/s %6.2f µs CPU/req\n", r.Round, k, r.PerSecond, r.CPUPerReqUS)
		}
	}
	printReport(os.Stdout, &rep)
	if *jsonOut != "" {
		return runinfo.WriteJSON(*jsonOut, &rep)
	}
	return nil
}

// measure runs the load against one server and reads its CPU time over
// the run.
func measure(self, kind string, pid int, addr string) (Run, error) {
	args := []string{"load", addr, strconv.Itoa(*conns), strconv.Itoa(*requests)}
	cl, err := proc.Start("load "+kind, proc.Taskset(*loadCPUs, self, args...), &children, true)
	if err != nil {
		return Run{}, err
	}
	defer cl.Wait(10 * time.Second)
	if _, err := cl.Expect("CONNECTED", 20*time.Second); err != nil {
		return Run{}, err
	}
	cpu0, err := proc.CPU(pid)
	if err != nil {
		return Run{}, err
	}
	cl.Send("go")
	res, err := cl.Expect("DONE ", 5*time.Minute)
	if err != nil {
		return Run{}, err
	}
	cpu1, err := proc.CPU(pid)
	if err != nil {
		return Run{}, err
	}
	var wallNS int64
	var n int
	if _, err := fmt.Sscan(res, &wallNS, &n); err != nil {
		return Run{}, fmt.Errorf("load printed %q: %w", res, err)
	}
	r := Run{Server: kind, Requests: n, Wall: time.Duration(wallNS), ServerCPU: cpu1 - cpu0}
	r.PerSecond = float64(n) / r.Wall.Seconds()
	r.CPUPerReqUS = float64(r.ServerCPU.Microseconds()) / float64(n)
	return r, nil
}

func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "%d keep-alive connections, %d requests each per run, one in flight per connection; %d rounds, medians (min to max)\n\n",
		rep.Conns, rep.Requests, len(rep.Runs)/len(kinds))
	fmt.Fprintln(w, "| server | requests/s | server CPU per request |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, k := range kinds {
		var rps, cpu []float64
		for _, r := range rep.Runs {
			if r.Server == k {
				rps = append(rps, r.PerSecond)
				cpu = append(cpu, r.CPUPerReqUS)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", k, spread(rps, "%.0f"), spread(cpu, "%.2f µs"))
	}
	fmt.Fprintf(w, "\n%s; %s\n", rep.Machine, rep.Tree)
}

// spread renders the median of xs and, with more than one, its range.
func spread(xs []float64, format string) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	out := fmt.Sprintf(format, med)
	if len(s) > 1 {
		out += fmt.Sprintf(" (%s to %s)", fmt.Sprintf(format, s[0]), fmt.Sprintf(format, s[len(s)-1]))
	}
	return out
}

// serve runs one server until its stdin closes.
func serve(kind string) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	if kind == "net/http" {
		srv := &http.Server{Handler: http.HandlerFunc(hello)}
		go func() { _ = srv.Serve(ln) }()
		fmt.Println("READY", ln.Addr())
		<-ctx.Done()
		_ = srv.Close()
		return
	}
	addr := ln.Addr().String()
	_ = ln.Close() // wsloop listens itself
	opts := []engine.Option{engine.WithEventLoops(1)}
	switch kind {
	case "wsloop":
		opts = append(opts, engine.WithHTTPHandler(http.HandlerFunc(hello)))
	case "wsloop-loop":
		opts = append(opts, engine.WithLoopHTTPHandler(helloLoop))
	default:
		fatal(fmt.Errorf("unknown server %q", kind))
	}
	srv, err := engine.New(engine.BaseHandler{}, opts...)
	if err != nil {
		fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe(ctx, addr) }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		fatal(err)
	}
	fmt.Println("READY", srv.Addr())
	if err := <-errc; !errors.Is(err, engine.ErrServerClosed) {
		fatal(err)
	}
}

// load connects, says CONNECTED, waits for "go" on stdin, drives the
// requests and prints "DONE <wall ns> <requests>".
func load(args []string) {
	if len(args) != 3 {
		fatal(errors.New("usage: httpbench load ADDR CONNS REQUESTS"))
	}
	addr := args[0]
	nconns, _ := strconv.Atoi(args[1])
	nreq, _ := strconv.Atoi(args[2])
	cs := make([]net.Conn, nconns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			fatal(err)
		}
		cs[i] = c
	}
	fmt.Println("CONNECTED")
	lines := proc.StdinLines()
	if l := <-lines; l != "go" {
		fatal(fmt.Errorf("load: got %q, want go", l))
	}
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, nconns)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := drive(c, nreq); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	select {
	case err := <-errc:
		fatal(err)
	default:
	}
	fmt.Println("DONE", wall.Nanoseconds(), nconns*nreq)
}

var request = []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: httpbench\r\n\r\n")

// drive sends n requests on c, one at a time, and checks each answer: 200,
// Content-Length framing, the body.
func drive(c net.Conn, n int) error {
	br := bufio.NewReaderSize(c, 4096)
	for i := range n {
		if _, err := c.Write(request); err != nil {
			return err
		}
		status, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("request %d: status line %q", i, status)
		}
		length := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
			if len(line) <= 2 {
				break
			}
			if k, v, ok := strings.Cut(string(line), ":"); ok && strings.EqualFold(k, "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if length != len(body) {
			return fmt.Errorf("request %d: Content-Length %d, want %d", i, length, len(body))
		}
		var got [64]byte
		if _, err := io.ReadFull(br, got[:length]); err != nil {
			return err
		}
		if !bytes.Equal(got[:length], body) {
			return fmt.Errorf("request %d: body %q", i, got[:length])
		}
	}
	return nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "httpbench:", err)
	os.Exit(1)
}
