// Package proc reads what the benchmark reports about a process: CPU time
// (utime+stime) and resident memory and threads from /proc, and the calling
// process's own CPU time from getrusage.
package proc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ClockTicks is USER_HZ, the unit of the times in /proc/PID/stat: the
// AT_CLKTCK entry of this process's auxiliary vector (what sysconf
// (_SC_CLK_TCK) returns), or 100 when that cannot be read.
var ClockTicks = sync.OnceValue(func() int64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	const atClkTck = 17
	for ; len(b) >= 16; b = b[16:] { // pairs of native-endian uint64 on 64-bit Linux
		k, v := binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
		if k == atClkTck && v > 0 {
			return int64(v)
		}
		if k == 0 {
			break
		}
	}
	return 100
})

// CPU returns pid's user+system CPU time so far (all its threads).
func CPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces and parentheses itself.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc: odd /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc: short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 overall: utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15: stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("proc: bad times in /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * time.Second / time.Duration(ClockTicks()), nil
}

// Status returns pid's resident set size in bytes and its thread count.
func Status(pid int) (rss int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	var haveRSS bool
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("proc: bad VmRSS %q", v)
			}
			rss, haveRSS = kb<<10, true
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	if !haveRSS {
		return 0, threads, fmt.Errorf("proc: no VmRSS in /proc/%d/status", pid)
	}
	return rss, threads, nil
}

// FDs returns the number of pid's open descriptors: the entries of
// /proc/PID/fd.
func FDs(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// FreePort asks the kernel for a loopback port free now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// RSS returns pid's resident set size in bytes.
func RSS(pid int) (int64, error) {
	rss, _, err := Status(pid)
	return rss, err
}

// PSS returns pid's proportional set size in bytes (smaps_rollup): its
// resident pages, each shared page divided among the processes sharing it.
// Dozens of processes of one binary share its text; their RSS counts it
// once each, their PSS once in all.
func PSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("proc: no Pss in /proc/%d/smaps_rollup", pid)
}

// Threads returns pid's thread count.
func Threads(pid int) (int, error) {
	_, n, err := Status(pid)
	return n, err
}

// SelfCPU returns the calling process's user+system CPU time (getrusage).
func SelfCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
