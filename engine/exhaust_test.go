package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Descriptor exhaustion, tested on a server in a child process (this test
// binary re-executed) whose RLIMIT_NOFILE is lowered, so that the test
// process itself keeps its descriptors.

const (
	childEnv   = "WSLOOP_FD_CHILD"
	childLimit = 256
)

// TestFDChild is the child's body; it does nothing in a normal run.
//
// It lowers its descriptor limit, optionally opens files of its own (the
// application holding descriptors the server does not know about), runs
// an echo server and prints "READY addr". It then obeys commands on stdin:
// "release" closes the extra files, "stats" prints Stats, "fds" prints
// the number of open descriptors. If ListenAndServe returns, it prints
// "EXIT err".
func TestFDChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("runs only as the child of TestDescriptorExhaustion")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	lim.Cur = childLimit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	opts := []Option{WithEventLoops(2), WithTick(10 * time.Millisecond), WithHandshakeTimeout(2 * time.Second),
		WithCloseTimeout(time.Second), WithLogger(slog.New(lineHandler{}))}
	before := epollFDs()
	if mode == "hold-backoff" {
		opts = append(opts, func(o *options) { o.noReserve = true })
	}
	srv, err := New(echoHandler{}, opts...)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	select {
	case <-srv.Ready():
	case err := <-exited:
		fmt.Println("EXIT", err)
		os.Exit(3)
	}
	var held []*os.File
	if mode != "plain" {
		// The application opens files after the server started: the
		// server's cap, computed from the limit, cannot know about them.
		for range childLimit / 2 {
			f, err := os.Open(os.DevNull)
			if err != nil {
				break
			}
			held = append(held, f)
		}
	}
	fmt.Println("READY", srv.Addr())
	go func() {
		err := <-exited
		fmt.Println("EXIT", err)
		os.Exit(3)
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "release":
			for _, f := range held {
				f.Close()
			}
			held = nil
			fmt.Println("OK")
		case "stats":
			st := srv.Stats()
			fmt.Printf("STATS sockets=%d cap=%d conns=%d rejected=%d acceptErrors=%d shed=%d\n",
				st.Sockets, st.SocketCap, st.Connections, st.RejectedUpgrades, st.AcceptErrors, st.Shed)
		case "killloop":
			// Close the epoll instance of one of gnet's loops: its next
			// epoll_wait fails and the loop exits with an error.
			var fd int = -1
			for _, f := range epollFDs() {
				if !slices.Contains(before, f) {
					fd = f
				}
			}
			if fd < 0 {
				fmt.Println("ERR no gnet epoll descriptor found")
				continue
			}
			_ = syscall.Close(fd)
			fmt.Println("KILLED", fd)
		case "fds":
			if ents, err := os.ReadDir("/proc/self/fd"); err != nil {
				fmt.Println("FDS unknown:", err) // no descriptor left to read the directory
			} else {
				fmt.Println("FDS", len(ents))
			}
		}
	}
	os.Exit(0)
}

// lineHandler prints log records as "LOG LEVEL message" lines on stdout,
// for the parent to read.
type lineHandler struct{}

func (lineHandler) Enabled(context.Context, slog.Level) bool { return true }
func (lineHandler) Handle(_ context.Context, r slog.Record) error {
	fmt.Printf("LOG %s %s\n", r.Level, strings.ReplaceAll(r.Message, "\n", " "))
	if strings.Contains(r.Message, "is exiting due to error") {
		time.Sleep(300 * time.Millisecond) // a slow log sink, while sockets keep arriving
	}
	return nil
}
func (h lineHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h lineHandler) WithGroup(string) slog.Handler      { return h }

// epollFDs lists this process's epoll descriptors.
func epollFDs() []int {
	ents, _ := os.ReadDir("/proc/self/fd")
	var fds []int
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "anon_inode:[eventpoll]" {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				fds = append(fds, n)
			}
		}
	}
	return fds
}

type fdChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	addr  string
	logs  []string // LOG lines seen so far
}

