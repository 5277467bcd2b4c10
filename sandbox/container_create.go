package sandbox

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// CreateContainer creates a container in a ready pod from an image that is
// present. It does not start it.
func (r *Runtime) CreateContainer(ctx context.Context, podID string, cfg *runtimeapi.ContainerConfig) (_ string, retErr error) {
	p, err := r.store.pod(podID)
	if err != nil {
		return "", err
	}
	pst := r.store.podStatusOf(p)
	if pst.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return "", fmt.Errorf("%w: pod sandbox %s is not ready", errdefs.ErrFailedPrecondition, p.ID)
	}
	// Every container runs under its pod's handler: VM and gVisor shims
	// put a pod's containers into the pod's sandbox.
	h, err := r.handlerOf(p.RuntimeHandler)
	if err != nil {
		return "", fmt.Errorf("pod sandbox %s: %w", p.ID, err)
	}
	img, err := r.images.Get(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return "", fmt.Errorf("image %q of container %q: %w", cfg.GetImage().GetImage(), cfg.GetMetadata().GetName(), err)
	}
	// An image pulled before the namespace's signature policy existed, or
	// for another namespace, is verified before it runs here. kubelet
	// names the image by its id and the pod's image in user_specified_image.
	ref := cfg.GetImage().GetUserSpecifiedImage()
	if ref == "" {
		ref = cfg.GetImage().GetImage()
	}
	if err := r.images.CheckSignature(ctx, p.Config.GetMetadata().GetNamespace(), ref, img); err != nil {
		return "", fmt.Errorf("container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	cimg, err := r.containerdImage(ctx, img, h.snapshotter)
	if err != nil {
		return "", err
	}
	id := newID()
	name := containerName(p.ID, cfg.GetMetadata())
	if err := r.store.reserveName(name, id); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			r.store.releaseName(name, id)
		}
	}()

	meta := containerMeta{
		ID: id, PodID: p.ID, Config: cfg, ImageName: cfg.GetImage().GetImage(), ImageID: img.ID,
		ImageRef: imageRef(img), CreatedAt: time.Now(),
	}
	if dir, rel := p.Config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && rel != "" {
		meta.LogPath = filepath.Join(dir, rel)
	}
	meta.StopSignal = stopSignalOf(cfg, img.Spec.Config.StopSignal)
	if meta.CgroupsPath, err = cgroups.Path(r.cgroupDriver, p.Config.GetLinux().GetCgroupParent(), id); err != nil {
		return "", err
	}
	var targetPID uint32
	if t := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId(); t != "" {
		tc, err := r.store.container(t)
		if err != nil {
			return "", fmt.Errorf("namespace target: %w", err)
		}
		if targetPID = r.store.containerStatusOf(tc).PID; targetPID == 0 {
			return "", fmt.Errorf("%w: namespace target container %s is not running", errdefs.ErrFailedPrecondition, t)
		}
	}
	uids, gids, err := spec.UsernsMappings(p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return "", fmt.Errorf("pod %w", err)
	}
	vols, err := r.planImageVolumes(ctx, id, p.Config.GetMetadata().GetNamespace(), cfg, h.snapshotter, uids, gids)
	if err != nil {
		return "", err
	}
	meta.ImageVolumes = vols
	plan, err := r.specs.Container(spec.Container{
		ID: id, SandboxID: p.ID, PodConfig: p.Config, Config: cfg,
		Image: img.Spec.Config, ImageName: meta.ImageName,
		SandboxPID: pst.PID, Pinned: spec.Pinned{UTS: p.Pinned.UTS, IPC: p.Pinned.IPC}, TargetPID: targetPID, NetNSPath: p.NetNSPath,
		HostnamePath: p.Files.HostnamePath, HostsPath: p.Files.HostsPath, ResolvPath: p.Files.ResolvPath, ShmPath: p.Files.ShmPath,
		CgroupsPath: meta.CgroupsPath, Handler: specHandler(p.RuntimeHandler, h),
		PassedAnnotations: containerPassedAnnotations(h, p.Config.GetAnnotations(), cfg.GetAnnotations()),
	})
	if err != nil {
		return "", err
	}
	if err := prepareSpecHost(plan, cfg.GetLinux().GetSecurityContext().GetPrivileged()); err != nil {
		return "", err
	}
	labels := map[string]string{labelKind: kindCtr, labelPodID: p.ID}
	if len(vols) > 0 {
		// The image volumes' views are kept by the container's record
		// (its labels); until it exists, by a lease that NewContainer
		// takes over.
		lctx, done, err := r.client.WithLease(ctx)
		if err != nil {
			return "", fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(lctx), time.Minute)
			defer cancel()
			logErr(whileUnavailable(dctx, func() error { return done(dctx) }), "Delete the lease of a container's creation", "container", id)
		}()
		ctx = lctx
		if err := r.mountImageVolumes(ctx, id, vols); err != nil {
			return "", err
		}
		bindImageVolumes(plan.Binds(), vols)
		defer func() {
			if retErr != nil {
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				logErr(r.removeImageVolumes(dctx, id, vols), "Undo image volumes", "container", id)
			}
		}()
		maps.Copy(labels, imageVolumeRefLabels(vols))
	}
	// NRI plugins adjust the spec once it is built (nri.go); the sync
	// block covers that event until the container is in the store, not
	// the image work before.
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	npod := nriPod(p, pst)
	var nriHooked, nriAdjusted bool
	defer func() {
		if retErr != nil && nriHooked {
			r.undoNRICreate(ctx, npod, meta)
		}
	}()
	// The spec's last option, and an NRI adjustment, keep the spec
	// containerd stores: it is not read back.
	var ctrSpec *runtimespec.Spec
	ctr, err := r.client.NewContainer(ctx, id,
		r.withRootfsSnapshot(id, img, cimg, rootfsRemapOpts(uids, gids)),
		containerd.WithNewSpec(plan.Opts(&ctrSpec)...),
		r.withNRIAdjustment(npod, &meta, &ctrSpec, &nriHooked, &nriAdjusted),
		containerd.WithRuntime(h.runtimeType, h.options),
		containerd.WithContainerLabels(labels),
		containerd.WithContainerExtension(extContainerMeta, &meta),
	)
	if err != nil {
		return "", fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	defer func() {
		if retErr != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			logErr(ctr.Delete(dctx, containerd.WithSnapshotCleanup), "Undo container", "container", id)
		}
	}()
	c := newContainer(meta)
	c.process = ctrSpec.Process
	st := containerStatus{State: runtimeapi.ContainerState_CONTAINER_CREATED, Resources: cfg.GetLinux().GetResources(), User: userOf(ctrSpec)}
	if nriAdjusted {
		st.Resources = resourcesFromSpec(st.Resources, ctrSpec)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := r.store.updateContainer(c, func(containerStatus) (containerStatus, error) { return st, nil }); err != nil {
		return "", err
	}
	r.store.addContainer(c)
	r.publishContainer(c, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	r.nri.PostCreateContainer(ctx, npod, nriContainer(c, st, ctrSpec))
	return id, nil
}

// imageRef is the reference the CRI reports as image_ref: the digest
// reference when the image has one (it names the exact content), else the id.
func imageRef(img images.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

// stopSignalOf picks the signal that stops the container gracefully: the
// CRI's (from the pod spec's lifecycle), else the image's, else SIGTERM.
func stopSignalOf(cfg *runtimeapi.ContainerConfig, imageSignal string) string {
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		return ociSignalName(s)
	}
	if imageSignal != "" {
		return imageSignal
	}
	return "SIGTERM"
}
