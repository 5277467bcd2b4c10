package cgroups

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tempHost is a Host whose v1 hierarchies are directories below a temp
// dir, one per controller.
func tempHost(t *testing.T, controllers ...string) (*Host, string) {
	t.Helper()
	root := t.TempDir()
	h := &Host{Version: V1}
	for _, c := range controllers {
		h.Mounts = append(h.Mounts, Mount{Point: filepath.Join(root, c), Root: "/", Options: []string{"rw", c}})
	}
	return h, root
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRemoveLeftover(t *testing.T) {
	h, root := tempHost(t, "cpuset", "memory", "pids")
	// v1 hierarchies: one with the empty leftover, one where it is busy
	// (a file inside: rmdir fails, as on a cgroup with processes), one
	// without it.
	empty := filepath.Join(root, "cpuset", "kubepods", "c1")
	busy := filepath.Join(root, "memory", "kubepods", "c1")
	mkdirs(t, empty, busy, filepath.Join(root, "pids", "kubepods"))
	if err := os.WriteFile(filepath.Join(busy, "tasks"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.RemoveLeftover("/kubepods/c1")
	if _, err := os.Stat(empty); !os.IsNotExist(err) {
		t.Errorf("empty leftover %s not removed: %v", empty, err)
	}
	if _, err := os.Stat(busy); err != nil {
		t.Errorf("busy cgroup %s removed: %v", busy, err)
	}
	for _, bad := range []string{"kubepods.slice:cri:c1", "/", "/kubepods/../x"} {
		h.RemoveLeftover(bad) // not cgroupfs paths: nothing to do, nothing removed
	}
	if _, err := os.Stat(filepath.Join(root, "pids", "kubepods")); err != nil {
		t.Errorf("parent removed: %v", err)
	}
}

func TestRemoveLeftoverChildren(t *testing.T) {
	h, root := tempHost(t, "cpu", "memory")
	gone := strings.Repeat("a", 64)  // a removed container's leftover
	alive := strings.Repeat("b", 64) // a container still running
	busy := strings.Repeat("c", 64)  // a leftover still holding a process
	for _, c := range []string{"cpu", "memory"} {
		mkdirs(t, filepath.Join(root, c, "pods", "p1", gone), filepath.Join(root, c, "pods", "p1", alive),
			filepath.Join(root, c, "pods", "p1", "not-an-id"), filepath.Join(root, c, "pods", "p1", busy))
	}
	if err := os.WriteFile(filepath.Join(root, "memory", "pods", "p1", busy, "tasks"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.RemoveLeftoverChildren("/pods/p1", func(id string) bool { return id == alive })
	for _, c := range []string{"cpu", "memory"} {
		if _, err := os.Stat(filepath.Join(root, c, "pods", "p1", gone)); !os.IsNotExist(err) {
			t.Errorf("%s: leftover not removed: %v", c, err)
		}
		for _, keep := range []string{alive, "not-an-id"} {
			if _, err := os.Stat(filepath.Join(root, c, "pods", "p1", keep)); err != nil {
				t.Errorf("%s: %s removed: %v", c, keep, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "cpu", "pods", "p1", busy)); !os.IsNotExist(err) {
		t.Errorf("empty leftover in cpu not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "pods", "p1", busy)); err != nil {
		t.Errorf("busy cgroup removed: %v", err)
	}
	for _, bad := range []string{"pods.slice", "/pods/../x"} {
		h.RemoveLeftoverChildren(bad, func(string) bool { return false }) // nothing to do
	}
}

// The leak-check helpers see only what is below the parent they are given.
func TestWalkLeftoversRemoveTrees(t *testing.T) {
	h, root := tempHost(t, "cpu", "memory")
	rel := func(ps []string) []string {
		var out []string
		for _, p := range ps {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return out
	}
	mkdirs(t,
		filepath.Join(root, "cpu", "acri-1", "pod1", "c1"),
		filepath.Join(root, "cpu", "acri-1", "pod2"),
		filepath.Join(root, "memory", "acri-1", "pod1", "c1", "sub"),
		filepath.Join(root, "cpu", "acri-2", "pod1", "c1"), // another instance's
	)
	wantWalk := []string{"/cpu/acri-1", "/cpu/acri-1/pod1", "/cpu/acri-1/pod1/c1", "/cpu/acri-1/pod2",
		"/memory/acri-1", "/memory/acri-1/pod1", "/memory/acri-1/pod1/c1", "/memory/acri-1/pod1/c1/sub"}
	if got := rel(h.Walk("/acri-1")); !slices.Equal(got, wantWalk) {
		t.Errorf("Walk = %q\nwant %q", got, wantWalk)
	}
	wantLeft := []string{"/cpu/acri-1/pod1/c1", "/memory/acri-1/pod1/c1", "/memory/acri-1/pod1/c1/sub"}
	if got := rel(h.Leftovers("/acri-1")); !slices.Equal(got, wantLeft) {
		t.Errorf("Leftovers = %q\nwant %q", got, wantLeft)
	}
	h.KillTree("/acri-1") // no cgroup.procs in plain directories: nothing to kill
	h.RemoveTrees("/acri-1")
	if got := h.Walk("/acri-1"); len(got) != 0 {
		t.Errorf("left after RemoveTrees: %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "cpu", "acri-2", "pod1", "c1")); err != nil {
		t.Errorf("another parent's cgroup removed: %v", err)
	}
	busy := filepath.Join(root, "cpu", "acri-2", "pod1", "c1")
	if err := os.WriteFile(filepath.Join(busy, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTree(filepath.Join(root, "cpu", "acri-2")); err == nil {
		t.Error("RemoveTree of a busy tree: no error")
	}
}
