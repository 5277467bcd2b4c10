package preflight

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/accel-cri/accel-cri/config"
)

func TestCheckSignaturePolicy(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "policy.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(root, "policy.json")
	write := func(path, data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(def, `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"r.example.com":[{"type":"reject"}]}}}`)
	write(filepath.Join(dir, "media.json"), `{"default":[{"type":"reject"}]}`)
	check := func(cfg config.Config) []Result {
		t.Helper()
		c := &checker{cfg: cfg, host: goodHost()}
		return checkSignaturePolicy(context.Background(), c)
	}
	has := func(rs []Result, s Status, detail string) bool {
		for _, r := range rs {
			if r.Status == s && strings.Contains(r.Detail, detail) && (s == OK || r.Fix != "") {
				return true
			}
		}
		return false
	}

	cfg := config.Default()
	if rs := check(cfg); len(rs) != 1 || !has(rs, OK, "off") {
		t.Errorf("off: %+v", rs)
	}
	cfg.SignaturePolicy, cfg.SignaturePolicyDir = def, dir
	rs := check(cfg)
	if len(rs) != 2 || !has(rs, OK, "default policy "+def+": 1 docker scope(s)") || !has(rs, OK, `namespace "media"`) {
		t.Errorf("good files: %+v", rs)
	}
	write(filepath.Join(dir, "broken.json"), `{"default":[{"type":"sigstoreSigned","keyPath":"/nonexistent/key.pub"}]}`)
	write(filepath.Join(dir, "notes.txt"), `x`)
	rs = check(cfg)
	if !has(rs, Fail, "/nonexistent/key.pub") || !has(rs, Warn, "notes.txt") {
		t.Errorf("broken files: %+v", rs)
	}
	cfg.SignaturePolicyDir = filepath.Join(root, "missing")
	if rs := check(cfg); !has(rs, Fail, "missing") {
		t.Errorf("missing dir: %+v", rs)
	}
	cfg.SignaturePolicy, cfg.SignaturePolicyDir = "", dir
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if rs := check(cfg); len(rs) != 1 || !has(rs, OK, "images are not verified yet") {
		t.Errorf("empty dir: %+v", rs)
	}
}
