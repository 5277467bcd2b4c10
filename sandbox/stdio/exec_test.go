package stdio

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// NewExecIO discards output nobody asked for (the shim needs both FIFOs),
// reads the output itself without stdin, and leaves the copying to
// containerd's cio with stdin, reporting the end of the client's stdin.
func TestExecIO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exec")
	shimWrites := func(t *testing.T, path, s string) {
		t.Helper()
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	// The process exited: the output is copied, then the session ends.
	end := func(t *testing.T, e *ExecIO, got fmt.Stringer, want string) {
		t.Helper()
		e.Start() // with stdin cio copies already: nothing to do
		e.WaitOutput(10 * time.Second)
		if got.String() != want {
			t.Errorf("output %q, want %q", got.String(), want)
		}
		e.Cancel()
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}

	var errOut bytes.Buffer
	e, err := NewExecIO(dir, "e1", false, nil, nil, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := e.Config(); cfg.Stdout == "" || cfg.Stderr == "" || cfg.Stdin != "" {
		t.Fatalf("config %+v", cfg)
	}
	if e.StdinEOF() != nil {
		t.Error("a stdin EOF without stdin")
	}
	shimWrites(t, e.Config().Stdout, "discarded\n")
	shimWrites(t, e.Config().Stderr, "to stderr\n")
	end(t, e, &errOut, "to stderr\n")

	var out syncBuffer
	e, err = NewExecIO(dir, "e2", true, strings.NewReader("typed"), &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config()
	if cfg.Stdin == "" || cfg.Stdout == "" || cfg.Stderr != "" || !cfg.Terminal {
		t.Fatalf("terminal config with stdin %+v", cfg)
	}
	in, err := os.OpenFile(cfg.Stdin, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	b, err := io.ReadAll(in)
	if err != nil || string(b) != "typed" {
		t.Errorf("stdin read %q, %v", b, err)
	}
	waitClosed(t, e.StdinEOF(), "stdin EOF")
	shimWrites(t, cfg.Stdout, "tty output")
	end(t, e, &out, "tty output")
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left after Close: %v", left)
	}
}
