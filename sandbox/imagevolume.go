package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	kernel "github.com/containerd/containerd/v2/pkg/kernelversion"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// This file makes a container's image volumes (CRI Mount.image, Kubernetes'
// ImageVolume): an image present on the node mounted read-only into the
// container, or a directory of it (image_sub_path). As containerd's CRI does
// (internal/cri/server/container_image_mount.go), each is a snapshot of the
// image's layers mounted on the host and bound into the container from
// there; here the snapshot is a read-only view (no upper layer) and belongs
// to one container, not to its pod:
//
//   - The view is made in the snapshotter of the pod's handler, keyed
//     imagevolume-<container>-<mount index>, labelled with the container's
//     id (labelImageVolumeOf), and referenced by the container's containerd
//     record (a containerd.io/gc.ref.snapshot label), so the garbage
//     collector keeps it exactly as long as the container exists. The lease
//     of CreateContainer covers the time before the record exists.
//   - It is mounted at <state>/imagevolumes/<container>/<mount index>; the
//     OCI spec binds that (or the sub path, resolved inside it) with
//     rbind,rprivate,ro. A sub path must exist and be a directory; it is
//     opened inside the mount (symlinks cannot leave it), and the directory
//     it resolves to is what the container gets.
//   - RemoveContainer and a failed CreateContainer unmount and remove it;
//     recovery removes the views and mounts of containers that no longer
//     exist (cleanOrphanImageVolumes).
//   - In a pod with a user namespace of its own the volume is idmapped with
//     the mount's mappings (kubelet sends the pod's), else the pod's, so
//     files of the image keep their owners as the container sees them, as
//     in the pod's root filesystem. A view of one layer is a bind of that
//     layer: the OCI runtime idmaps the container's bind of it, as it does
//     for host paths. A view of more layers is an overlay, which cannot be
//     idmapped itself (the kernel refuses MOUNT_ATTR_IDMAP on overlayfs):
//     its lower layers are, when it is mounted on the host (the uidmap= and
//     gidmap= options containerd's mount package turns into idmapped
//     lowerdirs), and the bind into the container is plain. containerd's
//     CRI gets the same from snapshot remap labels; mapping at mount time
//     needs neither a snapshotter with the remap-ids capability nor a copy
//     of the layers per mapping.

const (
	// labelImageVolumeOf marks an image volume's view snapshot with the id
	// of the container it belongs to.
	labelImageVolumeOf = "io.accel-cri/image-volume-of"
	// labelGCRefSnapshot, followed by "<snapshotter>/<name>", on a
	// containerd container keeps the snapshot its value names.
	labelGCRefSnapshot = "containerd.io/gc.ref.snapshot."
	// imageVolumesDir, under the state dir, holds the host mounts.
	imageVolumesDir = "imagevolumes"
)

// overlayIDMapKernel is the first Linux release whose overlayfs takes
// idmapped lower layers: a view of more than one layer is an overlay.
var overlayIDMapKernel = kernel.KernelVersion{Kernel: 5, Major: 19}

// imageVolume is one image volume of a container, recorded in its
// metadata (so removal after a restart knows what to remove).
type imageVolume struct {
	// Mount is the index of the CRI mount in ContainerConfig.mounts.
	Mount int `json:"mount"`
	// ImageID is the image's id (config digest), what PullImage returned
	// for it; ContainerStatus reports it as the mount's image.image_ref.
	ImageID string `json:"imageID"`
	// Snapshotter and Key name the view snapshot.
	Snapshotter string `json:"snapshotter"`
	Key         string `json:"key"`
	// Target is where the view is mounted on the host. Source is what the
	// container gets: Target, or the sub path resolved inside it; set
	// once mounted.
	Target string `json:"target"`
	Source string `json:"source,omitempty"`

	parent     string                       // chain id of the image's layers in Snapshotter
	subPath    string                       // clean image_sub_path, "" for the image's root
	uids, gids []runtimespec.LinuxIDMapping // the volume's id mappings (spec.ImageVolumeMappings)
	// mappedLayers: the view was mounted with idmapped layers, so the
	// bind into the container is not idmapped again.
	mappedLayers bool
}

