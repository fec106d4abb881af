package engine

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/codec"
)

// TestAdoptPeerGone: a connection handed over with output, whose peer
// reset the socket during the hand-off. adoptConn's first write (that
// output) fails and gnet closes the socket inside OnOpen; the connection
// must end there, counted as adopted (the old process waits for the
// count), not be opened, joined and bound as if alive: such a zombie was
// never closed again and wrote its room's messages to a descriptor number
// no longer its own (seen before the fix: an unrelated socket given that
// number got them).
func TestAdoptPeerGone(t *testing.T) {
	srv, _ := startServer(t, echoHandler{})
	fd, client := handedSocket(t)
	// The client goes away abruptly (RST) while the hand-off runs.
	_ = client.SetLinger(0)
	client.Close()
	time.Sleep(100 * time.Millisecond)

	out := codec.AppendFrame(nil, ws.OpText, true, []byte("waiting in the old process"))
	if !srv.takeSocket() {
		t.Fatal("no socket")
	}
	srv.acc.queueNow(srv.pickLoop(), accepted{fd: fd, adopt: &adoption{output: out, rooms: []string{"r"}, key: "k"}})
	waitFor(t, 5*time.Second, "adoption", func() bool { return srv.Stats().Adopted == 1 })
	time.Sleep(100 * time.Millisecond) // the join is applied

	var zfd int
	var st uint32
	c, bound := srv.ConnByKey("k")
	if bound {
		srv.onEveryLoop(func(l *loop) {
			if l == c.loop {
				zfd, st = c.gc.Fd(), c.state.Load()
			}
		})
	}
	stats := srv.Stats()
	t.Logf("after the failed write: sockets %d, connections %d, RoomLen %d, bound %v, state %d, fd %d",
		stats.Sockets, stats.Connections, srv.RoomLen("r"), bound, st, zfd)
	if stats.Adopted != 1 {
		t.Errorf("Adopted %d: the old process waits for this connection to be counted", stats.Adopted)
	}
	if stats.Sockets == 0 && (stats.Connections != 0 || srv.RoomLen("r") != 0 || bound) {
		t.Errorf("the socket is closed, but the connection lives on: connections %d, RoomLen %d, bound %v, state %d",
			stats.Connections, srv.RoomLen("r"), bound, st)
	}
	if !bound {
		return
	}
	// Its descriptor number is free; whatever gets it next receives the
	// zombie's frames.
	if _, err := unix.FcntlInt(uintptr(zfd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Logf("descriptor %d already reused (%v): not clobbering it", zfd, err)
		return
	}
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	t.Logf("socketpair got descriptors %v (the zombie's is %d)", p, zfd)
	if p[0] != zfd {
		if err := unix.Dup2(p[0], zfd); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(zfd)
	}
	if err := srv.Publish("r", ws.OpText, []byte("secret for room r")); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetNonblock(p[1], false)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	_ = unix.SetsockoptTimeval(p[1], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 256)
	n, _ := unix.Read(p[1], buf)
	if n > 0 {
		t.Errorf("an unrelated descriptor (now number %d) got the zombie's frame: %q", zfd, buf[:n])
	}
}

// TestHandOffInputOverBound: with WithMaxMessageSize above 16 MiB a
// connection may freeze more input than a new process takes
// (maxHandOffInput); the round must keep it (it is drained at the end)
// rather than send it: the new process would refuse the record and lose
// the connection, and the old one would wait for its acknowledgement.
// Before the fix only input and output together were bounded (64 MiB),
// and it was sent.
func TestHandOffInputOverBound(t *testing.T) {
	srv, addr := startServer(t, echoHandler{}, WithMaxMessageSize(32<<20))
	nc := upgradeRaw(t, addr)
	srv.onEveryLoop(func(l *loop) { l.handingOff = true })
	defer srv.onEveryLoop(func(l *loop) { l.handingOff = false })
	frame := clientFrame(ws.OpBinary, true, bytes.Repeat([]byte("x"), 1<<20))
	go func() {
		for range 18 { // 18 MiB of complete messages, frozen unparsed
			if _, err := nc.Write(frame); err != nil {
				return
			}
		}
	}()
	want := 18 * len(frame)
	waitFor(t, 20*time.Second, "the input to freeze", func() bool {
		var got atomic.Bool
		srv.onEveryLoop(func(l *loop) {
			l.each(func(c *Conn) {
				if c.state.Load() == stateOpen && c.gc.InboundBuffered() >= want {
					got.Store(true)
				}
			})
		})
		return got.Load()
	})
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	ho := &handOffState{fd: p[0]}
	ho.output.Store(true)
	var left atomic.Int64
	srv.onEveryLoop(func(l *loop) { left.Add(int64(l.handOffRound(ho, false))) })
	if n := ho.sent.Load(); n != 0 {
		t.Fatalf("sent %d connections; want the one with %d B of input kept for the drain", n, want)
	}
	if n, _, err := unix.Recvfrom(p[1], make([]byte, 64), unix.MSG_DONTWAIT); err != unix.EAGAIN {
		t.Fatalf("the new process would get a record (%d B, %v)", n, err)
	}
	if srv.Stats().Connections != 1 {
		t.Fatalf("connections %d: want it still here", srv.Stats().Connections)
	}
}

// TestAdoptedPrefixConnClose: an adopted connection whose handed-over
// input ends inside a frame header keeps c.gc a *prefixConn until the rest
// comes; closing it then (a second hand-off, idle eviction, the close
// deadline) must close gnet's connection under it: it panicked on the loop
// before the fix (gnet's Close asserts its own type).
func TestAdoptedPrefixConnClose(t *testing.T) {
	srv, _ := startServer(t, echoHandler{})
	fd, _ := handedSocket(t)
	if !srv.takeSocket() {
		t.Fatal("no socket")
	}
	// One byte of the next frame's header arrived before the freeze.
	srv.acc.queueNow(srv.pickLoop(), accepted{fd: fd, adopt: &adoption{input: []byte{0x81}, key: "p"}})
	waitFor(t, 5*time.Second, "adoption", func() bool { return srv.Stats().Adopted == 1 })
	c, ok := srv.ConnByKey("p")
	if !ok {
		t.Fatal("not bound")
	}
	var wrapped bool
	var perr any
	srv.onEveryLoop(func(l *loop) {
		if l != c.loop {
			return
		}
		_, wrapped = c.gc.(*prefixConn)
		func() {
			defer func() { perr = recover() }()
			l.closeSocket(c)
		}()
		if perr != nil { // close it properly, so that the server can stop
			_ = l.el.Close(c.gc.(*prefixConn).Conn)
		}
	})
	if perr != nil {
		t.Errorf("prefixConn %v: closeSocket panicked: %v", wrapped, perr)
	}
}

// handedSocket returns the descriptor of the server's side of a fresh TCP
// connection on 127.0.0.1, as a new process gets one handed over, and the
// client's side (closed at the end of the test).
func handedSocket(t *testing.T) (int, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rc, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if cerr := rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	return fd, client.(*net.TCPConn)
}
