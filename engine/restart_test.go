package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

const restartChildEnv = "WSLOOP_RESTART_CHILD"

// childHeap samples a restart child's heap every 10 ms (as memPeak does
// in a test process) and keeps its peak over a base: the process's start,
// or the last "heapmark".
var childHeap struct {
	base, peak atomic.Uint64
}

// startChildHeap sets the GC target to 10% (as memPeak does), takes the
// base and starts sampling.
func startChildHeap() {
	debug.SetGCPercent(10)
	markChildHeap()
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			sampleChildHeap()
		}
	}()
}

func sampleChildHeap() {
	h := heapObjects()
	for p := childHeap.peak.Load(); h > p && !childHeap.peak.CompareAndSwap(p, h); p = childHeap.peak.Load() {
	}
}

// markChildHeap collects garbage and makes the heap now the base.
func markChildHeap() uint64 {
	runtime.GC()
	runtime.GC()
	h := heapObjects()
	childHeap.base.Store(h)
	childHeap.peak.Store(h)
	return h
}

// childHeapGrowth is the peak's growth over the base.
func childHeapGrowth() int64 {
	sampleChildHeap()
	return int64(childHeap.peak.Load()) - int64(childHeap.base.Load())
}

// pidHandler answers "who" with the process's pid, "sub" by joining the
// room "live" (and answering "subbed"), "pub:..." by publishing the
// message to "live", "len" with "len <RoomLen> <pid> <Stats.Adopted>",
// "heapmark" by making the heap now the base of childHeap ("heapmark
// <bytes>"), "heap" with "heap <peak growth> <growth now, after a GC>"
// (bytes over the base), and echoes the rest. Its connections can be handed over: the role
// ("sub") travels as the hand-off state.
type pidHandler struct{ echoHandler }

func (pidHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	switch {
	case string(p) == "who":
		_ = c.WriteMessage(op, []byte(strconv.Itoa(os.Getpid())))
	case string(p) == "waiting":
		_ = c.WriteMessage(op, fmt.Appendf(nil, "waiting %d", c.BufferedAmount()))
	case string(p) == "sub":
		_ = c.Join("live")
		c.SetValue("sub")
		_ = c.WriteMessage(op, []byte("subbed"))
	case strings.HasPrefix(string(p), "pub:"):
		_ = c.Server().Publish("live", op, p[4:])
	case strings.HasPrefix(string(p), "sink:"): // dropped
	case strings.HasPrefix(string(p), "bind:"):
		_ = c.Bind(string(p[5:]))
		_ = c.WriteMessage(op, []byte("bound"))
	case strings.HasPrefix(string(p), "has:"):
		_, ok := c.Server().ConnByKey(string(p[4:]))
		_ = c.WriteMessage(op, fmt.Appendf(nil, "has %v %d", ok, os.Getpid()))
	case string(p) == "proto":
		_ = c.WriteMessage(op, []byte("proto "+c.Subprotocol()))
	case string(p) == "heapmark":
		_ = c.WriteMessage(op, fmt.Appendf(nil, "heapmark %d", markChildHeap()))
	case string(p) == "heap":
		peak := childHeapGrowth()
		runtime.GC()
		runtime.GC()
		_ = c.WriteMessage(op, fmt.Appendf(nil, "heap %d %d", peak, int64(heapObjects())-int64(childHeap.base.Load())))
	case string(p) == "len":
		s := c.Server()
		_ = c.WriteMessage(op, fmt.Appendf(nil, "len %d %d %d", s.RoomLen("live"), os.Getpid(), s.Stats().Adopted))
	default:
		_ = c.WriteMessage(op, p)
	}
}

func (pidHandler) OnHandOff(c *Conn) []byte {
	v, _ := c.Value().(string)
	return []byte(v)
}

func (pidHandler) OnAdopt(c *Conn, state []byte) {
	if len(state) > 0 {
		c.SetValue(string(state))
	}
}

