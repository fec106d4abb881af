// Command gameloop is a game server on wsloop that ticks at 20 Hz and
// pushes each match's state delta to every player in it:
//
//	go run ./examples/gameloop      # then connect to ws://127.0.0.1:8090/play
//
// A client connects to ws://HOST/play and is put in a match of up to
// -match-size players. It steers by sending {"dx":-1..1,"dy":-1..1} (its
// latest input counts); every tick the server moves each player by its
// input and sends the match one delta:
//
//	{"type":"welcome","id":7,"match":3,"tick":120,"players":[{"id":7,"x":0,"y":0}, ...]}  to a new player
//	{"type":"delta","tick":121,"moved":[{"id":7,"x":1,"y":0}],"joined":[...],"left":[5]}    to the match
//
// A delta is sent only when something changed. Every message is JSON in
// a text frame, so a browser's onmessage gets a string for each.
//
// How the work is split, so that no event loop ever blocks:
//   - the handlers run on the event loops and do O(1) work each: OnOpen
//     queues the player for its match, OnMessage stores the input in an
//     atomic, OnClose queues the leave. They touch the match under a
//     mutex held for an append, never while simulating.
//   - one simulation goroutine (a time.Ticker) owns the game state: each
//     tick it admits queued players (Conn.Join, then the welcome with
//     Conn.WriteMessage(ws.OpText, ...)), applies inputs, and publishes each match's delta with
//     Server.Publish, which encodes the frame once for the match and hands
//     it to each loop in one queue operation; it never blocks (a loop's
//     full queue answers ErrQueueFull, counted in Stats).
//
// Because the welcome and the deltas come from one goroutine, a player
// gets its welcome before the first delta that follows it: frames one
// goroutine sends to one connection keep their order, whichever call sent
// them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/engine"
)

// player is one connection's game state. input is written by the
// connection's event loop and read by the simulation; x and y belong to
// the simulation.
type player struct {
	id    uint64
	conn  *engine.Conn
	input atomic.Int32 // dx+1 | (dy+1)<<2
	x, y  int
	match *match
}

// match is a room of players. The handlers only append to joining and
// leaving, under mu; the simulation owns players.
type match struct {
	id      int
	room    string // the wsloop room: "match:<id>"
	mu      sync.Mutex
	joining []*player
	leaving []*player
	size    int // players admitted or queued, for matchmaking (under game.mu)
	players map[uint64]*player
}

type pos struct {
	ID uint64 `json:"id"`
	X  int    `json:"x"`
	Y  int    `json:"y"`
}

type welcomeMsg struct {
	Type    string `json:"type"`
	ID      uint64 `json:"id"`
	Match   int    `json:"match"`
	Tick    uint64 `json:"tick"`
	Players []pos  `json:"players"`
}

type deltaMsg struct {
	Type   string   `json:"type"`
	Tick   uint64   `json:"tick"`
	Moved  []pos    `json:"moved,omitempty"`
	Joined []pos    `json:"joined,omitempty"`
	Left   []uint64 `json:"left,omitempty"`
}

// game is the handler and the simulation.
type game struct {
	engine.BaseHandler
	matchSize int

	mu      sync.Mutex // matches and their sizes, for matchmaking
	matches []*match
	tick    atomic.Uint64
}

// OnOpen puts the player in the first match with room, queued for the
// next tick.
func (g *game) OnOpen(c *engine.Conn) {
	p := &player{id: c.ID(), conn: c}
	p.input.Store(1 | 1<<2) // standing still
	g.mu.Lock()
	var m *match
	for _, mm := range g.matches {
		if mm.size < g.matchSize {
			m = mm
			break
		}
	}
	if m == nil {
		id := len(g.matches) + 1
		m = &match{id: id, room: "match:" + strconv.Itoa(id), players: map[uint64]*player{}}
		g.matches = append(g.matches, m)
	}
	m.size++
	g.mu.Unlock()
	p.match = m
	c.SetValue(p)
	m.mu.Lock()
	m.joining = append(m.joining, p)
	m.mu.Unlock()
}

