// Package mdblock replaces one marked block of a markdown file, so that
// several benchmark commands can each own a part of RESULTS.md.
package mdblock

import (
	"os"
	"strings"
)

// Write replaces the text between beginMarker and endMarker in path (or
// appends the markers with body between them), keeping everything else.
func Write(path, beginMarker, endMarker, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	block := beginMarker + "\n" + body + endMarker
	i := strings.Index(s, beginMarker)
	k := -1
	if i >= 0 {
		if k = strings.Index(s[i:], endMarker); k >= 0 {
			k += i
		}
	}
	if i >= 0 && k >= 0 {
		s = s[:i] + block + s[k+len(endMarker):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		if s != "" {
			s += "\n"
		}
		s += block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
