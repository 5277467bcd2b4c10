package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// tb runs code written for tests (test/e2e/cluster.Start and the framework
// it uses, which take a testing.TB) in a command, as the testing package
// would: each function registered with Cleanup runs last-in first-out, in a
// goroutine of its own, when finish is called; Fatal and FailNow end the
// goroutine they are called in (run's or a cleanup's) with runtime.Goexit,
// so a failed Start leaves its cleanups to finish. Its output goes to out
// with a timestamp. Methods the cluster code does not use are the embedded
// nil TB's and panic.
type tb struct {
	testing.TB

	name string
	out  io.Writer
	ctx  context.Context
	stop context.CancelFunc

	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tmp      string // TempDir's parent, made on first use
	tmps     int
}

func newTB(name string, out io.Writer) *tb {
	ctx, stop := context.WithCancel(context.Background())
	return &tb{name: name, out: out, ctx: ctx, stop: stop}
}

// run calls f in a goroutine of its own and reports whether it returned
// without the TB failing: a Fatal in f ends only that goroutine.
func (t *tb) run(f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	return !t.Failed()
}

// finish cancels Context, runs the cleanups (also those registered by
// cleanups) last-in first-out, then removes the temp dirs, and reports
// whether nothing failed.
func (t *tb) finish() bool {
	t.stop()
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		f := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		t.run(f)
	}
	if t.tmp != "" {
		framework.UnmountUnder(t.tmp)
		if err := os.RemoveAll(t.tmp); err != nil {
			t.Errorf("remove %s: %v", t.tmp, err)
		}
	}
	return !t.Failed()
}

func (t *tb) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *tb) Log(args ...any) { t.output(fmt.Sprintln(args...)) }
func (t *tb) Logf(format string, args ...any) {
	t.output(fmt.Sprintf(format, args...))
}

func (t *tb) output(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(s) == 0 || s[len(s)-1] != '\n' {
		s += "\n"
	}
	fmt.Fprintf(t.out, "%s %s", time.Now().UTC().Format("15:04:05.000"), s)
}

func (t *tb) Fail() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
}

func (t *tb) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *tb) FailNow() {
	t.Fail()
	runtime.Goexit()
}

func (t *tb) Error(args ...any)                 { t.Log(args...); t.Fail() }
func (t *tb) Errorf(format string, args ...any) { t.Logf(format, args...); t.Fail() }
func (t *tb) Fatal(args ...any)                 { t.Log(args...); t.FailNow() }
func (t *tb) Fatalf(format string, args ...any) { t.Logf(format, args...); t.FailNow() }

// A skip is a failure here: the cluster cannot be made without what is
// missing.
func (t *tb) Skip(args ...any)                 { t.Fatal(args...) }
func (t *tb) Skipf(format string, args ...any) { t.Fatalf(format, args...) }
func (t *tb) SkipNow()                         { t.FailNow() }
func (t *tb) Skipped() bool                    { return false }

func (t *tb) Helper()                  {}
func (t *tb) Name() string             { return t.name }
func (t *tb) Context() context.Context { return t.ctx }
func (t *tb) Output() io.Writer        { return t.out }

func (t *tb) Setenv(key, value string) {
	old, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if had {
			os.Setenv(key, old)
		} else {
			os.Unsetenv(key)
		}
	})
}

// TempDir returns a new directory below one acri-cluster-tmp-* dir of
// os.TempDir(), marked as this process's (framework.MarkOwned): a test run's
// framework.SweepStale removes it only once this process is gone, with
// every process naming it and every mount below it.
func (t *tb) TempDir() string {
	t.mu.Lock()
	if t.tmp == "" {
		dir, err := os.MkdirTemp("", "acri-cluster-tmp-")
		if err != nil {
			t.mu.Unlock()
			t.Fatal(err)
		}
		t.tmp = dir
		t.mu.Unlock()
		framework.MarkOwned(t, dir)
		t.mu.Lock()
	}
	t.tmps++
	dir := filepath.Join(t.tmp, strconv.Itoa(t.tmps))
	t.mu.Unlock()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
