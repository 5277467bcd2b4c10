package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/accel-cri/accel-cri/internal/bench"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		args    []string
		wantErr string
		check   func(t *testing.T, o *options)
	}{
		{desc: "defaults", args: []string{"--endpoint", "unix:///x.sock", "--image", "busybox"}, check: func(t *testing.T, o *options) {
			c := o.cfg
			if c.Label != "unix:///x.sock" || c.Pods != 20 || !slices.Equal(c.Concurrency, []int{1, 8}) || c.ListPods != 100 || c.ListIterations != 100 || c.Warmup != 1 || o.timeout != 30*time.Minute {
				t.Errorf("defaults %+v", c)
			}
		}},
		{desc: "concurrency list and repeats", args: []string{"--endpoint", "e", "--image", "i", "--concurrency", "1, 4", "--concurrency", "16"}, check: func(t *testing.T, o *options) {
			if !slices.Equal(o.cfg.Concurrency, []int{1, 4, 16}) {
				t.Errorf("concurrency %v", o.cfg.Concurrency)
			}
		}},
		{desc: "pid groups and shims", args: []string{"--endpoint", "e", "--image", "i", "--pids", "accel-cri=1", "--pids", "containerd=2,3", "--shims", "shims=/run/x"}, check: func(t *testing.T, o *options) {
			var names []string
			for _, g := range o.cfg.Procs {
				names = append(names, g.Name)
			}
			if !slices.Equal(names, []string{"accel-cri", "containerd", "shims"}) || !o.cfg.Procs[2].Shims || o.cfg.Procs[1].Shims {
				t.Errorf("groups %v", names)
			}
			if got := o.cfg.Procs[1].Pids(); !slices.Equal(got, []int{2, 3}) {
				t.Errorf("containerd pids %v", got)
			}
		}},
		{desc: "no endpoint", args: []string{"--image", "i"}, wantErr: "--endpoint and --image are required"},
		{desc: "no image", args: []string{"--endpoint", "e"}, wantErr: "--endpoint and --image are required"},
		{desc: "bad concurrency", args: []string{"--endpoint", "e", "--image", "i", "--concurrency", "0"}, wantErr: `bad value "0"`},
		{desc: "bad pid", args: []string{"--endpoint", "e", "--image", "i", "--pids", "x=abc"}, wantErr: `bad pid "abc"`},
		{desc: "pids without name", args: []string{"--endpoint", "e", "--image", "i", "--pids", "123"}, wantErr: "NAME=PID"},
		{desc: "shims without substring", args: []string{"--endpoint", "e", "--image", "i", "--shims", "s="}, wantErr: "NAME=SUBSTRING"},
		{desc: "hold", args: []string{"--endpoint", "e", "--image", "i", "--hold", "90s"}, check: func(t *testing.T, o *options) {
			if o.hold != 90*time.Second {
				t.Errorf("hold %s", o.hold)
			}
		}},
		{desc: "hold without steady-state pods", args: []string{"--endpoint", "e", "--image", "i", "--hold", "1m", "--list-pods", "0"}, wantErr: "--hold needs --list-pods"},
		{desc: "stray argument", args: []string{"--endpoint", "e", "--image", "i", "extra"}, wantErr: "unexpected arguments"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestWriteOutputs(t *testing.T) {
	dir := t.TempDir()
	o := &options{jsonOut: filepath.Join(dir, "r.json"), mdOut: filepath.Join(dir, "r.md"), svgOut: filepath.Join(dir, "r.svg")}
	res := &bench.Result{Label: "x", Lifecycle: []bench.LifecycleResult{{Concurrency: 1, Pods: 1, Phases: []bench.Named{{Name: bench.PhasePodStart, Summary: bench.Summary{N: 1, P50Ms: 5, P90Ms: 5, P99Ms: 5}}}}}}
	var stdout strings.Builder
	if err := writeOutputs(o, res, &stdout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "| 1 | 1 | 0 | PodStart | 5.00 |") {
		t.Errorf("stdout lacks the table:\n%s", stdout.String())
	}
	for _, f := range []string{"r.json", "r.md", "r.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v, %d bytes", f, err, len(b))
		}
	}
}
