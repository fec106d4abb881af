// Command handoff measures a restart in place that keeps the connections
// (engine.Restart with engine.RestartKeep): how long the old process takes
// to hand its connections to the new one, the longest pause any client
// sees, and the memory of both processes while it runs.
//
//	cd benchmarks && go run ./cmd/handoff                 # 19,000 connections
//	cd benchmarks && go run ./cmd/handoff -conns 2000     # quicker
//
// It starts a server (this binary, re-executed as "handoff server"), opens
// -conns WebSocket connections to it (gorilla/websocket, from several
// loopback source addresses), each of which joins the room "live", and one
// publisher connection that sends a message every -period, which the
// server publishes to the room. After -warmup it sends the server SIGHUP:
// the server calls Restart(RestartKeep), which starts a new server process
// (this binary again), hands it the listener and every connection, and
// exits. Meanwhile the command samples both processes' VmRSS every 5 ms.
// Every client checks every message (its sequence number and bytes); any
// loss, duplicate, reordering or close fails the run. The pause a client
// saw is the longest time between two consecutive messages, less the
// publishing period.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/engine"
)

var (
	conns  = flag.Int("conns", 19000, "subscriber connections")
	period = flag.Duration("period", 100*time.Millisecond, "time between two publishes")
	warmup = flag.Duration("warmup", 2*time.Second, "publishing before the restart")
	after  = flag.Duration("after", 2*time.Second, "publishing after the old process has exited")
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "server" {
		server()
		return
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "handoff:", err)
		os.Exit(1)
	}
}

// handler: "sub" joins "live"; "pub:..." publishes the rest to "live".
type handler struct{ engine.BaseHandler }

func (handler) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	switch {
	case string(p) == "sub":
		_ = c.Join("live")
		c.SetValue("sub")
		_ = c.WriteMessage(op, []byte("subbed"))
	case strings.HasPrefix(string(p), "pub:"):
		_ = c.Server().Publish("live", op, p[4:])
	}
}

func (handler) OnHandOff(c *engine.Conn) []byte {
	v, _ := c.Value().(string)
	return []byte(v)
}

func (handler) OnAdopt(c *engine.Conn, state []byte) { c.SetValue(string(state)) }

// server runs the server; on SIGHUP it restarts in place, keeping the
// connections, and prints "HANDOFF <handed> <seconds> <output bytes that
// travelled> <err>".
func server() {
	if f := os.Getenv("HANDOFF_CPUPROFILE"); f != "" && os.Getenv("WSLOOP_INHERIT_FD") != "" {
		// The new process: from its start, while it adopts.
		pf, _ := os.Create(fmt.Sprintf("%s.new.%d", f, os.Getpid()))
		_ = pprof.StartCPUProfile(pf)
		time.AfterFunc(3*time.Second, pprof.StopCPUProfile)
	}
	srv, err := engine.New(handler{}, engine.WithMaxQueuedBytes(64<<20))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		<-hup
		if f := os.Getenv("HANDOFF_CPUPROFILE"); f != "" {
			pf, _ := os.Create(fmt.Sprintf("%s.%d", f, os.Getpid()))
			_ = pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
		start := time.Now()
		err := srv.Restart(context.Background(), engine.RestartKeep(), engine.RestartHandOffTimeout(60*time.Second),
			engine.RestartDrain(time.Second), engine.RestartStarted(func(int) { start = time.Now() }))
		st := srv.Stats()
		fmt.Printf("HANDOFF %d %.6f %d %v\n", st.HandedOver, time.Since(start).Seconds(), st.HandedOverBytes, err)
		pprof.StopCPUProfile()
		close(done)
	}()
	go func() {
		<-srv.Ready()
		fmt.Println("READY", srv.Addr(), os.Getpid())
	}()
	err = srv.ListenAndServe(context.Background(), "127.0.0.1:0")
	select {
	case <-done:
	case <-time.After(time.Second):
	}
	fmt.Println("EXIT", os.Getpid(), err)
}

func payload(seq int) string {
	return fmt.Sprintf("%d %s", seq, strings.Repeat(strconv.Itoa(seq%10), 48))
}

