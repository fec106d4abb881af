package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
