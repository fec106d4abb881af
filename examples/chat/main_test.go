package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/devcert"
	"github.com/wsloop/wsloop/engine"
	"github.com/wsloop/wsloop/examples/chat/chatroom"
)

// start runs the chat server on addr ("127.0.0.1:0" for a free port) and
// returns it with a function that stops it and waits.
func start(t *testing.T, addr string, rate, burst float64, opts ...engine.Option) (*engine.Server, func()) {
	t.Helper()
	srv, err := chatroom.New(rate, burst, slog.New(slog.NewTextHandler(io.Discard, nil)), opts...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), addr) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("not ready within 10s")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, engine.ErrServerClosed) {
			t.Errorf("ListenAndServe: %v", err)
		}
	}
	t.Cleanup(stop)
	return srv, stop
}

type msg struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	Name    string `json:"name"`
	Text    string `json:"text"`
	Viewers int    `json:"viewers"`
	RetryMs int64  `json:"retry_ms"`
}

// join is a gorilla/websocket client in a room, with the page's origin.
func join(t *testing.T, addr, room, name string) *websocket.Conn {
	t.Helper()
	h := http.Header{"Origin": {"http://" + addr}}
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?room="+room+"&name="+name, h)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func next(t *testing.T, c *websocket.Conn) msg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	op, p, err := c.ReadMessage()
	if err != nil || op != websocket.TextMessage {
		t.Fatalf("read: %v (opcode %d)", err, op)
	}
	var m msg
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("%q: %v", p, err)
	}
	return m
}

func say(t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"type": "chat", "text": text})
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
}

func TestChatRoom(t *testing.T) {
	srv, _ := start(t, "127.0.0.1:0", 1, 3)
	a := srv.Addr().String()
	ann := join(t, a, "stream1", "ann")
	if m := next(t, ann); m != (msg{Type: "welcome", Room: "stream1", Name: "ann", Viewers: 1}) {
		t.Fatalf("welcome: %+v", m)
	}
	if m := next(t, ann); m != (msg{Type: "join", Name: "ann", Viewers: 1}) {
		t.Fatalf("own join: %+v", m)
	}
	bob := join(t, a, "stream1", "bob")
	if m := next(t, bob); m.Type != "welcome" || m.Viewers != 2 {
		t.Fatalf("bob's welcome: %+v", m)
	}
	for _, c := range []*websocket.Conn{ann, bob} {
		if m := next(t, c); m != (msg{Type: "join", Name: "bob", Viewers: 2}) {
			t.Fatalf("bob's join: %+v", m)
		}
	}
	other := join(t, a, "stream2", "eve") // another room hears nothing of stream1
	next(t, other)
	next(t, other)

	say(t, bob, "  hi all  ")
	for _, c := range []*websocket.Conn{ann, bob} {
		if m := next(t, c); m != (msg{Type: "chat", Name: "bob", Text: "hi all"}) {
			t.Fatalf("chat: %+v", m)
		}
	}
	bob.Close()
	if m := next(t, ann); m != (msg{Type: "leave", Name: "bob", Viewers: 1}) {
		t.Fatalf("leave: %+v", m)
	}

	// Bad input gets an error, not a relay.
	_ = ann.WriteMessage(websocket.TextMessage, []byte("not json"))
	if m := next(t, ann); m.Type != "error" {
		t.Fatalf("bad input: %+v", m)
	}
	say(t, ann, strings.Repeat("x", 501))
	if m := next(t, ann); m.Type != "error" {
		t.Fatalf("long text: %+v", m)
	}
	_ = other.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, p, err := other.ReadMessage(); err == nil {
		t.Fatalf("another room got %q", p)
	}
}

// A member sending faster than the limit is told so, and its extra
// messages are not relayed; it may send again after retry_ms.
func TestChatRateLimit(t *testing.T) {
	srv, _ := start(t, "127.0.0.1:0", 0.5, 3) // a token every 2 s: the 5 messages below arrive well within one
	a := srv.Addr().String()
	c := join(t, a, "fast", "flood")
	next(t, c)
	next(t, c)
	for i := range 5 {
		say(t, c, "m"+string(rune('0'+i)))
	}
	var relayed, limited int
	var retry int64
	for range 5 {
		switch m := next(t, c); m.Type {
		case "chat":
			relayed++
		case "limited":
			limited++
			retry = m.RetryMs
			if !strings.Contains(m.Text, "Slow down") {
				t.Fatalf("limited text: %q", m.Text)
			}
		default:
			t.Fatalf("unexpected %+v", m)
		}
	}
	// retry is WithRateLimit's: the latest a message passes, so a token's
	// 2 s and one tick (100 ms) of the loop's coarse clock.
	if relayed != 3 || limited != 2 || retry <= 0 || retry > 2100 {
		t.Fatalf("relayed %d, limited %d (retry %d ms); want 3, 2, 0 < retry <= 2100", relayed, limited, retry)
	}
	time.Sleep(time.Duration(retry)*time.Millisecond + 50*time.Millisecond)
	say(t, c, "again")
	if m := next(t, c); m.Type != "chat" || m.Text != "again" {
		t.Fatalf("after waiting: %+v", m)
	}
}

