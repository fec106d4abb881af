// Package chatroom is a live-streaming style chat (danmaku) on wsloop: rooms
// joined by URL, every message broadcast to its room, join and leave
// notices, a viewer count pushed whenever it changes, and a per-user rate
// limit. It serves its own web page on the same port:
//
//	go run ./examples/chat            # then open http://127.0.0.1:8080
//
// http://127.0.0.1:8080/ is the room "lobby", http://127.0.0.1:8080/NAME
// the room NAME (letters, digits, '-' and '_', up to 32). The page connects
// to ws://HOST/ws?room=NAME&name=NICK, shows the connection's state, and
// reconnects with backoff after a drop. GET /stats returns the server's
// counters (engine.Stats) as JSON; http://127.0.0.1:8080/dashboard charts
// them live (dashboard.go).
//
// # Protocol
//
// Text frames, each one JSON object. The client sends
//
//	{"type":"chat","text":"hello"}                 up to 500 bytes of text
//
// and the server sends
//
//	{"type":"welcome","room":"lobby","name":"ann","viewers":3,
//	 "recovered":false,"missed":0,"epoch":"9f…","offset":41}      to a new member
//	{"type":"join","name":"bob","viewers":4}                      to the room
//	{"type":"leave","name":"bob","viewers":3}                     to the room
//	{"type":"viewers","viewers":5}                                to the room's members, on a cluster (PushViewers)
//	{"type":"chat","name":"ann","text":"hello"}                   to the room, sender included
//	{"type":"limited","text":"...","retry_ms":800}                to a member sending too fast
//	{"type":"error","text":"..."}                                 to a member that sent something else
//
// Every message to the room (but viewers) also carries its position in
// the room's history, first in the object: {"epoch":"9f…","offset":42,"type":"chat",…}
// (engine.WithHistory with the chat's envelope). The page keeps the last
// position it saw and, when it reconnects, gives it in the URL
// (…&epoch=9f…&offset=42): the server sends every message it missed, in
// order, before the live ones, and then the welcome, which says whether
// it recovered (recovered, and how many were missed) or not (the position
// was of another epoch, from a server that restarted, or too old: the
// page says that messages may be missing), and the room's position at the
// seam. A room keeps its last HistorySize messages for HistoryTTL.
//
// viewers is the room's member count, pushed with every join and leave. A
// member may send -burst messages at once and -rate per second after that
// (every message counts, well-formed or not); a message over the limit is
// not relayed, and its sender gets "limited" saying when to try again. A
// room of many thousands would push the count on a timer instead of with
// every notice (examples/gameloop shows periodic pushes).
//
// How it uses wsloop: the upgrade hook reads the room and name from the
// URL and attaches them to the connection (Conn.Value), with the
// position the page gives; OnOpen joins the room with Conn.Recover (what
// the page missed first, then the live messages) and announces the count (RoomLen counts the new member as soon as
// Join returns); engine.WithRateLimit holds each member to the rate before
// OnMessage sees its messages, on the event loop with no timer per member,
// and its OnLimited answers "limited" with the retry it is given;
// OnMessage publishes (Publish encodes the frame once for the whole room);
// OnClose announces the leave (the connection has left its rooms by
// then). Handlers reach the server with Conn.Server. Every callback runs
// on an event loop and must not block: nothing here does. The default
// origin check (engine.SameOrigin) is kept: the page is served from the
// same host and port, so its socket passes, and pages of other sites
// cannot open sockets with your users' cookies.
//
// The same code runs one node of a cluster when New gets
// engine.WithBroker (broker/nats/examples/chat): Publish then reaches the
// room on every node, and RoomLen, hence "viewers", counts every node's
// members as they last reported them (within 2 s). A member who joins or
// leaves on another node changes the count with no event here: the
// cluster node calls PushViewers when its broker says a room's count
// changed (natsbroker.WithOnRoomCount), so that two members who join at
// once on two nodes both see 2, not the 1 of their join notices.
package chatroom

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/engine"
)

