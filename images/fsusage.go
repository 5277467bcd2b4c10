package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
)

// fsUsageMaxAge is how long FsUsage answers from its last walk: kubelet asks
// every few seconds, and a walk of a large snapshot tree is not free.
const fsUsageMaxAge = 10 * time.Second

// FsUsage reports the usage of the image filesystem directory (WithImageFsPath,
// or the snapshotter root containerd reported): UsedBytes is the space the
// files take on disk (st_blocks*512, as du), InodesUsed the number of
// inodes; both count a hard-linked inode once and stay on the directory's
// filesystem (like du -x). Mountpoint is that directory. A directory that
// does not exist yet reports zeros. One walk runs at a time, and a result
// younger than fsUsageMaxAge is reused (Timestamp says when it was taken).
func (s *Service) FsUsage(ctx context.Context) (FsUsage, error) {
	if s.fsPath == "" {
		return FsUsage{}, fmt.Errorf("%w: image filesystem path unknown: set WithImageFsPath", errdefs.ErrFailedPrecondition)
	}
	s.fsMu.Lock()
	defer s.fsMu.Unlock()
	if !s.fsLast.Timestamp.IsZero() && time.Since(s.fsLast.Timestamp) < s.fsMaxAge {
		return s.fsLast, nil
	}
	u := FsUsage{Mountpoint: s.fsPath, Timestamp: time.Now()}
	bytes, inodes, err := diskUsage(ctx, s.fsPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return FsUsage{}, fmt.Errorf("image filesystem usage of %s: %w", s.fsPath, err)
	default:
		u.UsedBytes, u.InodesUsed = bytes, inodes
	}
	s.fsLast = u
	return u, nil
}

// invalidateFsUsage drops the cached usage after the store changed: kubelet's
// image GC re-reads ImageFsInfo after removing images to see whether it freed
// enough, and a stale answer would make it remove more.
func (s *Service) invalidateFsUsage() {
	s.fsMu.Lock()
	s.fsLast = FsUsage{}
	s.fsMu.Unlock()
}

// diskUsage walks root. Entries that vanish during the walk (snapshots being
// removed) are skipped; ctx cancels the walk.
func diskUsage(ctx context.Context, root string) (bytes, inodes uint64, err error) {
	rootInfo, err := os.Lstat(root)
	if err != nil {
		return 0, 0, err
	}
	rootDev, _, _, _, ok := statOf(rootInfo)
	if !ok {
		return 0, 0, fmt.Errorf("%w: no inode information on this platform", errdefs.ErrNotImplemented)
	}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]struct{}{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != root {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		dev, ino, nlink, blocks, _ := statOf(info)
		if dev != rootDev {
			// Another filesystem mounted below root: not ours to count.
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if nlink > 1 && !d.IsDir() {
			k := inode{dev, ino}
			if _, dup := seen[k]; dup {
				return nil
			}
			seen[k] = struct{}{}
		}
		inodes++
		bytes += blocks * 512
		return nil
	})
	return bytes, inodes, err
}
