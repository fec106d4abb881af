package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// busStub is a HistoryBroker with no bus: the tests below hand messages
// to Local.PublishHistory themselves, as a broker's consumer does.
type busStub struct {
	hz Position
	ok bool
}

func (*busStub) Start(Local) error                         { return nil }
func (*busStub) Publish(string, ws.OpCode, []byte) error   { return nil }
func (*busStub) Broadcast(ws.OpCode, []byte) error         { return nil }
func (*busStub) SendToKey(string, ws.OpCode, []byte) error { return nil }
func (*busStub) RoomChanged(string)                        {}
func (*busStub) KeyChanged(string)                         {}
func (*busStub) RemoteRoomLen(string) int                  { return 0 }
func (*busStub) Stats() BrokerStats                        { return BrokerStats{} }
func (*busStub) Close() error                              { return nil }
func (*busStub) KeepsHistory() bool                        { return true }
func (f *busStub) HistoryHorizon() (Position, bool)        { return f.hz, f.ok }
func (*busStub) PublishHistory(string, ws.OpCode, []byte, bool) (Position, error) {
	return Position{}, errors.New("no bus")
}

// TestHistoryGapRoomForgotten: a message after a hole in the bus whose
// room the sweep forgets while the hole is applied to every room must not
// take the process down (it once unlocked a mutex it no longer held:
// "fatal error: sync: unlock of unlocked mutex").
func TestHistoryGapRoomForgotten(t *testing.T) {
	fb := &busStub{hz: Position{Epoch: "E", Offset: 10}, ok: true}
	s, err := New(BaseHandler{}, WithBroker(fb), WithHistory(func(string) History { return History{Size: 10, TTL: time.Second} }, nil))
	if err != nil {
		t.Fatal(err)
	}
	l := s.Local()
	_ = l.PublishHistory(HistoryMessage{Room: "r", Op: ws.OpText, Payload: []byte("a"), Pos: Position{Epoch: "E", Offset: 11}})
	_ = l.PublishHistory(HistoryMessage{Room: "z", Op: ws.OpText, Payload: []byte("b"), Pos: Position{Epoch: "E", Offset: 12}})
	hz, _ := s.hist.rooms.Get("z")
	hr, _ := s.hist.rooms.Get("r")
	hz.mu.Lock() // holds the hole's pass over the rooms
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.PublishHistory(HistoryMessage{Room: "r", Op: ws.OpText, Payload: []byte("c"), Pos: Position{Epoch: "E", Offset: 20}, Gap: true})
	}()
	time.Sleep(100 * time.Millisecond)
	hr.mu.Lock() // as the sweep forgets an empty room
	hr.gone = true
	hr.mu.Unlock()
	s.hist.rooms.DeleteIf("r", func(v *roomHistory) bool { return v == hr })
	hz.mu.Unlock()
	<-done
	if h, ok := s.hist.rooms.Get("r"); !ok || h.top != 20 || h.floor != 19 {
		t.Fatalf("room r after the hole: %+v, want a new history at 20 with nothing from before 19", h)
	}
}
