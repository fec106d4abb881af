package proc

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// Taskset returns the command that runs bin with args pinned to the CPU
// list cpus with taskset(1), or unpinned when cpus is empty.
func Taskset(cpus, bin string, args ...string) *exec.Cmd {
	if cpus == "" {
		return exec.Command(bin, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpus, bin}, args...)...)
}

// WorkDir makes an orchestrator's temporary directory (for the programs it
// builds) and, on SIGINT or SIGTERM, kills children, removes the
// directory and exits with status 1. The caller removes it when done.
func WorkDir(name string, children *Children) (string, error) {
	dir, err := os.MkdirTemp("", "wsloop-"+name+"-")
	if err != nil {
		return "", err
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		s := <-ch
		fmt.Fprintf(os.Stderr, "%s: %v: stopping\n", name, s)
		children.KillAll()
		os.RemoveAll(dir)
		os.Exit(1)
	}()
	return dir, nil
}
