package engine

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
)

// gnet keeps what a socket did not take in its connection's outbound
// buffer and offers no way to read it back: a gnet.Conn tells how much
// waits (OutboundBuffered), not what. A hand-off (handoff.go) must move
// those bytes with the socket, so it reads gnet's buffer in place: the
// unexported field outboundBuffer of gnet's connection, found by reflection
// and used only if it is exactly an elastic.Buffer (gnet's exported type).
// Should a release of gnet rename or retype it, outboundOf returns nil and
// a hand-off waits for such output to drain, as it did before;
// TestGnetOutboundReadable fails then, so the loss does not go unseen.
// Only hand-offs use it, on the loop that owns the connection.

var gnetOut struct {
	once  sync.Once
	typ   reflect.Type // gnet's connection type (a pointer)
	index []int        // its outboundBuffer field
}

// outboundOf returns gnet's outbound buffer of c's socket, or nil. On the
// loop.
func outboundOf(c *Conn) *elastic.Buffer {
	if c.tlsOf() != nil {
		return nil // the buffer holds TLS records: the state does not travel
	}
	return gnetOutbound(c.socket())
}

// gnetOutbound returns gnet's outbound buffer of gc, a socket of gnet's,
// or nil.
func gnetOutbound(gc gnet.Conn) *elastic.Buffer {
	if gc == nil {
		return nil
	}
	t := reflect.TypeOf(gc)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct ||
		t.Elem().PkgPath() != reflect.TypeFor[gnet.Engine]().PkgPath() {
		return nil // not a socket of gnet's
	}
	gnetOut.once.Do(func() {
		f, ok := t.Elem().FieldByName("outboundBuffer")
		if !ok || f.Type != reflect.TypeFor[elastic.Buffer]() {
			return
		}
		gnetOut.typ, gnetOut.index = t, f.Index
	})
	if gnetOut.typ == nil || t != gnetOut.typ {
		return nil
	}
	v := reflect.ValueOf(gc).Elem().FieldByIndex(gnetOut.index)
	return (*elastic.Buffer)(unsafe.Pointer(v.UnsafeAddr()))
}

// appendOutbound appends what waits in b to dst.
func appendOutbound(dst []byte, b *elastic.Buffer) []byte {
	if b.Buffered() == 0 {
		return dst
	}
	bs, _ := b.Peek(-1)
	for _, p := range bs {
		dst = append(dst, p...)
	}
	return dst
}
