package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// Remove deletes the containerd container before its files; a crash in
// between left checkpoints and state dirs nothing ever removed (found by
// the chaos suite). Recovery removes those of unknown pods and containers
// and keeps the rest.
func TestCleanOrphanFiles(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	r := &Runtime{rootDir: root, stateDir: state, store: newStore(root)}
	addShownPod(r.store, newPod(podMeta{ID: "podkept"}))
	r.store.addContainer(newContainer(containerMeta{ID: "ctrkept"}))
	files := map[string]bool{ // path -> kept
		filepath.Join(root, "pods", "podkept.json"):          true,
		filepath.Join(root, "pods", "podgone.json"):          false,
		filepath.Join(root, "pods", "podnew.creating.json"):  true,
		filepath.Join(root, "containers", "ctrkept.json"):    true,
		filepath.Join(root, "containers", "ctrgone.json"):    false,
		filepath.Join(state, "pods", "podkept", "hostname"):  true,
		filepath.Join(state, "pods", "podgone", "hostname"):  false,
		filepath.Join(state, "containers", "ctrkept", "x"):   true,
		filepath.Join(state, "containers", "ctrgone", "a/b"): false,
	}
	for p := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r.cleanOrphanFiles()
	for p, kept := range files {
		_, err := os.Stat(p)
		if kept && err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
		if !kept && err == nil {
			t.Errorf("%s left", p)
		}
	}
	for _, d := range []string{filepath.Join(state, "pods", "podgone"), filepath.Join(state, "containers", "ctrgone")} {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("dir %s left", d)
		}
	}
}
