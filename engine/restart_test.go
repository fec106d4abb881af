package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

const restartChildEnv = "WSLOOP_RESTART_CHILD"

// pidHandler answers "who" with the process's pid and echoes the rest.
type pidHandler struct{ echoHandler }

func (pidHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if string(p) == "who" {
		_ = c.WriteMessage(op, []byte(strconv.Itoa(os.Getpid())))
		return
	}
	_ = c.WriteMessage(op, p)
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
	switch mode {
	case "exit":
		os.Exit(7)
	case "hang":
		in, err := takeInheritance() // holds the listener, never serves
		fmt.Println("HANG", os.Getpid(), in != nil, err)
		time.Sleep(time.Hour)
	}
	srv, err := New(pidHandler{}, WithEventLoops(2), WithCloseTimeout(time.Second))
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestRestartChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), restartChildEnv+"=serve")
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
	ch := &restartChild{cmd: cmd, stdin: stdin, lines: make(chan string, 100)}
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

// expect returns the next line that starts with prefix, skipping others.
func (ch *restartChild) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-ch.lines:
			if !ok {
				t.Fatalf("the child's output ended before %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return line
			}
			t.Logf("child: %s", line)
		case <-timeout:
			t.Fatalf("no %q from the child within 20 s", prefix)
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
