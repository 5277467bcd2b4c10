// Command pause is accel-cri's pod sandbox "infra" process.
//
// It runs as PID 1 of a pod sandbox and holds the pod's namespaces open. It
// does nothing but wait for signals:
//
//   - SIGINT, SIGTERM: exit 0.
//   - SIGCHLD: reap every exited child (wait4 with WNOHANG in a loop), so that
//     processes re-parented to PID 1 in a shared PID namespace do not linger as
//     zombies.
//
// It never polls: the only goroutine blocks on the signal channel. Build it
// static: CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' ./hack/pause
//
// "pause -v" prints a version line and exits.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// First thing: until Notify, a SIGTERM would kill pause with a non-zero
	// status.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)

	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-v", "--version", "-version":
			fmt.Printf("accel-cri pause %s\n", version)
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: %s [-v]\n", os.Args[0])
			os.Exit(2)
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}

	// Children may have exited before Notify was installed.
	reap()
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every child that has already exited without blocking. Signals
// coalesce, so one SIGCHLD may stand for many exits: loop until nothing is left.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
