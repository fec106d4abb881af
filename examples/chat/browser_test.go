package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
	"github.com/wsloop/wsloop/internal/wstest"
)

// The page in a real browser, and Node's ws package as a client; see
// wstest.Tool for when these tests run.

// nodeDir returns testdata/browser with its npm packages installed.
func nodeDir(t *testing.T) string {
	return wstest.NodeDir(t, filepath.Join("testdata", "browser"), "playwright-core")
}

// browserSteps is how many steps browser.js passes when all is well:
// showcase adds the dashboard and the layout at phone width.
func browserSteps(showcase bool) int {
	if showcase {
		return 11
	}
	return 9
}

// shots are the screenshots browser.js takes.
var shots = []string{"chat-1280x800.png", "dashboard-1280x800.png", "chat-360x740.png", "dashboard-360x740.png"}

// TestBrowser opens the chat page in headless Chromium: two tabs join a
// room and see the viewer count go to 2, a message sent in one shows in
// the other (on the log, with a time and the sender's colour, and flying
// across the stage as danmaku; markup in it stays text; with reduced
// motion it fades in place), one's own join shows once; over plain HTTP
// also the dashboard page's figures move as messages flow, both pages fit
// a 360 px wide screen, and they are photographed at 1280x800 and 360x740
// into os.TempDir()/wsloop-screens, outside the repository; closing a tab
// brings the count back to 1; the server stops
// and the page shows it is reconnecting (send disabled), the server
// starts again on the same address and the page recovers by itself and
// chats again. Every wait is real time (browser.js). It runs over plain
// HTTP and over TLS (https:// and wss://, a self-signed certificate:
// Chromium runs with --ignore-certificate-errors).
func TestBrowser(t *testing.T) {
	node := wstest.Tool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = wstest.Tool(t, "chromium", "chromium-browser")
	}
	dir := nodeDir(t)
	cfg, err := devcert.Config("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		scheme string
		opts   []engine.Option
	}{{"http", nil}, {"https", []engine.Option{engine.WithTLS(cfg)}}} {
		t.Run(tc.scheme, func(t *testing.T) {
			srv, stop := start(t, "127.0.0.1:0", 5, 10, tc.opts...)
			addr := srv.Addr().String()

			args := []string{"browser.js", chromium, tc.scheme + "://" + addr + "/browser-room"}
			screens := ""
			if tc.scheme == "http" {
				screens = filepath.Join(os.TempDir(), "wsloop-screens")
				if err := os.MkdirAll(screens, 0o755); err != nil {
					t.Fatal(err)
				}
				for _, f := range shots {
					_ = os.Remove(filepath.Join(screens, f))
				}
				args = append(args, screens)
			}
			cmd := exec.Command(node, args...)
			cmd.Dir = dir
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()

			var oks []string
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				t.Log("browser.js:", line)
				switch {
				case line == "STOP":
					stop()
					fmt.Fprintln(stdin, "DONE")
				case line == "START":
					_, stop = start(t, addr, 5, 10, tc.opts...) // the same address: the page reconnects to it
					fmt.Fprintln(stdin, "DONE")
				case strings.HasPrefix(line, "OK "):
					oks = append(oks, line[3:])
				}
			}
			io.Copy(io.Discard, stdout)
			if err := cmd.Wait(); err != nil || len(oks) != browserSteps(screens != "") {
				t.Fatalf("browser.js: %v, %d of %d steps passed\n%s", err, len(oks), browserSteps(screens != ""), stderr.String())
			}
			if screens != "" {
				for _, f := range shots {
					if fi, err := os.Stat(filepath.Join(screens, f)); err != nil || fi.Size() == 0 {
						t.Fatalf("screenshot %s: %v", f, err)
					}
				}
				t.Logf("screenshots of the chat and the dashboard at desktop and phone width: %s", screens)
			}
		})
	}
}

// TestNodeClient runs the chat protocol with Node's ws package: two
// members, a chat, the rate limit, a leave (chat_client.js).
func TestNodeClient(t *testing.T) {
	node := wstest.Tool(t, "node")
	dir := nodeDir(t)
	srv, _ := start(t, "127.0.0.1:0", 1, 5)
	cmd := exec.Command(node, "chat_client.js", "ws://"+srv.Addr().String())
	cmd.Dir = dir
	out, err := wstest.Output(cmd, 60*time.Second)
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Fatalf("chat_client.js: %v\n%s", err, out)
	}
}

// restartSteps is how many steps restart.js passes when all is well:
// with the connections kept (plain HTTP) it checks the messages and states
// in two steps, drained (TLS) in one.
func restartSteps(scheme string) int {
	if scheme == "http" {
		return 6
	}
	return 5
}

