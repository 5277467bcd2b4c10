package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The runc.v2 shim runs its OCI runtime with --root <handler root>/<namespace>;
// a container the runtime still has state for there is force-deleted in
// that root, and nothing is run when it has none.
func TestDeleteOCIState(t *testing.T) {
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	bin := filepath.Join(dir, "fake-runc")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$@\" >> "+argsFile+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "runtimes", "runc")
	r := &Runtime{store: newStore(t.TempDir()), namespace: "accel-cri", defaultHandler: "runc",
		handlers: map[string]*handler{"runc": withKind(&handler{name: "runc", runtimeType: RuntimeTypeRunc, binary: bin, root: root})}}
	addShownPod(r.store, newPod(podMeta{ID: "pod1", RuntimeHandler: "runc"}))
	c := newContainer(containerMeta{ID: "c1", PodID: "pod1"})

	r.deleteOCIState(context.Background(), c)
	if _, err := os.Stat(argsFile); err == nil {
		t.Fatal("the runtime was run for a container it has no state for")
	}
	if err := os.MkdirAll(filepath.Join(root, "accel-cri", "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	r.deleteOCIState(context.Background(), c)
	b, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), "--root "+filepath.Join(root, "accel-cri")+" delete --force c1"; got != want {
		t.Errorf("runtime ran with %q, want %q", got, want)
	}
}
