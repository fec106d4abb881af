package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// uwsRoom is uWebSockets' pub/sub as a fan-out peer: a C++ server of our
// own (servers/uws-room/main.cpp) built from uWebSockets and uSockets
// checkouts that the environment names (UWS_DIR, USOCKETS_DIR), and
// skipped without them. It implements the fan-out protocol only.
const uwsRoom = "uws-room"

// uwsSkip is what the bench says when UWS_DIR is not set.
const uwsSkip = "bench: UWS_DIR not set: skipping uws-room (uWebSockets pub/sub); see RESULTS.md"

// uwsCFlags and uwsCXXFlags are the compilers' flags: uSockets' C sources
// as its Makefile builds them without TLS, the server as uWebSockets'
// build.c builds its examples without zlib (-O3, -march=native, LTO).
var (
	uwsCFlags   = []string{"-O3", "-march=native", "-flto", "-std=c11", "-DLIBUS_NO_SSL"}
	uwsCXXFlags = []string{"-O3", "-march=native", "-flto", "-std=c++2b", "-DLIBUS_NO_SSL", "-DUWS_NO_ZLIB"}
)

// uwsSourceDirs are uSockets' directories whose .c files its Makefile
// compiles (what LIBUS_NO_SSL and the absent LIBUS_USE_* leave out
// compiles to nothing).
var uwsSourceDirs = []string{"src", "src/eventing", "src/crypto", "src/io_uring"}

// UWSBuild is what a run records of the uws-room server it built: both
// checkouts (their commits) and the compilers.
type UWSBuild struct {
	UWebSockets runinfo.Tree `json:"uwebsockets"`
	USockets    runinfo.Tree `json:"usockets"`
	CC          string       `json:"cc"`  // the C compiler's first --version line
	CXX         string       `json:"cxx"` // the C++ compiler's
	CFlags      []string     `json:"cflags"`
	CXXFlags    []string     `json:"cxxflags"`
}

// String is the report's line about the build.
func (u *UWSBuild) String() string {
	return fmt.Sprintf("uws-room built from uWebSockets %s (%s) and uSockets %s (%s), %s, `%s`",
		treeCommit(u.UWebSockets), u.UWebSockets.Dir, treeCommit(u.USockets), u.USockets.Dir, u.CXX, strings.Join(u.CXXFlags, " "))
}

// treeCommit is a tree's full commit, "+ n uncommitted paths" after it.
func treeCommit(t runinfo.Tree) string {
	if t.Commit == "" {
		return "(not a git tree)"
	}
	s := "`" + t.Commit + "`"
	if t.Uncommitted > 0 {
		s += fmt.Sprintf(" + %d uncommitted paths", t.Uncommitted)
	}
	return s
}

// uwsPlan is how uws-room is built: two commands, the first in objDir.
type uwsPlan struct {
	uws, usockets string // the checkouts
	objDir        string
	bin           string
	compileC      []string // argv: uSockets' C sources into objDir
	link          []string // argv: main.cpp and the objects into bin
}

