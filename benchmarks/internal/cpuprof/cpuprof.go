// Package cpuprof gives a benchmark server a -cpuprofile flag: Start
// profiles the process's CPU from the call on and writes the profile to
// the file on SIGHUP (the server keeps running, so that a measurement can
// end the profile at a point of its choosing, before the server's shutdown
// and its clients' closes) or, at the latest, on SIGTERM or SIGINT.
package cpuprof

import (
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// Start starts the CPU profile into file; an empty file does nothing. The
// returned function stops it and waits until the file is written (main
// calls it before returning; the signal handler calls it first).
func Start(file string) (stop func()) {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	stopped := make(chan struct{}, 1)
	stopped <- struct{}{}
	stop = func() {
		select {
		case <-stopped:
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				log.Print(err)
			}
			close(done)
		default:
			<-done
		}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-ch
		stop()
	}()
	return stop
}