// Page is the chat's web page.
//
//go:embed index.html
var Page []byte

const (
	maxText     = 500
	maxName     = 24
	maxRoom     = 32
	defaultRoom = "lobby"
)

// member is a connection's state, attached by the upgrade hook. Only the
// connection's own event loop touches it (its callbacks), so it needs no
// lock.
type member struct {
	room, name string
	since      engine.Position // the last message the page saw, if it says
}

// Server-to-client messages.
type (
	welcome struct {
		Type      string `json:"type"`
		Room      string `json:"room"`
		Name      string `json:"name"`
		Viewers   int    `json:"viewers"`
		Recovered bool   `json:"recovered"`
		Missed    int    `json:"missed"`
		Epoch     string `json:"epoch"`
		Offset    uint64 `json:"offset"`
	}
	notice struct {
		Type    string `json:"type"` // join, leave
		Name    string `json:"name"`
		Viewers int    `json:"viewers"`
	}
	viewers struct {
		Type    string `json:"type"` // viewers
		Viewers int    `json:"viewers"`
	}
	chatMsg struct {
		Type string `json:"type"`
		Name string `json:"name"`
		Text string `json:"text"`
	}
	limited struct {
		Type    string `json:"type"`
		Text    string `json:"text"`
		RetryMs int64  `json:"retry_ms"`
	}
	errorMsg struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
)

// incoming is a client-to-server message.
type incoming struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type chat struct{ engine.BaseHandler }

func (h *chat) OnOpen(c *engine.Conn) {
	m := c.Value().(*member)
	// Recover joins the room, first sending what the page missed since
	// the position it gave (none for a new page).
	rec, err := c.Recover(m.room, m.since)
	if err != nil {
		return // closed already
	}
	srv := c.Server()
	n := srv.RoomLen(m.room)
	send(c, welcome{Type: "welcome", Room: m.room, Name: m.name, Viewers: n,
		Recovered: rec.Recovered, Missed: rec.Missed, Epoch: rec.Top.Epoch, Offset: rec.Top.Offset})
	publish(srv, m.room, notice{Type: "join", Name: m.name, Viewers: n})
}

func (h *chat) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	m := c.Value().(*member)
	var in incoming
	if op != ws.OpText || json.Unmarshal(p, &in) != nil || in.Type != "chat" {
		send(c, errorMsg{Type: "error", Text: `send {"type":"chat","text":"..."}`})
		return
	}
	text := strings.TrimSpace(in.Text)
	if text == "" || len(text) > maxText {
		send(c, errorMsg{Type: "error", Text: fmt.Sprintf("a message has 1 to %d bytes of text", maxText)})
		return
	}
	publish(c.Server(), m.room, chatMsg{Type: "chat", Name: m.name, Text: text})
}

// OnHandOff and OnAdopt carry a member across a restart in place
// (engine.RestartKeep): the page stays connected, in its room, and no
// leave or join is announced. The member travels as "room\x00name".
func (h *chat) OnHandOff(c *engine.Conn) []byte {
	m, ok := c.Value().(*member)
	if !ok {
		return nil
	}
	return []byte(m.room + "\x00" + m.name)
}

func (h *chat) OnAdopt(c *engine.Conn, state []byte) {
	room, name, _ := strings.Cut(string(state), "\x00")
	c.SetValue(&member{room: room, name: name})
}

func (h *chat) OnClose(c *engine.Conn, err error) {
	m, ok := c.Value().(*member)
	if !ok {
		return
	}
	srv := c.Server()
	publish(srv, m.room, notice{Type: "leave", Name: m.name, Viewers: srv.RoomLen(m.room)})
}

func send(c *engine.Conn, v any) {
	b, _ := json.Marshal(v)
	_ = c.WriteMessage(ws.OpText, b)
}

