package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// TestMain runs the command itself when the tests re-execute the binary.
func TestMain(m *testing.M) {
	if os.Getenv("LOADGEN_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// echoServer upgrades with gobwas/ws and echoes frames unmasked; when
// flip is set it flips one bit of the 10th message's payload.
func echoServer(t *testing.T, flip bool) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := ws.Upgrade(c); err != nil {
					return
				}
				r := bufio.NewReader(c)
				for i := 0; ; i++ {
					f, err := ws.ReadFrame(r)
					if err != nil {
						return
					}
					f = ws.UnmaskFrameInPlace(f)
					if flip && i == 10 {
						f.Payload[len(f.Payload)-1] ^= 0x20
					}
					if ws.WriteFrame(c, f) != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func run(t *testing.T, args ...string) (Result, error, string) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LOADGEN_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var res Result
	for _, l := range strings.Split(out.String(), "\n") {
		if js, ok := strings.CutPrefix(l, "RESULT "); ok {
			if e := json.Unmarshal([]byte(js), &res); e != nil {
				t.Fatalf("bad RESULT: %v", e)
			}
		}
	}
	return res, err, errb.String()
}

// TestMismatchFails runs the loadgen against a server that corrupts one
// byte: it must report the error and exit 1. The same run against an
// honest server exits 0.
func TestMismatchFails(t *testing.T) {
	for _, mode := range []string{"echo", "pipeline"} {
		args := []string{"-mode", mode, "-conns", "4", "-duration", "300ms", "-warmup", "0", "-go", "-size", "80"}
		res, err, stderr := run(t, append(args, "-addr", echoServer(t, false))...)
		if err != nil || res.Errors != 0 || res.Messages == 0 {
			t.Fatalf("%s, honest server: %v, %+v\n%s", mode, err, res, stderr)
		}
		depth := 1.0
		if mode == "pipeline" {
			depth = 16
		}
		if pc := res.PerConn; pc == nil || pc.Conns != 4 || pc.Sum*depth != float64(res.Messages) || pc.Min == 0 || pc.Min > pc.Max {
			t.Fatalf("%s: per-connection round trips %+v do not add up to %d messages over 4 connections", mode, pc, res.Messages)
		}
		res, err, stderr = run(t, append(args, "-addr", echoServer(t, true))...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("%s, corrupting server: exit %v, want 1\n%s", mode, err, stderr)
		}
		if res.Errors == 0 || !strings.Contains(stderr, "echo differs from what was sent at byte 79") {
			t.Fatalf("%s, corrupting server: errors %d\n%s", mode, res.Errors, stderr)
		}
	}
}

// TestIdleProtocol drives the stdin protocol of idle mode.
func TestIdleProtocol(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-mode", "idle", "-conns", "20", "-hold", "-addr", echoServer(t, false))
	cmd.Env = append(os.Environ(), "LOADGEN_TEST_MAIN=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() || sc.Text() == "" || !strings.HasPrefix(sc.Text(), "CONNECTED 20 ") {
		t.Fatalf("first line %q\n%s", sc.Text(), errb.String())
	}
	_, _ = io.WriteString(stdin, "GO\nCHECK\n")
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "RESULT ") {
		t.Fatalf("second line %q\n%s", sc.Text(), errb.String())
	}
	var res Result
	if err := json.Unmarshal([]byte(strings.TrimPrefix(sc.Text(), "RESULT ")), &res); err != nil || res.Alive != 20 || res.Errors != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	stdin.Close() // -hold: the process exits once stdin closes
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, errb.String())
	}
}

// closingServer upgrades with gobwas/ws and echoes data frames unmasked;
// on a close frame it answers with a close frame and, unless stay is set,
// closes the connection, as RFC 6455 has a server do.
func closingServer(t *testing.T, stay bool) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := ws.Upgrade(c); err != nil {
					return
				}
				r := bufio.NewReader(c)
				for {
					f, err := ws.ReadFrame(r)
					if err != nil {
						return
					}
					f = ws.UnmaskFrameInPlace(f)
					if ws.WriteFrame(c, f) != nil {
						return
					}
					if f.Header.OpCode == ws.OpClose && !stay {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestChurn runs churn cycles against a server that closes after its
// close frame (no errors, every cycle completed) and against one that
// answers the close frame but keeps the connection open (the even
// cycles fail on the timeout).
func TestChurn(t *testing.T) {
	args := []string{"-mode", "churn", "-conns", "200", "-dial-concurrency", "20", "-go", "-timeout", "500ms"}
	res, err, stderr := run(t, append(args, "-addr", closingServer(t, false))...)
	if err != nil || res.Errors != 0 || res.Alive != 200 || res.Open != 0 || res.ConnectsPerS <= 0 || res.Hist == nil || res.Hist.Count() != 200 {
		t.Fatalf("honest server: %v, %+v\n%s", err, res, stderr)
	}
	res, err, stderr = run(t, append(args, "-conns", "10", "-addr", closingServer(t, true))...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || res.Errors != 5 || res.Alive != 5 || !strings.Contains(stderr, "no TCP close after its close frame from the server") {
		t.Fatalf("server that stays open: exit %v, %+v\n%s", err, res, stderr)
	}
}
