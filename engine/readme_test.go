package engine

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESnippets keeps the README's Go from rotting: every ```go block
// in it must appear, verbatim, in engine/example_test.go, whose examples
// compile and run under go test.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 3 {
		t.Fatalf("the README has %d Go snippets; it should show the embedding example, the upgrade hook and rooms", len(blocks))
	}
	for _, b := range blocks {
		for _, part := range strings.Split(b[1], "\n// ...\n") {
			if !strings.Contains(string(examples), part) {
				t.Errorf("README snippet not found verbatim in engine/example_test.go:\n%s", part)
			}
		}
	}
}