// PushViewers tells room's members on this node that the room has n
// members ({"type":"viewers"}), since every node of a cluster calls it for
// its own members. The count is not a message of the room's history: it
// goes to the members (SendTo, encoded once) with no position, and is not
// kept. (A publish here would be: Local.Publish keeps it in the room's
// history with this node's next offset, which, with a history broker
// giving the offsets, takes the one of the cluster's next message, which
// this node then skips as delivered.) Any goroutine.
func PushViewers(srv *engine.Server, room string, n int) {
	members := srv.RoomMembers(room)
	if len(members) == 0 {
		return
	}
	ids := make([]uint64, len(members))
	for i, c := range members {
		ids[i] = c.ID()
	}
	b, _ := json.Marshal(viewers{Type: "viewers", Viewers: n})
	_, _ = srv.SendTo(ids, ws.OpText, b) // ErrQueueFull only under overload
}

func publish(srv *engine.Server, room string, v any) {
	b, _ := json.Marshal(v)
	_ = srv.Publish(room, ws.OpText, b) // copies b; ErrQueueFull only under overload
}

// upgrade is the upgrade hook: it accepts /ws?room=R&name=N and attaches
// the member.
func upgrade(r *engine.Request) (any, error) {
	if string(r.Path()) != "/ws" {
		return nil, engine.Reject(404, "the socket is at /ws")
	}
	room := r.QueryValue("room")
	if room == "" {
		room = defaultRoom
	}
	if !validRoom(room) {
		return nil, engine.Reject(400, "bad room name")
	}
	name := cleanName(r.QueryValue("name"))
	if name == "" {
		name = fmt.Sprintf("guest-%04d", time.Now().UnixNano()/1000%10000)
	}
	m := &member{room: room, name: name}
	// A page that comes back gives the position of the last message it
	// saw; anything malformed counts as none (the page is not recovered).
	if e := r.QueryValue("epoch"); e != "" && len(e) <= 32 {
		if off, err := strconv.ParseUint(r.QueryValue("offset"), 10, 64); err == nil {
			m.since = engine.Position{Epoch: e, Offset: off}
		}
	}
	return m, nil
}

// History is what every room keeps for pages that come back: its last
// HistorySize messages, each for at most HistoryTTL.
const (
	HistorySize = 200
	HistoryTTL  = 5 * time.Minute
)

// envelope puts a message's position into its JSON object, first:
// {"epoch":"…","offset":N,"type":…}. Every message the chat publishes is
// an object; the epoch is the engine's, letters and digits.
func envelope(dst []byte, _ string, pos engine.Position, p []byte) []byte {
	dst = append(dst, `{"epoch":"`...)
	dst = append(dst, pos.Epoch...)
	dst = append(dst, `","offset":`...)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	if len(p) > 2 && p[0] == '{' {
		return append(append(dst, ','), p[1:]...)
	}
	return append(dst, '}')
}

