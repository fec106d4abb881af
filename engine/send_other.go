//go:build !linux

package engine

// sendDirect is Linux's alone (send_linux.go); elsewhere gnet writes.
func (c *Conn) sendDirect([]byte) (int, bool) { return 0, false }
