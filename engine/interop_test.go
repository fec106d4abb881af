package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	cws "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// Real clients that nobody here wrote talk to the server over loopback.

var interopSizes = []int{0, 125, 126, 64 << 10, 1 << 20}

// payload returns n bytes: valid UTF-8 (with multi-byte runes) for text.
func payload(n int, text bool, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, 0, n)
	if !text {
		for len(b) < n {
			b = append(b, byte(r.Uint32()))
		}
		return b
	}
	runes := []string{"a", "Z", "0", " ", "é", "κ", "€", "𝄞", "中"}
	for len(b) < n {
		s := runes[r.IntN(len(runes))]
		if len(b)+len(s) > n {
			s = "x"
		}
		b = append(b, s...)
	}
	return b
}

// closer is a handler that echoes, and closes with 4000 "done" when it
// receives the text "close-me".
type closer struct{ *recorder }

func (h closer) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if op == ws.OpText && string(p) == "close-me" {
		_ = c.Close(4000, "done")
		return
	}
	_ = c.WriteMessage(op, p)
}

func TestGorillaEcho(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithMaxMessageSize(2<<20))
	for _, fragmented := range []bool{false, true} {
		d := websocket.Dialer{WriteBufferSize: 4 << 20, ReadBufferSize: 64 << 10}
		if fragmented {
			d.WriteBufferSize = 512 // gorilla writes a frame each time its buffer fills
		}
		conn, _, err := d.Dial("ws://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadLimit(4 << 20)
		for _, size := range interopSizes {
			for _, mt := range []int{websocket.TextMessage, websocket.BinaryMessage} {
				name := fmt.Sprintf("fragmented=%v/size=%d/type=%d", fragmented, size, mt)
				p := payload(size, mt == websocket.TextMessage, 1)
				if err := conn.WriteMessage(mt, p); err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				gt, got, err := conn.ReadMessage()
				if err != nil {
					t.Fatalf("%s: read: %v", name, err)
				}
				if gt != mt || !bytes.Equal(got, p) {
					t.Fatalf("%s: echo differs: type %d len %d, want type %d len %d", name, gt, len(got), mt, len(p))
				}
			}
		}
		conn.Close()
	}
}

func TestCoderEcho(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithMaxMessageSize(2<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, _, err := cws.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(4 << 20)
	for _, fragmented := range []bool{false, true} {
		for _, size := range interopSizes {
			for _, mt := range []cws.MessageType{cws.MessageText, cws.MessageBinary} {
				name := fmt.Sprintf("fragmented=%v/size=%d/type=%v", fragmented, size, mt)
				p := payload(size, mt == cws.MessageText, 2)
				if fragmented {
					w, err := conn.Writer(ctx, mt)
					if err != nil {
						t.Fatal(err)
					}
					for rest := p; len(rest) > 0; { // coder writes a frame per Write call
						n := min(len(rest), 1000)
						if _, err := w.Write(rest[:n]); err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						rest = rest[n:]
					}
					if err := w.Close(); err != nil {
						t.Fatalf("%s: %v", name, err)
					}
				} else if err := conn.Write(ctx, mt, p); err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
				gt, got, err := conn.Read(ctx)
				if err != nil {
					t.Fatalf("%s: read: %v", name, err)
				}
				if gt != mt || !bytes.Equal(got, p) {
					t.Fatalf("%s: echo differs: type %v len %d, want %v len %d", name, gt, len(got), mt, len(p))
				}
			}
		}
	}
}

func TestGorillaClientCloses(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, rec)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("client read %v, want the echoed close 1000", err)
	}
	// The server closes the TCP connection after echoing.
	if _, err := conn.UnderlyingConn().Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the close handshake read %v, want EOF", err)
	}
	got := rec.nextClose(t)
	if !got.Remote || got.Code != 1000 || got.Reason != "bye" || got.Err != nil {
		t.Fatalf("OnClose got %+v, want remote 1000 bye", got)
	}
}

func TestGorillaServerCloses(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, closer{rec})
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteMessage(websocket.TextMessage, []byte("close-me")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = conn.ReadMessage() // gorilla answers the close frame itself
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "done" {
		t.Fatalf("client read %v, want close 4000 done", err)
	}
	got := rec.nextClose(t)
	if got.Remote || got.Code != 4000 || got.Reason != "done" || got.Err != nil {
		t.Fatalf("OnClose got %+v, want server-initiated 4000 done", got)
	}
	if _, err := conn.UnderlyingConn().Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the close handshake read %v, want EOF", err)
	}
}

func TestCoderCloseHandshakes(t *testing.T) {
	rec := newRecorder()
	_, addr := startServer(t, closer{rec})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Client-initiated: coder waits for the echo and the server's TCP close.
	conn, _, err := cws.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(cws.StatusGoingAway, "leaving"); err != nil {
		t.Fatalf("client close handshake: %v", err)
	}
	got := rec.nextClose(t)
	if !got.Remote || got.Code != 1001 || got.Reason != "leaving" {
		t.Fatalf("OnClose got %+v, want remote 1001 leaving", got)
	}

	// Server-initiated.
	conn, _, err = cws.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, cws.MessageText, []byte("close-me")); err != nil {
		t.Fatal(err)
	}
	_, _, err = conn.Read(ctx)
	if cws.CloseStatus(err) != 4000 {
		t.Fatalf("client read %v, want close 4000", err)
	}
	got = rec.nextClose(t)
	if got.Remote || got.Code != 4000 {
		t.Fatalf("OnClose got %+v, want server-initiated 4000", got)
	}
}
