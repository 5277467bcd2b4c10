//go:build unix

package images

import (
	"io/fs"
	"syscall"
)

// statOf returns device, inode, link count and 512-byte blocks of a file.
func statOf(info fs.FileInfo) (dev, ino, nlink, blocks uint64, ok bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, 0, 0, false
	}
	//nolint:unconvert // field types differ between unix platforms
	return uint64(st.Dev), uint64(st.Ino), uint64(st.Nlink), uint64(st.Blocks), true
}
