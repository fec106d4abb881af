package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
)

// TestMain runs the command itself when the test re-executes the binary.
func TestMain(m *testing.M) {
	if os.Getenv("CHAT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var listening = regexp.MustCompile(`chat listening: open https?://([0-9.:]+) `)

// node starts this command as a process and returns its HTTP address.
func node(t *testing.T, args ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-addr", "127.0.0.1:0", "-rate", "100", "-burst", "100"}, args...)...)
	cmd.Env = append(os.Environ(), "CHAT_TEST_MAIN=1")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "node:", sc.Text())
			}
		}
	}()
	select {
	case a := <-addr:
		return a, cmd
	case <-time.After(20 * time.Second):
		t.Fatal("node not listening within 20 s")
	}
	return "", nil
}

type msg struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Text    string `json:"text"`
	Viewers int    `json:"viewers"`
}

type member struct {
	c    *websocket.Conn
	name string
}

func join(t *testing.T, addr, name string) *member {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?room=lobby&name="+name, http.Header{"Origin": {"http://" + addr}})
	if err != nil {
		t.Fatalf("dial %s: %v %v", addr, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return &member{c, name}
}

// next returns the member's next message of type typ, skipping others.
func (m *member) next(t *testing.T, typ string) msg {
	t.Helper()
	_ = m.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, p, err := m.c.ReadMessage()
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		var v msg
		if err := json.Unmarshal(p, &v); err != nil {
			t.Fatalf("%s: %q", m.name, p)
		}
		if v.Type == typ {
			return v
		}
	}
}

func (m *member) say(t *testing.T, text string) {
	t.Helper()
	if err := m.c.WriteMessage(websocket.TextMessage, []byte(`{"type":"chat","text":"`+text+`"}`)); err != nil {
		t.Fatal(err)
	}
}

// startNATS runs a NATS server with JetStream (the rooms' history) on a
// free port until the test ends.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	return ns
}

// A NATS server and three node processes: members on each node get every
// chat message sent on any node, once and in order, and the viewer count
// spans the nodes. Killed, a node leaves the others serving, and its
// members drop out of the count.
func TestThreeProcesses(t *testing.T) {
	ns := startNATS(t)
	var addrs []string
	var cmds []*exec.Cmd
	for range 3 {
		a, cmd := node(t, "-nats", ns.ClientURL())
		addrs, cmds = append(addrs, a), append(cmds, cmd)
	}
	var ms []*member
	for i, a := range addrs {
		for k := range 2 {
			ms = append(ms, join(t, a, fmt.Sprintf("n%d-%d", i, k)))
		}
	}
	// Interest reaches NATS within 50 ms of a join, counts within 2 s:
	// wait for node 1 to count all six (and the probe).
	waitViewers(t, addrs[0], 7)
	const N = 20
	for i := range N {
		ms[i%len(ms)].say(t, fmt.Sprintf("m%02d", i))
		// One sender at a time, so that every member sees one order.
		for _, m := range ms {
			if got := m.next(t, "chat"); got.Text != fmt.Sprintf("m%02d", i) || got.Name != ms[i%len(ms)].name {
				t.Fatalf("%s: got %+v, want m%02d from %s", m.name, got, i, ms[i%len(ms)].name)
			}
		}
	}

	// Kill node 3: nodes 1 and 2 keep serving, and stop counting its two
	// members within three report intervals.
	_ = cmds[2].Process.Kill()
	_ = cmds[2].Wait()
	ms[0].say(t, "after")
	for _, m := range ms[:4] {
		if got := m.next(t, "chat"); got.Text != "after" {
			t.Fatalf("%s: %+v", m.name, got)
		}
	}
	waitViewers(t, addrs[1], 5)
}

// waitViewers joins the lobby on addr until the welcome counts want
// viewers (the newcomer included), for up to 10 s.
func waitViewers(t *testing.T, addr string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := join(t, addr, "probe")
		v := probe.next(t, "welcome").Viewers
		probe.c.Close()
		if v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s counts %d viewers, want %d", addr, v, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The README's two-node demo: node 1 runs NATS in its own process
// (-nats-embedded), node 2 joins it; a message crosses.
func TestEmbeddedNATS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := l.Addr().String()
	l.Close()
	a1, _ := node(t, "-nats-embedded", natsAddr, "-nats-store", t.TempDir())
	a2, _ := node(t, "-nats", "nats://"+natsAddr)
	m1, m2 := join(t, a1, "ann"), join(t, a2, "bob")
	deadline := time.Now().Add(10 * time.Second)
	for {
		m1.say(t, "ping")
		if got := m1.next(t, "chat"); got.Text != "ping" {
			t.Fatalf("own: %+v", got)
		}
		_ = m2.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, p, err := m2.c.ReadMessage()
		if err == nil && strings.Contains(string(p), `"text":"ping"`) {
			break
		}
		if err != nil && !strings.Contains(err.Error(), "timeout") {
			t.Fatal(err)
		}
		if err != nil {
			// A read that timed out leaves a gorilla connection unusable.
			m2 = join(t, a2, "bob")
		}
		if time.Now().After(deadline) {
			t.Fatal("node 2 never got node 1's message")
		}
	}
}

