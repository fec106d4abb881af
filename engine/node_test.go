package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Node's ws package (engine/testdata/node) as a client. .ci/run installs
// Node and sets WSLOOP_INTEROP=require, so that these tests cannot be
// skipped there; elsewhere they are skipped when Node is missing.

// nodeScript returns the command running a script of testdata/node with
// node, installing ws from the lockfile first if needed.
func nodeScript(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("WSLOOP_INTEROP") == "require" {
		skip = t.Fatalf
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed (apt-get install -y nodejs npm): %v", err)
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "node"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			skip("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	cmd := exec.Command(node, append([]string{filepath.Join(dir, script)}, args...)...)
	cmd.Dir = dir
	return cmd
}

// TestDeflateNode: ws with perMessageDeflate echoes compressible and
// incompressible messages of 0 B to 1 MiB, whole and fragmented, with and
// without context takeover on the client's side, against a server that
// allows it and one that does not.
func TestDeflateNode(t *testing.T) {
	for _, serverTakeover := range []bool{false, true} {
		opts := []Option{WithMaxMessageSize(2 << 20)}
		if serverTakeover {
			opts = append(opts, WithContextTakeover(true, 15))
		}
		_, addr := startServer(t, echoHandler{}, opts...)
		for _, mode := range []string{"notakeover", "takeover"} {
			cmd := nodeScript(t, "deflate_client.js", "ws://"+addr+"/", mode)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(90 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if err != nil || !strings.HasPrefix(string(out), "ok 32 permessage-deflate") {
				t.Errorf("server takeover allowed %v, client %s: %v\n%s", serverTakeover, mode, err, out)
			}
		}
	}
}
