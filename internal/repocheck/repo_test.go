package repocheck

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// root returns the repository's top directory (git rev-parse), skipping the
// test where git or the repository is missing (a module copied out of it).
func root(t *testing.T) string {
	t.Helper()
	rootOnce.Do(func() {
		out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			rootErr = err
			return
		}
		rootDir = strings.TrimSpace(string(out))
	})
	if rootErr != nil {
		t.Skipf("not in a git work tree: %v", rootErr)
	}
	return rootDir
}

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// git runs git in the repository and returns its standard output.
func git(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = root(t)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// check-ignore exits 1 when no path is ignored: not a failure here.
		if ee, ok := err.(*exec.ExitError); !(ok && ee.ExitCode() == 1 && args[0] == "check-ignore") {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
	}
	return string(out)
}

// goFiles lists the repository's Go files (slash-separated, relative to
// the root), tracked or not yet added but not ignored, in every module.
func goFiles(t *testing.T) []string {
	out := git(t, "", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.go")
	var files []string
	for _, f := range strings.Split(out, "\n") {
		if f != "" {
			if _, err := os.Stat(filepath.Join(root(t), f)); err == nil { // not deleted in the work tree
				files = append(files, f)
			}
		}
	}
	return files
}

// mainPackage is a directory holding a command (package main).
type mainPackage struct {
	dir    string // relative to the repository's root, slash-separated
	module string // the directory of its go.mod, relative to the root ("." for the core module)
}

// mainPackages lists every directory of the repository, in every module,
// whose non-test Go files are package main; testdata is left out (the go
// command ignores it).
func mainPackages(t *testing.T) []mainPackage {
	seen := map[string]bool{}
	var pkgs []mainPackage
	fset := token.NewFileSet()
	for _, f := range goFiles(t) {
		dir := path.Dir(f)
		if seen[dir] || strings.HasSuffix(f, "_test.go") || strings.Contains("/"+dir+"/", "/testdata/") {
			continue
		}
		af, err := parser.ParseFile(fset, filepath.Join(root(t), f), nil, parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if af.Name.Name != "main" {
			continue
		}
		seen[dir] = true
		pkgs = append(pkgs, mainPackage{dir: dir, module: moduleOf(t, dir)})
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].dir < pkgs[j].dir })
	return pkgs
}

// moduleOf returns the directory of the go.mod that holds dir.
func moduleOf(t *testing.T, dir string) string {
	for d := dir; ; d = path.Dir(d) {
		if _, err := os.Stat(filepath.Join(root(t), d, "go.mod")); err == nil {
			return d
		}
		if d == "." {
			t.Fatalf("%s is in no module", dir)
		}
	}
}

// ignored returns which of paths .gitignore covers (git check-ignore, as
// if none were tracked).
func ignored(t *testing.T, paths []string) map[string]bool {
	out := git(t, strings.Join(paths, "\n")+"\n", "check-ignore", "--no-index", "-v", "-n", "--stdin")
	ign := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		// source:line:pattern<TAB>path; "::<TAB>path" for no match.
		src, p, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		parts := strings.SplitN(src, ":", 3)
		if len(parts) == 3 && parts[2] != "" && !strings.HasPrefix(parts[2], "!") {
			ign[p] = true
		}
	}
	return ign
}

