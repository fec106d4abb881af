package engine

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// handOffRecord encodes a connection record as sendBatch does (one entry a
// connection, its data after it), for the tests.
func handOffRecord(output bool, entries ...adoption) []byte {
	field := func(b []byte, p string) []byte { return append(binary.AppendUvarint(b, uint64(len(p))), p...) }
	kind := msgConn
	if output {
		kind = msgConnOut
	}
	rec := binary.AppendUvarint([]byte(kind+"\n"), uint64(len(entries)))
	for _, a := range entries {
		rec = field(rec, a.subprotocol)
		rec = append(rec, a.pmd, a.win, 4, 127, 0, 0, 1, 0x1f, 0x90)
		rec = field(rec, a.key)
		rec = binary.AppendUvarint(rec, uint64(len(a.rooms)))
		for _, r := range a.rooms {
			rec = field(rec, r)
		}
		rec = field(rec, string(a.hist))
		rec = field(rec, string(a.blob))
		rec = binary.AppendUvarint(rec, uint64(len(a.input)))
		if output {
			rec = binary.AppendUvarint(rec, uint64(len(a.output)))
		}
		rec = append(append(rec, a.input...), a.output...)
	}
	return rec
}

// TestDecodeHandOff: records of both kinds decode to what was encoded; the
// output comes apart from the input.
func TestDecodeHandOff(t *testing.T) {
	in := []adoption{
		{subprotocol: "v1.test", pmd: 1, win: 15, key: "k1", rooms: []string{"live", "lobby"},
			hist: []byte("h"), blob: []byte("sub"), input: []byte("\x81\x85abcd"), output: []byte("\x81\x02hi")},
		{rooms: []string{"live"}},
	}
	for _, output := range []bool{false, true} {
		want := in
		if !output {
			want = []adoption{in[0], in[1]}
			want[0].output = nil
		}
		as, err := decodeHandOff(handOffRecord(output, want...))
		if err != nil {
			t.Fatalf("output %v: %v", output, err)
		}
		if len(as) != len(want) {
			t.Fatalf("output %v: %d connections, want %d", output, len(as), len(want))
		}
		for i, a := range as {
			a.splitOutput()
			w := want[i]
			if a.subprotocol != w.subprotocol || a.pmd != w.pmd || a.win != w.win || a.key != w.key ||
				len(a.rooms) != len(w.rooms) || !bytes.Equal(a.hist, w.hist) || !bytes.Equal(a.blob, w.blob) ||
				!bytes.Equal(a.input, w.input) || !bytes.Equal(a.output, w.output) || a.remote.String() != "127.0.0.1:8080" {
				t.Errorf("output %v, connection %d: got %+v, want %+v", output, i, *a, w)
			}
		}
	}
}

// FuzzDecodeHandOff: no record makes decodeHandOff panic, and what it
// accepts is consistent: every connection's data is whole but the last
// one's, whose rest follows (len < cap), and the output comes apart within
// the data.
func FuzzDecodeHandOff(f *testing.F) {
	a := adoption{subprotocol: "chat", pmd: 1, win: 15, key: "user-1", rooms: []string{"r1"},
		blob: []byte("state"), input: []byte("\x81\x80abcd"), output: []byte("\x81\x03out")}
	f.Add(handOffRecord(false, a))
	f.Add(handOffRecord(true, a, adoption{rooms: []string{"r2", "r3"}}))
	rec := handOffRecord(true, a)
	f.Add(rec[:len(rec)-2]) // the last one's data continues
	f.Fuzz(func(t *testing.T, rec []byte) {
		as, err := decodeHandOff(rec)
		if err != nil {
			return
		}
		if len(as) == 0 || len(as) > handOffBatch {
			t.Fatalf("%d connections", len(as))
		}
		for i, a := range as {
			if len(a.input) < cap(a.input) && i != len(as)-1 {
				t.Fatalf("connection %d of %d is not whole", i, len(as))
			}
			if a.inLen > cap(a.input) || cap(a.input) > maxHandOffData {
				t.Fatalf("input %d of data %d", a.inLen, cap(a.input))
			}
			a.input = a.input[:cap(a.input)]
			a.splitOutput()
		}
	})
}
