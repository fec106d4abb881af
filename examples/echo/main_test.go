package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestMain runs the command itself when the test re-executes the binary.
func TestMain(m *testing.M) {
	if os.Getenv("ECHO_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The echo example on a Unix socket: it says where it listens (it used to
// panic on a nil address) and echoes over it, and stops cleanly on SIGTERM.
func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "echo.sock")
	cmd := exec.Command(os.Args[0], "-addr", "unix://"+path)
	cmd.Env = append(os.Environ(), "ECHO_TEST_MAIN=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if !strings.Contains(l, "echo server listening") || !strings.Contains(l, "addr=unix://"+path) {
			t.Fatalf("first log line: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no log line within 10s")
	}
	d := websocket.Dialer{NetDial: func(string, string) (net.Conn, error) { return net.Dial("unix", path) }}
	c, _, err := d.Dial("ws://localhost/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.WriteMessage(websocket.TextMessage, []byte("over a unix socket"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "over a unix socket" {
		t.Fatalf("echo: %q %v", p, err)
	}
	c.Close()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for l := range lines {
		if strings.Contains(l, "level=ERROR") {
			t.Errorf("log: %s", l)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// -tls with no certificate: a self-signed one, wss:// in the log, and an
// echo over it.
func TestSelfSignedTLS(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-tls")
	cmd.Env = append(os.Environ(), "ECHO_TEST_MAIN=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	url := ""
	for url == "" && sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), "addr=wss://"); ok {
			url = "wss://" + strings.Fields(rest)[0]
		}
	}
	if url == "" {
		t.Fatal("no wss:// address logged")
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte("over TLS"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "over TLS" {
		t.Fatalf("echo: %q %v", p, err)
	}
	// The certificate is the self-signed one, for localhost.
	if st := c.UnderlyingConn().(*tls.Conn).ConnectionState(); len(st.PeerCertificates) != 1 || st.PeerCertificates[0].VerifyHostname("localhost") != nil {
		t.Fatalf("certificate: %+v", st.PeerCertificates)
	}
}