// TestRestartChild is a server process for the restart tests; it does
// nothing in a normal run. It serves pidHandler on 127.0.0.1:0 (or on the
// listener it inherits) and prints "READY addr pid". The first process
// obeys commands on stdin: "restart" (the successor is this test binary
// again), "restart-exit" (a successor that exits at once), "restart-hang"
// (one that takes the listener and never serves); after each it prints
// "RESTARTED pid err". When ListenAndServe returns it prints "EXIT pid err"
// and exits.
func TestRestartChild(t *testing.T) {
	mode := os.Getenv(restartChildEnv)
	if mode == "" {
		t.Skip("runs only as a child of the restart tests")
	}
	successor := os.Getenv(inheritEnv) != ""
	if n, _ := strconv.Atoi(os.Getenv("WSLOOP_RESTART_DIE_AFTER")); n > 0 && successor {
		// A successor that dies during the hand-off, once it has received n.
		testHookReceived = func(got int) {
			if got >= n {
				fmt.Println("DYING", os.Getpid())
				os.Exit(9)
			}
		}
	}
	if os.Getenv("WSLOOP_RESTART_OLDER") != "" && successor {
		testHookOlder = true // a successor built before output travelled
	}
	switch mode {
	case "exit":
		os.Exit(7)
	case "hang":
		in, err := takeInheritance() // holds the listener, never serves
		fmt.Println("HANG", os.Getpid(), in != nil, err)
		time.Sleep(time.Hour)
	}
	startChildHeap()
	srv, err := New(pidHandler{}, WithEventLoops(2), WithCloseTimeout(time.Second),
		WithSubprotocols("v1.test"), WithContextTakeover(true, 15), WithMaxOutboundBytes(16<<20))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	select {
	case <-srv.Ready():
	case err := <-exited:
		fmt.Println("EXIT", os.Getpid(), err)
		os.Exit(3)
	}
	fmt.Println("READY", srv.Addr(), os.Getpid())
	var restarting sync.WaitGroup // Restart returns after ListenAndServe: print its result first
	if !successor {
		go func() {
			sc := bufio.NewScanner(os.Stdin)
			for sc.Scan() {
				self := []RestartOption{RestartCommand(os.Args[0], "-test.run=^TestRestartChild$"),
					RestartDrain(300 * time.Millisecond), RestartReadyTimeout(2 * time.Second)}
				var err error
				restarting.Add(1)
				switch sc.Text() {
				case "restart":
					err = srv.Restart(context.Background(), self...)
				case "restart-exit":
					err = srv.Restart(context.Background(), append(self, RestartEnv(restartChildEnv+"=exit"))...)
				case "restart-hang":
					err = srv.Restart(context.Background(), append(self, RestartEnv(restartChildEnv+"=hang"))...)
				case "restart-keep":
					start := time.Now()
					err = srv.Restart(context.Background(), append(self, RestartKeep(),
						RestartStarted(func(int) { start = time.Now() }))...)
					st := srv.Stats()
					fmt.Println("HANDOFF", st.HandedOver, time.Since(start), st.HandedOverBytes)
					fmt.Println("HEAP", os.Getpid(), childHeapGrowth())
				case "restart-keep-older":
					err = srv.Restart(context.Background(), append(self, RestartKeep(),
						RestartEnv("WSLOOP_RESTART_OLDER=1"))...)
					fmt.Println("HANDOFF", srv.Stats().HandedOver)
				case "restart-keep-die":
					err = srv.Restart(context.Background(), append(self, RestartKeep(),
						RestartEnv("WSLOOP_RESTART_DIE_AFTER=50"))...)
					fmt.Println("HANDOFF", srv.Stats().HandedOver)
				}
				fmt.Println("RESTARTED", os.Getpid(), err)
				restarting.Done()
			}
		}()
	}
	err = <-exited
	restarting.Wait()
	fmt.Println("EXIT", os.Getpid(), err)
	os.Exit(0)
}

// restartChild is a running TestRestartChild process and the lines it
// (and its successors, which share its stdout) print.
type restartChild struct {
	cmd   *exec.Cmd
	stdin io.Writer
	lines chan string
	addr  string
	pid   int
	pids  sync.Map // every pid that printed READY, to kill at the end
}

func startRestartChild(t *testing.T) *restartChild {
	t.Helper()
	return startChild(t, "TestRestartChild", restartChildEnv+"=serve")
}

