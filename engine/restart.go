package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Restarts that keep the listener.
//
// Restart starts a new process of the program (by default the same
// executable with the same arguments), hands it the listening socket over
// a Unix socket pair (SCM_RIGHTS), waits until it says it serves, and then
// drains this one (Drain: the connections close a few at a time, with
// 1012, and their clients reconnect to the new process). The listening
// socket is one socket in the kernel, shared by both processes while the
// hand-off runs: connections that arrive meanwhile wait in its queue for
// whichever process accepts first, and none is refused or left
// unanswered.
//
// Why SCM_RIGHTS and not the alternatives: inheritance across exec alone
// would do for the listener, but the same Unix socket then carries the
// connections themselves when they are handed over instead of drained; and
// SO_REUSEPORT would open a second listening socket, with queues of its
// own: connections the kernel had already put in the old socket's queue
// when it closes are reset, which is exactly the refused dial this avoids.
//
// The new process finds the socket pair in its environment (WSLOOP_INHERIT_FD,
// a descriptor number, removed from the environment once read): its first
// ListenAndServe takes the inherited listener instead of listening on addr
// (the address it was given is not checked: the listener is the old
// process's), runs, and reports back once its loops run and it accepts.
//
// If the new process fails (it cannot be started, exits, or does not
// report within RestartReadyTimeout), Restart returns an error and this
// process goes on serving as if nothing had happened: it never stopped
// accepting. Once the new process has reported, this one stops accepting
// and drains; if the new process dies after that, nothing accepts on the
// port until something starts the program again (a supervisor, as for
// any crash).

// inheritEnv names the environment variable that gives a new process the
// descriptor of its side of the socket pair.
const inheritEnv = "WSLOOP_INHERIT_FD"

// The messages of the hand-off protocol, one per SOCK_SEQPACKET record.
const (
	msgListener = "wsloop/1 listener" // old -> new, with the listener's descriptor: " <network> <address>"
	msgReady    = "wsloop/1 ready"    // new -> old: " <pid>"; the new process accepts
	msgFailed   = "wsloop/1 failed"   // new -> old: " <reason>"
)

// RestartOption configures Restart.
type RestartOption func(*restartConfig)

type restartConfig struct {
	path           string
	args           []string
	env            []string
	readyTimeout   time.Duration
	window         time.Duration
	drainOpts      []DrainOption
	keep           bool
	handOffTimeout time.Duration
	started        func(pid int)
	stdout         *os.File
	stderr         *os.File
}

// RestartCommand sets the program Restart starts and its arguments.
// Default: the running executable (os.Executable) with the arguments this
// process got (os.Args[1:]).
func RestartCommand(path string, args ...string) RestartOption {
	return func(c *restartConfig) { c.path, c.args = path, args }
}

// RestartEnv adds variables ("KEY=value") to the new process's
// environment, which is otherwise this process's.
func RestartEnv(env ...string) RestartOption {
	return func(c *restartConfig) { c.env = append(c.env, env...) }
}

// RestartReadyTimeout sets how long Restart waits for the new process to
// serve before it gives up, stops it and keeps serving. Default: 30 s.
func RestartReadyTimeout(d time.Duration) RestartOption {
	return func(c *restartConfig) { c.readyTimeout = d }
}

// RestartDrain sets the window (and the options) of the drain that follows
// the hand-off. Default: a window of 10 s, DrainRate unset.
func RestartDrain(window time.Duration, opts ...DrainOption) RestartOption {
	return func(c *restartConfig) { c.window, c.drainOpts = window, opts }
}

// RestartStarted sets a function called with the new process's pid once
// it serves, before the drain begins (to log it, or to tell a supervisor).
func RestartStarted(fn func(pid int)) RestartOption {
	return func(c *restartConfig) { c.started = fn }
}

// RestartOutput sets where the new process's standard output and error go.
// Default: this process's own (os.Stdout, os.Stderr). They are files, not
// any io.Writer: the new process outlives this one, and a writer that is
// not a file would be fed through a pipe this process reads, whose end
// would kill the new process (SIGPIPE) at its first write after this one
// exits.
func RestartOutput(stdout, stderr *os.File) RestartOption {
	return func(c *restartConfig) { c.stdout, c.stderr = stdout, stderr }
}

// ErrRestartFailed wraps every error of a Restart after which the server
// keeps serving.
var ErrRestartFailed = errors.New("wsloop: restart failed; this process keeps serving")

