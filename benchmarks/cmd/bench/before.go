package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
)

// beforeMain is the echo server built against an older wsloop tree
// (-before): servers/wsloop's handler and options, without the flags that
// need a newer engine (TLS), and with the SIGUSR1 allocation count the
// harness asks every server for. The options are the ones servers/wsloop
// has used since before wsloop owned its accept loop (069d9f7).
const beforeMain = `package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/engine"

	"github.com/wsloop/wsloop/benchmarks/internal/cpuprof"
	"github.com/wsloop/wsloop/benchmarks/internal/mallocs"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address; port 0 picks a free port")
	loops := flag.Int("loops", runtime.NumCPU(), "event loops")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file, until SIGHUP, SIGTERM or SIGINT")
	flag.Parse()
	defer cpuprof.Start(*cpuProfile)()
	srv, err := engine.New(echo{},
		engine.WithEventLoops(*loops),
		engine.WithMaxMessageSize(1<<20),
		engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithPingInterval(time.Hour),
		engine.WithIdleTimeout(2*time.Hour),
		engine.WithCloseTimeout(500*time.Millisecond),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		mallocs.Report()
		fmt.Println("READY", srv.Addr())
	}()
	if err := srv.ListenAndServe(ctx, *addr); !errors.Is(err, engine.ErrServerClosed) {
		log.Fatal(err)
	}
}
`

// replaceRoot is go.mod's replace of the wsloop module by the repository.
var replaceRoot = regexp.MustCompile(`(?m)^replace github.com/wsloop/wsloop => \.\./?$`)

// relReplace is any other replace by a relative path.
var relReplace = regexp.MustCompile(`(?m)^(replace \S+ => )(\.\./\S*)$`)

// buildBefore builds beforeMain as name against the engine of the tree
// *before, without touching the module's files: a copy of go.mod (and
// go.sum) in dir whose replace points at that tree, and an overlay that
// stands beforeMain in for servers/wsloop/main.go.
func buildBefore(mod, dir, name string) error {
	tree, err := filepath.Abs(*before)
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(tree, "engine")); err != nil {
		return fmt.Errorf("-before %s: not a wsloop tree (no engine/): %v", *before, err)
	}
	gomod, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		return err
	}
	if !replaceRoot.Match(gomod) {
		return fmt.Errorf("go.mod has no line %q", "replace github.com/wsloop/wsloop => ../")
	}
	gomod = replaceRoot.ReplaceAll(gomod, []byte("replace github.com/wsloop/wsloop => "+tree))
	gomod = relReplace.ReplaceAllFunc(gomod, func(l []byte) []byte {
		m := relReplace.FindSubmatch(l)
		return append(append([]byte{}, m[1]...), filepath.Join(mod, string(m[2]))...)
	})
	gosum, err := os.ReadFile(filepath.Join(mod, "go.sum"))
	if err != nil {
		return err
	}
	bdir := filepath.Join(dir, "before")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return err
	}
	main := filepath.Join(bdir, "main.go")
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(mod, "servers", "wsloop", "main.go"): main}})
	for f, b := range map[string][]byte{"go.mod": gomod, "go.sum": gosum, "main.go": []byte(beforeMain), "overlay.json": overlay} {
		if err := os.WriteFile(filepath.Join(bdir, f), b, 0o644); err != nil {
			return err
		}
	}
	bin := filepath.Join(dir, name)
	c := exec.Command("go", "build", "-modfile", filepath.Join(bdir, "go.mod"), "-overlay", filepath.Join(bdir, "overlay.json"), "-o", bin, "./servers/wsloop")
	c.Dir = mod
	if b, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s from %s: %v\n%s", name, tree, err, b)
	}
	bins[name] = bin
	return nil
}
