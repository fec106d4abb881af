package wsload

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's non-blocking system calls bypass the Go scheduler's syscall
// bookkeeping (RawSyscall instead of Syscall). None of them can block:
// the sockets are non-blocking and pollNow's timeout is 0. Through
// Syscall, each was a chance for the runtime's monitor thread to take the
// loop's P away when a loopback write ran long (it delivers the segment
// to the receiver inline), handing it to another thread: two context
// switches on the load generator's one core. Only the epoll_wait that
// may sleep goes through Syscall.

func rawRead(fd int, p []byte) (int, error)  { return rawIO(unix.SYS_READ, fd, p) }
func rawWrite(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// rawIO is read(2) or write(2) (trap) on fd with p.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// pollNow is epoll_wait with a timeout of 0: whatever is ready, without
// sleeping.
func pollNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		if e == unix.EINTR {
			return 0, nil
		}
		return 0, e
	}
	return int(n), nil
}
