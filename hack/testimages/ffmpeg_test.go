package testimages

import (
	"slices"
	"strings"
	"testing"
)

func TestLddClosure(t *testing.T) {
	paths, err := lddClosure("/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(paths, "/lib64/ld-linux-x86-64.so.2") || !slices.ContainsFunc(paths, func(p string) bool { return strings.Contains(p, "libc.so.6") }) {
		t.Errorf("closure of /bin/ls: %v", paths)
	}
	if _, err := lddClosure(DefaultBusyboxPath); err == nil {
		t.Error("a static binary has no closure; want an error")
	}
	if _, err := FFmpeg("/nonexistent/ffmpeg"); err == nil || !strings.Contains(err.Error(), "install Debian's ffmpeg") {
		t.Errorf("missing ffmpeg: %v", err)
	}
}