func validRoom(s string) bool {
	if len(s) == 0 || len(s) > maxRoom {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cleanName keeps printable characters, at most maxName of them.
func cleanName(s string) string {
	var b strings.Builder
	n := 0
	for _, c := range strings.TrimSpace(s) {
		if c < ' ' || c == utf8.RuneError || c == 0x7f {
			continue
		}
		if n++; n > maxName {
			break
		}
		b.WriteRune(c)
	}
	return b.String()
}

// httpHandler serves the page for a room path, and /stats (and the
// dashboard: dashboardRoute). Plain HTTP requests on a keep-alive
// connection are all answered on it.
func httpHandler(r *engine.Request) engine.HTTPResponse {
	path := string(r.Path())
	if resp, ok := dashboardRoute(r.Server(), path); ok {
		return resp
	}
	switch {
	case path == "/stats":
		b, _ := json.Marshal(r.Server().Stats())
		return engine.HTTPResponse{Header: []engine.HeaderField{{Name: "Content-Type", Value: "application/json"}}, Body: b}
	case path == "/" || validRoom(strings.TrimPrefix(path, "/")):
		return engine.HTTPResponse{Header: []engine.HeaderField{
			{Name: "Content-Type", Value: "text/html; charset=utf-8"},
			{Name: "Cache-Control", Value: "no-cache"},
		}, Body: Page}
	}
	return engine.HTTPResponse{Status: 404, Body: []byte("not found\n")}
}

// New builds the chat server: a member may send burst messages at once
// (whole ones: the fraction is dropped) and rate a second after that. opts
// come after the chat's own options (engine.WithBroker makes it one node of
// a cluster: broker/nats/examples/chat).
func New(rate, burst float64, log *slog.Logger, opts ...engine.Option) (*engine.Server, error) {
	per := time.Duration(float64(time.Second) / rate) // one message per
	if rate <= 0 || burst < 1 || per < 1 {
		return nil, errors.New("need -rate > 0 (at most 1e9) and -burst >= 1")
	}
	// Over the limit a message is dropped before OnMessage; the member is
	// told each time, with when to try again.
	onLimited := func(c *engine.Conn, _ int, retry time.Duration) {
		send(c, limited{Type: "limited", RetryMs: retry.Milliseconds(),
			Text: fmt.Sprintf("Slow down: %g messages at once, then %g a second. Try again in %.1f s.", math.Floor(burst), rate, retry.Seconds())})
	}
	return engine.New(&chat{}, append([]engine.Option{
		engine.WithRateLimit(engine.RateLimit{Messages: 1, Per: per, Burst: int(burst), OnLimited: onLimited}),
		engine.WithUpgradeHook(upgrade),
		engine.WithHistory(func(string) engine.History { return engine.History{Size: HistorySize, TTL: HistoryTTL} }, envelope),
		engine.WithLoopHTTPHandler(httpHandler),
		engine.WithCheckOrigin(engine.SameOrigin), // the default, said out loud: the page is served from this origin
		engine.WithMaxMessageSize(4 << 10),
		engine.WithLogger(log),
	}, opts...)...)
}

// RunDrain is Run, except that when ctx ends it drains srv over window
// (engine.Server.Drain) instead of shutting it down: the listening socket
// closes at once, so that the next server can take the address, and the
// members are closed with 1012 a few at a time, in a random order, while
// the others go on chatting. The page reconnects 0.5 s after a close
// (jittered by a quarter either way), so the members reach the next
// server at the pace of the drain, not all at once
// (TestDrainSpreadsReconnects). A window of 0 shuts down at once (1001)
// as Run does. It returns nil after a clean drain.
func RunDrain(ctx context.Context, srv *engine.Server, addr string, window time.Duration, log *slog.Logger) error {
	if window <= 0 {
		return Run(ctx, srv, addr, log)
	}
	served := make(chan error, 1)
	go func() { served <- Run(context.WithoutCancel(ctx), srv, addr, log) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("chat draining: members are sent to the next server a few at a time", "window", window)
	dctx, cancel := context.WithTimeout(context.Background(), window+10*time.Second)
	defer cancel()
	if err := srv.Drain(dctx, window); err != nil {
		log.Warn("chat drain cut short", "err", err)
	}
	return <-served
}

// Run serves srv on addr until ctx is done, logging where to point a
// browser; it returns nil after a clean shutdown.
func Run(ctx context.Context, srv *engine.Server, addr string, log *slog.Logger) error {
	go func() {
		<-srv.Ready()
		a := srv.Addr()
		if a.Network() == "unix" {
			log.Info("chat listening", "addr", "unix://"+a.String())
			return
		}
		scheme := "http://"
		if srv.TLS() {
			scheme = "https://"
		}
		log.Info("chat listening: open " + scheme + a.String() + " in a browser")
	}()
	if err := srv.ListenAndServe(ctx, addr); !errors.Is(err, engine.ErrServerClosed) {
		return err
	}
	return nil
}
