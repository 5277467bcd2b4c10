package spec

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/accel-cri/accel-cri/devices"
	"github.com/accel-cri/accel-cri/internal/testutil"
)

// Shared helpers of the spec builder tests.

func testCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), "accel-cri")
}

// testHost is a Host over this machine, as the core fills it (the test
// process's capabilities, /dev, os.Hostname), with no cgroup controllers,
// AppArmor, OOM range or CDI; each change edits it.
func testHost(t *testing.T, change ...func(*Host)) Host {
	t.Helper()
	caps, err := cap.Current()
	if err != nil {
		t.Fatal(err)
	}
	h := Host{
		Capabilities: caps,
		Hostname:     os.Hostname,
		DeviceNode:   devNode("/dev"),
		Devices:      oci.HostDevices,
		Open:         func(p string) (io.ReadCloser, error) { return os.Open(p) },
	}
	for _, c := range change {
		c(&h)
	}
	return h
}

// testBuilder is a builder over testHost(t, change...).
func testBuilder(t *testing.T, change ...func(*Host)) *Builder {
	t.Helper()
	return New(testHost(t, change...))
}

// devNode resolves CRI device nodes below root.
func devNode(root string) func(string) (string, devices.NodeInfo, error) {
	return func(p string) (string, devices.NodeInfo, error) { return devices.ResolveNode(root, p) }
}

// oomFloor is a host's OOM score range whose minimum is the value.
type oomFloor int

func (f oomFloor) Clamp(want int) int { return max(min(max(want, -1000), 1000), int(f)) }

// applySpec applies opts to containerd's default spec, as
// containerd.WithNewSpec does, for a container without a snapshot (user
// lookups then read spec.Root.Path: give oci.WithRootFSPath first).
func applySpec(t *testing.T, opts ...oci.SpecOpts) (*oci.Spec, error) {
	t.Helper()
	return oci.GenerateSpec(testCtx(), nil, &containers.Container{ID: "c1"}, opts...)
}

// mustApply is applySpec that fails the test on error.
func mustApply(t *testing.T, opts ...oci.SpecOpts) *oci.Spec {
	t.Helper()
	s, err := applySpec(t, opts...)
	if err != nil {
		t.Fatalf("apply spec opts: %v", err)
	}
	return s
}

// resolveBinds stands in for the core: each bind's source is its host path
// as it is (image volumes keep what the test gave them).
func resolveBinds(binds []*Bind) {
	for _, b := range binds {
		if !b.ImageVolume {
			b.Source = b.HostPath
		}
	}
}

// applyPlan applies a container's plan over testRootfs, its binds resolved
// by resolveBinds, and checks that the last option kept the spec.
func applyPlan(t *testing.T, plan *Plan) (*oci.Spec, error) {
	t.Helper()
	resolveBinds(plan.Binds())
	var kept *runtimespec.Spec
	s, err := applySpec(t, append([]oci.SpecOpts{oci.WithRootFSPath(testRootfs(t))}, plan.Opts(&kept)...)...)
	if err == nil && kept != s {
		t.Fatal("the last option did not keep the spec")
	}
	return s, err
}

// testRootfs makes an image rootfs with /etc/passwd and /etc/group.
func testRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nother:x:2000:2000::/:/bin/sh\n",
		"etc/group":  "root:x:0:\nwheel:x:10:root,app\naudio:x:29:app\nstaff:x:50:\napp:x:1000:\nother:x:2000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// checkErr fails unless err matches want (testutil.CheckErr).
func checkErr(t *testing.T, err, want error) bool {
	t.Helper()
	return testutil.CheckErr(t, err, want)
}
