package stats

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// layerUsageMaxAge is how old a writable layer's disk use may be when
// reported. Measuring it walks the layer's upper directory, which is too slow
// to do for every container on every stats call (containerd's CRI keeps
// the same figure up to 10 s old as well).
const layerUsageMaxAge = 10 * time.Second

// layerUsages caches the writable layers' disk use. A stale entry is
// reported as it is while one background measurement renews it; a missing
// one is measured in the call.
type layerUsages struct {
	mu      sync.Mutex
	entries map[string]*layerUsage
	// filesystems are the filesystems the snapshotters keep layers on, by
	// snapshotter (layerFilesystem); noFilesystem the snapshotters whose
	// layers are no directories.
	filesystems  map[string]*layerFilesystem
	noFilesystem map[string]bool
	wg           sync.WaitGroup
	ctx          context.Context // ends with the collector: renewals stop
	cancel       context.CancelFunc
}

type layerUsage struct {
	usage    *runtimeapi.FilesystemUsage // nil: the container has no layer
	at       time.Time
	renewing bool
}

func newLayerUsages() *layerUsages {
	ctx, cancel := context.WithCancel(context.Background())
	return &layerUsages{entries: map[string]*layerUsage{}, filesystems: map[string]*layerFilesystem{}, noFilesystem: map[string]bool{},
		ctx: ctx, cancel: cancel}
}

// close stops renewals and waits for those under way.
func (l *layerUsages) close() {
	l.cancel()
	l.wg.Wait()
}

func (l *layerUsages) forget(id string) {
	l.mu.Lock()
	delete(l.entries, id)
	l.mu.Unlock()
}

// writableLayer reports the disk use of container c's writable layer.
func (s *Collector) writableLayer(ctx context.Context, c Container) (*runtimeapi.FilesystemUsage, error) {
	l := s.layers
	l.mu.Lock()
	e, ok := l.entries[c.ID]
	// With a collection loop, it renews the entries (renewLayerOf).
	if ok && (time.Since(e.at) < layerUsageMaxAge || e.renewing || s.period > 0) {
		l.mu.Unlock()
		return e.usage, nil
	}
	if ok {
		e.renewing = true
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			rctx, cancel := context.WithTimeout(l.ctx, time.Minute)
			defer cancel()
			u, err := s.measureLayer(rctx, c)
			l.mu.Lock()
			defer l.mu.Unlock()
			if cur, ok := l.entries[c.ID]; ok && cur == e {
				if err != nil {
					klog.V(4).InfoS("Measuring a writable layer", "container", c.ID, "err", err)
					e.renewing = false
					return
				}
				l.entries[c.ID] = &layerUsage{usage: u, at: time.Now()}
			}
		}()
		return e.usage, nil
	}
	l.mu.Unlock()
	u, err := s.measureLayer(ctx, c)
	if err != nil {
		return nil, err
	}
	if s.src.Exists(c.ID) {
		l.mu.Lock()
		l.entries[c.ID] = &layerUsage{usage: u, at: time.Now()}
		l.mu.Unlock()
	}
	return u, nil
}

// renewLayerOf measures c's writable layer when its entry is missing or
// older than maxAge (the collector's pass, in its own goroutine).
func (s *Collector) renewLayerOf(ctx context.Context, c Container, maxAge time.Duration) {
	l := s.layers
	l.mu.Lock()
	e, ok := l.entries[c.ID]
	if ok && (time.Since(e.at) < maxAge || e.renewing) {
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	u, err := s.measureLayer(ctx, c)
	if err != nil {
		klog.V(4).InfoS("Measuring a writable layer", "container", c.ID, "err", err)
		return
	}
	l.mu.Lock()
	l.entries[c.ID] = &layerUsage{usage: u, at: time.Now()}
	l.mu.Unlock()
	if !s.src.Exists(c.ID) {
		l.forget(c.ID) // removed while it was measured
	}
}

// measureLayer asks the snapshotter for the layer's use; nil when the
// container has none (any more).
func (s *Collector) measureLayer(ctx context.Context, c Container) (*runtimeapi.FilesystemUsage, error) {
	sn := c.Snapshotter
	su, err := s.cd.SnapshotService(sn).Usage(ctx, c.ID)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.layers.learnFilesystem(ctx, s.cd.SnapshotService(sn), sn, c.ID)
	return &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: sn},
		UsedBytes:  &runtimeapi.UInt64Value{Value: uint64(su.Size)},
		InodesUsed: &runtimeapi.UInt64Value{Value: uint64(su.Inodes)},
	}, nil
}

