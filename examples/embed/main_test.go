package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
	"github.com/wsloop/wsloop/internal/wstest"
)

// start runs the example on 127.0.0.1 (over TLS on the http.Server when
// tlsCfg is set) until the test ends, and returns its base URL.
func start(t *testing.T, tlsCfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- serve(ctx, ln, tlsCfg, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	if tlsCfg != nil {
		return "https://" + ln.Addr().String()
	}
	return "http://" + ln.Addr().String()
}

// TestEmbed mounts wsloop on an http.ServeMux behind middleware that puts
// the user in the request context, where the upgrade hook reads it, on a
// plain http.Server and on one with TLS, and runs real clients through it:
// gorilla/websocket, Node's ws, and the page in headless Chromium. The
// other routes of the same mux (a POST API that publishes to the room,
// Stats as JSON, pprof) answer on the same port.
func TestEmbed(t *testing.T) {
	cfg, err := devcert.Config("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{{"http", nil}, {"https", cfg}} {
		t.Run(tc.name, func(t *testing.T) {
			base := start(t, tc.tls)
			wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws"
			client := &http.Client{Timeout: 10 * time.Second,
				Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second}

			// gorilla: the name the middleware put in the context comes back.
			ann, _, err := dialer.Dial(wsURL+"?name=ann", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ann.Close()
			expect := func(want string) {
				t.Helper()
				ann.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					op, msg, err := ann.ReadMessage()
					if err != nil {
						t.Fatalf("waiting for %q: %v", want, err)
					}
					if op == websocket.TextMessage && string(msg) == want {
						return
					}
				}
			}
			expect("* ann joined")
			if err := ann.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
				t.Fatal(err)
			}
			expect("ann: hi")
			// Without the middleware's user: 401, through net/http.
			if _, resp, err := dialer.Dial(wsURL, nil); err == nil || resp == nil || resp.StatusCode != 401 {
				t.Errorf("without a name: %v %v, want 401", err, resp)
			}
			// A POST on the same port publishes to the room.
			resp, err := client.Post(base+"/api/say?name=bob", "text/plain", strings.NewReader("from the API"))
			if err != nil || resp.StatusCode != http.StatusNoContent {
				t.Fatalf("POST /api/say: %v %v", err, resp)
			}
			resp.Body.Close()
			expect("bob (http): from the API")

			// Node's ws package.
			node := wstest.Tool(t, "node")
			dir := wstest.NodeDir(t, filepath.Join("..", "chat", "testdata", "browser"), "playwright-core")
			run := func(args ...string) *exec.Cmd {
				cmd := exec.Command(node, append([]string{filepath.Join("testdata", "clients.js")}, args...)...)
				cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
				return cmd
			}
			out, err := wstest.Output(run("ws", wsURL, "carl"), time.Minute)
			t.Logf("node ws:\n%s", out)
			if err != nil || !strings.Contains(string(out), "OK node ws closes cleanly") {
				t.Fatalf("node ws client: %v", err)
			}
			expect("carl: hello from node")

			// The page in Chromium.
			chromium := os.Getenv("CHROMIUM")
			if chromium == "" {
				chromium = wstest.Tool(t, "chromium", "chromium-browser")
			}
			cmd := run("chromium", chromium, base+"/", "dora")
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			timer := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()
			var oks int
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				line := sc.Text()
				t.Log("chromium:", line)
				switch {
				case line == "READY":
					resp, err := client.Post(base+"/api/say?name=api", "text/plain", strings.NewReader("posted over http"))
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
				case strings.HasPrefix(line, "OK "):
					oks++
				}
			}
			if err := cmd.Wait(); err != nil || oks != 3 {
				t.Fatalf("chromium: %v, %d steps OK\n%s", err, oks, stderr.String())
			}
			expect("dora: hello from chromium")

			// Stats through the API: every upgrade came through net/http.
			resp, err = client.Get(base + "/api/stats")
			if err != nil {
				t.Fatal(err)
			}
			var st engine.Stats
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err != nil || st.NetHTTPUpgrades < 3 || st.Connections < 1 {
				t.Errorf("/api/stats: %+v %v", st, err)
			}
			// pprof on the same port.
			resp, err = client.Get(base + "/debug/pprof/")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("pprof: %v %v", err, resp)
			}
			if resp != nil {
				resp.Body.Close()
			}
		})
	}
}
