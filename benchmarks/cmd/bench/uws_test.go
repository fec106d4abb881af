package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// env is a getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// fakeCheckouts lays out the files planUWS looks for: a uWebSockets tree
// at root/uws with its uSockets submodule checked out, and the uSockets
// sources given.
func fakeCheckouts(t *testing.T, root string, usockets ...string) string {
	t.Helper()
	uws := filepath.Join(root, "uws")
	files := append([]string{"src/App.h", "uSockets/src/libusockets.h"}, usockets...)
	for _, f := range files {
		p := filepath.Join(uws, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return uws
}

func TestUWSSkipWithoutUWSDir(t *testing.T) {
	p, err := planUWS(env(map[string]string{"USOCKETS_DIR": "/somewhere"}), "/mod", t.TempDir())
	if p != nil || err != nil {
		t.Fatalf("without UWS_DIR: plan %+v, err %v; want neither", p, err)
	}
	b, err := buildUWS(env(nil), "/mod", t.TempDir())
	if b != nil || err != nil {
		t.Fatalf("without UWS_DIR: build %+v, err %v; want neither", b, err)
	}
	if want := "bench: UWS_DIR not set: skipping uws-room (uWebSockets pub/sub); see RESULTS.md"; uwsSkip != want {
		t.Errorf("skip message %q, want %q", uwsSkip, want)
	}
}

func TestUWSPlan(t *testing.T) {
	root := t.TempDir()
	uws := fakeCheckouts(t, root, "uSockets/src/bsd.c", "uSockets/src/loop.c", "uSockets/src/eventing/epoll_kqueue.c",
		"uSockets/src/crypto/openssl.c", "uSockets/src/crypto/sni_tree.cpp", "uSockets/src/io_uring/io_loop.c", "uSockets/examples/echo_server.c")
	us := filepath.Join(uws, "uSockets")
	bin := filepath.Join(root, "bin")
	p, err := planUWS(env(map[string]string{"UWS_DIR": uws}), "/mod", bin)
	if err != nil {
		t.Fatal(err)
	}
	if p.usockets != us {
		t.Errorf("USOCKETS_DIR defaults to %s, want %s", p.usockets, us)
	}
	srcs := []string{us + "/src/bsd.c", us + "/src/loop.c", us + "/src/eventing/epoll_kqueue.c", us + "/src/crypto/openssl.c", us + "/src/io_uring/io_loop.c"}
	wantC := append([]string{"gcc", "-O3", "-march=native", "-flto", "-std=c11", "-DLIBUS_NO_SSL", "-I" + us + "/src", "-c"}, srcs...)
	if !slices.Equal(p.compileC, wantC) {
		t.Errorf("C compile:\n%q\nwant\n%q", p.compileC, wantC)
	}
	obj := bin + "/uws-room-obj"
	wantLink := []string{"g++", "-O3", "-march=native", "-flto", "-std=c++2b", "-DLIBUS_NO_SSL", "-DUWS_NO_ZLIB", "-I" + uws + "/src", "-I" + us + "/src",
		"/mod/servers/uws-room/main.cpp", obj + "/bsd.o", obj + "/loop.o", obj + "/epoll_kqueue.o", obj + "/openssl.o", obj + "/io_loop.o", "-o", bin + "/uws-room"}
	if !slices.Equal(p.link, wantLink) {
		t.Errorf("link:\n%q\nwant\n%q", p.link, wantLink)
	}
	if p.objDir != obj || p.bin != bin+"/uws-room" {
		t.Errorf("objDir %s, bin %s", p.objDir, p.bin)
	}

	// USOCKETS_DIR, CC and CXX as given.
	other := filepath.Join(root, "us2")
	for _, f := range []string{"src/libusockets.h", "src/context.c"} {
		os.MkdirAll(filepath.Dir(filepath.Join(other, f)), 0o755)
		os.WriteFile(filepath.Join(other, f), nil, 0o644)
	}
	p, err = planUWS(env(map[string]string{"UWS_DIR": uws, "USOCKETS_DIR": other, "CC": "clang", "CXX": "clang++"}), "/mod", bin)
	if err != nil {
		t.Fatal(err)
	}
	if p.usockets != other || p.compileC[0] != "clang" || p.link[0] != "clang++" || p.compileC[len(p.compileC)-1] != other+"/src/context.c" ||
		!slices.Contains(p.link, "-I"+other+"/src") || !slices.Contains(p.link, obj+"/context.o") {
		t.Errorf("with USOCKETS_DIR, CC and CXX: %q, %q", p.compileC, p.link)
	}
}

func TestUWSPlanErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := planUWS(env(map[string]string{"UWS_DIR": root}), "/mod", root); err == nil || !strings.Contains(err.Error(), "not a uWebSockets checkout") {
		t.Errorf("a directory without src/App.h: %v", err)
	}
	// uWebSockets cloned without its submodule: an empty uSockets.
	uws := filepath.Join(root, "uWebSockets")
	os.MkdirAll(filepath.Join(uws, "src"), 0o755)
	os.MkdirAll(filepath.Join(uws, "uSockets"), 0o755)
	os.WriteFile(filepath.Join(uws, "src", "App.h"), nil, 0o644)
	if _, err := planUWS(env(map[string]string{"UWS_DIR": uws}), "/mod", root); err == nil || !strings.Contains(err.Error(), "submodule") || !strings.Contains(err.Error(), "USOCKETS_DIR") {
		t.Errorf("an empty submodule: %v", err)
	}
	// Two sources whose objects would collide.
	uws = fakeCheckouts(t, t.TempDir(), "uSockets/src/loop.c", "uSockets/src/eventing/loop.c")
	if _, err := planUWS(env(map[string]string{"UWS_DIR": uws}), "/mod", root); err == nil || !strings.Contains(err.Error(), "loop.o") {
		t.Errorf("colliding objects: %v", err)
	}
}

// TestUWSFanoutOnly checks that uws-room runs the fanout scenario and no
// other, whether -servers names it or not.
func TestUWSFanoutOnly(t *testing.T) {
	echo, fan := splitServers([]string{"wsloop", "uws-room", "gorilla", "wsloop-room"})
	if !slices.Equal(echo, []string{"wsloop", "gorilla"}) || !slices.Equal(fan, []string{"uws-room", "wsloop-room"}) {
		t.Fatalf("split into %v and %v", echo, fan)
	}
	if !slices.Contains(fanoutServers, uwsRoom) {
		t.Fatalf("fanoutServers %v lacks %s", fanoutServers, uwsRoom)
	}
	for _, j := range jobs(echo, fan, allScenarios, false, time.Second, 1) {
		if j.server == uwsRoom && j.scenario != "fanout" {
			t.Errorf("uws-room in %s", j.scenario)
		}
	}
	n := 0
	for _, j := range jobs(echoServers, fanoutServers, allScenarios, true, time.Second, 1) {
		if j.server == uwsRoom {
			if j.scenario != "fanout" {
				t.Errorf("uws-room in %s", j.scenario)
			}
			n++
		}
	}
	if n != 2 { // quick: 64 B, inflight 1 and 16
		t.Errorf("quick fanout jobs of uws-room: %d, want 2", n)
	}
}

// TestUWSRoom builds uws-room from the checkouts UWS_DIR (and
// USOCKETS_DIR) name, as the bench does, and checks its READY line, that
// one message published reaches both of two clients, sender included,
// with its opcode, its MALLOCS answer and its exit on SIGTERM. Skipped
// without UWS_DIR.
func TestUWSRoom(t *testing.T) {
	if os.Getenv("UWS_DIR") == "" {
		t.Skip("UWS_DIR not set (a uWebSockets checkout; USOCKETS_DIR for uSockets, default $UWS_DIR/uSockets)")
	}
	mod, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	info, err := buildUWS(os.Getenv, mod, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", info)
	if info.UWebSockets.Dir == "" || info.USockets.Dir == "" {
		t.Errorf("build info without the checkouts: %+v", info)
	}

	srv := exec.Command(filepath.Join(dir, uwsRoom), "-addr", "127.0.0.1:0", "-loops", "1")
	srv.Stderr = os.Stderr
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	defer func() {
		if srv.ProcessState == nil {
			srv.Process.Kill()
		}
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(prefix string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, prefix) {
				t.Fatalf("got %q (open %v), want a line %q...", l, ok, prefix)
			}
			return strings.TrimPrefix(l, prefix)
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q line within 10s", prefix)
		}
		return ""
	}
	addr := expect("READY ")
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("READY %s", addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, _, _, err := ws.Dial(ctx, "ws://"+addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _, _, err := ws.Dial(ctx, "ws://"+addr+"/")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	// b's upgrade came after a's, and a's subscription (in open, on the
	// server's one thread) before b's message: both are in the room.
	conns := []net.Conn{a, b}
	for _, m := range []struct {
		from int
		op   ws.OpCode
		text string
	}{{0, ws.OpBinary, "one publish, two clients"}, {1, ws.OpText, "and text stays text"}} {
		if err := wsutil.WriteClientMessage(conns[m.from], m.op, []byte(m.text)); err != nil {
			t.Fatal(err)
		}
		for i, c := range conns {
			got, op, err := wsutil.ReadServerData(c)
			if err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
			if op != m.op || string(got) != m.text {
				t.Errorf("client %d got %v %q, want %v %q", i, op, got, m.op, m.text)
			}
		}
	}

	if err := srv.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if n := expect("MALLOCS "); n == "" || strings.Trim(n, "0123456789") != "" || n == "0" {
		t.Errorf("MALLOCS %q", n)
	}
	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("still running 5s after SIGTERM")
	}
}

// TestUWSReport checks that a run with uws-room names both checkouts'
// commits in the report's header, says what uws-room is, and keeps the
// build in the JSON that -render reads back.
func TestUWSReport(t *testing.T) {
	u := &UWSBuild{
		UWebSockets: runinfo.Tree{Dir: "/src/uWebSockets", Commit: "66dcff3dd48f0c19dd1703426365d062039321d0"},
		USockets:    runinfo.Tree{Dir: "/src/uSockets", Commit: "86097c490263ab662d62e8e7b541390bdec7d149", Uncommitted: 2},
		CC:          "gcc 12", CXX: "g++ 12", CFlags: uwsCFlags, CXXFlags: uwsCXXFlags,
	}
	sv := &saved{Args: []string{"-scenarios", "fanout"}, Date: time.Date(2026, 12, 7, 3, 40, 0, 0, time.UTC), UWS: u, Setup: setup{Duration: time.Second},
		Runs: []Run{{Scenario: "fanout", Server: "wsloop-room", Conns: 10000, Size: 64, Inflight: 16, MsgsPerS: 900000, CPUPerMsgUs: 1.1},
			{Scenario: "fanout", Server: "uws-room", Conns: 10000, Size: 64, Inflight: 16, MsgsPerS: 800000, CPUPerMsgUs: 1.2}}}
	md := render(sv)
	for _, want := range []string{
		"- uWebSockets: uws-room built from uWebSockets `66dcff3dd48f0c19dd1703426365d062039321d0` (/src/uWebSockets) and uSockets `86097c490263ab662d62e8e7b541390bdec7d149` + 2 uncommitted paths (/src/uSockets), g++ 12, `-O3 -march=native -flto -std=c++2b -DLIBUS_NO_SSL -DUWS_NO_ZLIB`\n",
		"uws-room is uWebSockets (C++, one thread)",
		"| wsloop-room | 16 | 900000 |", "| uws-room | 16 | 800000 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	b, err := json.Marshal(sv)
	if err != nil {
		t.Fatal(err)
	}
	var back saved
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if render(&back) != md {
		t.Error("the report rendered from the JSON differs")
	}
	sv.UWS, sv.Runs = nil, sv.Runs[:1]
	if md := render(sv); strings.Contains(md, "uWebSockets") {
		t.Errorf("a run without uws-room mentions uWebSockets:\n%s", md)
	}
}
