package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNewMigrationWarmer(t *testing.T) {
	root := t.TempDir()
	// mkprocs makes dir/cgroup.procs under root and returns its path.
	mkprocs := func(dir string) string {
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "cgroup.procs")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mi := func(id int, mroot, point, fstype, super string) string {
		return fmt.Sprintf("%d 1 0:%d %s %s rw,nosuid - %s cgroup %s\n", id, id, mroot, filepath.Join(root, point), fstype, super)
	}
	unified := mkprocs("unified/pod/x")
	cpu := mkprocs("cpu,cpuacct/pod/x")
	pids := mkprocs("pids/x")
	spaced := mkprocs("with space/x")
	subtree := mkprocs("unified/x")
	hybridCgroup := "12:pids:/pod/x\n4:cpu,cpuacct:/pod/x\n1:name=systemd:/pod/x\n0::/pod/x\n"
	for _, tc := range []struct {
		name, cgroup, mountinfo string
		want                    string // the cgroup.procs chosen; "" for none
	}{
		{
			name:   "hybrid host: the unified hierarchy",
			cgroup: hybridCgroup,
			mountinfo: "20 1 8:1 / / rw - ext4 /dev/vda rw\n" +
				mi(30, "/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct") +
				mi(31, "/", "unified", "cgroup2", "rw"),
			want: unified,
		},
		{
			name:      "v1 only, controllers in another order than /proc/self/cgroup",
			cgroup:    "4:cpuacct,cpu:/pod/x\n",
			mountinfo: mi(30, "/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
			want:      cpu,
		},
		{
			name:   "v1 option words are not taken for controllers",
			cgroup: "12:pids:/x\n",
			mountinfo: mi(30, "/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct,xattr") +
				mi(32, "/", "pids", "cgroup", "rw,pids,clone_children"),
			want: pids,
		},
		{
			name:      "a subtree mounted (a container without a cgroup namespace)",
			cgroup:    "0::/kubepods/pod/x\n",
			mountinfo: mi(31, "/kubepods/pod", "unified", "cgroup2", "rw,nsdelegate"),
			want:      subtree,
		},
		{
			name:   "own cgroup outside the mounted subtree: the next hierarchy",
			cgroup: "12:pids:/x\n0::/elsewhere\n",
			mountinfo: mi(31, "/pod", "unified", "cgroup2", "rw") +
				mi(32, "/", "pids", "cgroup", "rw,pids"),
			want: pids,
		},
		{
			name:      "a mount root that is only a name prefix of the own path",
			cgroup:    "0::/podx\n",
			mountinfo: mi(31, "/pod", "unified", "cgroup2", "rw"),
		},
		{
			name:      "an escaped mount point",
			cgroup:    "12:pids:/x\n",
			mountinfo: fmt.Sprintf("32 1 0:32 / %s rw - cgroup cgroup rw,pids\n", strings.ReplaceAll(filepath.Join(root, "with space"), " ", `\040`)),
			want:      spaced,
		},
		{
			name:      "favordynmods keeps the lock warm: nothing to do",
			cgroup:    hybridCgroup,
			mountinfo: mi(30, "/", "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct") + mi(31, "/", "unified", "cgroup2", "rw,favordynmods"),
		},
		{
			name:      "no cgroup.procs where the hierarchy says",
			cgroup:    "0::/gone\n",
			mountinfo: mi(31, "/", "unified", "cgroup2", "rw"),
		},
		{
			name:      "no cgroup mount",
			cgroup:    hybridCgroup,
			mountinfo: "20 1 8:1 / / rw - ext4 /dev/vda rw\n",
		},
		{
			name:      "in no hierarchy",
			mountinfo: mi(31, "/", "unified", "cgroup2", "rw"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Discover(fakeHost(tc.mountinfo, nil))
			if err != nil {
				t.Fatal(err)
			}
			w, why := newMigrationWarmer(strings.NewReader(tc.cgroup), h.Mounts, h.Favordynmods)
			if tc.want == "" {
				if w != nil {
					t.Fatalf("warmer on %s, want none", w.procs)
				}
				if why == "" {
					t.Error("no reason given")
				}
				return
			}
			if w == nil {
				t.Fatalf("no warmer (%s), want %s", why, tc.want)
			}
			if w.procs != tc.want {
				t.Errorf("procs = %s, want %s", w.procs, tc.want)
			}
			if string(w.pid) != strconv.Itoa(os.Getpid()) {
				t.Errorf("pid = %q", w.pid)
			}
		})
	}
}

// waitKick waits for the warming write Kick started to end.
func waitKick(t *testing.T, w *MigrationWarmer) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); w.busy.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the warming write did not end")
		}
	}
}

func TestMigrationWarmerKick(t *testing.T) {
	procs := filepath.Join(t.TempDir(), "cgroup.procs")
	if err := os.WriteFile(procs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	w := &MigrationWarmer{procs: procs, pid: []byte("4242")}
	w.Kick()
	waitKick(t, w)
	if b, _ := os.ReadFile(procs); string(b) != "4242" || w.off.Load() {
		t.Fatalf("after a kick: file %q, off %v", b, w.off.Load())
	}

	// A failing write turns warming off for good.
	w.procs = filepath.Join(t.TempDir(), "gone", "cgroup.procs")
	w.Kick()
	waitKick(t, w)
	if !w.off.Load() {
		t.Fatal("warming still on after a failed write")
	}
	w.procs = procs
	_ = os.WriteFile(procs, nil, 0o644)
	w.Kick()
	waitKick(t, w)
	if b, _ := os.ReadFile(procs); len(b) != 0 {
		t.Errorf("written %q while off", b)
	}

	var none *MigrationWarmer
	none.Kick() // no warming on this host: a no-op
}

// TestHostMigrationWarmer moves this test process into its own cgroup on
// the real host and checks that it stays where it was.
func TestHostMigrationWarmer(t *testing.T) {
	before, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Discover(OS{})
	if err != nil {
		t.Fatal(err)
	}
	w, why := newMigrationWarmer(strings.NewReader(string(before)), h.Mounts, h.Favordynmods)
	if w == nil {
		if h.Favordynmods {
			return // nothing to warm on this host
		}
		t.Fatalf("no warmer on this host: %s", why)
	}
	if err := w.write(); err != nil {
		t.Fatalf("write %s: %v", w.procs, err)
	}
	after, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("the warming write moved this process:\nbefore %s\nafter %s", before, after)
	}
}