// layerFilesystem is the filesystem a snapshotter keeps its layers on, as
// the metrics report it (container_fs_limit_bytes, container_fs_inodes_*):
// found once per snapshotter from a snapshot's mounts, its figures renewed
// by the stats collector's pass. Entries are replaced, never changed.
type layerFilesystem struct {
	path                         string // a directory on it: the snapshotter's snapshots directory
	device                       string // as cAdvisor names it (fsDevice)
	at                           time.Time
	capacity, inodes, inodesFree uint64
}

// learnFilesystem finds the filesystem of snapshotter sn from snapshot
// key's mounts, unless it is known: the upper directory of an overlay (or
// the source of a bind mount) is <root>/snapshots/<n>/fs, and its
// snapshots directory outlives the snapshot. Snapshotters of other kinds
// (block devices) have no such directory: their layers' filesystem is not
// reported.
func (l *layerUsages) learnFilesystem(ctx context.Context, ss snapshots.Snapshotter, sn, key string) {
	l.mu.Lock()
	_, known := l.filesystems[sn]
	known = known || l.noFilesystem[sn]
	l.mu.Unlock()
	if known {
		return
	}
	mounts, err := ss.Mounts(ctx, key)
	if err != nil {
		return
	}
	dir := layerDir(mounts)
	if dir == "" {
		l.mu.Lock()
		l.noFilesystem[sn] = true
		l.mu.Unlock()
		return
	}
	if filepath.Base(dir) == "fs" {
		dir = filepath.Dir(filepath.Dir(dir))
	}
	dev, err := fsDevice(dir, "/proc/self/mountinfo")
	if err != nil {
		klog.V(4).InfoS("Finding a snapshotter's filesystem", "snapshotter", sn, "dir", dir, "err", err)
		return
	}
	fs, err := statLayerFilesystem(dir, dev)
	if err != nil {
		return
	}
	l.mu.Lock()
	if _, ok := l.filesystems[sn]; !ok {
		l.filesystems[sn] = fs
	}
	l.mu.Unlock()
}

// layerDir is the directory a container's writable layer lives in, from
// its snapshot's mounts ("" if none is a directory).
func layerDir(mounts []mount.Mount) string {
	for _, m := range mounts {
		if m.Type == "overlay" {
			for _, o := range m.Options {
				if d, ok := strings.CutPrefix(o, "upperdir="); ok {
					return d
				}
			}
		}
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			return m.Source
		}
	}
	return ""
}

func statLayerFilesystem(dir, device string) (*layerFilesystem, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, err
	}
	bs := uint64(st.Bsize)
	return &layerFilesystem{path: dir, device: device, at: time.Now(),
		capacity: st.Blocks * bs, inodes: st.Files, inodesFree: st.Ffree}, nil
}

// filesystem returns the filesystem of snapshotter sn (nil: not known).
func (l *layerUsages) filesystem(sn string) *layerFilesystem {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.filesystems[sn]
}

// renewFilesystems takes the figures of every known filesystem older
// than maxAge again; one that cannot be read any more is forgotten (found
// again with the next layer measured).
func (l *layerUsages) renewFilesystems(maxAge time.Duration) {
	l.mu.Lock()
	var old []*layerFilesystem
	for _, fs := range l.filesystems {
		if time.Since(fs.at) >= maxAge {
			old = append(old, fs)
		}
	}
	l.mu.Unlock()
	for _, fs := range old {
		renewed, err := statLayerFilesystem(fs.path, fs.device)
		l.mu.Lock()
		for sn, cur := range l.filesystems {
			if cur != fs {
				continue
			}
			if err != nil {
				delete(l.filesystems, sn)
			} else {
				l.filesystems[sn] = renewed
			}
		}
		l.mu.Unlock()
	}
}