// planImageVolumes finds the image of each image volume of a container
// about to be created (an image that is not present is NotFound), checks
// it against the signature policy of the pod's namespace ns as the
// container's own image is, and makes sure it is unpacked in snapshotter.
// It changes nothing on the host. podUIDs and podGIDs are the mappings of
// the pod's user namespace (none in the host's).
func (r *Runtime) planImageVolumes(ctx context.Context, id, ns string, cfg *runtimeapi.ContainerConfig, snapshotter string, podUIDs, podGIDs []runtimespec.LinuxIDMapping) ([]*imageVolume, error) {
	var vols []*imageVolume
	for i, m := range cfg.GetMounts() {
		ref := m.GetImage().GetImage()
		if ref == "" {
			continue
		}
		field := fmt.Sprintf("mounts[%d]", i)
		sub, err := spec.CheckImageMount(field, m)
		if err != nil {
			return nil, err
		}
		uids, gids, err := spec.ImageVolumeMappings(m, podUIDs, podGIDs)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.%v", errdefs.ErrInvalidArgument, field, err)
		}
		img, err := r.images.Get(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: image %q: %w", crierrors.ErrImageVolumeMountFailed, field, ref, err)
		}
		uref := m.GetImage().GetUserSpecifiedImage()
		if uref == "" {
			uref = ref
		}
		if err := r.images.CheckSignature(ctx, ns, uref, img); err != nil {
			return nil, fmt.Errorf("%s: image volume: %w", field, err)
		}
		ri, err := r.containerdImage(ctx, img, snapshotter)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: image %q: %w", crierrors.ErrImageVolumeMountFailed, field, ref, err)
		}
		vols = append(vols, &imageVolume{
			Mount:       i,
			ImageID:     img.ID,
			Snapshotter: snapshotter,
			Key:         "imagevolume-" + id + "-" + strconv.Itoa(i),
			Target:      filepath.Join(r.imageVolumeDir(id), strconv.Itoa(i)),
			parent:      ri.parent,
			subPath:     sub,
			uids:        uids,
			gids:        gids,
		})
	}
	return vols, nil
}

func (r *Runtime) imageVolumesRoot() string        { return filepath.Join(r.stateDir, imageVolumesDir) }
func (r *Runtime) imageVolumeDir(id string) string { return filepath.Join(r.imageVolumesRoot(), id) }

// imageVolumeRefLabels are the labels of a container's record that keep its
// image volumes' views from the garbage collector.
func imageVolumeRefLabels(vols []*imageVolume) map[string]string {
	labels := map[string]string{}
	for _, v := range vols {
		labels[labelGCRefSnapshot+v.Snapshotter+"/imagevolume-"+strconv.Itoa(v.Mount)] = v.Key
	}
	return labels
}

// mountImageVolumes makes the view of each volume, mounts it on the host
// and resolves its sub path, for container id. ctx must hold a lease until
// the container's record references the views. On failure everything it
// made is removed again; errors start with ImageVolumeMountFailed (kubelet
// counts those) and carry the errdefs class: a sub path that does not exist
// is NotFound, one that is not a directory or leaves the image
// InvalidArgument.
func (r *Runtime) mountImageVolumes(ctx context.Context, id string, vols []*imageVolume) (retErr error) {
	if len(vols) == 0 {
		return nil
	}
	if err := os.MkdirAll(r.imageVolumeDir(id), 0o711); err != nil {
		return fmt.Errorf("%w: %w", crierrors.ErrImageVolumeMountFailed, err)
	}
	defer func() {
		if retErr != nil {
			logErr(r.removeImageVolumes(context.WithoutCancel(ctx), id, vols), "Undo image volumes", "container", id)
		}
	}()
	for _, v := range vols {
		if err := r.mountImageVolume(ctx, id, v); err != nil {
			return fmt.Errorf("%w: mounts[%d]: %w", crierrors.ErrImageVolumeMountFailed, v.Mount, err)
		}
	}
	return nil
}

