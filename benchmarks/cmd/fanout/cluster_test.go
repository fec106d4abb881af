package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// peerRun runs a publisher's process (-peers 1) and a subscriber-only
// process (-done-to) against one room server, and returns both RESULTs.
func peerRun(t *testing.T, addr string, extra ...string) (pub, sub Result, pubErr, subErr error, logs string) {
	t.Helper()
	pcmd := exec.Command(os.Args[0], append([]string{"-addr", addr, "-subs", "20", "-peers", "1", "-duration", "300ms",
		"-warmup", "100ms", "-inflight", "4", "-src", "127.0.0.4", "-go"}, extra...)...)
	pcmd.Env = append(os.Environ(), "FANOUT_TEST_MAIN=1")
	pout, _ := pcmd.StdoutPipe()
	var perr strings.Builder
	pcmd.Stderr = &perr
	if err := pcmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(pout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var listen string
	select {
	case l := <-lines:
		listen, _ = strings.CutPrefix(l, "LISTEN ")
	case <-time.After(10 * time.Second):
		t.Fatal("no LISTEN line")
	}
	scmd := exec.Command(os.Args[0], append([]string{"-addr", addr, "-subs", "20", "-done-to", listen, "-src", "127.0.0.5"}, extra...)...)
	scmd.Env = append(os.Environ(), "FANOUT_TEST_MAIN=1")
	sin, _ := scmd.StdinPipe()
	sout, _ := scmd.StdoutPipe()
	var serr strings.Builder
	scmd.Stderr = &serr
	if err := scmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(sin, "GO\n")
	for l := range lines {
		if js, ok := strings.CutPrefix(l, "RESULT "); ok {
			_ = json.Unmarshal([]byte(js), &pub)
		}
	}
	pubErr = pcmd.Wait()
	io.WriteString(sin, "STOP\n")
	sc := bufio.NewScanner(sout)
	for sc.Scan() {
		if js, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			_ = json.Unmarshal([]byte(js), &sub)
		}
	}
	subErr = scmd.Wait()
	return pub, sub, pubErr, subErr, perr.String() + serr.String()
}

// A publisher's process and a subscriber-only one: a publish completes
// only when the other process's subscribers all have it, and the other
// process saw every message.
func TestFanoutPeers(t *testing.T) {
	addr := roomServer(t, faultNone)
	pub, sub, perr, serr, logs := peerRun(t, addr)
	if perr != nil || serr != nil || pub.Errors != 0 || sub.Errors != 0 {
		t.Fatalf("errors: %v %v %+v %+v\n%s", perr, serr, pub, sub, logs)
	}
	if pub.Publishes == 0 || pub.Sent < pub.Publishes || sub.NextMin != pub.Sent || sub.NextMax != pub.Sent || sub.Delivered != 20*pub.Sent {
		t.Fatalf("publisher %+v, subscribers %+v: want every subscriber to have all %d messages", pub, sub, pub.Sent)
	}
	if pub.P50us <= 0 {
		t.Fatalf("no latency: %+v", pub)
	}
}

// A message lost on its way to the other process's subscribers is an
// error: there, or in the publisher's process, which waits for it.
func TestFanoutPeersNoticeLoss(t *testing.T) {
	addr := roomServer(t, faultDrop)
	pub, sub, perr, serr, logs := peerRun(t, addr, "-drain-timeout", "1s")
	if (perr == nil && pub.Errors == 0) && (serr == nil && sub.Errors == 0) {
		t.Fatalf("a lost message went unnoticed: %+v %+v\n%s", pub, sub, logs)
	}
}
