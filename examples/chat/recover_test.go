package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// posMsg is a message with the position the chat's envelope gives it, and
// the welcome's recovery fields.
type posMsg struct {
	Type      string `json:"type"`
	Name      string `json:"name"`
	Text      string `json:"text"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered bool   `json:"recovered"`
	Missed    int    `json:"missed"`
}

func nextPos(t *testing.T, c *websocket.Conn) posMsg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m posMsg
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("%q: %v", p, err)
	}
	return m
}

func rejoin(t *testing.T, addr, room, name, epoch string, offset uint64) *websocket.Conn {
	t.Helper()
	q := url.Values{"room": {room}, "name": {name}, "epoch": {epoch}, "offset": {strconv.FormatUint(offset, 10)}}
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?"+q.Encode(), http.Header{"Origin": {"http://" + addr}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestChatRecovers: every message to a room carries its position; a member
// that drops and comes back with the last position it saw gets what was
// said meanwhile, in order, then a welcome that says it recovered; one
// that comes back with a position the room cannot serve (another epoch)
// gets none of it and a welcome that says so.
func TestChatRecovers(t *testing.T) {
	srv, _ := start(t, "127.0.0.1:0", 10, 10)
	a := srv.Addr().String()
	ann := join(t, a, "rec", "ann")
	w := nextPos(t, ann)
	if w.Type != "welcome" || w.Recovered || w.Epoch == "" || w.Offset != 0 {
		t.Fatalf("ann's welcome: %+v", w)
	}
	if m := nextPos(t, ann); m.Type != "join" || m.Epoch != w.Epoch || m.Offset != 1 {
		t.Fatalf("ann's join: %+v", m)
	}
	bob := join(t, a, "rec", "bob")
	nextPos(t, bob) // welcome
	var last posMsg
	for _, c := range []*websocket.Conn{ann, bob} {
		last = nextPos(t, c)
		if last.Type != "join" || last.Name != "bob" || last.Offset != 2 {
			t.Fatalf("bob's join: %+v", last)
		}
	}
	bob.Close() // dropped, no close frame
	if m := nextPos(t, ann); m.Type != "leave" || m.Name != "bob" {
		t.Fatalf("bob's leave: %+v", m)
	}
	for _, s := range []string{"one", "two", "three"} {
		say(t, ann, s)
		nextPos(t, ann)
	}
	bob = rejoin(t, a, "rec", "bob", last.Epoch, last.Offset)
	if m := nextPos(t, bob); m.Type != "leave" || m.Name != "bob" || m.Offset != 3 {
		t.Fatalf("recovered: %+v, want bob's own leave at 3", m)
	}
	for i, s := range []string{"one", "two", "three"} {
		if m := nextPos(t, bob); m.Type != "chat" || m.Text != s || m.Offset != uint64(4+i) {
			t.Fatalf("recovered: %+v, want %q at %d", m, s, 4+i)
		}
	}
	if m := nextPos(t, bob); m.Type != "welcome" || !m.Recovered || m.Missed != 4 || m.Offset != 6 || m.Epoch != last.Epoch {
		t.Fatalf("welcome after recovering: %+v", m)
	}
	if m := nextPos(t, bob); m.Type != "join" || m.Name != "bob" || m.Offset != 7 {
		t.Fatalf("own join: %+v", m)
	}

	eve := rejoin(t, a, "rec", "eve", "not-this-epoch", 3)
	if m := nextPos(t, eve); m.Type != "welcome" || m.Recovered || m.Missed != 0 || m.Offset != 7 {
		t.Fatalf("welcome from another epoch: %+v", m)
	}
}
