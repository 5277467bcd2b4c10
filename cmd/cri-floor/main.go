// Command cri-floor is the benchmark's ideal CRI server (package
// internal/bench/floor): it serves answers captured from a real runtime on
// a unix socket until SIGTERM, so that polling it measures the machine's
// floor of List latency. With --containerd it also holds a containerd v2
// client with an event subscription, as accel-cri does, so its memory is
// the floor of a CRI server on that stack. Like accel-cri it runs its
// garbage collector at GOGC=50 unless GOGC is set, with heap sampling off.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"

	"github.com/accel-cri/accel-cri/internal/bench/floor"
)

func main() {
	runtime.MemProfileRate = 0
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "cri-floor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("cri-floor", flag.ContinueOnError)
	socket := fs.String("socket", "", "unix socket to serve the CRI on (required)")
	answers := fs.String("answers", "", "directory of the answers accel-cri-bench captured (required)")
	address := fs.String("containerd", "", "containerd socket to hold a client and an event subscription on (optional)")
	namespace := fs.String("namespace", "k8s.io", "containerd namespace with --containerd")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *socket == "" || *answers == "" || fs.NArg() > 0 {
		return errors.New("usage: cri-floor --socket PATH --answers DIR [--containerd ADDRESS --namespace NS]")
	}
	a, err := floor.Read(*answers)
	if err != nil {
		return err
	}
	g, err := floor.NewServer(a)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *address != "" {
		client, err := containerd.New(*address, containerd.WithDefaultNamespace(*namespace), containerd.WithTimeout(10*time.Second))
		if err != nil {
			return fmt.Errorf("connect to containerd: %w", err)
		}
		defer client.Close()
		events, errs := client.EventService().Subscribe(ctx)
		go func() {
			for {
				select {
				case <-events:
				case <-errs:
					return
				}
			}
		}()
	}
	if err := os.Remove(*socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	lis, err := net.Listen("unix", *socket)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	select {
	case <-ctx.Done():
		g.Stop()
		<-served
		return nil
	case err := <-served:
		return err
	}
}