// planUWS decides how to build uws-room into dir from the checkouts that
// getenv names: nil and no error when UWS_DIR is not set (skip it), an
// error when a checkout named is not one. mod is the benchmarks module.
func planUWS(getenv func(string) string, mod, dir string) (*uwsPlan, error) {
	uws := getenv("UWS_DIR")
	if uws == "" {
		return nil, nil
	}
	us := getenv("USOCKETS_DIR")
	if us == "" {
		us = filepath.Join(uws, "uSockets")
	}
	var err error
	if uws, err = filepath.Abs(uws); err != nil {
		return nil, err
	}
	if us, err = filepath.Abs(us); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(uws, "src", "App.h")); err != nil {
		return nil, fmt.Errorf("UWS_DIR=%s: no src/App.h: not a uWebSockets checkout", uws)
	}
	if _, err := os.Stat(filepath.Join(us, "src", "libusockets.h")); err != nil {
		return nil, fmt.Errorf("USOCKETS_DIR=%s: no src/libusockets.h: not a uSockets checkout (uWebSockets' uSockets submodule is empty until `git submodule update --init`; or clone uSockets and set USOCKETS_DIR)", us)
	}
	var srcs []string
	objs := map[string]string{} // the compiler writes NAME.o for each NAME.c, in one directory
	for _, d := range uwsSourceDirs {
		m, err := filepath.Glob(filepath.Join(us, d, "*.c"))
		if err != nil {
			return nil, err
		}
		for _, s := range m {
			o := strings.TrimSuffix(filepath.Base(s), ".c") + ".o"
			if other, ok := objs[o]; ok {
				return nil, fmt.Errorf("USOCKETS_DIR=%s: %s and %s would both compile to %s", us, other, s, o)
			}
			objs[o] = s
		}
		srcs = append(srcs, m...)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("USOCKETS_DIR=%s: no C sources in %s", us, strings.Join(uwsSourceDirs, ", "))
	}
	p := &uwsPlan{uws: uws, usockets: us, objDir: filepath.Join(dir, "uws-room-obj"), bin: filepath.Join(dir, uwsRoom)}
	p.compileC = append(append([]string{compiler(getenv, "CC", "gcc")}, uwsCFlags...), "-I"+filepath.Join(us, "src"), "-c")
	p.compileC = append(p.compileC, srcs...)
	p.link = append([]string{compiler(getenv, "CXX", "g++")}, uwsCXXFlags...)
	p.link = append(p.link, "-I"+filepath.Join(uws, "src"), "-I"+filepath.Join(us, "src"), filepath.Join(mod, "servers", uwsRoom, "main.cpp"))
	for _, s := range srcs {
		p.link = append(p.link, filepath.Join(p.objDir, strings.TrimSuffix(filepath.Base(s), ".c")+".o"))
	}
	p.link = append(p.link, "-o", p.bin)
	return p, nil
}

// compiler is $name, or def when it is not set.
func compiler(getenv func(string) string, name, def string) string {
	if c := getenv(name); c != "" {
		return c
	}
	return def
}

// buildUWS builds uws-room into dir as planUWS plans it, and returns what
// the run records of it; nil and no error when UWS_DIR is not set.
func buildUWS(getenv func(string) string, mod, dir string) (*UWSBuild, error) {
	p, err := planUWS(getenv, mod, dir)
	if p == nil || err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: building uws-room from UWS_DIR=%s and USOCKETS_DIR=%s\n", p.uws, p.usockets)
	if err := os.MkdirAll(p.objDir, 0o755); err != nil {
		return nil, err
	}
	for _, argv := range [][]string{p.compileC, p.link} {
		c := exec.Command(argv[0], argv[1:]...)
		c.Dir = p.objDir
		if b, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building uws-room: %s: %v\n%s", strings.Join(argv, " "), err, b)
		}
	}
	bins[uwsRoom] = p.bin
	return &UWSBuild{
		UWebSockets: runinfo.GitTree(p.uws),
		USockets:    runinfo.GitTree(p.usockets),
		CC:          versionLine(p.compileC[0]),
		CXX:         versionLine(p.link[0]),
		CFlags:      uwsCFlags,
		CXXFlags:    uwsCXXFlags,
	}, nil
}

// versionLine is the first line of `cc --version`, or cc itself.
func versionLine(cc string) string {
	b, err := exec.Command(cc, "--version").Output()
	if err != nil {
		return cc
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

// splitServers divides -servers into the echo servers and the fan-out
// servers named there: a fan-out server (fanoutServers) takes part in the
// fanout scenario only, never in echo and the other echo scenarios.
func splitServers(servers []string) (echo, fan []string) {
	for _, s := range servers {
		if isFanoutServer(s) {
			fan = append(fan, s)
		} else {
			echo = append(echo, s)
		}
	}
	return echo, fan
}

func isFanoutServer(s string) bool { return slices.Contains(fanoutServers, s) }
