// Package runinfo describes where a benchmark ran and what it ran, for the
// JSON a run keeps beside its report: the machine (CPU, cores, kernel, Go)
// and the git tree each server was built from, so that a report rendered
// again later from the JSON says what the run was, not what this machine
// is.
package runinfo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Machine is the host a run measured on: a plain value, safe to read
// from any goroutine.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

// This describes the machine it runs on, from /proc. Safe for concurrent
// use.
func This() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), Kernel: "unknown", Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(b)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = string(bytes.TrimSpace(b))
	}
	return m
}

// cpuModel returns the first "model name" of a /proc/cpuinfo text.
func cpuModel(cpuinfo []byte) string {
	for l := range strings.SplitSeq(string(cpuinfo), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// String is "Intel(R) Xeon(R) ..., 2 cores, Linux 6.18.5, go1.26.8".
// Safe for concurrent use.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, Linux %s, %s", m.CPU, m.Cores, m.Kernel, m.Go)
}

// Tree is a git working tree a binary was built from: a plain value,
// safe to read from any goroutine.
type Tree struct {
	Dir         string `json:"dir"`
	Commit      string `json:"commit"`      // HEAD's full hash; empty when Dir is not a git tree
	Uncommitted int    `json:"uncommitted"` // paths git status --porcelain lists, untracked ones included
}

// GitTree describes the tree at dir (made absolute). Safe for concurrent
// use.
func GitTree(dir string) Tree {
	t := Tree{Dir: dir}
	if abs, err := filepath.Abs(dir); err == nil {
		t.Dir = abs
	}
	head, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return t
	}
	t.Commit = string(bytes.TrimSpace(head))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain").Output(); err == nil {
		if st = bytes.TrimSpace(st); len(st) > 0 {
			t.Uncommitted = bytes.Count(st, []byte("\n")) + 1
		}
	}
	return t
}

// String is "069d9f7", "069d9f7 + 20 uncommitted paths", or "not a git
// tree". Safe for concurrent use.
func (t Tree) String() string {
	if t.Commit == "" {
		return "not a git tree"
	}
	s := t.Commit[:min(7, len(t.Commit))]
	if t.Uncommitted > 0 {
		s += fmt.Sprintf(" + %d uncommitted paths", t.Uncommitted)
	}
	return s
}

// QuoteArgs renders a command's arguments as a shell would take them
// back, each after a space: plain words as they are, anything else in
// single quotes.
func QuoteArgs(args []string) string {
	var b strings.Builder
	for _, a := range args {
		b.WriteByte(' ')
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./,:", r))
		}) < 0 {
			b.WriteString(a)
		} else {
			b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		}
	}
	return b.String()
}

// WriteJSON saves v to path as indented JSON, with &, < and > as they
// are (a command's && stays readable).
func WriteJSON(path string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
