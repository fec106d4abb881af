package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/internal/wstest"
)

// TestBrowserRecoverAcrossNodes: two nodes keep the rooms' history in one
// JetStream stream. The chat page, in headless Chromium
// (testdata/recover_nodes.js, on examples/chat's browser helpers), joins a
// room through a TCP proxy that forwards to node 1, and shows the ticks
// that a client of node 1 sends. The test then closes every proxied
// connection and, while the proxy refuses the page's reconnects, clients
// of node 1 and node 2 send ten more ticks; then it points the proxy at
// node 2. The page reconnects by itself, through the proxy, to node 2,
// with the position of the last message it saw, and must show every tick,
// in order, once each (the ones it missed recovered from node 2's history
// of the stream, with no reload), then the live ones, and say how many it
// recovered.
func TestBrowserRecoverAcrossNodes(t *testing.T) {
	nodeJS := wstest.Tool(t, "node")
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = wstest.Tool(t, "chromium", "chromium-browser")
	}
	wstest.NodeDir(t, filepath.Join("..", "..", "..", "..", "examples", "chat", "testdata", "browser"), "playwright-core")
	script, _ := filepath.Abs(filepath.Join("testdata", "recover_nodes.js"))

	ns := startNATS(t)
	a1, _ := node(t, "-nats", ns.ClientURL())
	a2, _ := node(t, "-nats", ns.ClientURL())
	waitNodes(t, a1, 1)
	waitNodes(t, a2, 1)
	const room = "recover-nodes"
	ann, bob := joinRoom(t, a1, room, "ann"), joinRoom(t, a2, room, "bob")
	p := newProxy(t, a1)

	sent := 0
	// tick has m send the next tick and waits until it comes back: the
	// stream has it then, and the next comes after it, whoever sends it.
	tick := func(m *member) {
		sent++
		s := fmt.Sprintf("tick %d", sent)
		m.say(t, s)
		m.until(t, s)
	}

	cmd := exec.Command(nodeJS, script, chromium, "http://"+p.addr()+"/"+room)
	cmd.Dir = filepath.Dir(script)
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
	cut := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log("recover_nodes.js:", line)
		switch {
		case strings.HasPrefix(line, "SEND "):
			n, _ := strconv.Atoi(line[5:])
			for range n {
				tick(map[bool]*member{false: ann, true: bob}[cut]) // the page's node's
			}
			fmt.Fprintln(stdin, "DONE", sent)
		case line == "CUT":
			if n := p.cut(); n == 0 {
				t.Error("no proxied connection to cut")
			}
			// The page is away: ticks from both nodes.
			for i := range 10 {
				tick([]*member{ann, bob}[i%2])
			}
			p.to(a2)
			cut = true
			fmt.Fprintln(stdin, "DONE", sent)
		case strings.HasPrefix(line, "HEARD "):
			ann.until(t, line[6:])
			bob.until(t, line[6:])
			fmt.Fprintln(stdin, "DONE")
		case strings.HasPrefix(line, "OK "):
			oks = append(oks, line[3:])
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil || len(oks) != 5 || !cut {
		t.Fatalf("recover_nodes.js: %v, %d of 5 steps passed, cut %v\n%s", err, len(oks), cut, stderr.String())
	}
	if n := p.served(a2); n == 0 {
		t.Fatal("the proxy forwarded nothing to node 2")
	}
}

// joinRoom joins room on the node at addr as name.
func joinRoom(t *testing.T, addr, room, name string) *member {
	t.Helper()
	q := url.Values{"room": {room}, "name": {name}}
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?"+q.Encode(), http.Header{"Origin": {"http://" + addr}})
	if err != nil {
		t.Fatalf("dial %s: %v %v", addr, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return &member{c, name}
}

// until reads m's messages until a chat with text s.
func (m *member) until(t *testing.T, s string) {
	t.Helper()
	for {
		if got := m.next(t, "chat"); got.Text == s {
			return
		}
	}
}

// proxy forwards the TCP connections it accepts on 127.0.0.1 to a node,
// byte for byte, until cut closes them all.
type proxy struct {
	ln net.Listener

	mu     sync.Mutex
	target string // "": refuse (close at once)
	conns  map[net.Conn]bool
	counts map[string]int // connections forwarded, by target
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}, counts: map[string]int{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) forward(c net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	if target == "" {
		c.Close()
		return
	}
	u, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.target != target { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.counts[target]++
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { _, _ = io.Copy(u, c); u.Close(); c.Close(); close(done) }()
	_, _ = io.Copy(c, u)
	c.Close()
	u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// cut closes every forwarded connection, refuses new ones until to, and
// returns how many it closed (both sides of each).
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = ""
	for c := range p.conns {
		c.Close()
	}
	return len(p.conns)
}

// to forwards new connections to target.
func (p *proxy) to(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// served returns how many connections were forwarded to target.
func (p *proxy) served(target string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[target]
}
