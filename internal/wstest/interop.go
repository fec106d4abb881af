package wstest

import (
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Interoperability tests run clients no one here wrote: Node's ws package
// and headless Chromium. .ci/run installs them and sets
// WSLOOP_INTEROP=require, so that those tests cannot be skipped there;
// elsewhere they are skipped when a tool is missing.

// Tool returns the path of the first of names on PATH, or skips the test
// (fails it under WSLOOP_INTEROP=require).
func Tool(t testing.TB, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	skip := t.Skipf
	if os.Getenv("WSLOOP_INTEROP") == "require" {
		skip = t.Fatalf
	}
	skip("none of %v is installed (apt-get install -y nodejs npm chromium)", names)
	return ""
}

// NodeDir returns dir, absolute, with its npm packages installed from its
// lockfile (npm ci) unless node_modules/marker is already there. Test
// binaries running at once (go test runs packages in parallel, and
// examples/chat and examples/embed share testdata/browser) take turns: the
// check and npm ci run under a lock on a file in the temporary directory,
// named after dir, so that none runs node while another's npm ci has
// emptied node_modules.
func NodeDir(t testing.TB, dir, marker string) string {
	t.Helper()
	dir, _ = filepath.Abs(dir)
	h := fnv.New64a()
	h.Write([]byte(dir))
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("wsloop-npm-%x.lock", h.Sum64())), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close() // releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", marker)); err != nil {
		npm := exec.Command(Tool(t, "npm"), "ci", "--no-audit", "--no-fund")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}
	return dir
}

// Output runs cmd and returns its combined output, killing it after
// timeout.
func Output(cmd *exec.Cmd, timeout time.Duration) ([]byte, error) {
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
	}
	return out, err
}
