package codec

import (
	"strings"
	"testing"
)

func TestFindHeaderEnd(t *testing.T) {
	cases := []struct {
		name string
		buf  string
		end  int
	}{
		{"empty buffer", "", 0},
		{"request line only", "GET / HTTP/1.1\r\n", 0},
		{"CRLF CRLF", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27},
		{"LF LF", "GET / HTTP/1.1\nHost: a\n\n", 24},
		{"LF CRLF", "GET / HTTP/1.1\nHost: a\n\r\n", 25},
		{"CRLF LF", "GET / HTTP/1.1\r\nHost: a\r\n\n", 26},
		{"bytes after the block", "GET / HTTP/1.1\r\n\r\n\x81\x80", 18},
		{"CR CR is not an empty line", "GET / HTTP/1.1\r\r\r\n", 0},
		{"CR then a line is not an empty line", "GET / HTTP/1.1\r\n\rX\r\n", 0},
		{"one empty line before the request", "\r\nGET / HTTP/1.1\r\n\r\n", 20},
		{"one bare LF before the request", "\nGET / HTTP/1.1\n\n", 17},
		{"two empty lines before the request", "\r\n\r\n\r\n", 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if end, _ := FindHeaderEnd([]byte(tc.buf), 0); end != tc.end {
				t.Fatalf("FindHeaderEnd(%q) = %d, want %d", tc.buf, end, tc.end)
			}
			byteAtATime(t, tc.buf, tc.end)
		})
	}
}

// TestFindHeaderEndIncremental feeds each request one byte at a time, as a
// slow sender would, resuming at next: it must find the end at the same
// offset, and the bytes it rescans per call must be bounded, so that the
// total work is linear in the request size.
func TestFindHeaderEndIncremental(t *testing.T) {
	for _, c := range realClients {
		t.Run(c.name, func(t *testing.T) {
			byteAtATime(t, c.req+"\x81\x85trailing", len(c.req))
			lf := strings.ReplaceAll(c.req, "\r\n", "\n")
			byteAtATime(t, lf, len(lf))
		})
	}
	long := "GET / HTTP/1.1\r\n" + strings.Repeat("X-Padding: "+strings.Repeat("a", 100)+"\r\n", 100) + "\r\n"
	byteAtATime(t, long, len(long))
}

// byteAtATime calls FindHeaderEnd on every prefix of buf and checks that
// the end is found exactly when the prefix holds it, at want, and that the
// bytes scanned add up to at most 3 per byte.
func byteAtATime(t *testing.T, buf string, want int) {
	t.Helper()
	b := []byte(buf)
	next, scanned, calls := 0, 0, 0
	for k := 1; k <= len(b); k++ {
		end, n := FindHeaderEnd(b[:k], next)
		calls++
		scanned += k - min(next, k)
		if end != 0 {
			if end != want || k != want {
				t.Fatalf("found end %d with %d bytes, want %d", end, k, want)
			}
			break
		}
		if k == want {
			t.Fatalf("end not found with %d bytes", k)
		}
		if n < next || n < k-2 || n > k {
			t.Fatalf("next = %d after %d bytes (previous %d): must be in [max(prev, len-2), len]", n, k, next)
		}
		next = n
	}
	if want == 0 && calls != len(b) {
		t.Fatalf("%d calls for %d bytes", calls, len(b))
	}
	if scanned > 3*len(b) {
		t.Fatalf("scanned %d bytes for %d: not linear", scanned, len(b))
	}
}