// Restart replaces the running process with a new one without refusing a
// connection: it starts the new process, hands it the listening socket,
// waits until it serves, then stops accepting and drains this server
// (RestartDrain; Drain's rules) so that its clients reconnect to the new
// process. It returns once this server has stopped (ListenAndServe has
// returned ErrServerClosed): nil, or the drain's error. It returns an
// error wrapping ErrRestartFailed, and the server keeps serving, when the
// new process could not take over. Typical use, on a signal:
//
//	signal.Notify(hup, syscall.SIGHUP)
//	go func() {
//		for range hup {
//			if err := srv.Restart(context.Background()); err != nil {
//				log.Print(err) // still serving
//			}
//		}
//	}()
//
// The new process needs nothing special: its ListenAndServe takes the
// listener over (see the package documentation, Restarts). Only a server
// with a listener of its own can restart this way (not one run with Run
// for net/http); a process should run one such server. Called from a
// callback on an event loop, Restart runs on a goroutine of its own and
// returns nil at once.
func (s *Server) Restart(ctx context.Context, opts ...RestartOption) error {
	cfg := restartConfig{readyTimeout: 30 * time.Second, window: 10 * time.Second,
		handOffTimeout: 2 * time.Second, stdout: os.Stdout, stderr: os.Stderr}
	for _, o := range opts {
		o(&cfg)
	}
	if s.onLoop() {
		go func() {
			bg, cancel := detach(ctx, 0)
			defer cancel()
			_ = s.Restart(bg, opts...)
		}()
		return nil
	}
	select {
	case <-s.ready:
	case <-s.done:
		return fmt.Errorf("%w: the server has stopped", ErrRestartFailed)
	}
	if s.acc == nil {
		return fmt.Errorf("%w: the server has no listener of its own", ErrRestartFailed)
	}
	if _, ok := s.h.(HandOffHandler); cfg.keep && !ok {
		return fmt.Errorf("%w: RestartKeep needs a Handler that implements HandOffHandler", ErrRestartFailed)
	}
	if s.refusing() || s.accStopped.Load() {
		return fmt.Errorf("%w: the server is stopping", ErrRestartFailed)
	}
	if !s.restarting.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: a restart is under way", ErrRestartFailed)
	}
	pid, err := s.startSuccessor(ctx, &cfg)
	if err != nil {
		s.restarting.Store(false)
		if l := s.opts.logger; l != nil {
			l.Error("wsloop: restart failed; this process keeps serving", "err", err)
		}
		return fmt.Errorf("%w: %w", ErrRestartFailed, err)
	}
	if l := s.opts.logger; l != nil {
		l.Info("wsloop: the new process serves; this one stops accepting and drains", "pid", pid, "window", cfg.window)
	}
	if cfg.started != nil {
		cfg.started(pid)
	}
	if cfg.keep {
		return s.keepConnections(ctx, &cfg)
	}
	s.acc.handedOver.Store(true) // neither shut down nor unlinked: the new process's now
	s.stopAccepting()
	// Wait for the accept goroutine to end (within one poll(2) wait):
	// a socket it takes until then is served, and drained; one it took
	// once the drain had begun would be refused with 503.
	<-s.acc.exited
	return s.Drain(ctx, cfg.window, cfg.drainOpts...)
}