// startChild runs this test binary as a server process: only the test
// run, with env added to the environment. It follows the lines that
// process and its successors print, kills them all at the end, and waits
// for the first READY.
func startChild(t *testing.T, run string, env ...string) *restartChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &restartChild{cmd: cmd, stdin: stdin, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if f := strings.Fields(line); len(f) == 3 && f[0] == "READY" {
				pid, _ := strconv.Atoi(f[2])
				ch.pids.Store(pid, true)
			}
			ch.lines <- line
		}
		close(ch.lines)
	}()
	t.Cleanup(func() {
		ch.pids.Range(func(k, _ any) bool {
			_ = syscall.Kill(k.(int), syscall.SIGKILL)
			return true
		})
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	f := strings.Fields(ch.expect(t, "READY"))
	ch.addr = f[1]
	ch.pid, _ = strconv.Atoi(f[2])
	return ch
}

// expect returns the next line that starts with prefix, skipping others;
// the test fails if none comes within 20 s.
func (ch *restartChild) expect(t *testing.T, prefix string) string {
	t.Helper()
	line, err := ch.await(prefix, 20*time.Second, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// within is expect that waits d and, instead of failing, logs and returns
// "".
func (ch *restartChild) within(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	line, err := ch.await(prefix, d, t.Logf)
	if err != nil {
		t.Log(err)
	}
	return line
}

// all waits d for a line that starts with each of prefixes, in any order,
// and returns those it saw, by prefix.
func (ch *restartChild) all(t *testing.T, d time.Duration, prefixes ...string) map[string]string {
	t.Helper()
	seen := map[string]string{}
	timeout := time.After(d)
	for len(seen) < len(prefixes) {
		select {
		case line, ok := <-ch.lines:
			if !ok {
				t.Logf("the child's output ended; seen %q", seen)
				return seen
			}
			t.Logf("child: %s", line)
			for _, p := range prefixes {
				if _, dup := seen[p]; !dup && strings.HasPrefix(line, p) {
					seen[p] = line
					break
				}
			}
		case <-timeout:
			t.Logf("within %v, of %q seen only %q", d, prefixes, seen)
			return seen
		}
	}
	return seen
}

func (ch *restartChild) await(prefix string, d time.Duration, logf func(string, ...any)) (string, error) {
	timeout := time.After(d)
	for {
		select {
		case line, ok := <-ch.lines:
			if !ok {
				return "", fmt.Errorf("the child's output ended before %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
			logf("child: %s", line)
		case <-timeout:
			return "", fmt.Errorf("no %q from the child within %v", prefix, d)
		}
	}
}

// dialLoop dials addr in a tight loop on n goroutines until stop closes:
// each dial upgrades, asks "who" and closes. It counts failures and which
// pid answered.
type dialLoop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	byPid      map[string]int
	firstErr   error
	wg         sync.WaitGroup
	stop       chan struct{}
}

func startDialLoop(addr string, n int) *dialLoop {
	d := &dialLoop{byPid: map[string]int{}, stop: make(chan struct{})}
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	for range n {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for {
				select {
				case <-d.stop:
					return
				default:
				}
				pid, err := func() (string, error) {
					c, _, err := dialer.Dial("ws://"+addr+"/", nil)
					if err != nil {
						return "", err
					}
					defer c.Close()
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if err := c.WriteMessage(websocket.TextMessage, []byte("who")); err != nil {
						return "", err
					}
					_, p, err := c.ReadMessage()
					if err != nil {
						return "", err
					}
					_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
					return string(p), nil
				}()
				if err != nil {
					d.failed.Add(1)
					d.mu.Lock()
					if d.firstErr == nil {
						d.firstErr = err
					}
					d.mu.Unlock()
					continue
				}
				d.ok.Add(1)
				d.mu.Lock()
				d.byPid[pid]++
				d.mu.Unlock()
			}
		}()
	}
	return d
}

func (d *dialLoop) end() {
	close(d.stop)
	d.wg.Wait()
}

// TestRestartKeepsListener: a process restarts itself (Restart) while
// clients dial in a tight loop: the new process takes the listening socket
// over, the old one drains its connections with 1012 and exits, and not
// one dial fails.
func TestRestartKeepsListener(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes")
	}
	ch := startRestartChild(t)
	held, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	d := startDialLoop(ch.addr, 4)
	time.Sleep(300 * time.Millisecond)
	if _, err := io.WriteString(ch.stdin, "restart\n"); err != nil {
		t.Fatal(err)
	}
	// The successor prints READY on the same stdout (its output is ours).
	f := strings.Fields(ch.expect(t, "READY"))
	newPid := f[2]
	if newPid == strconv.Itoa(ch.pid) {
		t.Fatalf("the successor has the old pid %s", newPid)
	}
	// The connection held open is drained with 1012 and its reason.
	_ = held.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = held.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Errorf("the held connection got %v, want close 1012", err)
	}
	if line := ch.expect(t, "RESTARTED"); !strings.HasSuffix(line, "<nil>") {
		t.Errorf("Restart: %s", line)
	}
	if line := ch.expect(t, "EXIT "+strconv.Itoa(ch.pid)); !strings.Contains(line, ErrServerClosed.Error()) {
		t.Errorf("the old process: %s", line)
	}
	time.Sleep(300 * time.Millisecond) // the new process alone
	d.end()
	t.Logf("%d dials served (by pid: %v), %d failed", d.ok.Load(), d.byPid, d.failed.Load())
	if n := d.failed.Load(); n > 0 {
		t.Errorf("%d dials failed during the restart; first: %v", n, d.firstErr)
	}
	if d.byPid[strconv.Itoa(ch.pid)] == 0 || d.byPid[newPid] == 0 {
		t.Errorf("want dials served by both processes: %v", d.byPid)
	}
	// A connection made now reaches the new process.
	c, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("who"))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != newPid {
		t.Errorf("after the restart, %q %v, want the new pid %s", p, err, newPid)
	}
}