// arrivals keeps, for each message, when the first and the last client
// got it (unix nanoseconds): how far apart the clients get one message is
// the room's fan-out spread, which any message has, restart or not.
type arrivals struct {
	first, last [1 << 12]atomic.Int64
}

var arrived arrivals

func (a *arrivals) note(seq int, now int64) {
	if seq < 0 || seq >= len(a.first) {
		return
	}
	for {
		f := a.first[seq].Load()
		if (f != 0 && f <= now) || a.first[seq].CompareAndSwap(f, now) {
			break
		}
	}
	for {
		l := a.last[seq].Load()
		if l >= now || a.last[seq].CompareAndSwap(l, now) {
			break
		}
	}
}

// spread returns the largest first-to-last time over messages [from, to).
func (a *arrivals) spread(from, to int) time.Duration {
	var most int64
	for i := max(from, 0); i < min(to, len(a.first)); i++ {
		if f, l := a.first[i].Load(), a.last[i].Load(); f != 0 {
			most = max(most, l-f)
		}
	}
	return time.Duration(most)
}

type client struct {
	c        *websocket.Conn
	last     atomic.Int64
	maxGap   atomic.Int64
	err      atomic.Pointer[error]
	measured atomic.Bool // gaps count from the first message after the warm-up started
}

func run() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(exe, "server")
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var pids []int
	defer func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}()
	expect := func(prefix string, d time.Duration) ([]string, error) {
		timeout := time.After(d)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return nil, fmt.Errorf("the server's output ended before %s", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					f := strings.Fields(l)
					if prefix == "READY" && len(f) == 3 {
						pid, _ := strconv.Atoi(f[2])
						pids = append(pids, pid)
					}
					return f, nil
				}
				fmt.Fprintln(os.Stderr, "server:", l)
			case <-timeout:
				return nil, fmt.Errorf("no %s from the server within %v", prefix, d)
			}
		}
	}
	f, err := expect("READY", 20*time.Second)
	if err != nil {
		return err
	}
	addr, oldPid := f[1], pids[0]

	start := time.Now()
	clients := make([]*client, *conns)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 200)
	var dialErr atomic.Pointer[error]
	for i := range clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cl, err := subscribe(addr, i)
			if err != nil {
				dialErr.CompareAndSwap(nil, &err)
				return
			}
			clients[i] = cl
		}()
	}
	wg.Wait()
	if p := dialErr.Load(); p != nil {
		return fmt.Errorf("connecting: %w", *p)
	}
	fmt.Fprintf(os.Stderr, "%d connections in %v\n", *conns, time.Since(start).Round(time.Millisecond))
	pub, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		return err
	}
	var seq atomic.Int64
	stop := make(chan struct{})
	pubErr := make(chan error, 1)
	go func() {
		t := time.NewTicker(*period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				pubErr <- nil
				return
			case <-t.C:
			}
			if err := pub.WriteMessage(websocket.TextMessage, []byte("pub:"+payload(int(seq.Load())))); err != nil {
				pubErr <- err
				return
			}
			seq.Add(1)
		}
	}()
	time.Sleep(*warmup / 2)
	for _, cl := range clients {
		cl.maxGap.Store(0)
		cl.measured.Store(true)
	}
	time.Sleep(*warmup / 2)
	rssBefore := rss(oldPid)
	seqAtRestart := int(seq.Load())

	// The restart, with both processes' memory sampled.
	if err := syscall.Kill(oldPid, syscall.SIGHUP); err != nil {
		return err
	}
	var newPid atomic.Int64
	var peakOld, peakNew, peakSum atomic.Int64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			o, n := rss(oldPid), rss(int(newPid.Load()))
			peakOld.Store(max(peakOld.Load(), o))
			peakNew.Store(max(peakNew.Load(), n))
			peakSum.Store(max(peakSum.Load(), o+n))
			select {
			case <-sampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	f, err = expect("READY", 30*time.Second)
	if err != nil {
		return err
	}
	newPid.Store(int64(pids[len(pids)-1]))
	f, err = expect("HANDOFF", 120*time.Second)
	if err != nil {
		return err
	}
	if len(f) < 5 {
		return fmt.Errorf("the server said %q", strings.Join(f, " "))
	}
	handed, _ := strconv.Atoi(f[1])
	took, _ := strconv.ParseFloat(f[2], 64)
	moved, _ := strconv.ParseInt(f[3], 10, 64)
	if restartErr := strings.Join(f[4:], " "); restartErr != "<nil>" {
		return fmt.Errorf("Restart: %s", restartErr)
	}
	if _, err := expect("EXIT "+strconv.Itoa(oldPid), 30*time.Second); err != nil {
		return err
	}
	close(sampling)
	<-sampled
	time.Sleep(*after)
	close(stop)
	if err := <-pubErr; err != nil {
		return fmt.Errorf("the publisher: %w", err)
	}
	final := seq.Load() - 1
	deadline := time.Now().Add(30 * time.Second)
	var gaps []time.Duration
	for i, cl := range clients {
		for cl.last.Load() < final && cl.err.Load() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if p := cl.err.Load(); p != nil {
			return fmt.Errorf("client %d: %w", i, *p)
		}
		if got := cl.last.Load(); got != final {
			return fmt.Errorf("client %d got up to message %d of %d", i, got, final)
		}
		gaps = append(gaps, time.Duration(cl.maxGap.Load()))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	rssAfter := rss(int(newPid.Load()))
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Printf("connections handed over: %d of %d (and the publisher)\n", handed, *conns)
	fmt.Printf("hand-off: %.0f ms (from the new process serving to the old one's Restart returning); %d bytes of output not yet written travelled with the connections\n", took*1000, moved)
	fmt.Printf("messages: %d published every %v, every one received by all %d clients in order\n", final+1, *period, *conns)
	fmt.Printf("longest gap between two messages, over the clients: median %v, p99 %v, max %v (the period is %v: the pause is the gap less the period)\n",
		gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)*99/100].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), *period)
	fmt.Printf("the room's fan-out spread (first to last client getting one message): at most %v over the %d messages before the restart, %v over those after it; the longest gap less the period less the spread before: %v\n",
		arrived.spread(1, seqAtRestart-1).Round(time.Millisecond), seqAtRestart-2, arrived.spread(seqAtRestart, int(final)+1).Round(time.Millisecond),
		(gaps[len(gaps)-1] - *period - arrived.spread(1, seqAtRestart-1)).Round(time.Millisecond))
	fmt.Printf("RSS: old process before %s, peak during %s; new process peak during %s, after %s; both together peak %s\n",
		mib(rssBefore), mib(peakOld.Load()), mib(peakNew.Load()), mib(rssAfter), mib(peakSum.Load()))
	fmt.Printf("go %s, GOMAXPROCS %d, %s\n", runtime.Version(), runtime.GOMAXPROCS(0), time.Now().UTC().Format(time.RFC3339))
	return nil
}

