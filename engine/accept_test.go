package engine

import (
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// peerProbe records, in OnOpen, each connection's RemoteAddr and whether
// its socket has TCP_NODELAY.
type peerProbe struct {
	echoHandler
	mu      sync.Mutex
	remotes map[string]bool
	delayed int // sockets without TCP_NODELAY
}

func (p *peerProbe) OnOpen(c *Conn) {
	v, err := unix.GetsockoptInt(c.gc.Fd(), unix.IPPROTO_TCP, unix.TCP_NODELAY)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.remotes[c.RemoteAddr().String()] = true
	if err != nil || v == 0 {
		p.delayed++
	}
}

// TestAcceptedSockets: sockets the acceptor takes with accept4 (no
// net.Conn) have TCP_NODELAY, inherited from the listener (without it,
// every small frame waits for the peer's ACK), and a RemoteAddr that is
// the client's own address and port, over IPv4 and IPv6.
func TestAcceptedSockets(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			ln, err := net.Listen("tcp", host+":0")
			if err != nil {
				t.Skipf("no %s: %v", host, err)
			}
			ln.Close()
			p := &peerProbe{remotes: map[string]bool{}}
			srv, errc := serve(t, p, host+":0")
			defer func() {
				_ = srv.Shutdown(t.Context())
				<-errc
			}()
			addr := srv.Addr().String()
			var locals []string
			for range 20 {
				c := upgradeRaw(t, addr)
				locals = append(locals, c.LocalAddr().String())
				defer c.Close() // before Shutdown, which would wait for the close handshake
			}
			waitFor(t, 5*time.Second, "20 opens", func() bool {
				p.mu.Lock()
				defer p.mu.Unlock()
				return len(p.remotes) == 20
			})
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, l := range locals {
				if !p.remotes[l] {
					t.Errorf("client %s not among the RemoteAddrs the server saw: %v", l, p.remotes)
				}
			}
			if p.delayed > 0 {
				t.Errorf("%d of 20 accepted sockets without TCP_NODELAY", p.delayed)
			}
		})
	}
}

// TestAcceptEnrollPath: with a gnet the link was not checked against
// (gnetlink.go), sockets reach the loops through gnet's Enroll; churn
// through that path leaves no socket and no goroutine behind.
func TestAcceptEnrollPath(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, func(o *options) { o.enrollOnly = true })
	if srv.acc.linked {
		t.Fatal("the acceptor registers sockets itself")
	}
	runCycles(t, addr, 2000, 200)
	waitFor(t, 10*time.Second, "server sockets to close", func() bool { return srv.sockets.Load() == 0 })
	waitFor(t, 10*time.Second, "OnClose for every OnOpen", func() bool {
		o, c := rec.counts()
		return o == c && o == 2000
	})
	if st := srv.Stats(); st.AcceptErrors != 0 {
		t.Errorf("accept errors: %+v", st)
	}
}
