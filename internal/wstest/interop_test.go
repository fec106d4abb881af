package wstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// examples/chat and examples/embed install the same testdata/browser
// packages, and go test runs the two packages at once: on a fresh clone
// both ran npm ci there together, and the first to finish ran node while
// the other's npm ci had emptied node_modules ("Cannot find module").
// NodeDir takes a lock around its check and npm ci; here two callers at
// once must both find their packages loadable when NodeDir returns.
func TestNodeDirConcurrent(t *testing.T) {
	node := Tool(t, "node")
	Tool(t, "npm")
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "chat", "testdata", "browser", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Second) // the second starts while the first installs
			d := NodeDir(t, dir, "playwright-core")
			cmd := exec.Command(node, "-e", "require('ws'); require('playwright-core')")
			cmd.Dir = d
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("caller %d: packages not loadable after NodeDir returned: %v\n%s", i, err, out)
			}
		})
	}
	wg.Wait()
}
