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
// fdget_pos), and as a raw system call (MSG_DONTWAIT: it never blocks) it
// skips the Go scheduler's bookkeeping around it. It returns how much the
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
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(c.gc.Fd()), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return 0, false
	}
	return int(n), int(n) == len(buf)
}
