package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/examples/chat/chatroom"
)

// pageBackoff reads the page's reconnect delay after a first drop from
// chatroom/index.html, so that the clients below wait as browsers do:
// base * (lo + Math.random() / div).
func pageBackoff(t *testing.T) func() time.Duration {
	t.Helper()
	page, err := os.ReadFile("chatroom/index.html")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Math\.min\(\d+, (\d+) \* 2 \*\* attempt\) \* \(([\d.]+) \+ Math\.random\(\) / (\d+)\)`).FindSubmatch(page)
	if m == nil {
		t.Fatal("chatroom/index.html: the reconnect delay is no longer `Math.min(MAX, BASE * 2 ** attempt) * (LO + Math.random() / DIV)`: teach this test the new one")
	}
	base, _ := strconv.Atoi(string(m[1]))
	lo, _ := strconv.ParseFloat(string(m[2]), 64)
	div, _ := strconv.ParseFloat(string(m[3]), 64)
	return func() time.Duration {
		return time.Duration(float64(base) * (lo + rand.Float64()/div) * float64(time.Millisecond))
	}
}

// TestDrainSpreadsReconnects: 3,000 members on chat server A, which is
// drained over 6 s (RunDrain, as on SIGTERM); each member, closed with
// 1012, reconnects to server B after the page's backoff. Their arrivals at
// B (the welcome B sends from OnOpen) follow the drain: no second holds
// more than twice the average over the window. Shutdown, or a drain with
// no window, sends all 3,000 within the backoff's quarter of a second.
func TestDrainSpreadsReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("3,000 connections for 10 s")
	}
	if raceEnabled {
		t.Skip("a timing test: .ci/run runs it without the race detector (race_test.go)")
	}
	const (
		n      = 3000
		window = 6 * time.Second
	)
	backoff := pageBackoff(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, _ := start(t, "127.0.0.1:0", 100, 100)
	addrB := b.Addr().String()

	a, err := chatroom.New(100, 100, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctxA, drainA := context.WithCancel(context.Background())
	defer drainA()
	ranA := make(chan error, 1)
	go func() { ranA <- chatroom.RunDrain(ctxA, a, "127.0.0.1:0", window, quiet) }()
	select {
	case <-a.Ready():
	case err := <-ranA:
		t.Fatalf("RunDrain: %v", err)
	}
	addrA := a.Addr().String()

	type member struct {
		conn    *websocket.Conn // on A, then on B
		code    int
		reason  string
		arrived time.Time // the welcome from B
		err     error
	}
	members := make([]*member, n)
	var wg sync.WaitGroup
	dial := func(addr string, i int) (*websocket.Conn, error) {
		h := http.Header{"Origin": {"http://" + addr}}
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
		c, _, err := d.Dial(fmt.Sprintf("ws://%s/ws?room=r%d&name=m%d", addr, i, i), h)
		return c, err
	}
	// Each member: wait for A to close it, back off as the page does,
	// reconnect to B and read B's welcome.
	run := func(m *member, i int) {
		defer wg.Done()
		var err error
		for {
			if _, _, err = m.conn.ReadMessage(); err != nil {
				break
			}
		}
		m.conn.Close()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			m.err = fmt.Errorf("on A: %w", err)
			return
		}
		m.code, m.reason = ce.Code, ce.Text
		time.Sleep(backoff()) // whatever the code, as the page does
		if m.conn, err = dial(addrB, i); err != nil {
			m.err = fmt.Errorf("reconnecting to B: %w", err)
			return
		}
		_ = m.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, p, err := m.conn.ReadMessage(); err != nil {
			m.err = fmt.Errorf("on B: %w", err)
		} else if !strings.Contains(string(p), `"type":"welcome"`) {
			m.err = fmt.Errorf("on B: first message %s", p)
		}
		m.arrived = time.Now()
	}
	// Dial A with a few dialers at once.
	var dialWG sync.WaitGroup
	var dialErr error
	var dialMu sync.Mutex
	next := make(chan int)
	for range 8 {
		dialWG.Add(1)
		go func() {
			defer dialWG.Done()
			for i := range next {
				c, err := dial(addrA, i)
				if err != nil {
					dialMu.Lock()
					dialErr = err
					dialMu.Unlock()
					continue
				}
				members[i] = &member{conn: c}
				wg.Add(1)
				go run(members[i], i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	dialWG.Wait()
	if dialErr != nil {
		t.Fatalf("dialing A: %v", dialErr)
	}
	t.Cleanup(func() {
		for _, m := range members {
			if m != nil && m.conn != nil {
				m.conn.Close()
			}
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for a.Connections() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d members open on A", a.Connections(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}

	drainAt := time.Now()
	drainA() // SIGTERM
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(window + 20*time.Second):
		t.Fatal("members still reconnecting 20 s after the window")
	}
	select {
	case err := <-ranA:
		if err != nil {
			t.Fatalf("RunDrain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("A did not stop after its drain")
	}

	secs := int(window/time.Second) + 2
	perSecond := make([]int, secs)
	arrived, badCodes := 0, 0
	for i, m := range members {
		if m.err != nil {
			t.Fatalf("member %d: %v", i, m.err)
		}
		if m.code != 1012 || m.reason != "server restarting, reconnect" {
			badCodes++
			if badCodes == 1 {
				t.Errorf("member %d: closed by A with %d %q, want 1012 and the drain's reason", i, m.code, m.reason)
			}
		}
		arrived++
		s := int(m.arrived.Sub(drainAt) / time.Second)
		perSecond[min(max(s, 0), secs-1)]++
	}
	if badCodes > 0 {
		t.Errorf("%d of %d members were not closed with 1012", badCodes, n)
	}
	if arrived != n || b.Connections() != n {
		t.Fatalf("%d members arrived at B, which has %d connections; want %d", arrived, b.Connections(), n)
	}
	avg := float64(n) / window.Seconds()
	most := 0
	for _, c := range perSecond {
		most = max(most, c)
	}
	t.Logf("arrivals at B per second since the drain began: %v (average over the window %.0f)", perSecond, avg)
	if float64(most) > 2*avg {
		t.Errorf("%d arrivals at B in one second, over twice the average %.0f: the drain did not spread the reconnects", most, avg)
	}
}
