package proc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Child is a started process. With lines, its stdin is a pipe and the
// lines it prints on stdout arrive on Lines; whatever else it prints (all
// of it, without lines) is kept in Out.
type Child struct {
	Name   string
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
	Lines  chan string
	Out    *Tail
	Exited chan struct{} // closed once reaped; Err is set then
	Err    error

	mu       sync.Mutex
	diverted map[string]chan string // Divert's prefixes
}

// Divert sends the stdout lines starting with prefix, from now on, whole,
// to the channel it returns (buffered by buf) instead of Lines: a child's
// frequent reports (progress) kept apart from what Expect waits for. The
// channel is closed when stdout ends; like Lines, it must be read.
func (c *Child) Divert(prefix string, buf int) <-chan string {
	ch := make(chan string, buf)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.diverted == nil {
		c.diverted = map[string]chan string{}
	}
	c.diverted[prefix] = ch
	return ch
}

// divert returns the channel of line's prefix, if Divert set one.
func (c *Child) divert(line string) chan string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, ch := range c.diverted {
		if strings.HasPrefix(line, p) {
			return ch
		}
	}
	return nil
}

// Start starts cmd, tracked in children until it has been reaped.
func Start(name string, cmd *exec.Cmd, children *Children, lines bool) (*Child, error) {
	c := &Child{Name: name, Cmd: cmd, Out: &Tail{}, Exited: make(chan struct{})}
	cmd.Stderr = c.Out
	var stdout io.ReadCloser
	var err error
	if lines {
		c.Lines = make(chan string, 16)
		if c.Stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	} else {
		cmd.Stdout = c.Out
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	children.Track(cmd, true)
	read := make(chan struct{})
	go func() {
		defer close(read)
		if stdout == nil {
			return
		}
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			if ch := c.divert(sc.Text()); ch != nil {
				ch <- sc.Text()
				continue
			}
			c.Lines <- sc.Text()
		}
		close(c.Lines)
		c.mu.Lock()
		for p, ch := range c.diverted {
			close(ch)
			delete(c.diverted, p)
		}
		c.mu.Unlock()
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-read
		c.Err = cmd.Wait()
		children.Track(cmd, false)
		close(c.Exited)
	}()
	return c, nil
}

// Pid is the process's id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Alive reports whether the process has not been reaped yet.
func (c *Child) Alive() bool {
	select {
	case <-c.Exited:
		return false
	default:
		return true
	}
}

// Send writes line and a newline to the process's stdin.
func (c *Child) Send(line string) { _, _ = io.WriteString(c.Stdin, line+"\n") }

// Wait waits up to d for the process to exit, then kills it. It reports
// whether it had to kill.
func (c *Child) Wait(d time.Duration) (killed bool) {
	select {
	case <-c.Exited:
		return false
	case <-time.After(d):
		_ = c.Cmd.Process.Kill()
		<-c.Exited
		return true
	}
}

// Expect waits up to timeout for a stdout line starting with prefix and
// returns the rest of it. Its errors end with the last lines of Out.
func (c *Child) Expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.Lines:
			if !ok {
				<-c.Exited
				return "", fmt.Errorf("%s ended before printing %s (%v):\n%s", c.Name, prefix, c.Err, c.Tail())
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-deadline:
			return "", fmt.Errorf("%s printed no %s within %v:\n%s", c.Name, prefix, timeout, c.Tail())
		}
	}
}

// Tail returns the last 8 lines of Out.
func (c *Child) Tail() string { return strings.Join(c.Out.LastLines(8), "\n") }

// StdinLines delivers this process's stdin lines, trimmed (the child's
// side of the orchestrators' line protocol); the channel closes at EOF.
func StdinLines() <-chan string {
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