// OnMessage stores the player's latest input: one atomic store.
func (g *game) OnMessage(c *engine.Conn, op ws.OpCode, b []byte) {
	var in struct{ DX, DY int }
	if json.Unmarshal(b, &in) != nil || in.DX < -1 || in.DX > 1 || in.DY < -1 || in.DY > 1 {
		_ = c.SendText(`{"type":"error","text":"send {\"dx\":-1..1,\"dy\":-1..1}"}`)
		return
	}
	c.Value().(*player).input.Store(int32(in.DX+1) | int32(in.DY+1)<<2)
}

// OnClose queues the leave; the connection has already left its room.
func (g *game) OnClose(c *engine.Conn, _ error) {
	p, ok := c.Value().(*player)
	if !ok {
		return
	}
	m := p.match
	m.mu.Lock()
	m.leaving = append(m.leaving, p)
	m.mu.Unlock()
	g.mu.Lock()
	m.size--
	g.mu.Unlock()
}

// run simulates every match at hz until ctx ends.
func (g *game) run(ctx context.Context, srv *engine.Server, hz int) {
	t := time.NewTicker(time.Second / time.Duration(hz))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		tick := g.tick.Add(1)
		g.mu.Lock()
		matches := append([]*match(nil), g.matches...)
		g.mu.Unlock()
		for _, m := range matches {
			g.step(srv, m, tick)
		}
	}
}

// step advances one match by a tick and publishes what changed.
func (g *game) step(srv *engine.Server, m *match, tick uint64) {
	m.mu.Lock()
	joining, leaving := m.joining, m.leaving
	m.joining, m.leaving = nil, nil
	m.mu.Unlock()

	d := deltaMsg{Type: "delta", Tick: tick}
	for _, p := range leaving {
		if _, ok := m.players[p.id]; ok {
			delete(m.players, p.id)
			d.Left = append(d.Left, p.id)
		}
	}
	for _, p := range m.players {
		in := p.input.Load()
		dx, dy := int(in&3)-1, int(in>>2&3)-1
		if dx != 0 || dy != 0 {
			p.x, p.y = p.x+dx, p.y+dy
			d.Moved = append(d.Moved, pos{p.id, p.x, p.y})
		}
	}
	for _, p := range joining {
		if p.conn.Join(m.room) != nil { // closed before its first tick
			continue
		}
		m.players[p.id] = p
		d.Joined = append(d.Joined, pos{p.id, p.x, p.y})
		w := welcomeMsg{Type: "welcome", ID: p.id, Match: m.id, Tick: tick}
		for _, q := range m.players {
			w.Players = append(w.Players, pos{q.id, q.x, q.y})
		}
		b, _ := json.Marshal(w)
		_ = p.conn.WriteMessage(ws.OpText, b) // text, as the deltas are; before this tick's delta: same goroutine, same connection
	}
	if len(d.Moved)+len(d.Joined)+len(d.Left) == 0 {
		return
	}
	b, _ := json.Marshal(d)
	_ = srv.Publish(m.room, ws.OpText, b)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	hz := flag.Int("hz", 20, "simulation ticks a second")
	size := flag.Int("match-size", 8, "players per match")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *hz < 1 || *hz > 1000 || *size < 1 {
		log.Error("need 1 <= -hz <= 1000 and -match-size >= 1")
		os.Exit(2)
	}
	g := &game{matchSize: *size}
	srv, err := newServer(g, log)
	if err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-srv.Ready()
		log.Info("gameloop listening: connect to ws://" + srv.Addr().String() + "/play")
		g.run(ctx, srv, *hz)
	}()
	if err := srv.ListenAndServe(ctx, *addr); !errors.Is(err, engine.ErrServerClosed) {
		log.Error("server failed", "err", err)
		os.Exit(1)
	}
}

func newServer(g *game, log *slog.Logger) (*engine.Server, error) {
	return engine.New(g,
		engine.WithUpgradeHook(func(r *engine.Request) (any, error) {
			if string(r.Path()) != "/play" {
				return nil, engine.Reject(404, "play at /play")
			}
			return nil, nil
		}),
		engine.WithCheckOrigin(engine.AnyOrigin), // game clients are not browsers on a page of ours
		engine.WithMaxMessageSize(256),
		engine.WithLogger(log),
	)
}
