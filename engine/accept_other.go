//go:build unix && !linux

package engine

import "syscall"

// acceptRaw accepts one connection from a non-blocking listener, as a
// non-blocking, close-on-exec descriptor, without Go's poller. (Not every
// Unix has accept4.)
func acceptRaw(lfd int) (int, error) {
	syscall.ForkLock.RLock()
	fd, _, err := syscall.Accept(lfd)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}
