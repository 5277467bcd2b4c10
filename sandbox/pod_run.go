package sandbox

import (
	"context"
	"fmt"
	"os"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/images"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/podns"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// RunPod creates and starts a pod sandbox: its files, network namespace and
// CNI networks, and its pause container. Everything it made is undone when
// any step fails, so a failed RunPodSandbox leaves nothing behind.
func (r *Runtime) RunPod(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (_ string, retErr error) {
	h, err := r.handlerOf(handler)
	if err != nil {
		return "", err
	}
	// A user namespace the handler cannot run is refused before anything
	// is made.
	uids, gids, err := spec.PodUsernsMappings(cfg, h.features.UserNamespaces)
	if err != nil {
		return "", err
	}
	id := newID()
	name := podName(cfg.GetMetadata())
	if err := r.store.reserveName(name, id); err != nil {
		return "", err
	}
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			r.store.releaseName(name, id)
		}
	}()

	infra := podNeedsInfra(cfg, h, r.alwaysInfra)
	var img images.Image
	var cimg rootfsImage
	if infra {
		if img, err = r.sandboxImageOf(ctx); err != nil {
			return "", err
		}
		if cimg, err = r.containerdImage(ctx, img, h.snapshotter); err != nil {
			return "", err
		}
	}

	meta := podMeta{ID: id, Config: cfg, RuntimeHandler: handler, CreatedAt: time.Now(), Infraless: !infra}
	// Until the pod is complete, a checkpoint says what to clean if
	// accel-cri dies half way (recover.cleanCreating).
	if err := writeJSON(r.creatingPath(id), meta); err != nil {
		return "", fmt.Errorf("pod %s: %w", id, err)
	}
	defer os.Remove(r.creatingPath(id))
	files, err := podns.WriteFiles(r.podDir(id), cfg, r.shmSize)
	if err != nil {
		return "", fmt.Errorf("pod %s files: %w", id, err)
	}
	undo = append(undo, func() { logErr(podns.RemoveFiles(r.podDir(id)), "Undo pod files", "pod", id) })
	meta.Files = files

	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	if !hostNet {
		var path string
		if uids != nil {
			// Owned by the pod's user namespace, which the pause joins
			// (userns.go).
			path, err = podnet.NewNetNSInUserns(r.netnsDir(), uids[0], gids[0])
		} else {
			path, err = podnet.NewNetNS(r.netnsDir())
		}
		if err != nil {
			return "", fmt.Errorf("pod %s network namespace: %w", id, err)
		}
		undo = append(undo, func() { logErr(podnet.RemoveNetNS(path), "Undo pod netns", "pod", id) })
		meta.NetNSPath = path
		if uids != nil {
			user, err := podns.PinNetNSOwner(path, r.podDir(id))
			if err != nil {
				return "", fmt.Errorf("pod %s: %w", id, err)
			}
			undo = append(undo, func() { logErr(podns.Unpin(podns.Namespaces{User: user}), "Undo pod user namespace", "pod", id) })
			meta.Pinned.User = user
		}
		if err := writeJSON(r.creatingPath(id), meta); err != nil {
			return "", fmt.Errorf("pod %s: %w", id, err)
		}
	}
	if !infra {
		pinned, err := podns.Pin(r.podDir(id), cfg)
		if err != nil {
			return "", fmt.Errorf("pod %s: %w", id, err)
		}
		undo = append(undo, func() { logErr(podns.Unpin(pinned), "Undo pod namespaces", "pod", id) })
		meta.Pinned.UTS, meta.Pinned.IPC = pinned.UTS, pinned.IPC
	}
	if meta.CgroupsPath, err = cgroups.Path(r.cgroupDriver, cfg.GetLinux().GetCgroupParent(), id); err != nil {
		return "", err
	}

	// CNI ADD and the sandbox's creation need nothing of each other, so they
	// run side by side. A pause container applies the pod's net sysctls
	// itself; the network goes first then, so the sysctls win over the
	// plugins' settings as they would in sequence.
	var network podnet.IPs
	var joinNet func() error
	if !hostNet {
		_, netSysctls := podns.SplitSysctls(cfg.GetLinux().GetSysctls())
		type netResult struct {
			setup bool // CNI ADD succeeded: undo needs a DEL
			err   error
		}
		netDone := make(chan netResult, 1)
		go func() {
			var res netResult
			network, res.err = r.network.SetupPod(ctx, id, meta.NetNSPath, cfg)
			res.setup = res.err == nil
			if res.err == nil && !infra {
				res.err = podns.ApplyNetSysctls(meta.NetNSPath, netSysctls)
			}
			netDone <- res
		}()
		joined := false
		joinNet = func() error {
			if joined {
				return nil
			}
			joined = true
			res := <-netDone
			if res.setup {
				undo = append(undo, func() {
					tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
					defer cancel()
					logErr(r.network.TeardownPod(tctx, id, meta.NetNSPath, cfg), "Undo pod network", "pod", id)
				})
			}
			if res.err != nil {
				return fmt.Errorf("pod %s network: %w", id, res.err)
			}
			return nil
		}
		// A failure of the sandbox still waits for CNI, so its undo can run.
		defer func() { _ = joinNet() }()
		if infra && len(netSysctls) > 0 {
			if err := joinNet(); err != nil {
				return "", err
			}
		}
	}

	var ctr containerd.Container
	if infra {
		specOpts, err := r.specs.Pod(spec.Pod{
			ID: id, Config: cfg, Image: img.Spec.Config, ImageName: r.sandboxImage, NetNSPath: meta.NetNSPath,
			CgroupsPath: meta.CgroupsPath, Handler: specHandler(handler, h), UsernsPath: meta.Pinned.User,
			PassedAnnotations: passAnnotations(cfg.GetAnnotations(), h.podAnnotations),
		})
		if err != nil {
			return "", err
		}
		ctr, err = r.client.NewContainer(ctx, id,
			r.withRootfsSnapshot(id, img, cimg, rootfsRemapOpts(uids, gids)),
			containerd.WithNewSpec(specOpts...),
			containerd.WithRuntime(h.runtimeType, h.options),
			containerd.WithContainerLabels(map[string]string{labelKind: kindPod, labelPodID: id}),
			containerd.WithContainerExtension(extPodMeta, &meta),
		)
	} else {
		// The record holds the pod's metadata for recovery; it never gets
		// a task. containerd requires a spec on every container.
		ctr, err = r.client.NewContainer(ctx, id,
			containerd.WithSpec(&oci.Spec{Version: runtimespec.Version}),
			containerd.WithRuntime(h.runtimeType, h.options),
			containerd.WithContainerLabels(map[string]string{labelKind: kindPod, labelPodID: id}),
			containerd.WithContainerExtension(extPodMeta, &meta),
		)
	}
	if err != nil {
		return "", fmt.Errorf("create sandbox container of pod %s: %w", id, err)
	}
	undo = append(undo, func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		logErr(ctr.Delete(dctx, containerd.WithSnapshotCleanup), "Undo sandbox container", "pod", id)
	})

	p := newPod(meta)
	p.mu.Lock()
	defer p.mu.Unlock()
	// The exit monitor must find the pod before the task can exit; the
	// CRI sees it once it is ready (showPod).
	r.store.addPod(p)
	undo = append(undo, func() { r.store.deletePod(id); r.store.removeCheckpoints("pods", id) })

	var pid uint32
	if infra {
		task, err := ctr.NewTask(ctx, cio.NullIO)
		if err != nil {
			return "", fmt.Errorf("create pause task of pod %s: %w", id, err)
		}
		undo = append(undo, func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, err := task.Delete(dctx, containerd.WithProcessKill)
			logErr(err, "Undo pause task", "pod", id)
		})
		if err := task.Start(ctx); err != nil {
			return "", fmt.Errorf("start pause task of pod %s: %w", id, err)
		}
		pid = task.Pid()
	}
	if joinNet != nil {
		if err := joinNet(); err != nil {
			return "", err
		}
	}
	st := podStatus{State: runtimeapi.PodSandboxState_SANDBOX_READY, PID: pid, Network: network}
	// NRI plugins hear of the pod while nobody else can see it yet; one may
	// refuse it. Undone, they hear it stop and go (all of them: one
	// earlier in their order may have accepted it). The sync block covers
	// the event and showPod, not the pull, CNI and pause before: taken
	// after p.mu, which nobody else can hold or wait for while the pod is
	// not shown.
	ctx, unblock := r.nri.BlockSync(ctx)
	defer unblock()
	undo = append(undo, func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nriNoticeTimeout)
		defer cancel()
		r.nri.StopPodSandbox(dctx, nriPod(p, st))
		r.nri.RemovePodSandbox(dctx, nriPod(p, st))
	})
	if err := r.nri.RunPodSandbox(ctx, nriPod(p, st)); err != nil {
		return "", fmt.Errorf("pod %s: %w", id, err)
	}
	// Nobody else writes the status of a pod being made, but the exit
	// monitor: a pause that exited meanwhile fails the pod, not shown as
	// ready with no process.
	if _, err := r.store.updatePod(p, func(cur podStatus) (podStatus, error) {
		if cur.State == runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			return cur, fmt.Errorf("pod %s: its pause process exited while the pod was made", id)
		}
		return st, nil
	}); err != nil {
		return "", err
	}
	r.store.showPod(p)
	klog.V(2).InfoS("Pod sandbox running", "pod", id, "name", name, "ip", network.IP, "pause", infra)
	r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	r.stats.Started(p.ID)
	r.publishPod(p, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return id, nil
}
