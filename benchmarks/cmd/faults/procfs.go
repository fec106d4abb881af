package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// vmRSS returns pid's resident set size in bytes, from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// vmRSSHWM returns pid's resident set size and its high-water mark (the
// largest it has been), in bytes, from /proc/PID/status.
func vmRSSHWM(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	if rss, err = parseVmRSS(b); err != nil {
		return 0, 0, err
	}
	hwm, err = parseStatusKB(b, "VmHWM")
	return rss, hwm, err
}

// parseVmRSS finds the "VmRSS:   1234 kB" line of a /proc/PID/status text
// and returns its value in bytes.
func parseVmRSS(status []byte) (int64, error) { return parseStatusKB(status, "VmRSS") }

// parseStatusKB finds the "key:   1234 kB" line of a /proc/PID/status
// text and returns its value in bytes.
func parseStatusKB(status []byte, key string) (int64, error) {
	for line := range bytes.SplitSeq(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte(key+":"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("odd %s line %q", key, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("odd %s line %q", key, line)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s line (a zombie or kernel thread?)", key)
}

// tcpKey names an IPv4 TCP socket by its two ends.
type tcpKey struct{ local, remote netip.AddrPort }

// tcpQueues is what /proc/net/tcp says of a socket's queues: bytes
// written and not yet acknowledged by the peer (tx), and bytes received
// and not yet read by the process (rx).
type tcpQueues struct{ tx, rx int64 }

// readTCPQueues returns the queues of every IPv4 TCP socket of this
// network namespace, all processes' (/proc/net/tcp).
func readTCPQueues() (map[tcpKey]tcpQueues, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	return parseTCPQueues(b)
}

// parseTCPQueues parses a /proc/net/tcp text:
//
//	sl  local_address rem_address   st tx_queue rx_queue ...
//	 0: 0100007F:1F90 0100007F:C350 01 00000000:00010000 ...
//
// An address is the IPv4 address as the kernel holds it (network order)
// printed as a native-endian 32-bit number, then the port; the queues
// are hexadecimal byte counts.
func parseTCPQueues(b []byte) (map[tcpKey]tcpQueues, error) {
	m := map[tcpKey]tcpQueues{}
	for i, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if i == 0 || len(f) < 5 {
			continue // the header, or the last empty line
		}
		local, err1 := parseProcAddr(string(f[1]))
		remote, err2 := parseProcAddr(string(f[2]))
		tx, rx, ok := bytes.Cut(f[4], []byte(":"))
		txq, err3 := strconv.ParseInt(string(tx), 16, 64)
		rxq, err4 := strconv.ParseInt(string(rx), 16, 64)
		if err1 != nil || err2 != nil || !ok || err3 != nil || err4 != nil {
			return nil, fmt.Errorf("odd /proc/net/tcp line %q", line)
		}
		m[tcpKey{local, remote}] = tcpQueues{txq, rxq}
	}
	return m, nil
}

// parseProcAddr parses "0100007F:1F90" (127.0.0.1:8080 on a
// little-endian machine).
func parseProcAddr(s string) (netip.AddrPort, error) {
	ip, port, ok := bytes.Cut([]byte(s), []byte(":"))
	if !ok || len(ip) != 8 {
		return netip.AddrPort{}, fmt.Errorf("odd address %q", s)
	}
	v, err1 := strconv.ParseUint(string(ip), 16, 32)
	p, err2 := strconv.ParseUint(string(port), 16, 16)
	if err1 != nil || err2 != nil {
		return netip.AddrPort{}, fmt.Errorf("odd address %q", s)
	}
	var a [4]byte
	binary.NativeEndian.PutUint32(a[:], uint32(v))
	return netip.AddrPortFrom(netip.AddrFrom4(a), uint16(p)), nil
}