// subscribe dials from 127.0.0.(2+i%8) and joins the room; a goroutine
// then checks every message.
func subscribe(addr string, i int) (*client, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}).DialContext,
		ReadBufferSize: 256, WriteBufferSize: 256}
	c, _, err := d.Dial("ws://"+addr+"/", nil)
	if err != nil {
		return nil, err
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("sub")); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "subbed" {
		return nil, fmt.Errorf("sub: %q %v", p, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	cl := &client{c: c}
	cl.last.Store(-1)
	go func() {
		var prev time.Time
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					cl.err.CompareAndSwap(nil, &err)
				}
				return
			}
			now := time.Now()
			if cl.measured.Load() && !prev.IsZero() {
				if g := int64(now.Sub(prev)); g > cl.maxGap.Load() {
					cl.maxGap.Store(g)
				}
			}
			prev = now
			s, _, _ := strings.Cut(string(p), " ")
			seq, _ := strconv.Atoi(s)
			arrived.note(seq, now.UnixNano())
			if string(p) != payload(seq) {
				err := fmt.Errorf("corrupt message %.40q", p)
				cl.err.CompareAndSwap(nil, &err)
				return
			}
			if last := cl.last.Load(); last >= 0 && int64(seq) != last+1 {
				err := fmt.Errorf("message %d after %d", seq, last)
				cl.err.CompareAndSwap(nil, &err)
				return
			}
			cl.last.Store(int64(seq))
		}
	}()
	return cl, nil
}

// rss is pid's VmRSS in bytes, 0 if it has none (gone, or pid 0).
func rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