// TestRestartFailedSuccessor: when the new process exits before it serves,
// or takes the listener and never says it serves, Restart returns
// ErrRestartFailed and the old process goes on serving; no dial fails
// meanwhile, and a later restart still works.
func TestRestartFailedSuccessor(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes")
	}
	ch := startRestartChild(t)
	held, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	d := startDialLoop(ch.addr, 4)
	for _, cmd := range []string{"restart-exit", "restart-hang"} {
		if _, err := io.WriteString(ch.stdin, cmd+"\n"); err != nil {
			t.Fatal(err)
		}
		line := ch.expect(t, "RESTARTED")
		if !strings.Contains(line, ErrRestartFailed.Error()) {
			t.Errorf("%s: %s, want ErrRestartFailed", cmd, line)
		}
		t.Logf("%s: %s", cmd, line)
	}
	time.Sleep(200 * time.Millisecond)
	d.end()
	t.Logf("%d dials served (by pid: %v), %d failed", d.ok.Load(), d.byPid, d.failed.Load())
	if n := d.failed.Load(); n > 0 {
		t.Errorf("%d dials failed while restarts failed; first: %v", n, d.firstErr)
	}
	if len(d.byPid) != 1 || d.byPid[strconv.Itoa(ch.pid)] == 0 {
		t.Errorf("want every dial served by the old process %d: %v", ch.pid, d.byPid)
	}
	// The connection held all along still works.
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := held.WriteMessage(websocket.TextMessage, []byte("who")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := held.ReadMessage(); err != nil || string(p) != strconv.Itoa(ch.pid) {
		t.Errorf("the held connection: %q %v", p, err)
	}
	// And a real restart still goes through.
	if _, err := io.WriteString(ch.stdin, "restart\n"); err != nil {
		t.Fatal(err)
	}
	ch.expect(t, "READY")
	if line := ch.expect(t, "RESTARTED"); !strings.HasSuffix(line, "<nil>") {
		t.Errorf("the restart after the failures: %s", line)
	}
}

// subscriber is a client in the room "live" that checks every message:
// "<seq> <seq's bytes>", seq growing by one.
type subscriber struct {
	c        *websocket.Conn
	last     atomic.Int64 // last seq seen, -1 before the first
	err      atomic.Pointer[error]
	maxPause atomic.Int64 // the longest time between two messages, ns
	done     chan struct{}
}

func payloadFor(seq int) string {
	return fmt.Sprintf("%d %s", seq, strings.Repeat(strconv.Itoa(seq%10), 40+seq%23))
}

