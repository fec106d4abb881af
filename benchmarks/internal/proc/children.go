package proc

import (
	"os/exec"
	"strings"
	"sync"
)

// Children tracks the processes a tool has started and not yet reaped,
// so that KillAll can end them on any exit path. The zero value is ready.
type Children struct {
	mu sync.Mutex
	m  map[*exec.Cmd]bool
}

// Track adds c (on) or removes it (off, once it has been reaped).
func (ch *Children) Track(c *exec.Cmd, on bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.m == nil {
		ch.m = map[*exec.Cmd]bool{}
	}
	if on {
		ch.m[c] = true
	} else {
		delete(ch.m, c)
	}
}

// KillAll sends SIGKILL to every tracked process.
func (ch *Children) KillAll() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for c := range ch.m {
		_ = c.Process.Kill()
	}
}

// Tail is an io.Writer that keeps the last 16 to 32 KiB written to it,
// for a process's output.
type Tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > 32<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-16<<10:]...)
	}
	t.mu.Unlock()
	return len(p), nil
}

// String returns what is kept, without leading or trailing space.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// LastLines returns up to n of the last lines kept, each cut to 240
// characters.
func (t *Tail) LastLines(n int) []string {
	s := t.String()
	if s == "" {
		return nil
	}
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	for i, l := range ls {
		if len(l) > 240 {
			ls[i] = l[:240] + "…"
		}
	}
	return ls
}
