package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestExecOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exec")
	var out, errOut bytes.Buffer
	o, err := newExecOutput(dir, "e1", false, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.Config()
	if cfg.Stdout == "" || cfg.Stderr == "" || cfg.Stdin != "" || cfg.Terminal {
		t.Fatalf("config %+v", cfg)
	}
	// What the shim does in Start: open the write ends (blocking: the read
	// ends are open already), write, close when the process's output ends.
	for path, s := range map[string]string{cfg.Stdout: "to stdout\n", cfg.Stderr: "to stderr\n"} {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	o.start()
	o.Wait()
	if out.String() != "to stdout\n" || errOut.String() != "to stderr\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}

	// A terminal has one output; a session that never started closes
	// without waiting for a writer.
	o, err = newExecOutput(dir, "e2", true, &out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := o.Config(); cfg.Stdout == "" || cfg.Stderr != "" || !cfg.Terminal {
		t.Errorf("terminal config %+v", cfg)
	}
	o.Cancel()
	o.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o.start() // after Cancel: copies nothing, does not block
	o.Wait()
}
