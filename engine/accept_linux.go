package engine

import (
	"net"
	"syscall"
	"unsafe"
)

// acceptRaw accepts one connection from a non-blocking listener, as a
// non-blocking, close-on-exec descriptor, without Go's poller.
func acceptRaw(lfd int) (int, error) {
	fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
	return fd, err
}

// acceptPeer is acceptRaw that also returns the peer's address: a
// *net.TCPAddr made with one allocation (its IP in the same block), or
// nil for a Unix socket's peer, which has no name.
func acceptPeer(lfd int) (int, net.Addr, error) {
	var rsa syscall.RawSockaddrAny
	n := uint32(syscall.SizeofSockaddrAny)
	r, _, e := syscall.Syscall6(syscall.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)),
		uintptr(unsafe.Pointer(&n)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	return int(r), peerAddr(&rsa), nil
}

func peerAddr(rsa *syscall.RawSockaddrAny) net.Addr {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := new(tcpPeer)
		copy(p.ip[:4], sa.Addr[:])
		p.addr.IP, p.addr.Port = p.ip[:4:4], portOf(&sa.Port)
		return &p.addr
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := new(tcpPeer)
		p.ip = sa.Addr
		p.addr.IP, p.addr.Port = p.ip[:], portOf(&sa.Port)
		if sa.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				p.addr.Zone = ifi.Name
			}
		}
		return &p.addr
	}
	return nil
}

// portOf reads a port in network byte order.
func portOf(p *uint16) int {
	b := (*[2]byte)(unsafe.Pointer(p))
	return int(b[0])<<8 | int(b[1])
}
