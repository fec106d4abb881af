package wstest

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// utf8Group is one subcategory of 6.5 to 6.23: the suite's list from Markus
// Kuhn's UTF-8 decoder stress test, each payload marked valid or not.
type utf8Group struct {
	name  string
	cases []utf8Payload
}

type utf8Payload struct {
	valid   bool
	payload string
}

func valid(ps ...string) []utf8Payload   { return mark(true, ps) }
func invalid(ps ...string) []utf8Payload { return mark(false, ps) }

func mark(v bool, ps []string) []utf8Payload {
	out := make([]utf8Payload, len(ps))
	for i, p := range ps {
		out[i] = utf8Payload{v, p}
	}
	return out
}

// utf8TestSequences is createUtf8TestSequences of case6_x_x.py, in order.
func utf8TestSequences() []utf8Group {
	var gs []utf8Group
	add := func(name string, cs ...[]utf8Payload) {
		var all []utf8Payload
		for _, c := range cs {
			all = append(all, c...)
		}
		gs = append(gs, utf8Group{name, all})
	}
	add("Some valid UTF-8 sequences", valid("hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme))

	var prefixes []utf8Payload
	for i := 1; i <= len(kosme); i++ {
		prefixes = append(prefixes, utf8Payload{utf8.ValidString(kosme[:i]), kosme[:i]})
	}
	add("All prefixes of a valid UTF-8 string that contains multi-byte code points", prefixes)

	add("First possible sequence of a certain length", valid("\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"))
	add("First possible sequence length 5/6 (invalid codepoints)", invalid("\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"))
	add("Last possible sequence of a certain length", valid("\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"))
	add("Last possible sequence length 4/5/6 (invalid codepoints)", invalid("\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"))
	add("Other boundary conditions", valid("\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"), invalid("\xf4\x90\x80\x80"))

	var conts []byte
	for b := 0x80; b < 0xbf; b++ {
		conts = append(conts, byte(b))
	}
	add("Unexpected continuation bytes", invalid("\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf",
		"\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", string(conts)))

	var lonely []string
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s []byte
		for b := r[0]; b < r[1]; b++ {
			s = append(s, byte(b), 0x20)
		}
		lonely = append(lonely, string(s))
	}
	add("Lonely start characters", invalid(lonely...))

	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	add("Sequences with last continuation byte missing", invalid(missing...))
	concat := ""
	for _, m := range missing {
		concat += m
	}
	add("Concatenation of incomplete sequences", invalid(concat))
	add("Impossible bytes", invalid("\xfe", "\xff", "\xfe\xfe\xff\xff"))
	add("Examples of an overlong ASCII character", invalid("\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"))
	add("Maximum overlong sequences", invalid("\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"))
	add("Overlong representation of the NUL character", invalid("\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"))
	add("Single UTF-16 surrogates", invalid("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"))
	add("Paired UTF-16 surrogates", invalid("\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
		"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"))

	nonChars := []string{"\xef\xbf\xbe", "\xef\xbf\xbf"}
	for _, z1 := range []string{"\xf0", "\xf1", "\xf2", "\xf3", "\xf4"} {
		for _, z2 := range []string{"\x8f", "\x9f", "\xaf", "\xbf"} {
			if z1 == "\xf4" && z2 != "\x8f" { // above U+10FFFF
				continue
			}
			for _, z3 := range []string{"\xbe", "\xbf"} {
				zz := z1 + z2 + "\xbf" + z3
				if zz != "\xf0\x8f\xbf\xbe" && zz != "\xf0\x8f\xbf\xbf" { // overlong
					nonChars = append(nonChars, zz)
				}
			}
		}
	}
	add("Non-character code points (valid UTF-8)", valid(nonChars...))
	add("Unicode specials (i.e. replacement char)", valid("\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"))
	return gs
}

// cases6UTF8 is Case6_X_X: 6.5.1 to 6.23.7, one text message each, valid
// ones echoed, invalid ones failing the connection; kill timer 0.5 s.
func cases6UTF8() []abCase {
	var cs []abCase
	for i, g := range utf8TestSequences() {
		for j, p := range g.cases {
			id := fmt.Sprintf("6.%d.%d", i+5, j+1)
			desc := fmt.Sprintf("Send a text message with payload which is not valid UTF-8 in one fragment. Payload: 0x%x", p.payload)
			if p.valid {
				desc = fmt.Sprintf("Send a text message with payload which is valid UTF-8 in one fragment. Payload: 0x%x", p.payload)
			}
			cs = append(cs, abCase{id, desc, func(s *session) {
				if p.valid {
					s.expect(OutcomeOK, msg(p.payload, false))
					s.expectClose(true, true, CloseNormal)
				} else {
					s.expect(OutcomeOK)
					expectUTF8Failure(s)
				}
				s.sendMessage(p.payload, false, 0)
				s.killAfter(500 * time.Millisecond)
			}})
		}
	}
	return cs
}