func subscribe(t *testing.T, addr string) *subscriber {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteMessage(websocket.TextMessage, []byte("sub")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "subbed" {
		t.Fatalf("sub: %q %v", p, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	s := &subscriber{c: c, done: make(chan struct{})}
	s.last.Store(-1)
	go func() {
		defer close(s.done)
		var prev time.Time
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				s.err.CompareAndSwap(nil, &err)
				return
			}
			now := time.Now()
			if !prev.IsZero() {
				if d := now.Sub(prev); d > time.Duration(s.maxPause.Load()) {
					s.maxPause.Store(int64(d))
				}
			}
			prev = now
			seqStr, _, _ := strings.Cut(string(p), " ")
			seq, _ := strconv.Atoi(seqStr)
			if string(p) != payloadFor(seq) {
				err := fmt.Errorf("corrupt message %.60q", p)
				s.err.CompareAndSwap(nil, &err)
				return
			}
			if last := s.last.Load(); last >= 0 && int64(seq) != last+1 {
				err := fmt.Errorf("message %d after %d", seq, last)
				s.err.CompareAndSwap(nil, &err)
				return
			}
			s.last.Store(int64(seq))
		}
	}()
	return s
}

// TestRestartKeepsConnections: Restart with RestartKeep hands every open
// connection to the new process while a publisher (itself a client) keeps
// publishing to a room: no subscriber sees a close, a lost, duplicated or
// reordered message; afterwards the new process holds them all, with the
// room's count right; and a client in the middle of a large fragmented
// message during the hand-off gets it echoed whole. A flooder that sends
// while its input is held unparsed gets 1012; the old process's heap
// peaks at most 24 MiB above what it held with the same connections
// before the hand-off (the held input, the flooder's included, and the
// hand-off's own buffers), and the new process's at most 24 MiB above
// what it holds for the same connections once it is over (seen: 6.5 to
// 11.5 MiB and 0.9 to 10.5 MiB). The subscribers, which miss nothing, are
// the connections served meanwhile.
func TestRestartKeepsConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes")
	}
	n := 5000
	if raceEnabled {
		n = 1000
	}
	ch := startRestartChild(t)
	subs := make([]*subscriber, n)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); subs[i] = subscribe(t, ch.addr) }()
		if i%200 == 199 {
			wg.Wait()
		}
	}
	wg.Wait()
	pub, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// The old process's heap with every connection open, as the base.
	if err := pub.WriteMessage(websocket.TextMessage, []byte("heapmark")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := pub.ReadMessage(); err != nil || !strings.HasPrefix(string(p), "heapmark ") {
		t.Fatalf("heapmark: %q %v", p, err)
	}
	var mu sync.Mutex // the publisher's writes
	var seq atomic.Int64
	stopPub := make(chan struct{})
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopPub:
				pubDone <- nil
				return
			case <-tick.C:
			}
			mu.Lock()
			err := pub.WriteMessage(websocket.TextMessage, []byte("pub:"+payloadFor(int(seq.Load()))))
			mu.Unlock()
			if err != nil {
				pubDone <- err
				return
			}
			seq.Add(1)
		}
	}()
	// A large message, sent in fragments across the hand-off.
	big, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	bigMsg := []byte(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
	bigErr := make(chan error, 1)
	time.Sleep(500 * time.Millisecond)
	go func() {
		w, err := big.NextWriter(websocket.BinaryMessage)
		if err != nil {
			bigErr <- err
			return
		}
		for off := 0; off < len(bigMsg); off += 64 << 10 {
			if _, err := w.Write(bigMsg[off : off+64<<10]); err != nil { // one fragment per write (gorilla's buffer is 4 KiB: it flushes)
				bigErr <- err
				return
			}
			time.Sleep(30 * time.Millisecond)
		}
		bigErr <- w.Close()
	}()
	// A client that floods while the hand-off holds its input unparsed.
	flooder, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	floodClose := make(chan error, 1)
	go func() {
		for {
			if _, _, err := flooder.ReadMessage(); err != nil {
				floodClose <- err
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := io.WriteString(ch.stdin, "restart-keep\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		sink := []byte("sink:" + strings.Repeat("x", 1<<10))
		for range 64 << 10 { // 64 MiB at most
			if flooder.WriteMessage(websocket.BinaryMessage, sink) != nil {
				return
			}
		}
	}()
	newPid := strings.Fields(ch.expect(t, "READY"))[2]
	handoff := ch.expect(t, "HANDOFF")
	t.Logf("%s (connections, time from the new process serving to the old one's end)", handoff)
	oldHeap, _ := strconv.ParseInt(strings.Fields(ch.expect(t, "HEAP"))[2], 10, 64)
	if line := ch.expect(t, "RESTARTED"); !strings.HasSuffix(line, "<nil>") {
		t.Fatalf("Restart: %s", line)
	}
	if line := ch.expect(t, "EXIT "+strconv.Itoa(ch.pid)); !strings.Contains(line, ErrServerClosed.Error()) {
		t.Errorf("the old process: %s", line)
	}
	time.Sleep(time.Second)
	close(stopPub)
	if err := <-pubDone; err != nil {
		t.Fatalf("the publisher: %v", err)
	}
	final := seq.Load() - 1
	if err := <-bigErr; err != nil {
		t.Fatalf("the large message: %v", err)
	}
	select {
	case err := <-floodClose:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1012 {
			t.Errorf("the flooder got %v, want close 1012", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the flooder was not closed: the input held during the hand-off has no bound")
	}
	_ = big.SetReadDeadline(time.Now().Add(10 * time.Second))
	if op, p, err := big.ReadMessage(); err != nil || op != websocket.BinaryMessage || string(p) != string(bigMsg) {
		t.Errorf("the large message's echo: %d bytes, %v", len(p), err)
	}
	deadline := time.Now().Add(15 * time.Second)
	var maxPause time.Duration
	for i, s := range subs {
		for s.last.Load() < final && s.err.Load() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if p := s.err.Load(); p != nil {
			t.Fatalf("subscriber %d: %v", i, *p)
		}
		if got := s.last.Load(); got != final {
			t.Fatalf("subscriber %d got up to message %d, want %d", i, got, final)
		}
		maxPause = max(maxPause, time.Duration(s.maxPause.Load()))
	}
	t.Logf("%d subscribers got every one of %d messages in order; longest pause any saw: %v (publishes every 50 ms)", n, final+1, maxPause)
	mu.Lock()
	_ = pub.SetReadDeadline(time.Now().Add(5 * time.Second))
	err = pub.WriteMessage(websocket.TextMessage, []byte("len"))
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := pub.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(p))
	if len(f) != 4 || f[1] != strconv.Itoa(n) || f[2] != newPid {
		t.Errorf("the new process says %q, want RoomLen %d in pid %s", p, n, newPid)
	}
	if adopted, _ := strconv.Atoi(f[3]); adopted < n+2 {
		t.Errorf("the new process adopted %d connections, want at least %d (the subscribers, the publisher, the large message's)", adopted, n+2)
	}
	mu.Lock()
	err = pub.WriteMessage(websocket.TextMessage, []byte("heap"))
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, p, err = pub.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	var newPeak, newHeld int64
	if _, err := fmt.Sscanf(string(p), "heap %d %d", &newPeak, &newHeld); err != nil {
		t.Fatalf("heap: %q %v", p, err)
	}
	t.Logf("the old process's heap peaked %s above its start of the hand-off; the new one's %s above what it holds after it (%s for %d connections)",
		mib(oldHeap), mib(newPeak-newHeld), mib(newHeld), n+2)
	if oldHeap > 24<<20 {
		t.Errorf("the old process's heap peaked %s above its start of the hand-off, over 24 MiB", mib(oldHeap))
	}
	if newPeak-newHeld > 24<<20 {
		t.Errorf("the new process's heap peaked %s above what it holds after the hand-off, over 24 MiB", mib(newPeak-newHeld))
	}
}

// TestRestartKeepSuccessorDies: the new process dies after adopting 50
// connections; the old one keeps the others, serves them, and accepts
// again.
func TestRestartKeepSuccessorDies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes")
	}
	const n = 1600 // more than the hand-off window (handOffWindow) plus the 50 the new process adopts
	ch := startRestartChild(t)
	subs := make([]*subscriber, n)
	for i := range subs {
		subs[i] = subscribe(t, ch.addr)
	}
	if _, err := io.WriteString(ch.stdin, "restart-keep-die\n"); err != nil {
		t.Fatal(err)
	}
	line := ch.expect(t, "RESTARTED")
	if !strings.Contains(line, ErrRestartFailed.Error()) {
		t.Fatalf("Restart: %s, want ErrRestartFailed", line)
	}
	t.Log(line)
	time.Sleep(200 * time.Millisecond)
	// The survivors are served: one publishes, every survivor gets it.
	var alive []*subscriber
	for _, s := range subs {
		if s.err.Load() == nil {
			alive = append(alive, s)
		}
	}
	if len(alive) > 0 {
		if err := alive[0].c.WriteMessage(websocket.TextMessage, []byte("pub:"+payloadFor(0))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "every survivor to get the publish", func() bool {
			for _, s := range alive {
				if s.last.Load() != 0 && s.err.Load() == nil {
					return false
				}
			}
			return true
		})
		for i, s := range alive {
			if p := s.err.Load(); p != nil {
				t.Errorf("survivor %d: %v", i, *p)
			}
		}
	}
	t.Logf("%d of %d connections still served by the old process", len(alive), n)
	// Those sent are lost with the new process; every other one stays.
	var sent int
	if _, after, ok := strings.Cut(line, "after "); ok {
		sent, _ = strconv.Atoi(strings.Fields(after)[0])
	}
	if sent == 0 || sent >= n || len(alive) != n-sent {
		t.Errorf("%d of %d connections still served after %d were sent to a new process that died: want %d", len(alive), n, sent, n-sent)
	}
	// It accepts again, and its pid answers.
	c, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatalf("after the failed hand-off: %v", err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("who"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != strconv.Itoa(ch.pid) {
		t.Errorf("after the failed hand-off: %q %v, want the old pid %d", p, err, ch.pid)
	}
}

// TestRestartKeepsState: a connection handed over keeps its negotiated
// subprotocol, its bound key, and permessage-deflate with the client's
// context takeover: the new process inflates the client's next messages,
// which refer back to the ones the old process saw, because the client's
// window moved with the connection (coder/websocket, which keeps its
// context).
func TestRestartKeepsState(t *testing.T) {
	if testing.Short() {
		t.Skip("runs server processes")
	}
	ch := startRestartChild(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, resp, err := cws.Dial(ctx, "ws://"+ch.addr+"/", &cws.DialOptions{Subprotocols: []string{"v1.test"},
		CompressionMode: cws.CompressionContextTakeover, CompressionThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasPrefix(ext, "permessage-deflate") || strings.Contains(ext, "client_no_context_takeover") {
		t.Fatalf("extension %q: want permessage-deflate with the client's context takeover", ext)
	}
	ask := func(msg string) string {
		t.Helper()
		if err := c.Write(ctx, cws.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		_, p, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("after %q: %v", msg, err)
		}
		return string(p)
	}
	chat := func(i int) string {
		return fmt.Sprintf(`{"type":"chat","room":"lobby","name":"viewer-%d","text":"the same words again and again, message %d: %s"}`,
			i%7, i, strings.Repeat("a chat line that repeats what the others said before it ", 4))
	}
	if got := ask("bind:k1"); got != "bound" {
		t.Fatalf("bind: %q", got)
	}
	for i := range 20 { // the client's window fills with these
		if got := ask(chat(i)); got != chat(i) {
			t.Fatalf("echo %d: %q", i, got)
		}
	}
	if _, err := io.WriteString(ch.stdin, "restart-keep\n"); err != nil {
		t.Fatal(err)
	}
	newPid := strings.Fields(ch.expect(t, "READY"))[2]
	if line := ch.expect(t, "RESTARTED"); !strings.HasSuffix(line, "<nil>") {
		t.Fatalf("Restart: %s", line)
	}
	ch.expect(t, "EXIT "+strconv.Itoa(ch.pid))
	// The same connection, now served by the new process.
	for i := 20; i < 40; i++ { // compressed against the window the old process kept
		if got := ask(chat(i)); got != chat(i) {
			t.Fatalf("echo %d after the hand-off: %q", i, got)
		}
	}
	if got := ask("proto"); got != "proto v1.test" {
		t.Errorf("after the hand-off: %q, want the subprotocol v1.test", got)
	}
	if got := ask("has:k1"); got != "has true "+newPid {
		t.Errorf("after the hand-off: %q, want the key bound in the new process %s", got, newPid)
	}
}

// TestRestartKeepSlowConsumer: a client that does not read, with
// megabytes of output waiting for it (most of it in gnet's buffer), is
// handed over with that output, at once: the new process writes it before
// anything else. Reading at last, the client gets every echo whole and in
// order, no close, and its next request is answered by the new process;
// the others move too, missing nothing.
func TestRestartKeepSlowConsumer(t *testing.T) { testRestartKeepSlow(t, false) }

// TestRestartKeepOlderSuccessor: a new process built before output
// travelled with its connection (it does not say msgTakes) is sent records
// it knows. The slow client, whose output does not drain, never comes to
// rest: the hand-off gives up on it at RestartHandOffTimeout (2 s) and
// drains it with 1012; the others move, missing nothing.
func TestRestartKeepOlderSuccessor(t *testing.T) { testRestartKeepSlow(t, true) }

func testRestartKeepSlow(t *testing.T, older bool) {
	if testing.Short() {
		t.Skip("runs server processes")
	}
	ch := startRestartChild(t)
	subs := make([]*subscriber, 50)
	for i := range subs {
		subs[i] = subscribe(t, ch.addr)
	}
	// A small receive buffer, so that the kernel holds little of the output.
	small := websocket.Dialer{NetDial: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}).Dial}
	slow, _, err := small.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	// 12 MiB of echoes it does not read: the kernel's buffers take some
	// (3.5 MiB here; tcp_wmem's maximum bounds them), the server holds the
	// rest, within the outbound cap (16 MiB here), so none is dropped; then
	// how much the server held.
	const echoes = 12
	echo := func(i int) []byte {
		p := []byte(strings.Repeat(string(rune('a'+i)), 1<<20-64))
		copy(p, fmt.Sprintf("echo %d ", i))
		return p
	}
	for i := range echoes {
		if err := slow.WriteMessage(websocket.BinaryMessage, echo(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := slow.WriteMessage(websocket.TextMessage, []byte("waiting")); err != nil {
		t.Fatal(err)
	}
	pub, _, err := websocket.DefaultDialer.Dial("ws://"+ch.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var seq int
	publish := func() {
		t.Helper()
		if err := pub.WriteMessage(websocket.TextMessage, []byte("pub:"+payloadFor(seq))); err != nil {
			t.Fatal(err)
		}
		seq++
	}
	publish()
	time.Sleep(300 * time.Millisecond) // the echoes are parsed and wait for the client
	start := time.Now()
	cmd, want := "restart-keep\n", "52"
	if older {
		cmd, want = "restart-keep-older\n", "51"
	}
	if _, err := io.WriteString(ch.stdin, cmd); err != nil {
		t.Fatal(err)
	}
	newPid := strings.Fields(ch.expect(t, "READY"))[2]
	for range 10 {
		publish()
		time.Sleep(50 * time.Millisecond)
	}
	handoff := ch.expect(t, "HANDOFF")
	took := time.Since(start)
	t.Logf("%s; %v from the restart to its end", handoff, took)
	f := strings.Fields(handoff)
	if len(f) < 2 || f[1] != want {
		t.Errorf("%s: want %s handed over: the 50 subscribers, the publisher (and the slow client unless older)", handoff, want)
	}
	var moved int
	if !older {
		if len(f) == 4 {
			moved, _ = strconv.Atoi(f[3])
		}
		t.Logf("%d bytes of output travelled", moved)
	}
	if line := ch.expect(t, "RESTARTED"); !strings.HasSuffix(line, "<nil>") {
		t.Fatalf("Restart: %s", line)
	}
	publish()
	waitFor(t, 10*time.Second, "every subscriber to get every message", func() bool {
		for _, s := range subs {
			if s.last.Load() != int64(seq-1) && s.err.Load() == nil {
				return false
			}
		}
		return true
	})
	for i, s := range subs {
		if p := s.err.Load(); p != nil {
			t.Fatalf("subscriber %d: %v", i, *p)
		}
	}
	_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
	if older {
		// Reading at last, it finds what got out and then the end of its
		// connection: the close frame, 1012, if it got out within the old
		// process's close timeout, else just the end of the stream.
		for {
			_, _, err := slow.ReadMessage()
			if err == nil {
				continue
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != 1012 && ce.Code != websocket.CloseAbnormalClosure ||
				!errors.As(err, &ce) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the slow client got %v, want its connection ended by the old process", err)
			}
			t.Logf("the slow client: %v", err)
			return
		}
	}
	// The slow client, reading at last, finds every echo, then talks to the
	// new process over the same connection.
	for i := range echoes {
		_, p, err := slow.ReadMessage()
		if err != nil {
			t.Fatalf("the slow client, echo %d: %v", i, err)
		}
		if !bytes.Equal(p, echo(i)) {
			t.Fatalf("the slow client's echo %d: %d bytes %.20q, want %d bytes %.20q", i, len(p), p, 1<<20-64, echo(i))
		}
	}
	_, p, err := slow.ReadMessage()
	var waiting int
	if _, serr := fmt.Sscanf(string(p), "waiting %d", &waiting); err != nil || serr != nil {
		t.Fatalf("the slow client, after its echoes: %q %v", p, err)
	}
	t.Logf("the old process held %d bytes of the slow client's output before the hand-off", waiting)
	if waiting < 2<<20 {
		t.Fatalf("the old process held %d bytes of output for the slow client: the test needs more", waiting)
	}
	if moved < waiting*9/10 {
		t.Errorf("Stats.HandedOverBytes %d: want about the %d bytes the slow client's output held", moved, waiting)
	}
	if err := slow.WriteMessage(websocket.TextMessage, []byte("who")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := slow.ReadMessage(); err != nil || string(p) != newPid {
		t.Fatalf("the slow client asked who serves it: %q %v, want the new process %s", p, err, newPid)
	}
}
