package engine

import "syscall"

// acceptRaw accepts one connection from a non-blocking listener, as a
// non-blocking, close-on-exec descriptor, without Go's poller.
func acceptRaw(lfd int) (int, error) {
	fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
	return fd, err
}
