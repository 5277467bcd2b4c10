package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	// Write through a new file and rename, as operators' tools do; the
	// store must notice either way (inode or size/mtime).
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreFor(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "policy.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(root, "policy.json")
	write(t, def, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write(t, filepath.Join(dir, "media.json"), `{"default":[{"type":"reject"}]}`)

	s := NewStore(def, dir)
	if !s.Enabled() {
		t.Fatal("not enabled")
	}
	p, err := s.For("media")
	if err != nil || p == nil || p.File != filepath.Join(dir, "media.json") || p.Default[0].Type != TypeReject {
		t.Fatalf("media: %+v %v", p, err)
	}
	again, _ := s.For("media")
	if again != p {
		t.Error("an unchanged file was parsed again")
	}
	for _, ns := range []string{"", "other"} {
		p, err := s.For(ns)
		if err != nil || p == nil || p.File != def {
			t.Errorf("namespace %q: %+v %v, want the default", ns, p, err)
		}
	}

	// A changed file is read again at once.
	write(t, filepath.Join(dir, "media.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	p, err = s.For("media")
	if err != nil || p.Default[0].Type != TypeAcceptAnything {
		t.Fatalf("after change: %+v %v", p, err)
	}
	// A broken file fails closed, naming the file, until it is fixed.
	write(t, filepath.Join(dir, "media.json"), `{"default":[{"type":"insecureAcceptAnything"}`)
	for range 2 {
		if p, err := s.For("media"); p != nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "media.json") {
			t.Fatalf("broken file: %+v %v", p, err)
		}
	}
	write(t, filepath.Join(dir, "media.json"), `{"default":[{"type":"reject"}]}`)
	if p, err := s.For("media"); err != nil || p.Default[0].Type != TypeReject {
		t.Fatalf("fixed file: %+v %v", p, err)
	}
	// A removed namespace file falls back to the default.
	if err := os.Remove(filepath.Join(dir, "media.json")); err != nil {
		t.Fatal(err)
	}
	if p, err := s.For("media"); err != nil || p.File != def {
		t.Fatalf("removed file: %+v %v", p, err)
	}
	// A namespace that is not a DNS label never names a file.
	for _, ns := range []string{"../policy", "Media", "a/b", strings.Repeat("a", 64)} {
		if _, err := s.For(ns); !errdefs.IsInvalidArgument(err) {
			t.Errorf("namespace %q: %v, want InvalidArgument", ns, err)
		}
	}
	// A configured default that is missing fails closed.
	if err := os.Remove(def); err != nil {
		t.Fatal(err)
	}
	if p, err := s.For("x"); p != nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing default: %+v %v", p, err)
	}
}

func TestStoreWithoutDefault(t *testing.T) {
	dir := t.TempDir()
	s := NewStore("", dir)
	if p, err := s.For("free"); p != nil || err != nil {
		t.Errorf("no file, no default: %+v %v", p, err)
	}
	if p, err := s.For(""); p != nil || err != nil {
		t.Errorf("no namespace, no default: %+v %v", p, err)
	}
	if NewStore("", "").Enabled() {
		t.Error("an empty store is enabled")
	}
	var nilStore *Store
	if p, err := nilStore.For("x"); p != nil || err != nil {
		t.Errorf("nil store: %+v %v", p, err)
	}
}

func TestStoreReloadsKeys(t *testing.T) {
	dir := t.TempDir()
	key, _ := writeKey(t, dir, "key.pub")
	def := filepath.Join(dir, "policy.json")
	write(t, def, `{"default":[{"type":"sigstoreSigned","keyPath":"`+key+`"}]}`)
	s := NewStore(def, "")
	p1, err := s.For("")
	if err != nil {
		t.Fatal(err)
	}
	// The key is rotated; the policy file is not touched.
	writeKey(t, dir, "key.pub.new")
	if err := os.Rename(filepath.Join(dir, "key.pub.new"), key); err != nil {
		t.Fatal(err)
	}
	p2, err := s.For("")
	if err != nil {
		t.Fatal(err)
	}
	if p1 == p2 || p1.Default[0].Keys[0] == p2.Default[0].Keys[0] {
		t.Error("a rotated key file was not read again")
	}
	// A key file that goes away fails closed, naming it.
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if _, err := s.For(""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), key) {
		t.Errorf("removed key: %v", err)
	}
}

func TestStoreCheck(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "policy.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(root, "policy.json")
	write(t, def, `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"r.example.com":[{"type":"reject"}]}}}`)
	write(t, filepath.Join(dir, "good.json"), `{"default":[{"type":"reject"}]}`)
	write(t, filepath.Join(dir, "bad.json"), `{"default":[{"type":"nope"}]}`)
	write(t, filepath.Join(dir, "Not_A_Namespace.json"), `{"default":[{"type":"reject"}]}`)
	write(t, filepath.Join(dir, "README"), `notes`)
	got, err := NewStore(def, dir).Check()
	if err != nil {
		t.Fatal(err)
	}
	byFile := map[string]FileCheck{}
	for _, c := range got {
		byFile[filepath.Base(c.File)] = c
	}
	if c := byFile["policy.json"]; c.Err != nil || c.Scopes != 1 || c.Namespace != "" {
		t.Errorf("default: %+v", c)
	}
	if c := byFile["good.json"]; c.Err != nil || c.Namespace != "good" {
		t.Errorf("good: %+v", c)
	}
	if c := byFile["bad.json"]; c.Err == nil || c.Unused || !strings.Contains(c.Err.Error(), "nope") {
		t.Errorf("bad: %+v", c)
	}
	for _, f := range []string{"Not_A_Namespace.json", "README"} {
		if c := byFile[f]; !c.Unused || c.Err == nil {
			t.Errorf("%s: %+v", f, c)
		}
	}
	if len(got) != 5 {
		t.Errorf("%d results, want 5: %+v", len(got), got)
	}
	if _, err := NewStore("", filepath.Join(root, "missing")).Check(); err == nil {
		t.Error("a missing directory passed the check")
	}
}