func startFDChild(t *testing.T, mode string) *fdChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
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
	ch := &fdChild{cmd: cmd, stdin: stdin, lines: make(chan string, 100)}
	go func() {
		defer close(ch.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := ch.next(t, 20*time.Second)
	addr, ok := strings.CutPrefix(line, "READY ")
	if !ok {
		t.Fatalf("child: %q", line)
	}
	ch.addr = addr
	return ch
}

// line returns the child's next line, keeping LOG lines in ch.logs; ok is
// false when the child is gone or silent for d.
func (ch *fdChild) line(d time.Duration) (string, bool) {
	timeout := time.After(d)
	for {
		select {
		case line, ok := <-ch.lines:
			if !ok {
				return "", false
			}
			if strings.HasPrefix(line, "LOG ") {
				ch.logs = append(ch.logs, line)
				continue
			}
			return line, true
		case <-timeout:
			return "", false
		}
	}
}

// next returns the child's next line; an "EXIT" line fails the test.
func (ch *fdChild) next(t *testing.T, d time.Duration) string {
	t.Helper()
	line, ok := ch.line(d)
	if !ok {
		t.Fatalf("child exited or silent for %v", d)
	}
	if strings.HasPrefix(line, "EXIT") {
		t.Fatalf("the server stopped: %s", line)
	}
	return line
}

// waitExit waits up to d for the child's "EXIT" line.
func (ch *fdChild) waitExit(d time.Duration) (string, bool) {
	deadline := time.Now().Add(d)
	for {
		line, ok := ch.line(time.Until(deadline))
		if !ok || strings.HasPrefix(line, "EXIT") {
			return line, ok
		}
	}
}

func (ch *fdChild) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(ch.stdin, cmd); err != nil {
		var rest []string
		for line := range ch.lines {
			rest = append(rest, line)
		}
		t.Fatalf("child gone (%v), its last words: %q", err, rest)
	}
	return ch.next(t, 10*time.Second)
}

// tryEcho upgrades and echoes one message; it reports what went wrong.
func tryEcho(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(upgradeReq)); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("no response: %w", err)
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101") {
		return fmt.Errorf("response %q", strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			break
		}
	}
	if _, err := c.Write(clientFrame(ws.OpText, true, []byte("echo me"))); err != nil {
		return err
	}
	f, err := ws.ReadFrame(br)
	if err != nil {
		return err
	}
	if string(f.Payload) != "echo me" {
		return fmt.Errorf("echo %q", f.Payload)
	}
	return nil
}

// childStats parses a STATS line.
func childStats(t *testing.T, line string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "STATS ")) {
		k, v, _ := strings.Cut(f, "=")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("bad stats line %q", line)
		}
		m[k] = n
	}
	return m
}

// closedByServer counts the connections the server has answered with 503
// and closed, reading each (at once, in parallel) for up to d.
func closedByServer(conns []net.Conn, d time.Duration) int {
	deadline := time.Now().Add(d)
	var n atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(deadline)
			b, err := io.ReadAll(c)
			if err == nil && strings.HasPrefix(string(b), "HTTP/1.1 503") {
				n.Add(1) // the response, then EOF
			}
		}()
	}
	wg.Wait()
	return int(n.Load())
}

