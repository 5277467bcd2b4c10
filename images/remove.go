package images

import (
	"context"
	"fmt"
	"maps"
	"slices"

	containerdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// Remove removes the image ref names (by id, id prefix, tag or digest, as
// Get) with every containerd record of it: all its tags, digest references
// and its id record, as the CRI RemoveImage asks. The last deletion waits for
// containerd's garbage collection, so the content and snapshots no container
// uses are gone when Remove returns; snapshots a container still uses stay
// (containerd keeps them for the container), so running containers are not
// affected. Removing an image that does not exist succeeds.
func (s *Service) Remove(ctx context.Context, ref string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	s.mu.RLock()
	e, err := s.lookup(ref)
	var (
		id      string
		records map[string]record
	)
	if err == nil {
		id = e.info.id
		records = maps.Clone(e.records)
	}
	s.mu.RUnlock()
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove image: %w", err)
	}

	// Tags and digests first, the id record last: an interrupted Remove
	// leaves an image that can still be found and removed by id.
	names := slices.Sorted(maps.Keys(records))
	if _, ok := records[id]; ok {
		names = append(slices.DeleteFunc(names, func(n string) bool { return n == id }), id)
	}
	is := s.client.ImageService()
	for i, n := range names {
		target := records[n].target
		opts := []containerdimages.DeleteOpt{containerdimages.DeleteTarget(&target)}
		if i == len(names)-1 {
			opts = append(opts, containerdimages.SynchronousDelete())
		}
		err := is.Delete(ctx, n, opts...)
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("remove image %s: delete record %q: %w", id, n, err)
		}
		// NotFound: gone already, or re-pointed at another image by
		// someone else; either way it no longer names this one.
		s.mu.Lock()
		if s.byName[n] == id {
			s.indexRemove(n)
		}
		s.mu.Unlock()
	}
	s.invalidateFsUsage()
	klog.FromContext(ctx).Info("Removed image", "id", id, "records", names)
	return nil
}
