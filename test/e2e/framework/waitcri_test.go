package framework

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/internal/bench/floor"
)

func TestWaitCRI(t *testing.T) {
	dir, err := os.MkdirTemp("", "waitcri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	running := make(chan struct{})

	// Nothing listens: it gives up after the timeout.
	sock := filepath.Join(dir, "cri.sock")
	if err := WaitCRI(sock, 200*time.Millisecond, running, nil); err == nil || !strings.Contains(err.Error(), "not answering after") {
		t.Errorf("no server: %v", err)
	}

	// The server's process is gone: it says so at once, with how.
	gone := make(chan struct{})
	close(gone)
	start := time.Now()
	err = WaitCRI(sock, time.Minute, gone, func() error { return errors.New("exit status 2") })
	if err == nil || !strings.Contains(err.Error(), "exited: exit status 2") || time.Since(start) > 10*time.Second {
		t.Errorf("exited server: %v after %s", err, time.Since(start))
	}

	// A CRI server answering Version.
	g, err := floor.NewServer(&floor.Answers{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-served })
	if err := WaitCRI(sock, 30*time.Second, running, nil); err != nil {
		t.Errorf("answering server: %v", err)
	}
}
