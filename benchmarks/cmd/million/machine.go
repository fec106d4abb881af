package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Estimates behind the refusal to start (issue 25's measurements): one
// idle loopback connection costs about 9 KB of kernel memory (both
// sockets), 2 KB in its node and about 1 KB in its client; a process
// about 40 MB before its connections.
const (
	kernelPerConn = 9 << 10
	nodePerConn   = 2 << 10
	clientPerConn = 1 << 10
	perProcess    = 40 << 20
)

// kmem is the kernel's memory as /proc tells it.
type kmem struct {
	SlabKB       int64 `json:"slab_kb"`
	SUnreclaimKB int64 `json:"sunreclaim_kb"`
	TCPInuse     int64 `json:"tcp_inuse"`     // /proc/net/sockstat
	TCPMemPages  int64 `json:"tcp_mem_pages"` // socket buffers, pages
}

// readKmem reads /proc/meminfo and /proc/net/sockstat.
func readKmem() (kmem, error) {
	var k kmem
	mi, err := meminfo()
	if err != nil {
		return k, err
	}
	k.SlabKB, k.SUnreclaimKB = mi["Slab"], mi["SUnreclaim"]
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return k, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				k.TCPInuse = v
			case "mem":
				k.TCPMemPages = v
			}
		}
	}
	return k, nil
}

// meminfo returns /proc/meminfo's figures in kB.
func meminfo() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			m[k], _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	return m, nil
}

// readInts reads the whitespace-separated integers of a /proc file.
func readInts(path string) ([]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, f := range strings.Fields(string(b)) {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q", path, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// preflight refuses a run this machine cannot hold, saying what is
// missing: memory (MemAvailable against the estimates above), descriptors
// (the system's file-max less those allocated; each process's limit
// against its share) and local ports (each source address's share
// against ip_local_port_range).
func preflight(p plan) error {
	var missing []string
	mi, err := meminfo()
	if err != nil {
		return err
	}
	need := int64(p.Conns)*(kernelPerConn+nodePerConn+clientPerConn) + int64(p.Nodes+p.Clients+1)*perProcess
	if avail := mi["MemAvailable"] << 10; avail < need {
		missing = append(missing, fmt.Sprintf("memory: %d connections need about %.1f GiB (%d B kernel + %d B node + %d B client each, %d MiB a process), MemAvailable is %.1f GiB",
			p.Conns, gib(need), kernelPerConn, nodePerConn, clientPerConn, perProcess>>20, gib(avail)))
	}
	nr, err := readInts("/proc/sys/fs/file-nr") // allocated, unused, max
	if err != nil {
		return err
	}
	if len(nr) == 3 {
		if free, want := nr[2]-nr[0], int64(2*p.Conns+10000); free < want {
			missing = append(missing, fmt.Sprintf("descriptors: %d connections need %d (both ends, and 10,000 spare), the system has %d free (fs.file-max %d, %d allocated)",
				p.Conns, want, free, nr[2], nr[0]))
		}
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if perNode := ceilDiv(p.Conns+1, p.Nodes); uint64(perNode)+perNodeSlack > rl.Cur {
		missing = append(missing, fmt.Sprintf("descriptors: %d a node (%d connections over %d nodes, and %d spare for SO_REUSEPORT's uneven spread) exceed the limit of %d a process: more -nodes",
			perNode+perNodeSlack, p.Conns, p.Nodes, perNodeSlack, rl.Cur))
	}
	if p.Faults && p.Nodes > 1 {
		if perNode := ceilDiv(p.Conns+1, p.Nodes-1); uint64(perNode)+perNodeSlack > rl.Cur {
			missing = append(missing, fmt.Sprintf("descriptors: once -faults kills a node, %d a node (%d connections over %d nodes, and %d spare) exceed the limit of %d a process: more -nodes",
				perNode+perNodeSlack, p.Conns, p.Nodes-1, perNodeSlack, rl.Cur))
		}
	}
	if perClient := ceilDiv(p.Conns, p.Clients); uint64(perClient)+100 > rl.Cur {
		missing = append(missing, fmt.Sprintf("descriptors: %d connections a client process exceed the limit of %d a process: more -clients", perClient, rl.Cur))
	}
	if pr, err := readInts("/proc/sys/net/ipv4/ip_local_port_range"); err == nil && len(pr) == 2 {
		if perSrc, ports := ceilDiv(ceilDiv(p.Conns, p.Clients), p.Srcs), int(pr[1]-pr[0]+1); perSrc > ports*3/4 {
			missing = append(missing, fmt.Sprintf("ports: %d connections a source address, %d local ports (ip_local_port_range): more -srcs", perSrc, ports))
		}
	}
	if len(missing) > 0 {
		return errors.New("this machine cannot hold the run:\n  " + strings.Join(missing, "\n  "))
	}
	return nil
}

// perNodeSlack is the descriptors a node keeps spare: SO_REUSEPORT hashes
// connections over the nodes, so that they arrive unevenly (a few
// standard deviations of a binomial share), plus the node's own files.
const perNodeSlack = 1000

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func gib(b int64) float64 { return float64(b) / (1 << 30) }
