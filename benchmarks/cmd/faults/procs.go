package main

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
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

// child is a started process (see proc.Child). Each gets SIGKILL from the
// kernel if the tool itself dies (Pdeathsig).
type child struct{ *proc.Child }

func start(name string, wantLines bool, bin string, args ...string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c, err := proc.Start(name, cmd, &children, wantLines)
	if err != nil {
		return nil, err
	}
	return &child{c}, nil
}

// status describes how a reaped process ended: "exit status 1",
// "signal: killed".
func (c *child) status() string {
	if c.Alive() {
		return "running"
	}
	if c.Err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(c.Err, &ee) {
		return ee.ProcessState.String()
	}
	return c.Err.Error()
}

// stop sends SIGTERM, waits 5 s, then kills. It describes what happened
// when that was anything but a prompt exit.
func (c *child) stop() string {
	if !c.Alive() {
		return ""
	}
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	if c.Wait(5 * time.Second) {
		return "did not exit within 5 s of SIGTERM (killed)"
	}
	return ""
}

// server is a running server under test.
type server struct {
	*child
	addr string
}

// launch starts spec's server for one scenario, with extra arguments
// after its own, or says why it cannot.
func launch(spec serverSpec, extra ...string) (*server, string) {
	if spec.BuildErr != "" {
		return nil, "build failed: " + spec.BuildErr
	}
	srv, err := startServer(spec.Name, spec.bin, append(slices.Clone(spec.Args), extra...), *nofile)
	if err != nil {
		return nil, err.Error()
	}
	return srv, ""
}

// startServer starts bin on a free loopback port with its descriptor
// limit set to nofile (sh's ulimit, then exec, so that the PID is the
// server's) and waits until it accepts connections.
func startServer(name, bin string, args []string, nofile int) (*server, error) {
	port, err := proc.FreePort()
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
		if !s.Alive() {
			return nil, fmt.Errorf("%s exited before accepting (%s): %s", name, s.status(), strings.Join(s.Out.LastLines(3), " / "))
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not accept on %s within 10 s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
