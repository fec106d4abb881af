package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESnippets keeps the README's Go from rotting: a ```go block that
// is a whole program (it starts with "package main") must pass go vet
// against this module; every other one must appear, verbatim, in
// engine/example_test.go, whose examples compile and run under go test
// (a line "// ..." in a block separates parts that appear apart).
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	// The cluster snippets come from the broker's module.
	brokerExamples, err := os.ReadFile("../broker/nats/example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	examples = append(examples, brokerExamples...)
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	programs := 0
	for i, b := range blocks {
		if strings.HasPrefix(b[1], "package main\n") {
			programs++
			dir := t.TempDir()
			file := filepath.Join(dir, "main.go")
			if err := os.WriteFile(file, []byte(b[1]), 0o644); err != nil {
				t.Fatal(err)
			}
			vet := exec.Command("go", "vet", file) // from engine/: resolved against this module
			if out, err := vet.CombinedOutput(); err != nil {
				t.Errorf("README program %d does not pass go vet: %v\n%s\n%s", i, err, out, b[1])
			}
			continue
		}
		for _, part := range strings.Split(b[1], "\n// ...\n") {
			if !strings.Contains(string(examples), part) {
				t.Errorf("README snippet not found verbatim in engine/example_test.go or broker/nats/example_test.go:\n%s", part)
			}
		}
	}
	if programs == 0 || len(blocks) < 4 {
		t.Fatalf("the README has %d Go snippets, %d of them whole programs; it should show a whole embedding program, the upgrade hook and rooms", len(blocks), programs)
	}
}