func (r *Runtime) mountImageVolume(ctx context.Context, id string, v *imageVolume) error {
	mounts, err := r.client.SnapshotService(v.Snapshotter).View(ctx, v.Key, v.parent,
		snapshots.WithLabels(map[string]string{labelImageVolumeOf: id}))
	if err != nil {
		if errdefs.IsNotFound(err) {
			// The image's layers were collected: the next attempt
			// unpacks again.
			r.unpacked.Delete(v.Snapshotter + "\x00" + v.ImageID)
		}
		return fmt.Errorf("view of image %s: %w", v.ImageID, err)
	}
	if len(v.uids) > 0 && slices.ContainsFunc(mounts, func(m mount.Mount) bool { return m.Type == "overlay" }) {
		if ok, err := kernel.GreaterEqualThan(overlayIDMapKernel); err != nil || !ok {
			return fmt.Errorf("%w: an image of more than one layer in a pod with a user namespace needs overlayfs on idmapped layers (Linux %d.%d)",
				errdefs.ErrNotImplemented, overlayIDMapKernel.Kernel, overlayIDMapKernel.Major)
		}
		mounts = withMappedLayers(mounts, v.uids, v.gids)
		v.mappedLayers = true
	}
	if err := os.Mkdir(v.Target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := mount.All(mounts, v.Target); err != nil {
		return fmt.Errorf("mount view of image %s at %s: %w", v.ImageID, v.Target, err)
	}
	src, err := resolveImageSubPath(v.Target, v.subPath)
	if err != nil {
		return err
	}
	v.Source = src
	return nil
}

// withMappedLayers adds the mappings to each overlay mount as the uidmap=
// and gidmap= options ("container:host:size,..."), which containerd's
// mount package applies by idmapping the lower directories.
func withMappedLayers(mounts []mount.Mount, uids, gids []runtimespec.LinuxIDMapping) []mount.Mount {
	join := func(ms []runtimespec.LinuxIDMapping) string {
		s := make([]string, len(ms))
		for i, m := range ms {
			s[i] = idMapString(m)
		}
		return strings.Join(s, ",")
	}
	out := slices.Clone(mounts)
	for i, m := range out {
		if m.Type == "overlay" {
			out[i].Options = append(slices.Clone(m.Options), "uidmap="+join(uids), "gidmap="+join(gids))
		}
	}
	return out
}

// resolveImageSubPath returns the directory sub names inside root, with
// symlinks resolved as if root were "/": nothing outside root can be
// reached. A missing sub path is NotFound; one that is not a directory
// InvalidArgument.
func resolveImageSubPath(root, sub string) (string, error) {
	if sub == "" {
		return root, nil
	}
	f, err := os.OpenInRoot(root, sub)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("image_sub_path %q: %w in the image", sub, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("%w: image_sub_path %q: %v", errdefs.ErrInvalidArgument, sub, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("image_sub_path %q: %w", sub, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%w: image_sub_path %q is not a directory in the image", errdefs.ErrInvalidArgument, sub)
	}
	// The path the kernel resolved the open to: a symlink on the way was
	// followed inside root, and the bind must not follow it again from
	// the host's root.
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return "", fmt.Errorf("image_sub_path %q: %w", sub, err)
	}
	if real != root && !strings.HasPrefix(real, root+"/") {
		return "", fmt.Errorf("%w: image_sub_path %q resolves to %q, outside the image", errdefs.ErrInvalidArgument, sub, real)
	}
	return real, nil
}

// removeImageVolumes unmounts and removes a container's image volumes, and
// its directory. Missing pieces are fine: a removal cut short is repeated.
func (r *Runtime) removeImageVolumes(ctx context.Context, id string, vols []*imageVolume) error {
	if len(vols) == 0 {
		return nil // the directory is made only for volumes
	}
	var errs []error
	for _, v := range vols {
		errs = append(errs, unmountImageVolume(v.Target))
		err := whileUnavailable(ctx, func() error { return r.client.SnapshotService(v.Snapshotter).Remove(ctx, v.Key) })
		if err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove image volume snapshot %s: %w", v.Key, err))
		}
	}
	if err := os.Remove(r.imageVolumeDir(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// whileUnavailable runs f again, every 200 ms until ctx ends, while
// containerd does not answer: when containerd was killed under a create,
// its undo waits for the restarted one rather than leave a view (or the
// lease that keeps it) behind until accel-cri's next start.
func whileUnavailable(ctx context.Context, f func() error) error {
	for {
		err := f()
		if !errdefs.IsUnavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unmountImageVolume unmounts a view from the host (detached: a process
// that happens to be inside cannot keep it) and removes its mount point.
func unmountImageVolume(target string) error {
	if err := mount.UnmountAll(target, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount image volume %s: %w", target, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove image volume mount point: %w", err)
	}
	return nil
}

// cleanOrphanImageVolumes removes the image volumes of containers that do
// not exist: a crash between making them and recording the container, or
// between deleting the container and them. Host mounts first, then the
// views in every handler's snapshotter.
func (r *Runtime) cleanOrphanImageVolumes(ctx context.Context) {
	known := func(id string) bool { return r.store.containerExact(id) != nil }
	entries, err := os.ReadDir(r.imageVolumesRoot())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.ErrorS(err, "List image volume mounts")
	}
	for _, e := range entries {
		if known(e.Name()) {
			continue
		}
		dir := filepath.Join(r.imageVolumesRoot(), e.Name())
		klog.InfoS("Removing image volume mounts of a container that no longer exists", "path", dir)
		targets, _ := os.ReadDir(dir)
		for _, t := range targets {
			logErr(unmountImageVolume(filepath.Join(dir, t.Name())), "Remove orphan image volume mount", "path", dir)
		}
		logErr(os.Remove(dir), "Remove orphan image volume dir", "path", dir)
	}
	snapshotters := map[string]bool{}
	for _, h := range r.handlers {
		snapshotters[h.snapshotter] = true
	}
	for _, sn := range slices.Sorted(maps.Keys(snapshotters)) {
		s := r.client.SnapshotService(sn)
		var orphans []string
		err := s.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if !known(info.Labels[labelImageVolumeOf]) {
				orphans = append(orphans, info.Name)
			}
			return nil
		}, `labels."`+labelImageVolumeOf+`"`)
		if err != nil {
			klog.ErrorS(err, "List image volume snapshots", "snapshotter", sn)
			continue
		}
		for _, key := range orphans {
			klog.InfoS("Removing image volume snapshot of a container that no longer exists", "snapshotter", sn, "key", key)
			if err := s.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Remove orphan image volume snapshot", "snapshotter", sn, "key", key)
			}
		}
	}
}

// statusMounts are the mounts ContainerStatus reports: the CRI mounts as
// created, each image volume's image with its image_ref (the id of the
// image the volume was made from).
func statusMounts(cfg *runtimeapi.ContainerConfig, vols []*imageVolume) []*runtimeapi.Mount {
	mounts := cfg.GetMounts()
	if len(vols) == 0 {
		return mounts
	}
	out := slices.Clone(mounts)
	for _, v := range vols {
		if v.Mount >= len(out) || out[v.Mount].GetImage() == nil {
			continue
		}
		m := proto.CloneOf(out[v.Mount])
		m.Image.ImageRef = v.ImageID
		out[v.Mount] = m
	}
	return out
}
