//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	remote "k8s.io/cri-client/pkg"

	"github.com/accel-cri/accel-cri/internal/bench"
	"github.com/accel-cri/accel-cri/internal/bench/floor"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// floorWarmup is how many untimed polls precede the floor's measured ones.
const floorWarmup = 20

// floorRunner polls cmd/cri-floor, one process per call, with the
// answers a runtime just gave: the floor under that runtime's List
// latencies on this machine, and the memory of a CRI server on gRPC and
// the containerd client that does nothing else.
type floorRunner struct {
	t          *testing.T
	bin        string
	containerd string // address the floor holds a client and event subscription on
	namespace  string
	iterations int
	minItems   int
	n          int
}

func newFloorRunner(t *testing.T, containerdAddr, namespace string, iterations, minItems int) *floorRunner {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cri-floor")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cri-floor")
	build.Dir = framework.ModuleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build cri-floor: %v\n%s", err, out)
	}
	return &floorRunner{t: t, bin: bin, containerd: containerdAddr, namespace: namespace, iterations: iterations, minItems: minItems}
}

// run is a bench.Config.Floor.
func (f *floorRunner) run(ctx context.Context, answers *floor.Answers) (*bench.FloorResult, error) {
	f.n++
	dir, err := os.MkdirTemp("", "acri-floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := answers.Write(dir); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "cri.sock")
	logPath := filepath.Join(f.t.TempDir(), fmt.Sprintf("cri-floor-%d.log", f.n))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(f.bin, "--socket", sock, "--answers", dir, "--containerd", f.containerd, "--namespace", f.namespace)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// waitErr is written before exited is closed.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return waitErr
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("cri-floor did not stop on SIGTERM")
		}
	}
	// Also when the polling fails or the test is cut short.
	f.t.Cleanup(func() { _ = stop() })

	if err := framework.WaitCRI(sock, 20*time.Second, exited, func() error { return waitErr }); err != nil {
		return nil, fmt.Errorf("cri-floor: %w (log %s)", err, logPath)
	}
	rt, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 2*time.Minute, nil, false)
	if err != nil {
		return nil, err
	}
	defer rt.Close(ctx)
	// Warm, as accel-cri is by the lifecycle phases before its polling:
	// the first calls of a new process fault its code in and grow its heap.
	if _, err := bench.Poll(ctx, rt, floorWarmup, f.minItems); err != nil {
		return nil, fmt.Errorf("warm cri-floor up: %w", err)
	}
	ops, err := bench.Poll(ctx, rt, f.iterations, f.minItems)
	if err != nil {
		return nil, fmt.Errorf("poll cri-floor: %w", err)
	}
	res := &bench.FloorResult{Ops: ops, Procs: bench.Snapshot([]bench.ProcGroup{{Name: "cri-floor", Pids: bench.Pids(cmd.Process.Pid)}})}
	if err := stop(); err != nil {
		return nil, fmt.Errorf("cri-floor: %w (log %s)", err, logPath)
	}
	return res, nil
}
