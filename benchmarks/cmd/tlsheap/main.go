// Command tlsheap shows where an idle wss:// connection's memory goes: it
// runs a wsloop TLS echo server in this process, with every allocation
// sampled (runtime.MemProfileRate = 1), opens -conns connections to it from
// a tlsbench client process, collects the garbage, and prints the live heap
// per connection by allocation site (the innermost function outside the
// runtime), largest first; with -plain, the same for ws://.
//
//	cd benchmarks && go run ./cmd/tlsheap              # wss://
//	cd benchmarks && go run ./cmd/tlsheap -plain       # ws://, to compare
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
)

type echo struct{ engine.BaseHandler }

func (echo) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.WriteMessage(op, p) }

func main() {
	runtime.MemProfileRate = 1
	conns := flag.Int("conns", 5000, "connections")
	plain := flag.Bool("plain", false, "ws:// instead of wss://")
	top := flag.Int("top", 20, "allocation sites to print")
	flag.Parse()

	tmp, err := os.MkdirTemp("", "wsloop-tlsheap-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	client := filepath.Join(tmp, "tlsbench")
	if b, err := exec.Command("go", "build", "-o", client, "./cmd/tlsbench").CombinedOutput(); err != nil {
		log.Fatalf("go build ./cmd/tlsbench: %v\n%s", err, b)
	}
	opts := []engine.Option{engine.WithEventLoops(1), engine.WithCheckOrigin(engine.AnyOrigin),
		engine.WithPingInterval(time.Hour), engine.WithIdleTimeout(2 * time.Hour)}
	args := []string{"client", "-mode", "idle", "-conns", fmt.Sprint(*conns), "-src", "127.0.0.9"}
	if !*plain {
		cert, err := devcert.SelfSigned()
		if err != nil {
			log.Fatal(err)
		}
		ca := filepath.Join(tmp, "ca.pem")
		if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, engine.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
		args = append(args, "-ca", ca)
	}
	srv, err := engine.New(echo{}, opts...)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.ListenAndServe(ctx, "127.0.0.1:0") }()
	<-srv.Ready()

	cmd := exec.Command(client, append(args, "-addr", srv.Addr().String())...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "CONNECTED ") {
		log.Fatalf("client: %q", sc.Text())
	}
	time.Sleep(2 * time.Second)
	if n := srv.Stats().Connections; n != *conns {
		log.Fatalf("%d connections open, want %d", n, *conns)
	}
	runtime.GC()
	runtime.GC()

	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, false)
	for {
		recs = make([]runtime.MemProfileRecord, n+64)
		var ok bool
		if n, ok = runtime.MemProfile(recs, false); ok {
			recs = recs[:n]
			break
		}
	}
	bySite := map[string]int64{}
	var total int64
	for _, r := range recs {
		b := r.InUseBytes()
		if b <= 0 {
			continue
		}
		total += b
		bySite[site(r.Stack())] += b
	}
	type kv struct {
		k string
		v int64
	}
	var sites []kv
	for k, v := range bySite {
		sites = append(sites, kv{k, v})
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].v > sites[j].v })
	mode := "wss"
	if *plain {
		mode = "ws"
	}
	fmt.Printf("%s: %d idle connections, live heap %.0f B per connection (whole process, after GC)\n\n", mode, *conns, float64(total)/float64(*conns))
	fmt.Println("| bytes per connection | allocated in |\n|---:|---|")
	for i, s := range sites {
		if i == *top {
			break
		}
		fmt.Printf("| %.0f | %s |\n", float64(s.v)/float64(*conns), s.k)
	}
	stdin.Close()
}

// site names an allocation by its innermost frame outside the runtime,
// with the wsloop or gnet frame that led there when that one is elsewhere.
func site(stk []uintptr) string {
	frames := runtime.CallersFrames(stk)
	var first, ours string
	for {
		f, more := frames.Next()
		fn := f.Function
		if first == "" && !strings.HasPrefix(fn, "runtime.") && !strings.HasPrefix(fn, "internal/") {
			first = fn
		}
		if first != "" && ours == "" && (strings.Contains(fn, "wsloop/wsloop/") || strings.Contains(fn, "panjf2000/gnet")) {
			ours = fn
		}
		if !more {
			break
		}
	}
	if ours != "" && ours != first {
		return first + " (from " + ours + ")"
	}
	return first
}