// TestBrowserRestartInPlace builds the chat and runs it, opens a room in
// two tabs of headless Chromium (restart.js), and sends the chat SIGHUP
// while one tab sends a message every 100 ms: the chat restarts in place
// (a new process of it takes the listening socket and, over plain HTTP,
// the connections). Over plain HTTP neither page ever leaves the connected
// state, and the other tab shows every message, in order, once each, and
// no leave, join or welcome; over TLS (connections drained with 1012) both
// pages show they are reconnecting and recover, in the room. Either way
// the tabs chat afterwards, through the new process (the old one has
// exited by then).
func TestBrowserRestartInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the chat")
	}
	node := wstest.Tool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = wstest.Tool(t, "chromium", "chromium-browser")
	}
	dir := nodeDir(t)
	bin := filepath.Join(t.TempDir(), "chat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			// -rate: the page sends 10 messages a second.
			args := []string{"-rate", "50", "-burst", "50", "-drain", "1s"}
			if scheme == "https" {
				args = append(args, "-tls")
			}
			chat := runChat(t, bin, args...)

			cmd := exec.Command(node, "restart.js", chromium, scheme+"://"+chat.addr+"/restart-room")
			cmd.Dir = dir
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()

			var oks []string
			restarted := false
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				t.Log("restart.js:", line)
				switch {
				case line == "RESTART":
					if err := chat.restart(); err != nil {
						t.Error(err)
						fmt.Fprintln(stdin, "FAILED")
						break
					}
					restarted = true
					fmt.Fprintln(stdin, "RESTARTED")
				case strings.HasPrefix(line, "OK "):
					oks = append(oks, line[3:])
				}
			}
			io.Copy(io.Discard, stdout)
			err := cmd.Wait()
			if err != nil || len(oks) != restartSteps(scheme) || !restarted {
				t.Fatalf("restart.js: %v, %d of %d steps passed, restarted %v\n%s\nchat's log:\n%s",
					err, len(oks), restartSteps(scheme), restarted, stderr.String(), chat.log())
			}
		})
	}
}

// chatProcess is the chat binary running, and the process it restarts
// into.
type chatProcess struct {
	addr   string
	cmd    *exec.Cmd
	exited chan error // the first process's exit
	newPid atomic.Int64

	mu  sync.Mutex
	out strings.Builder // both processes' log
}

// runChat runs the chat binary bin with args on a free local port, waits
// until it listens, and kills it (and the process it restarted into) when
// the test ends.
func runChat(t *testing.T, bin string, args ...string) *chatProcess {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &chatProcess{addr: ln.Addr().String(), exited: make(chan error, 1)}
	ln.Close()
	c.cmd = exec.Command(bin, append([]string{"-addr", c.addr}, args...)...)
	// A pipe of our own, not cmd's: the new process writes its log there too,
	// after the first has exited and cmd.Wait would have closed cmd's.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = w
	err = c.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	pidRx := regexp.MustCompile(`new process serves.* pid=(\d+)`)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if m := pidRx.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.Atoi(m[1])
				c.newPid.Store(int64(n))
			}
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
		}
	}()
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if p := c.newPid.Load(); p > 0 {
			_ = syscall.Kill(int(p), syscall.SIGKILL)
		}
		_ = c.cmd.Process.Kill()
		select {
		case <-logged: // both processes are gone
		case <-time.After(5 * time.Second):
		}
		r.Close()
	})
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.Dial("tcp", c.addr); err == nil {
			conn.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the chat did not listen within 20 s\n%s", c.log())
		}
	}
	return c
}

// restart sends the chat SIGHUP and waits until the first process has
// exited, having logged the new process's pid.
func (c *chatProcess) restart() error {
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	select {
	case err := <-c.exited:
		if err != nil {
			return fmt.Errorf("the old chat exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		return errors.New("the old chat did not exit within 15 s of SIGHUP")
	}
	if c.newPid.Load() == 0 {
		return errors.New("the old chat did not log the new process's pid")
	}
	return nil
}

// log returns what the chat processes have logged so far.
func (c *chatProcess) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// TestBrowserRecover opens a room in two tabs of headless Chromium
// (recover.js): tab A sends a message every 100 ms, the server closes tab
// B's connection, and B reconnects by itself with the position of the
// last message it saw. B must show every message A sent, in order, once
// each, those sent while it was away recovered from the room's history,
// and say how many it recovered, with no reload. The last message B gets
// before the cut has an empty epoch (a cluster node's, while it cannot
// reach NATS): B must keep the position it had, and recover from it.
func TestBrowserRecover(t *testing.T) {
	node := wstest.Tool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = wstest.Tool(t, "chromium", "chromium-browser")
	}
	dir := nodeDir(t)
	const room = "recover-room"
	srv, stop := start(t, "127.0.0.1:0", 50, 50) // the page sends 10 messages a second
	defer stop()
	cmd := exec.Command(node, "recover.js", chromium, "http://"+srv.Addr().String()+"/"+room)
	cmd.Dir = dir
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	var oks []string
	cut := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log("recover.js:", line)
		switch {
		case line == "CUT":
			// Tab B joined second: its connection has the larger id.
			var b *engine.Conn
			for _, c := range srv.RoomMembers(room) {
				if b == nil || c.ID() > b.ID() {
					b = c
				}
			}
			if n := len(srv.RoomMembers(room)); n != 2 || b == nil {
				t.Errorf("the room has %d members, want 2", n)
				fmt.Fprintln(stdin, "FAILED")
				break
			}
			_ = b.Close(1012, "cut by the test")
			cut = true
			fmt.Fprintln(stdin, "DONE")
		case strings.HasPrefix(line, "OK "):
			oks = append(oks, line[3:])
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil || len(oks) != 5 || !cut {
		t.Fatalf("recover.js: %v, %d of 5 steps passed, cut %v\n%s", err, len(oks), cut, stderr.String())
	}
}
