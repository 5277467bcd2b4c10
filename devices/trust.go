package devices

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// A CDI spec decides which host device nodes, mounts and hooks a container
// gets, so only a spec that only root could have written is used: the file
// and the directory it is in must be owned by root and not writable by
// group or others. The cache still reads every file of the spec dirs;
// Check refuses devices whose spec fails this, naming the reason.

// untrustedSpec returns why the spec file at path may not be used, or "".
func untrustedSpec(path string) string {
	if path == "" {
		return "spec file unknown"
	}
	for _, p := range []string{filepath.Dir(path), path} {
		// Stat follows a symlink to what is actually read; a symlink in
		// a trusted dir can only be replaced by root.
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Sprintf("stat %s: %v", p, err)
		}
		if reason := untrustedMode(p, fi); reason != "" {
			return reason
		}
	}
	return ""
}

func untrustedMode(p string, fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("%s: no owner information", p)
	}
	if st.Uid != 0 {
		return fmt.Sprintf("%s is owned by uid %d, not root", p, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Sprintf("%s is writable by group or others (mode %#o)", p, fi.Mode().Perm())
	}
	return ""
}