// startSuccessor starts the new process, hands it the listener and waits
// until it reports that it serves; it returns the new process's pid.
func (s *Server) startSuccessor(ctx context.Context, cfg *restartConfig) (int, error) {
	path, args := cfg.path, cfg.args
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return 0, fmt.Errorf("finding the executable: %w", err)
		}
		path, args = exe, os.Args[1:]
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("a socket pair for the hand-off: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "wsloop-handoff")
	theirs := os.NewFile(uintptr(fds[1]), "wsloop-handoff")
	defer theirs.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = append(append(os.Environ(), cfg.env...), inheritEnv+"=3") // ExtraFiles[0] is descriptor 3
	cmd.ExtraFiles = []*os.File{theirs}
	if cfg.stdout != nil {
		cmd.Stdout = cfg.stdout
	}
	if cfg.stderr != nil {
		cmd.Stderr = cfg.stderr
	}
	if err := cmd.Start(); err != nil {
		ours.Close()
		return 0, fmt.Errorf("starting %s: %w", path, err)
	}
	theirs.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// From the moment the listener is sent, the new process may hold the
	// listening socket: this one must neither shut it down (shutdown(2)
	// acts on the socket, and would stop the new process's accept) nor
	// unlink its path, whatever ends this one, until that process is gone.
	gone := func() { s.acc.handedOver.Store(false) }
	fail := func(err error) (int, error) {
		ours.Close()
		_ = cmd.Process.Kill()
		select {
		case <-exited:
			gone()
		case <-time.After(2 * time.Second):
		}
		return 0, err
	}
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return fail(fmt.Errorf("the hand-off socket: %w", err))
	}
	uc := conn.(*net.UnixConn)
	la := s.acc.laddr
	hello := fmt.Sprintf("%s %s %s", msgListener, la.Network(), la.String())
	s.acc.handedOver.Store(true)
	if _, _, err := uc.WriteMsgUnix([]byte(hello), unix.UnixRights(s.acc.lfd), nil); err != nil {
		uc.Close()
		return fail(fmt.Errorf("handing over the listener: %w", err))
	}
	deadline := time.Now().Add(cfg.readyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = uc.SetReadDeadline(deadline)
	answer := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 512)
		n, _, _, _, err := uc.ReadMsgUnix(buf, nil)
		if err != nil {
			n = 0
		}
		answer <- buf[:n]
	}()
	var reply []byte
	select {
	case reply = <-answer:
	case err := <-exited:
		uc.Close()
		gone()
		return 0, fmt.Errorf("the new process exited before it served: %v", err)
	case <-ctx.Done():
		uc.Close()
		return fail(ctx.Err())
	}
	switch {
	case bytes.HasPrefix(reply, []byte(msgReady+" ")):
		pid, _ := strconv.Atoi(string(reply[len(msgReady)+1:]))
		_ = uc.SetReadDeadline(time.Time{}) // the hand-off reads acknowledgements for as long as it takes
		s.handoff.Store(uc)                 // kept open until this process ends (the new one reads it to EOF)
		return pid, nil
	case bytes.HasPrefix(reply, []byte(msgFailed)):
		uc.Close()
		return fail(fmt.Errorf("the new process could not serve: %s", strings.TrimSpace(string(reply[len(msgFailed):]))))
	case len(reply) == 0:
		uc.Close()
		select {
		case err := <-exited:
			gone()
			return 0, fmt.Errorf("the new process exited before it served: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		return fail(errors.New("the new process did not report that it serves in time"))
	}
	uc.Close()
	return fail(fmt.Errorf("the new process answered %q", reply))
}

// inheritance is what a new process got from the one it replaces.
type inheritance struct {
	conn *net.UnixConn // the hand-off socket
	ln   net.Listener
}

var inheritTaken atomic.Bool

// inheritWait is how long a new process waits for the old one to send the
// listener.
const inheritWait = 10 * time.Second

// takeInheritance returns the listener handed over by the process this one
// replaces, to the first caller in the process, or nil when there is none.
func takeInheritance() (*inheritance, error) {
	v, ok := os.LookupEnv(inheritEnv)
	if !ok || !inheritTaken.CompareAndSwap(false, true) {
		return nil, nil
	}
	_ = os.Unsetenv(inheritEnv)
	return receiveListener(v)
}

// receiveListener reads the listener from the hand-off socket named by v.
func receiveListener(v string) (*inheritance, error) {
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("wsloop: %s=%q: not a descriptor", inheritEnv, v)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "wsloop-handoff")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("wsloop: the hand-off socket (%s=%s): %w", inheritEnv, v, err)
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("wsloop: the hand-off socket (%s=%s) is a %T", inheritEnv, v, conn)
	}
	_ = uc.SetReadDeadline(time.Now().Add(inheritWait))
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	_ = uc.SetReadDeadline(time.Time{})
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("wsloop: receiving the listener: %w", err)
	}
	lfd := -1
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) == 1 {
		if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
			lfd = fds[0]
		}
	}
	if !bytes.HasPrefix(buf[:n], []byte(msgListener+" ")) || lfd < 0 {
		if lfd >= 0 {
			_ = unix.Close(lfd)
		}
		uc.Close()
		return nil, fmt.Errorf("wsloop: the hand-off socket sent %q, not a listener", buf[:n])
	}
	unix.CloseOnExec(lfd)
	lf := os.NewFile(uintptr(lfd), "wsloop-listener")
	ln, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("wsloop: the inherited listener: %w", err)
	}
	return &inheritance{conn: uc, ln: ln}, nil
}

// served tells the old process that this one accepts, and then adopts the
// connections it hands over (handoff.go) until it closes its side.
func (in *inheritance) served(s *Server) {
	msg := fmt.Sprintf("%s %d", msgReady, os.Getpid())
	_, err := in.conn.Write([]byte(msg))
	if err == nil && !testHookOlder {
		_, err = in.conn.Write([]byte(msgTakes))
	}
	if err != nil {
		in.conn.Close()
		s.adoptionsDone()
		return
	}
	go s.receiveConnections(in)
}

// testHookOlder, when set (tests), makes this process answer as one built
// before msgTakes existed.
var testHookOlder bool

// failed tells the old process that this one cannot serve.
func (in *inheritance) failed(err error) {
	_, _ = in.conn.Write([]byte(msgFailed + " " + err.Error()))
	in.conn.Close()
}
