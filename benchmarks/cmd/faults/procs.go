package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

// children holds every process the tool starts until it has been reaped,
// so that killAll can end them on any exit path. Each also gets SIGKILL
// from the kernel if the tool itself dies (Pdeathsig).
var children proc.Children

func killAll() { children.KillAll() }

// child is a started process. Lines it prints on stdout arrive on lines
// when it was started with wantLines; everything else it prints goes to
// out.
type child struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	out    *proc.Tail
	exited chan struct{} // closed once reaped; err is then set
	err    error
}

func start(name string, wantLines bool, bin string, args ...string) (*child, error) {
	c := &child{name: name, out: &proc.Tail{}, exited: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.cmd.Stderr = c.out
	var stdout io.ReadCloser
	var err error
	if wantLines {
		c.lines = make(chan string, 16)
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if stdout, err = c.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		c.cmd.Stdout = c.out
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	children.Track(c.cmd, true)
	read := make(chan struct{})
	go func() {
		defer close(read)
		if stdout == nil {
			return
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-read
		c.err = c.cmd.Wait()
		children.Track(c.cmd, false)
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// status describes how a reaped process ended: "exit status 1",
// "signal: killed".
func (c *child) status() string {
	if c.alive() {
		return "running"
	}
	if c.err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(c.err, &ee) {
		return ee.ProcessState.String()
	}
	return c.err.Error()
}

// expect waits up to timeout for a stdout line starting with prefix and
// returns the rest of it.
func (c *child) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				<-c.exited
				return "", fmt.Errorf("%s ended (%s) before printing %s: %s", c.name, c.status(), prefix, strings.Join(c.out.LastLines(3), " / "))
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-deadline:
			return "", fmt.Errorf("%s printed no %s within %v", c.name, prefix, timeout)
		}
	}
}

func (c *child) send(line string) { _, _ = io.WriteString(c.stdin, line+"\n") }

// wait waits up to d for the process to exit, then kills it. It reports
// whether it had to kill.
func (c *child) wait(d time.Duration) (killed bool) {
	select {
	case <-c.exited:
		return false
	case <-time.After(d):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return true
	}
}

// stop sends SIGTERM, waits 5 s, then kills. It describes what happened
// when that was anything but a prompt exit.
func (c *child) stop() string {
	if !c.alive() {
		return ""
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if c.wait(5 * time.Second) {
		return "did not exit within 5 s of SIGTERM (killed)"
	}
	return ""
}

// server is a running server under test.
type server struct {
	*child
	addr string
}

// startServer starts bin on a free loopback port with its descriptor
// limit set to nofile (sh's ulimit, then exec, so that the PID is the
// server's) and waits until it accepts connections.
func startServer(name, bin string, args []string, nofile int) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	script := fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile)
	argv := append([]string{"-c", script, bin, "-addr", addr}, args...)
	c, err := start(name, false, "/bin/sh", argv...)
	if err != nil {
		return nil, err
	}
	s := &server{child: c, addr: addr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return s, nil
		}
		if !s.alive() {
			return nil, fmt.Errorf("%s exited before accepting (%s): %s", name, s.status(), strings.Join(s.out.LastLines(3), " / "))
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not accept on %s within 10 s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