// The page, /stats and the origin check, over plain HTTP.
func TestChatHTTP(t *testing.T) {
	srv, _ := start(t, "127.0.0.1:0", 1, 5)
	a := srv.Addr().String()
	for _, path := range []string{"/", "/stream-7"} {
		resp, err := http.Get("http://" + a + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "new WebSocket(") ||
			resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header)
		}
	}
	if resp, err := http.Get("http://" + a + "/bad%20room"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("bad room: %v %v", resp, err)
	}
	join(t, a, "s", "x")
	resp, err := http.Get("http://" + a + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st engine.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Connections != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}
	resp.Body.Close()
	// A page of another origin may not open a socket.
	_, resp, err = websocket.DefaultDialer.Dial("ws://"+a+"/ws", http.Header{"Origin": {"http://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: %v %v", resp, err)
	}
}

// The chat over TLS: the page on https://, the socket on wss:// (the
// page's own scheme), with the Origin check passing.
func TestChatTLS(t *testing.T) {
	cfg, err := devcert.Config("", "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := chatroom.New(1, 5, slog.New(slog.NewTextHandler(io.Discard, nil)), engine.WithTLS(cfg))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	defer func() { _ = srv.Shutdown(context.Background()); <-done }()
	a := srv.Addr().String()
	insecure := &tls.Config{InsecureSkipVerify: true}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: insecure}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + a + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "new WebSocket(") {
		t.Fatalf("page over https: %d", resp.StatusCode)
	}
	d := websocket.Dialer{TLSClientConfig: insecure}
	c, _, err := d.Dial("wss://"+a+"/ws?room=secure&name=ann", http.Header{"Origin": {"https://" + a}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m msg
	if err := c.ReadJSON(&m); err != nil || m.Type != "welcome" || m.Room != "secure" {
		t.Fatalf("welcome: %+v %v", m, err)
	}
}

// The dashboard page, and /stats.json: every field of engine.Stats found by
// reflection (nested structs as "Outer.Inner", per-loop slices apart), the
// counters moving as messages flow.
func TestChatDashboard(t *testing.T) {
	srv, _ := start(t, "127.0.0.1:0", 5, 10)
	a := srv.Addr().String()
	resp, err := http.Get("http://" + a + "/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(string(body), "/stats.json") || strings.Contains(string(body), "new WebSocket(") {
		t.Fatalf("/dashboard: %d %s", resp.StatusCode, resp.Header)
	}
	// Nothing from elsewhere: the page must work where only the server is reachable.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).Find(body); m != nil {
		t.Fatalf("/dashboard loads %s", m)
	}

	type field struct {
		Name  string  `json:"name"`
		Kind  string  `json:"kind"`
		Value float64 `json:"value"`
	}
	type perLoop struct {
		Name   string    `json:"name"`
		Kind   string    `json:"kind"`
		Values []float64 `json:"values"`
	}
	var snap struct {
		TimeMs  int64     `json:"time_ms"`
		Loops   int       `json:"loops"`
		Fields  []field   `json:"fields"`
		PerLoop []perLoop `json:"per_loop"`
	}
	get := func() map[string]field {
		t.Helper()
		resp, err := http.Get("http://" + a + "/stats.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("/stats.json: %d %s", resp.StatusCode, resp.Header)
		}
		snap.Fields, snap.PerLoop = nil, nil
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			t.Fatal(err)
		}
		m := map[string]field{}
		for _, f := range snap.Fields {
			m[f.Name] = f
		}
		return m
	}
	ann := join(t, a, "dash", "ann")
	next(t, ann)
	next(t, ann)
	before := get()
	if snap.TimeMs <= 0 || snap.Loops < 1 || before["Connections"].Value != 1 || before["Connections"].Kind != "gauge" ||
		before["MessagesIn"].Kind != "counter" || before["Broker.Connected"].Kind != "gauge" {
		t.Fatalf("snapshot: %+v", snap)
	}
	// Every field of engine.Stats is there, so fields added later show on the dashboard.
	st := reflect.TypeOf(engine.Stats{})
	for i := range st.NumField() {
		f := st.Field(i)
		switch f.Type.Kind() {
		case reflect.Struct:
			for j := range f.Type.NumField() {
				if _, ok := before[f.Name+"."+f.Type.Field(j).Name]; !ok {
					t.Errorf("no %s.%s in /stats.json", f.Name, f.Type.Field(j).Name)
				}
			}
		case reflect.Slice:
			found := false
			for _, p := range snap.PerLoop {
				found = found || p.Name == f.Name && len(p.Values) == snap.Loops
			}
			if !found {
				t.Errorf("no per-loop %s in /stats.json: %+v", f.Name, snap.PerLoop)
			}
		default:
			if _, ok := before[f.Name]; !ok {
				t.Errorf("no %s in /stats.json", f.Name)
			}
		}
	}
	for range 3 {
		say(t, ann, "tick")
		next(t, ann)
	}
	after := get()
	if after["MessagesIn"].Value < before["MessagesIn"].Value+3 || after["MessagesOut"].Value < before["MessagesOut"].Value+3 {
		t.Fatalf("counters did not move: in %v -> %v, out %v -> %v", before["MessagesIn"].Value, after["MessagesIn"].Value,
			before["MessagesOut"].Value, after["MessagesOut"].Value)
	}
}
