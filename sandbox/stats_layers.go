package sandbox

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/errdefs"
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
	wg      sync.WaitGroup
	ctx     context.Context // ends with the runtime: renewals stop
	cancel  context.CancelFunc
}

type layerUsage struct {
	usage    *runtimeapi.FilesystemUsage // nil: the container has no layer
	at       time.Time
	renewing bool
}

func newLayerUsages() *layerUsages {
	ctx, cancel := context.WithCancel(context.Background())
	return &layerUsages{entries: map[string]*layerUsage{}, ctx: ctx, cancel: cancel}
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
func (r *Runtime) writableLayer(ctx context.Context, c *Container) (*runtimeapi.FilesystemUsage, error) {
	l := r.layers
	l.mu.Lock()
	e, ok := l.entries[c.ID]
	// With a stats collector, it renews the entries (renewLayer).
	if ok && (time.Since(e.at) < layerUsageMaxAge || e.renewing || r.stats.period > 0) {
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
			u, err := r.measureLayer(rctx, c)
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
	u, err := r.measureLayer(ctx, c)
	if err != nil {
		return nil, err
	}
	if _, serr := r.store.container(c.ID); serr == nil {
		l.mu.Lock()
		l.entries[c.ID] = &layerUsage{usage: u, at: time.Now()}
		l.mu.Unlock()
	}
	return u, nil
}

// renewLayer measures c's writable layer when its entry is missing or
// older than maxAge (the stats collector's pass, in its own goroutine).
func (r *Runtime) renewLayer(ctx context.Context, c *Container, maxAge time.Duration) {
	l := r.layers
	l.mu.Lock()
	e, ok := l.entries[c.ID]
	if ok && (time.Since(e.at) < maxAge || e.renewing) {
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	u, err := r.measureLayer(ctx, c)
	if err != nil {
		klog.V(4).InfoS("Measuring a writable layer", "container", c.ID, "err", err)
		return
	}
	l.mu.Lock()
	l.entries[c.ID] = &layerUsage{usage: u, at: time.Now()}
	l.mu.Unlock()
	if _, serr := r.store.container(c.ID); serr != nil {
		l.forget(c.ID) // removed while it was measured
	}
}

// measureLayer asks the snapshotter for the layer's use; nil when the
// container has none (any more).
func (r *Runtime) measureLayer(ctx context.Context, c *Container) (*runtimeapi.FilesystemUsage, error) {
	sn := r.podSnapshotter(c.PodID)
	su, err := r.client.SnapshotService(sn).Usage(ctx, c.ID)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: sn},
		UsedBytes:  &runtimeapi.UInt64Value{Value: uint64(su.Size)},
		InodesUsed: &runtimeapi.UInt64Value{Value: uint64(su.Inodes)},
	}, nil
}
