package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// Shared helpers of the spec builder tests.

func testCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), "accel-cri")
}

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

// checkErr fails unless err matches want: nil wants no error, else
// errors.Is(err, want).
func checkErr(t *testing.T, err, want error) bool {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("want error %v, got none", want)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("want error %v, got %v", want, err)
	}
	return err == nil
}

// addShownPod adds p to s as RunPodSandbox leaves a pod it finished.
func addShownPod(s *store, p *Pod) {
	s.addPod(p)
	s.showPod(p)
}