// viewers reads what m's page would show as the room's viewer count
// (the last count of a welcome, join, leave or viewers message) until it
// is want, and returns when it saw it; the zero time if not by deadline.
func (m *member) viewers(want int, deadline time.Time, shown *int) time.Time {
	_ = m.c.SetReadDeadline(deadline)
	for {
		_, p, err := m.c.ReadMessage()
		if err != nil {
			return time.Time{}
		}
		var v msg
		if json.Unmarshal(p, &v) != nil {
			continue
		}
		switch v.Type {
		case "welcome", "join", "leave", "viewers":
			*shown = v.Viewers
		}
		if *shown == want {
			return time.Now()
		}
	}
}

// Issue 23: two tabs opened at the same moment on two nodes each see the
// other's member within 3 s (a report interval and a little), and keep
// showing 2: the count that another node's report brings is pushed.
func TestViewersAcrossNodes(t *testing.T) {
	ns := startNATS(t)
	a1, _ := node(t, "-nats", ns.ClientURL())
	a2, _ := node(t, "-nats", ns.ClientURL())
	waitNodes(t, a1, 1)
	waitNodes(t, a2, 1)
	ms := make([]*member, 2)
	start := time.Now()
	done := make(chan int, 2)
	for i, a := range []string{a1, a2} {
		go func() {
			c, resp, err := websocket.DefaultDialer.Dial("ws://"+a+"/ws?room=lobby&name="+fmt.Sprint("tab", i), http.Header{"Origin": {"http://" + a}})
			if err != nil {
				t.Errorf("dial %s: %v %v", a, err, resp)
			}
			ms[i] = &member{c, fmt.Sprint("tab", i)}
			done <- i
		}()
	}
	<-done
	<-done
	if t.Failed() {
		t.FailNow()
	}
	for _, m := range ms {
		t.Cleanup(func() { m.c.Close() })
	}
	shown := make([]int, 2)
	at := make([]time.Time, 2)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); at[i] = m.viewers(2, start.Add(3*time.Second), &shown[i]) }()
	}
	wg.Wait()
	if at[0].IsZero() || at[1].IsZero() {
		t.Fatalf("3 s after two tabs opened at once on two nodes, they show viewers %v; want 2 on both", shown)
	}
	t.Logf("both tabs showed 2 viewers %v after they opened (%v, %v)", max(at[0].Sub(start), at[1].Sub(start)).Round(time.Millisecond),
		at[0].Sub(start).Round(time.Millisecond), at[1].Sub(start).Round(time.Millisecond))
	// And nothing later takes it back to 1: wait past the next reports.
	until := time.Now().Add(1500 * time.Millisecond)
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); m.viewers(-1, until, &shown[i]) }()
	}
	wg.Wait()
	if shown[0] != 2 || shown[1] != 2 {
		t.Errorf("the tabs show %v viewers later, want 2", shown)
	}
}

// waitNodes waits until the node at addr has heard from n other nodes
// (GET /stats), for up to 10 s.
func waitNodes(t *testing.T, addr string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st struct{ Broker struct{ Nodes int } }
		resp, err := http.Get("http://" + addr + "/stats")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && st.Broker.Nodes == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s hears from %d nodes (%v), want %d", addr, st.Broker.Nodes, err, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// -tls: a node serves its page on https:// and the socket on wss://, with
// a self-signed certificate, and a member there chats with one on a plain
// node.
func TestTLSNode(t *testing.T) {
	ns := startNATS(t)
	secure, _ := node(t, "-nats", ns.ClientURL(), "-tls")
	plain, _ := node(t, "-nats", ns.ClientURL())
	insecure := &tls.Config{InsecureSkipVerify: true} // self-signed
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + secure + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("page over https: %d", resp.StatusCode)
	}
	d := websocket.Dialer{TLSClientConfig: insecure}
	c, resp, err := d.Dial("wss://"+secure+"/ws?room=lobby&name=sec", http.Header{"Origin": {"https://" + secure}})
	if err != nil {
		t.Fatalf("wss: %v %v", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	s := &member{c, "sec"}
	if w := s.next(t, "welcome"); w.Name != "sec" {
		t.Fatalf("welcome %+v", w)
	}
	p := join(t, plain, "plain")
	shown := 0
	if s.viewers(2, time.Now().Add(5*time.Second), &shown).IsZero() {
		t.Fatalf("the wss member shows %d viewers, want 2", shown)
	}
	p.say(t, "hi")
	if got := s.next(t, "chat"); got.Text != "hi" || got.Name != "plain" {
		t.Fatalf("the wss member got %+v", got)
	}
}
