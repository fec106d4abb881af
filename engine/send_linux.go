package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// sendDirect writes buf straight to c's socket with send(2), when the
// socket is gnet's own (not TLS's record layer, not a hijacked
// connection's view with a prefix) and nothing waits in gnet's buffer,
// which nothing then overtakes. gnet's Write would do the same with
// write(2) after a few checks; send(2) skips the file layer (vfs_write,
// fdget_pos) and gnet's checks. It is an ordinary system call, not a raw
// one: the fan-out figures of benchmarks/RESULTS.md (issue 26) were
// measured with RawSyscall6, which also skips the Go scheduler's
// bookkeeping, but an echo run with it showed a p99.9 of 20 ms where the
// build before had 4 ms (one run; with Syscall6, 4.4 ms), so it waits
// until that is understood. It returns how much the
// socket took, and whether that was all of buf: the rest goes through
// gnet, which buffers it, or closes the connection on an error. On the
// loop.
func (c *Conn) sendDirect(buf []byte) (int, bool) {
	if c.lflags&lfBacklogged != 0 {
		return 0, false
	}
	switch c.gc.(type) {
	case *tlsConn, *prefixConn:
		return 0, false
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(c.gc.Fd()), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, false
	}
	return int(n), int(n) == len(buf)
}
