package engine

import (
	"os"
	"strings"
	"testing"
)

// TestGnetLinkVersion: the gnet in go.mod is one gnetlink.go's
// declarations were checked against, and the link is in use; when go.mod
// moves to another gnet, check newStreamConn and (*eventloop).register0
// in its source against the declarations and add it to gnetLinkedVersions.
func TestGnetLinkVersion(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var v string
	for _, line := range strings.Split(string(mod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == gnetModule {
			v = f[1]
		}
	}
	if !gnetLinkedVersions[v] {
		t.Fatalf("go.mod requires gnet %q, which gnetlink.go was not checked against", v)
	}
	if !gnetLinkOK() {
		t.Fatal("the build's gnet is not one the link was checked against: every socket takes the slow Enroll path")
	}
}