// An 8 MB binary, examples/echo built at the root, was once committed
// (issue 23). Whatever `go build` writes for a command, in its own
// directory, at its module's root or at the repository's root, must be
// ignored, so that `git add -A` cannot take it, and so must what the
// tests' npm ci installs; and no tracked file may be ignored.
func TestGitignoreCoversBinaries(t *testing.T) {
	pkgs := mainPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("found only %d commands: %v", len(pkgs), pkgs)
	}
	var want []string
	seen := map[string]bool{}
	add := func(p string) {
		p = path.Clean(p)
		if fi, err := os.Stat(filepath.Join(root(t), p)); err == nil && fi.IsDir() {
			p = path.Join(p, path.Base(p)) // go build -o DIR writes DIR/NAME
		}
		if !seen[p] {
			seen[p] = true
			want = append(want, p)
		}
	}
	for _, p := range pkgs {
		name := path.Base(p.dir)
		add(path.Join(p.dir, name)) // go build, in that directory
		add(path.Join(p.module, name))
		add(name) // go build ./examples/echo at the root
	}
	// npm ci (the Node and Chromium interoperability tests) installs
	// node_modules beside each package.json.
	for _, f := range strings.Split(git(t, "", "ls-files", "--", "package.json", "*/package.json"), "\n") {
		if f != "" {
			add(path.Join(path.Dir(f), "node_modules", "ws", "package.json"))
		}
	}
	ign := ignored(t, want)
	var missing []string
	for _, p := range want {
		if !ign[p] {
			missing = append(missing, "/"+p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("paths that go build or npm ci would write and .gitignore does not cover; add:\n%s", strings.Join(missing, "\n"))
	}
	if out := git(t, "", "ls-files", "--cached", "--ignored", "--exclude-standard"); out != "" {
		t.Errorf("tracked files that .gitignore covers (a pattern too wide):\n%s", out)
	}
}

// examples are the commands a user may copy: every package main with an
// "example" or "examples" directory in its path, in every module.
func examples(t *testing.T) []mainPackage {
	var ex []mainPackage
	for _, p := range mainPackages(t) {
		for _, el := range strings.Split(p.dir, "/") {
			if el == "example" || el == "examples" {
				ex = append(ex, p)
				break
			}
		}
	}
	if len(ex) < 5 {
		t.Fatalf("found only %d examples: %v", len(ex), ex)
	}
	return ex
}

// goMod is what go mod edit -json says of a go.mod.
type goMod struct {
	Module  struct{ Path string }
	Go      string
	Require []struct{ Path, Version string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
}

// readGoMod parses the go.mod in the repository directory dir.
func readGoMod(t *testing.T, dir string) goMod {
	t.Helper()
	cmd := exec.Command("go", "mod", "edit", "-json", filepath.Join(root(t), dir, "go.mod"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json %s/go.mod: %v", dir, err)
	}
	var m goMod
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// goCmd runs the go command in dir with the module settings of a user's
// own module outside the repository (no workspace, go.mod updated as
// needed); the module cache serves every dependency, so it works offline
// once the repository's modules were downloaded.
func goCmd(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// copyDir copies the tree at src to dst, leaving out node_modules.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Every example must build when copied into a module of one's own (issue
// 23): one importing an internal package of wsloop's fails there with
// "use of internal package ... not allowed". Each example's directory is
// copied to a temporary module outside the repository that requires the
// example's module (wsloop, promexport, broker/nats) with a replace to
// this checkout, as a user's go.mod would after go get, and go build runs
// there.
func TestExamplesBuildOutside(t *testing.T) {
	for _, ex := range examples(t) {
		t.Run(strings.ReplaceAll(ex.dir, "/", "_"), func(t *testing.T) {
			src := readGoMod(t, ex.module)
			tmp := t.TempDir()
			copyDir(t, filepath.Join(root(t), filepath.FromSlash(ex.dir)), tmp)
			gomod := "module example.com/mine\n\ngo " + src.Go + "\n"
			if err := os.WriteFile(filepath.Join(tmp, "go.mod"), []byte(gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			// The dependencies at the versions the example's module
			// was tested with, that module itself, and the repository's
			// modules it reaches through replace, from this checkout.
			edits := []string{"mod", "edit",
				"-require=" + src.Module.Path + "@v0.1.0",
				"-replace=" + src.Module.Path + "=" + filepath.Join(root(t), filepath.FromSlash(ex.module))}
			for _, r := range src.Require {
				edits = append(edits, "-require="+r.Path+"@"+r.Version)
			}
			for _, r := range src.Replace {
				to := r.New.Path
				if strings.HasPrefix(to, "./") || strings.HasPrefix(to, "../") {
					to = filepath.Join(root(t), filepath.FromSlash(ex.module), to)
				}
				edits = append(edits, "-replace="+r.Old.Path+"="+to)
			}
			if out, err := goCmd(t, tmp, edits...); err != nil {
				t.Fatalf("go mod edit: %v\n%s", err, out)
			}
			if sum, err := os.ReadFile(filepath.Join(root(t), ex.module, "go.sum")); err == nil {
				if err := os.WriteFile(filepath.Join(tmp, "go.sum"), sum, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out, err := goCmd(t, tmp, "build", "-o", os.DevNull, "./...")
			if err != nil {
				if strings.Contains(out, "use of internal package") {
					t.Errorf("%s imports an internal package of wsloop, which a copy cannot:\n%s", ex.dir, out)
				} else {
					t.Errorf("%s does not build outside the repository: %v\n%s", ex.dir, err, out)
				}
			}
		})
	}
}

// flagPort is a flag whose default is a host:port.
type flagPort struct {
	example, flag string
	port          int
}

// defaultPorts parses the non-test Go files of the repository directory
// dir and returns the flags (flag.String and FlagSet.String) whose default
// is a host:port.
func defaultPorts(t *testing.T, dir string) []flagPort {
	t.Helper()
	fset := token.NewFileSet()
	ents, err := os.ReadDir(filepath.Join(root(t), dir))
	if err != nil {
		t.Fatal(err)
	}
	var ports []flagPort
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(root(t), dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 3 {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "String" {
				return true
			}
			name, ok1 := call.Args[0].(*ast.BasicLit)
			def, ok2 := call.Args[1].(*ast.BasicLit)
			if !ok1 || !ok2 || name.Kind != token.STRING || def.Kind != token.STRING {
				return true
			}
			n1, _ := strconv.Unquote(name.Value)
			v, _ := strconv.Unquote(def.Value)
			if _, p, err := net.SplitHostPort(v); err == nil {
				if port, err := strconv.Atoi(p); err == nil && port != 0 {
					ports = append(ports, flagPort{dir, n1, port})
				}
			}
			return true
		})
	}
	return ports
}

// goRunAddr finds "go run ./PATH ... -addr HOST:PORT" in documentation.
var goRunAddr = regexp.MustCompile(`go run (\./\S*)[^\n#]*?-addr \S*:(\d+)`)

// Examples run side by side on one machine (a chat, a game, a cluster
// node, the Prometheus example) must not want the same port (issue 23):
// the defaults of every example's host:port flags differ, and a command
// in the README or an example's doc that runs one on a given port does
// not take another example's default.
func TestExamplePortsDistinct(t *testing.T) {
	owner := map[int]flagPort{}
	for _, ex := range examples(t) {
		for _, fp := range defaultPorts(t, ex.dir) {
			if o, ok := owner[fp.port]; ok {
				t.Errorf("port %d is the default of both %s -%s and %s -%s", fp.port, o.example, o.flag, fp.example, fp.flag)
				continue
			}
			owner[fp.port] = fp
		}
	}
	if len(owner) < 5 {
		t.Fatalf("found only %d default ports: %v", len(owner), owner)
	}
	docs := []string{"README.md"}
	for _, ex := range examples(t) {
		docs = append(docs, path.Join(ex.dir, "main.go"))
	}
	for _, doc := range docs {
		b, err := os.ReadFile(filepath.Join(root(t), doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goRunAddr.FindAllStringSubmatch(string(b), -1) {
			port, _ := strconv.Atoi(m[2])
			o, ok := owner[port]
			if !ok {
				continue
			}
			run := strings.TrimSuffix(strings.TrimPrefix(m[1], "./"), "/")
			if o.example != run && !strings.HasSuffix(o.example, "/"+run) {
				t.Errorf("%s: %q runs %s on %d, the default of %s -%s", doc, m[0], run, port, o.example, o.flag)
			}
		}
	}
}

// goMods returns the repository's go.mod files, by module directory.
func goMods(t *testing.T) map[string]goMod {
	mods := map[string]goMod{}
	for _, f := range strings.Split(git(t, "", "ls-files", "--", "go.mod", "*/go.mod"), "\n") {
		if f == "" || strings.Contains("/"+f, "/testdata/") {
			continue
		}
		mods[path.Dir(f)] = readGoMod(t, path.Dir(f))
	}
	if len(mods) < 4 {
		t.Fatalf("found only %d go.mod files: %v", len(mods), mods)
	}
	return mods
}

// release is a tagged version: vMAJOR.MINOR.PATCH, not v0.0.0, no
// pseudo-version or suffix.
var release = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// The modules of this repository require each other at versions a user's
// go get can resolve (tags; RELEASING.md), not at v0.0.0 or the zero
// pseudo-version, which only resolve through a replace (issue 23); inside
// the repository a replace points each at its directory, so that work
// here builds on the checkout. And every module that needs golang.org/x/sys
// names the same version of it.
func TestGoModVersions(t *testing.T) {
	mods := goMods(t)
	dirOf := map[string]string{} // module path -> directory
	for dir, m := range mods {
		dirOf[m.Module.Path] = dir
	}
	sys := map[string][]string{} // x/sys version -> modules
	for dir, m := range mods {
		replaced := map[string]string{}
		for _, r := range m.Replace {
			replaced[r.Old.Path] = r.New.Path
		}
		for _, r := range m.Require {
			if r.Path == "golang.org/x/sys" {
				sys[r.Version] = append(sys[r.Version], dir)
			}
			target, ours := dirOf[r.Path]
			if !ours {
				continue
			}
			if !release.MatchString(r.Version) || r.Version == "v0.0.0" {
				t.Errorf("%s/go.mod requires %s %s: not a release a user's go get can fetch (tag one, RELEASING.md)", dir, r.Path, r.Version)
			}
			rel, err := filepath.Rel(filepath.FromSlash(dir), filepath.FromSlash(target))
			if err != nil {
				t.Fatal(err)
			}
			if to, ok := replaced[r.Path]; !ok || filepath.Clean(to) != rel {
				t.Errorf("%s/go.mod: %s is not replaced by its directory %s (replace %s => %s)", dir, r.Path, rel, r.Path, rel)
			}
		}
	}
	if len(sys) > 1 {
		t.Errorf("the modules require different versions of golang.org/x/sys: %v", sys)
	}
}
