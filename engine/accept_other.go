//go:build unix && !linux

package engine

import (
	"net"
	"syscall"
)

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

// acceptPeer is acceptRaw that also returns the peer's address (nil for a
// Unix socket's peer).
func acceptPeer(lfd int) (int, net.Addr, error) {
	fd, err := acceptRaw(lfd)
	if err != nil {
		return -1, nil, err
	}
	sa, err := syscall.Getpeername(fd)
	if err != nil {
		return fd, nil, nil
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return fd, &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}, nil
	case *syscall.SockaddrInet6:
		return fd, &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}, nil
	}
	return fd, nil, nil
}
