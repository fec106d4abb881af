package wstest

import (
	"net"
	"sync"
	"time"
)

// writer sends queued bytes in order on its own goroutine, so the session
// keeps reading while big or chopped frames go out (Autobahn's reactor does
// the same). Consecutive plain chunks are coalesced into one write, as a
// transport buffer would; chopped and sync chunks are written on their own
// with a pause after each write.
type writer struct {
	nc    net.Conn
	delay time.Duration
	mu    sync.Mutex
	q     []wchunk
	wake  chan struct{}
	quit  chan struct{}
	once  sync.Once
}

type wchunk struct {
	b    []byte
	chop int  // > 0: write in pieces of chop bytes
	sync bool // write alone, then pause
}

func newWriter(nc net.Conn, delay time.Duration) *writer {
	return &writer{nc: nc, delay: delay, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

func (w *writer) push(c wchunk) {
	w.mu.Lock()
	w.q = append(w.q, c)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) stop() { w.once.Do(func() { close(w.quit) }) }

func (w *writer) take() (wchunk, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.q) == 0 {
		return wchunk{}, false
	}
	c := w.q[0]
	if c.chop > 0 || c.sync {
		w.q = w.q[1:]
		return c, true
	}
	n := 1
	for n < len(w.q) && w.q[n].chop == 0 && !w.q[n].sync {
		n++
	}
	if n > 1 {
		var b []byte
		for _, x := range w.q[:n] {
			b = append(b, x.b...)
		}
		c.b = b
	}
	w.q = w.q[n:]
	return c, true
}

func (w *writer) run() {
	for {
		select {
		case <-w.wake:
		case <-w.quit:
			return
		}
		for {
			c, ok := w.take()
			if !ok {
				break
			}
			if err := w.write(c); err != nil {
				return // the session sees the connection end on its read side
			}
		}
	}
}

func (w *writer) write(c wchunk) error {
	piece := c.chop
	if piece <= 0 {
		piece = len(c.b)
	}
	for i := 0; i < len(c.b); i += piece {
		if _, err := w.nc.Write(c.b[i:min(i+piece, len(c.b))]); err != nil {
			return err
		}
		if c.chop > 0 || c.sync {
			select {
			case <-w.quit:
				return net.ErrClosed
			default:
			}
			pause(w.delay)
		}
	}
	return nil
}
