package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsloop/wsloop/internal/wstest"
)

// Node's ws package (engine/testdata/node) as a client; see wstest.Tool
// for when these tests run.

// nodeScript returns the command running a script of testdata/node with
// node, installing ws from the lockfile first if needed.
func nodeScript(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	node := wstest.Tool(t, "node")
	dir := wstest.NodeDir(t, filepath.Join("testdata", "node"), "ws")
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
			out, err := wstest.Output(nodeScript(t, "deflate_client.js", "ws://"+addr+"/", mode), 90*time.Second)
			if err != nil || !strings.HasPrefix(string(out), "ok 32 permessage-deflate") {
				t.Errorf("server takeover allowed %v, client %s: %v\n%s", serverTakeover, mode, err, out)
			}
		}
	}
}

// TestNodeWSS: the same, over wss: Node's ws with the test CA (by
// NODE_EXTRA_CA_CERTS), TLS 1.3, permessage-deflate on top.
func TestNodeWSS(t *testing.T) {
	_, addr := tlsServer(t, echoHandler{}, WithMaxMessageSize(2<<20))
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, testCAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := nodeScript(t, "deflate_client.js", "wss://"+addr+"/", "notakeover")
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+ca)
	out, err := wstest.Output(cmd, 90*time.Second)
	if err != nil || !strings.HasPrefix(string(out), "ok 32 permessage-deflate") {
		t.Errorf("wss: %v\n%s", err, out)
	}
}
