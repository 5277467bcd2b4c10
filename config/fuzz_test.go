package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
)

// FuzzLoad feeds arbitrary TOML to Load and Validate. Load must fail with
// an error naming the file or return a config; a config that validates
// must survive Marshal and Load unchanged (the documented default config is
// produced by Marshal, so what it writes must read back).
func FuzzLoad(f *testing.F) {
	def, err := Marshal(Default())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def)
	f.Add([]byte("socket = \"/run/x.sock\"\nlog_level = \"debug\"\n"))
	f.Add([]byte("[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\n"))
	f.Add([]byte("no_such_key = 1\n"))
	f.Add([]byte("pull_progress_timeout = \"-5s\"\n"))
	dir := f.TempDir()
	var seq atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		path := filepath.Join(dir, strconv.FormatInt(seq.Add(1), 10)+".toml")
		defer os.Remove(path)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, false)
		if err != nil {
			if !bytes.Contains([]byte(err.Error()), []byte(path)) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if cfg.Validate() != nil {
			return
		}
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal of a valid config: %v", err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := Load(path, false)
		if err != nil {
			t.Fatalf("Load of Marshal output: %v\n%s", err, out)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("Marshal output does not validate: %v\n%s", err, out)
		}
		out2, err := Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("config changed in a Marshal/Load round trip:\n%s\n---\n%s", out, out2)
		}
	})
}
