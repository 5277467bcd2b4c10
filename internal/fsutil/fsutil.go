// Package fsutil holds the small file helpers that several accel-cri packages
// share, so that crash-safe writes are done one way everywhere.
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path via a temp file in the same directory,
// fsync and rename, so a crash at any point leaves either the old file or the
// new one, never a half-written one.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFileRename(path, data, perm, true)
}

// ReplaceFile writes data to path via a temp file and rename, without
// fsync: a crash of the process at any point leaves the old file or the new
// one (the kernel has both), but a crash of the machine may lose the last
// writes. For state that means nothing after a reboot, such as the status of
// containers that a reboot kills anyway, and written on every lifecycle step:
// an fsync per step costs more than the rest of the step on a busy disk.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	return writeFileRename(path, data, perm, false)
}

func writeFileRename(path string, data []byte, perm os.FileMode, sync bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
