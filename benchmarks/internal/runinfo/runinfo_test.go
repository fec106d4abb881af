package runinfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMachine(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel([]byte(cpuinfo)); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("cpuModel: %q", got)
	}
	if got := cpuModel([]byte("processor\t: 0\n")); got != "unknown CPU" {
		t.Errorf("cpuModel without a model: %q", got)
	}
	m := This()
	if m.Cores < 1 || !strings.HasPrefix(m.Go, "go") || m.Kernel == "" {
		t.Errorf("This: %+v", m)
	}
	if s := (Machine{CPU: "c", Cores: 2, Kernel: "6.1", Go: "go1.26"}).String(); s != "c, 2 cores, Linux 6.1, go1.26" {
		t.Errorf("String: %q", s)
	}
}

func TestGitTree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir := t.TempDir()
	if got := GitTree(dir); got.Commit != "" || got.String() != "not a git tree" {
		t.Errorf("plain directory: %+v", got)
	}
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "a")
	git("commit", "-qm", "a")
	clean := GitTree(dir)
	if len(clean.Commit) != 40 || clean.Uncommitted != 0 || clean.String() != clean.Commit[:7] || !filepath.IsAbs(clean.Dir) {
		t.Errorf("clean tree: %+v, %q", clean, clean.String())
	}
	for _, f := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if d := GitTree(dir); d.Commit != clean.Commit || d.Uncommitted != 3 || d.String() != clean.Commit[:7]+" + 3 uncommitted paths" {
		t.Errorf("dirty tree: %+v, %q", d, d.String())
	}
}