// waitEcho retries tryEcho for up to d and returns how long it took.
func waitEcho(t *testing.T, addr string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < d {
		if err = tryEcho(addr); err == nil {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no echo within %v: %v", d, err)
	return 0
}

// TestDescriptorExhaustion floods a server in a child process, whose limit
// is 256 descriptors, with three times as many connections as it may hold
// (sent no upgrade request), and checks that it keeps serving:
//   - plain: the default cap (256 less a reserve of 32) holds; the excess
//     is answered with 503 and closed at once. Once the flood ends, a fresh
//     upgrade and echo are served at once.
//   - hold: the application also holds 128 files of its own, opened after
//     the server started, so that accept itself fails with EMFILE. The
//     server sheds the excess with its reserved descriptor; when the
//     application closes its files (the flood still open), the server
//     serves again at once.
//   - hold-backoff: the same with shedding disabled (accept backoff only),
//     for comparison: the flood's connections wait in the backlog and are
//     accepted first when descriptors free up.
func TestDescriptorExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a child process")
	}
	for _, mode := range []string{"plain", "hold", "hold-backoff"} {
		t.Run(mode, func(t *testing.T) {
			ch := startFDChild(t, mode)
			if err := tryEcho(ch.addr); err != nil {
				t.Fatalf("before the flood: %v", err)
			}
			const flood = 3 * childLimit
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for range flood {
				c, err := net.DialTimeout("tcp", ch.addr, 2*time.Second)
				if err != nil {
					continue // the backlog is full: fine
				}
				conns = append(conns, c)
			}
			time.Sleep(300 * time.Millisecond)
			fds := ch.ask(t, "fds")
			st := childStats(t, ch.ask(t, "stats"))
			t.Logf("flooded with %d connections: child %s, stats %v", len(conns), fds, st)
			if st["sockets"] > st["cap"] {
				t.Errorf("%d sockets, over the cap %d", st["sockets"], st["cap"])
			}
			switch mode {
			case "plain":
				if want := childLimit - 32; st["cap"] != want {
					t.Errorf("default cap %d, want the limit less a reserve of 32: %d", st["cap"], want)
				}
				if st["rejected"] == 0 || st["acceptErrors"] != 0 {
					t.Errorf("want 503s at the cap and no accept error: %v", st)
				}
				// The sockets past the cap were answered and closed at once.
				closed := closedByServer(conns, 500*time.Millisecond)
				t.Logf("%d of the %d flood connections closed by the server with 503", closed, len(conns))
				if closed < len(conns)-st["cap"]-16 {
					t.Errorf("only %d refused sockets closed; %d are over the cap", closed, len(conns)-st["cap"])
				}
				for _, c := range conns {
					c.Close()
				}
				conns = nil
				t.Logf("serving again %v after the flood ended", waitEcho(t, ch.addr, 10*time.Second))
			default:
				if st["acceptErrors"] == 0 {
					t.Errorf("accept never failed: the test did not exhaust descriptors: %v", st)
				}
				if mode == "hold" && st["shed"] == 0 {
					t.Errorf("nothing was shed: %v", st)
				}
				ch.ask(t, "release")
				d := waitEcho(t, ch.addr, 10*time.Second)
				t.Logf("serving again %v after the application closed its files (flood still open)", d)
				if mode == "hold" && d > 2*time.Second {
					t.Errorf("took %v to serve again", d)
				}
			}
			t.Logf("then: %s", ch.ask(t, "stats")) // fails the test if the server stopped meanwhile
		})
	}
}

// TestEventLoopDeath: when an event loop stops on an error (here its epoll
// descriptor is closed under it), the server does not pretend to have shut
// down gracefully: gnet's error reaches the logger at error level and
// ListenAndServe returns an error that says why.
func TestEventLoopDeath(t *testing.T) {
	ch := startFDChild(t, "plain")
	upgradeRaw(t, ch.addr)
	if line := ch.ask(t, "killloop"); !strings.HasPrefix(line, "KILLED") {
		t.Fatalf("child: %s", line)
	}
	// Sockets keep arriving while the loop dies; the least loaded loop,
	// the dead one, must not swallow them and hang the server.
	for range 20 {
		if c, err := net.DialTimeout("tcp", ch.addr, time.Second); err == nil {
			defer c.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	exit, ok := ch.waitExit(20 * time.Second)
	if !ok {
		t.Fatalf("the server went on after its loop died; logs: %q", ch.logs)
	}
	t.Logf("%s", exit)
	if !strings.Contains(exit, "event loop stopped") || strings.Contains(exit, ErrServerClosed.Error()) {
		t.Errorf("ListenAndServe returned %q, want the loop's error", exit)
	}
	logged := false
	for _, l := range ch.logs {
		if strings.HasPrefix(l, "LOG ERROR gnet:") {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no gnet error logged at error level: %q", ch.logs)
	}
}

// TestListenerFailure: when accepting fails for good (here the listening
// socket is shut down under the server, so accept returns EINVAL),
// ListenAndServe closes every connection with 1001 and returns the error,
// not ErrServerClosed.
func TestListenerFailure(t *testing.T) {
	rec := newRecorder()
	srv, errc := serve(t, rec, "127.0.0.1:0")
	c := upgradeRaw(t, srv.Addr().String())
	_ = syscall.Shutdown(srv.acc.lfd, syscall.SHUT_RD)
	expectClose(t, c, 1001)
	select {
	case err := <-errc:
		t.Logf("ListenAndServe: %v", err)
		if err == nil || errors.Is(err, ErrServerClosed) || !strings.Contains(err.Error(), "accept") {
			t.Fatalf("ListenAndServe returned %v, want the accept error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
	if ce := rec.nextClose(t); ce.Code != 1001 {
		t.Fatalf("OnClose got %v, want 1001", ce)
	}
}
