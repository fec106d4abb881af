package engine

import (
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Registering an accepted descriptor on a gnet loop directly.
//
// gnet's public API adopts an outside socket only through Enroll, which
// takes a net.Conn, submits a job to a goroutine pool, duplicates the
// descriptor, parses the peer's address back from its string, queues the
// registration on the loop, waits on two channels for it, and closes the
// original: 18.8 µs of the 41 µs a whole upgrade costs on gnet's own
// acceptor (benchmarks/RESULTS.md, "Where connection setup's CPU goes").
// gnet's own acceptor does none of that: it builds its connection from the
// accepted descriptor (newStreamConn) and registers it on the loop
// (register0), on the loop. The acceptor does the same, by linking to
// those two functions (go:linkname; the linker allows it for packages
// outside the standard library), inside a task it queues on the loop with
// the public Execute: one task, one wake-up, for every socket accepted in
// a burst.
//
// A linked function's signature is not checked by the compiler, so the
// link is used only with a gnet whose code was checked against these
// declarations (gnetLinkedVersions, read from the binary: gnetLinkOK);
// with any other, every socket takes the Enroll
// path, which is slower and otherwise the same (TestGnetLinkVersion keeps
// the list honest: it fails when go.mod moves to a gnet not in it). A
// gnet without the functions fails to link, loudly.

//go:linkname gnetNewStreamConn github.com/panjf2000/gnet/v2.newStreamConn
func gnetNewStreamConn(proto string, fd int, el unsafe.Pointer, sa unix.Sockaddr, localAddr, remoteAddr net.Addr) unsafe.Pointer

//go:linkname gnetRegister0 github.com/panjf2000/gnet/v2.(*eventloop).register0
func gnetRegister0(el, c unsafe.Pointer) error

// gnetLinkedVersions are the gnet releases whose newStreamConn and
// (*eventloop).register0 match the declarations above.
var gnetLinkedVersions = map[string]bool{"v2.9.7": true}

const gnetModule = "github.com/panjf2000/gnet/v2"

// gnetLinkOK reports whether the build's gnet is one the link was checked
// against. The version is read from the path of gnet's source files, as
// the binary records it for stack traces
// (".../github.com/panjf2000/gnet/v2@v2.9.7/client_unix.go", with or
// without -trimpath): unlike the build's module list, which test binaries
// lack, it is there in every build, and a replaced or vendored gnet (no
// version in the path) is not taken for a checked one.
var gnetLinkOK = sync.OnceValue(func() bool {
	return gnetLinkedVersions[gnetVersion()]
})

// gnetVersion returns the version of the gnet linked in, or "".
func gnetVersion() string {
	pc := reflect.ValueOf(gnet.NewClient).Pointer()
	f := runtime.FuncForPC(pc)
	if f == nil {
		return ""
	}
	file, _ := f.FileLine(pc)
	_, rest, ok := strings.Cut(file, gnetModule+"@")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "/")
	return v
}

// eventLoopPtr is the *gnet.eventloop inside el, or nil when el is of
// another type.
func eventLoopPtr(el gnet.EventLoop) unsafe.Pointer {
	if t := reflect.TypeOf(el); t == nil || t.String() != "*gnet.eventloop" {
		return nil
	}
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&el))[1]
}
