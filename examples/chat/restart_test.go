package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestChatRestartInPlace builds the chat, runs it, and sends it SIGHUP
// while clients join in a tight loop: a new chat process takes the
// listening socket over, and no join fails. Over ws:// the members'
// connections move to the new process: a member stays connected and gets
// what another member says afterwards, with no leave or join announced.
// Over wss:// they are drained with 1012 and rejoin the new process.
func TestChatRestartInPlace(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the chat")
	}
	bin := filepath.Join(t.TempDir(), "chat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tlsOn := range []bool{false, true} {
		name := "ws"
		if tlsOn {
			name = "wss"
		}
		t.Run(name, func(t *testing.T) { restartChat(t, bin, tlsOn) })
	}
}

func restartChat(t *testing.T, bin string, tlsOn bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"-addr", addr, "-drain", "1s"}
	scheme, origin := "ws://", "http://"
	if tlsOn {
		args = append(args, "-tls")
		scheme, origin = "wss://", "https://"
	}
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	join := func(room, name string) *websocket.Conn {
		t.Helper()
		c, resp, err := dialer.Dial(scheme+addr+"/ws?room="+room+"&name="+name, http.Header{"Origin": {origin + addr}})
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var newPid atomic.Int64
	pidRx := regexp.MustCompile(`new process serves.* pid=(\d+)`)
	go func() {
		sc := bufio.NewScanner(stderr) // the new process writes here too
		for sc.Scan() {
			if m := pidRx.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.Atoi(m[1])
				newPid.Store(int64(n))
			}
			t.Log(sc.Text())
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if p := newPid.Load(); p > 0 {
			_ = syscall.Kill(int(p), syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
	})
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("the chat did not listen within 20 s")
		}
	}

	member := join("r", "held")
	if m := next(t, member); m.Type != "welcome" {
		t.Fatalf("first message %+v, want welcome", m)
	}
	talker := join("r", "talker")
	if m := next(t, talker); m.Type != "welcome" {
		t.Fatalf("first message %+v, want welcome", m)
	}
	// Everything announced so far is read: what the member gets next is
	// what the restart brings.
	say(t, talker, "before the restart")
	for m := next(t, member); m.Type != "chat"; m = next(t, member) {
	}
	for m := next(t, talker); m.Type != "chat"; m = next(t, talker) {
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := http.Header{"Origin": {origin + addr}}
			d := dialer
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := func() error {
					c, _, err := d.Dial(scheme+addr+"/ws?room=r"+strconv.Itoa(g*1000000+i)+"&name=d", h) // a room each: the welcome comes first
					if err != nil {
						return err
					}
					defer c.Close()
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, p, err := c.ReadMessage()
					if err != nil {
						return err
					}
					if !regexp.MustCompile(`"type":"welcome"`).Match(p) {
						return errors.New("first message " + string(p))
					}
					return nil
				}()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if tlsOn {
		// The member is drained with 1012 and rejoins: the new process welcomes it.
		_ = member.SetReadDeadline(time.Now().Add(15 * time.Second))
		for {
			_, _, err := member.ReadMessage()
			if err == nil {
				continue
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 1012 {
				t.Fatalf("the member got %v, want close 1012", err)
			}
			break
		}
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the old chat exited with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the old chat did not exit within 15 s of SIGHUP")
	}
	if newPid.Load() == 0 {
		t.Fatal("the old chat did not log the new process's pid")
	}
	if tlsOn {
		member = join("r", "held")
		if m := next(t, member); m.Type != "welcome" {
			t.Fatalf("after the restart: %+v, want welcome", m)
		}
		talker = join("r", "talker")
	}
	// The new process serves the member: what the talker says reaches it,
	// and over ws:// nothing came between (no leave, no join, no close).
	say(t, talker, "after the restart")
	for {
		m := next(t, member)
		if m.Type == "chat" {
			if m.Name != "talker" || m.Text != "after the restart" {
				t.Fatalf("the member got %+v", m)
			}
			break
		}
		if !tlsOn {
			t.Fatalf("the member got %+v across a restart that keeps connections", m)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d joins during the restart, %d failed", ok.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d joins failed during the restart; first: %v", n, *firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Error("no join succeeded")
	}
	if _, err := os.FindProcess(int(newPid.Load())); err != nil {
		t.Error(err)
	}
}
