package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

type anyMsg struct {
	Type    string   `json:"type"`
	ID      uint64   `json:"id"`
	Match   int      `json:"match"`
	Tick    uint64   `json:"tick"`
	Players []pos    `json:"players"`
	Moved   []pos    `json:"moved"`
	Joined  []pos    `json:"joined"`
	Left    []uint64 `json:"left"`
}

func startGame(t *testing.T, size int) string {
	g := &game{matchSize: size}
	srv, err := newServer(g, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx, "127.0.0.1:0") }()
	<-srv.Ready()
	go g.run(ctx, srv, 50)
	t.Cleanup(func() { cancel(); <-done })
	return "ws://" + srv.Addr().String() + "/play"
}

func dial(t *testing.T, url string) *websocket.Conn {
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv returns the next message; deltas must come with rising ticks.
func recv(t *testing.T, c *websocket.Conn, last *uint64) anyMsg {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m anyMsg
	if err := json.Unmarshal(p, &m); err != nil {
		t.Fatalf("%q: %v", p, err)
	}
	if m.Type == "delta" {
		if m.Tick <= *last {
			t.Fatalf("tick %d after %d", m.Tick, *last)
		}
		*last = m.Tick
	}
	return m
}

func TestGameLoop(t *testing.T) {
	url := startGame(t, 2)
	var lastA, lastB, lastC uint64
	a := dial(t, url)
	wa := recv(t, a, &lastA)
	if wa.Type != "welcome" || len(wa.Players) != 1 || wa.Players[0].ID != wa.ID {
		t.Fatalf("a's welcome: %+v", wa)
	}
	if d := recv(t, a, &lastA); d.Type != "delta" || len(d.Joined) != 1 || d.Joined[0].ID != wa.ID {
		t.Fatalf("a's own join: %+v", d)
	}
	b := dial(t, url)
	wb := recv(t, b, &lastB)
	if wb.Type != "welcome" || wb.Match != wa.Match || len(wb.Players) != 2 {
		t.Fatalf("b's welcome: %+v", wb)
	}
	if d := recv(t, a, &lastA); len(d.Joined) != 1 || d.Joined[0].ID != wb.ID {
		t.Fatalf("b's join, seen by a: %+v", d)
	}
	c := dial(t, url) // the match holds 2: c starts another
	if wc := recv(t, c, &lastC); wc.Match == wa.Match || len(wc.Players) != 1 {
		t.Fatalf("c's welcome: %+v", wc)
	}

	// a walks right: b sees a's x grow, tick after tick.
	_ = a.WriteMessage(websocket.TextMessage, []byte(`{"dx":1,"dy":0}`))
	x := 0
	for x < 5 {
		d := recv(t, b, &lastB)
		for _, p := range d.Moved {
			if p.ID == wa.ID {
				if p.X != x+1 || p.Y != 0 {
					t.Fatalf("a moved to (%d,%d) after x=%d", p.X, p.Y, x)
				}
				x = p.X
			}
		}
	}
	_ = a.WriteMessage(websocket.TextMessage, []byte(`{"dx":0,"dy":0}`))
	_ = a.WriteMessage(websocket.TextMessage, []byte(`{"dx":7}`))
	for {
		if m := recv(t, a, &lastA); m.Type == "error" {
			break
		}
	}
	a.Close()
	for {
		d := recv(t, b, &lastB)
		if len(d.Left) == 1 && d.Left[0] == wa.ID {
			break
		}
	}
}

// Every message is JSON in a text frame, the welcome included: a browser's
// onmessage gets a string for each (a binary frame would be a Blob).
func TestTextFrames(t *testing.T) {
	url := startGame(t, 2)
	a := dial(t, url)
	for i := range 2 {
		_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
		typ, p, err := a.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.TextMessage {
			t.Errorf("message %d (%.40s) came in a binary frame, want text", i, p)
		}
	}
}
