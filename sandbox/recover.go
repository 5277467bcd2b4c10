package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/podns"
	"github.com/accel-cri/accel-cri/sandbox/stdio"
)

// recover rebuilds the store from containerd (what exists) and the status
// checkpoints (what happened). A pod or container whose creation did not
// finish (no checkpoint: the request never succeeded) is cleaned away; a
// container that exited while accel-cri was down gets its exit code and
// time from containerd; running containers get their output reattached.
func (r *Runtime) recover(ctx context.Context) error {
	ctrs, err := r.client.Containers(ctx, `labels."`+labelKind+`"`)
	if err != nil {
		return fmt.Errorf("recover: list containers: %w", err)
	}
	// A StartContainer cut short can leave its shim blocked opening the
	// output FIFOs nobody reads any more, and with it every call into the
	// pod's shim (the pause's status too). Readers on every FIFO of a
	// container not recorded as started let it finish; the tasks it made
	// are deleted below as never started.
	unblock := r.openStartFIFOs(ctx, ctrs)
	defer unblock()
	var appCtrs []containerd.Container
	for _, ctr := range ctrs {
		labels, err := ctr.Labels(ctx)
		if err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		switch labels[labelKind] {
		case kindPod:
			if err := r.recoverPod(ctx, ctr); err != nil {
				return err
			}
		case kindCtr:
			appCtrs = append(appCtrs, ctr)
		}
	}
	for _, ctr := range appCtrs {
		if err := r.recoverContainer(ctx, ctr); err != nil {
			return err
		}
	}
	r.cleanCreating(ctx)
	r.cleanOrphanImageVolumes(ctx)
	r.cleanOrphanNetNS()
	r.cleanOrphanFiles()
	r.cleanLeases(ctx)
	// Last, with every stale task deleted above: shims a cut-short task
	// create left serving nothing, their bundles gone (sandbox/shim).
	if n := r.shims.Reap(ctx, "recovery", nil); n > 0 {
		klog.InfoS("Ended shims nothing referred to", "shims", n)
	}
	klog.InfoS("Recovered state", "pods", len(r.store.listPods()), "containers", len(r.store.listContainers()))
	return nil
}

func extension[T any](ctx context.Context, ctr containerd.Container, name string) (*T, error) {
	exts, err := ctr.Extensions(ctx)
	if err != nil {
		return nil, err
	}
	a, ok := exts[name]
	if !ok {
		return nil, fmt.Errorf("container %s has no %s extension", ctr.ID(), name)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, fmt.Errorf("container %s: decode %s: %w", ctr.ID(), name, err)
	}
	t, ok := v.(*T)
	if !ok {
		return nil, fmt.Errorf("container %s: %s has type %T", ctr.ID(), name, v)
	}
	return t, nil
}

func (r *Runtime) recoverPod(ctx context.Context, ctr containerd.Container) error {
	meta, err := extension[podMeta](ctx, ctr, extPodMeta)
	if err != nil {
		klog.ErrorS(err, "Removing pause container accel-cri cannot read", "id", ctr.ID())
		return r.deleteContainerd(ctx, ctr.ID())
	}
	var st podStatus
	found, err := readJSON(r.store.podStatusPath(meta.ID), &st)
	if err != nil {
		return fmt.Errorf("recover pod %s: %w", meta.ID, err)
	}
	if !found {
		// RunPodSandbox never succeeded: clean what it made.
		klog.InfoS("Cleaning pod whose creation did not finish", "pod", meta.ID)
		return r.cleanPod(ctx, meta)
	}
	p := newPod(*meta)
	p.shown = true
	if st.State == runtimeapi.PodSandboxState_SANDBOX_READY && meta.Infraless {
		// Without a pause process the pod lives as long as its pinned
		// namespaces; a reboot or a cleaned /run ends it.
		if !meta.Pinned.Mounted() || !podns.Mounted(meta.NetNSPath) {
			st = pauseGone(st)
		}
	} else if st.State == runtimeapi.PodSandboxState_SANDBOX_READY {
		task, err := ctr.Task(ctx, nil)
		running := false
		switch {
		case err == nil:
			s, err := task.Status(ctx)
			// Only a pause containerd reports stopped is reaped: a
			// status that times out (a busy shim) is no exit, and
			// killing the pause for it would kill a healthy pod.
			running = err != nil || s.Status == containerd.Running || s.Status == containerd.Paused
			if err != nil {
				klog.ErrorS(err, "Pause task status unknown; keeping the pod ready", "pod", meta.ID)
			}
			if !running {
				_, _ = killAndDeleteTask(ctx, task)
			}
		case !errdefs.IsNotFound(err):
			klog.ErrorS(err, "Pause task unknown; keeping the pod ready", "pod", meta.ID)
			running = true
		}
		if running {
			if task != nil {
				st.PID = task.Pid()
			}
		} else {
			st = pauseGone(st)
		}
	}
	// What recovery found is the pod's status; a pod not ready has exited.
	if _, err := r.store.updatePod(p, func(podStatus) (podStatus, error) { return st, nil }); err != nil {
		return err
	}
	if st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		r.recordPodExit(p, func(cur podStatus) podStatus { return cur })
	}
	r.store.addPod(p)
	return r.store.reserveName(podName(meta.Config.GetMetadata()), meta.ID)
}

// cleanPod undoes a pod that was never completed.
func (r *Runtime) cleanPod(ctx context.Context, meta *podMeta) error {
	if err := r.deleteContainerd(ctx, meta.ID); err != nil {
		return err
	}
	if meta.NetNSPath != "" {
		logErr(r.network.TeardownPod(ctx, meta.ID, meta.NetNSPath, meta.Config), "Teardown network of unfinished pod", "pod", meta.ID)
		logErr(podnet.RemoveNetNS(meta.NetNSPath), "Remove netns of unfinished pod", "pod", meta.ID)
	}
	logErr(podns.RemoveFiles(r.podDir(meta.ID)), "Remove files of unfinished pod", "pod", meta.ID)
	_ = os.Remove(r.creatingPath(meta.ID))
	return nil
}

// reattach connects a running container's output FIFOs to a new log
// writer.
func (r *Runtime) reattach(ctx context.Context, c *Container, ctr containerd.Container) error {
	cio, err := stdio.New(r.containerDir(c.ID), c.LogPath, stdio.Options{TTY: c.Config.GetTty(), Stdin: c.Config.GetStdin(), StdinOnce: c.Config.GetStdinOnce()})
	if err != nil {
		return err
	}
	task, err := ctr.Task(ctx, cio.Attacher())
	if err != nil {
		cio.Close()
		return fmt.Errorf("attach: %w", err)
	}
	if task.IO() == nil {
		cio.Close() // containerd named no FIFOs (its status is unknown)
	}
	cio.SetStdinCloser(stdinCloser(task))
	c.io = cio
	return nil
}

func (r *Runtime) recoverContainer(ctx context.Context, ctr containerd.Container) error {
	meta, err := extension[containerMeta](ctx, ctr, extContainerMeta)
	if err != nil {
		klog.ErrorS(err, "Removing container accel-cri cannot read", "id", ctr.ID())
		return r.deleteContainerd(ctx, ctr.ID())
	}
	var st containerStatus
	found, err := readJSON(r.store.containerStatusPath(meta.ID), &st)
	if err != nil {
		return fmt.Errorf("recover container %s: %w", meta.ID, err)
	}
	if !found || r.store.podExact(meta.PodID) == nil {
		klog.InfoS("Cleaning container whose creation did not finish or whose pod is gone", "container", meta.ID)
		_ = os.RemoveAll(r.containerDir(meta.ID))
		return r.deleteContainerd(ctx, meta.ID)
	}
	c := newContainer(*meta)

	task, terr := ctr.Task(ctx, nil)
	var ts containerd.Status
	if terr == nil {
		ts, terr = task.Status(ctx)
	}
	klog.V(2).InfoS("Recovering container", "container", c.ID, "recorded", st.State, "task", ts.Status, "exit", ts.ExitStatus, "err", terr)
	running := terr == nil && (ts.Status == containerd.Running || ts.Status == containerd.Paused)
	kept := false // st holds an exit HarvestExits kept
	switch {
	case running && st.State == runtimeapi.ContainerState_CONTAINER_EXITED:
		// kubelet was told this start failed (StartError), but containerd
		// started the task before it lost the call: what kubelet was told
		// stands, so the task goes.
		klog.InfoS("Killing the task of a container whose start was reported failed", "container", c.ID)
		_, _ = killAndDeleteTask(ctx, task)
	case running:
		// Running: it may have been started by a Start that crashed
		// before recording it; either way it runs now.
		if err := r.reattach(ctx, c, ctr); err != nil {
			// One container's output must not keep accel-cri from
			// starting: it is stopped and reported as lost.
			klog.ErrorS(err, "Cannot reattach a running container's output; killing it", "container", c.ID)
			_, _ = killAndDeleteTask(ctx, task)
			st = lostExit(st, "its output could not be reattached after a restart of accel-cri: "+err.Error())
		} else {
			if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				st.State, st.StartedAt = runtimeapi.ContainerState_CONTAINER_RUNNING, time.Now()
			}
			st.PID = task.Pid()
		}
	case terr == nil && ts.Status == containerd.Created:
		// Start crashed between creating and starting the task.
		_, _ = killAndDeleteTask(ctx, task)
	case terr == nil && ts.Status == containerd.Stopped:
		if st.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			st = exitedStatus(st, exitInfo{code: int32(ts.ExitStatus), at: ts.ExitTime})
		}
		_, _ = task.Delete(ctx)
	case st.State == runtimeapi.ContainerState_CONTAINER_RUNNING:
		if e, ok := r.keptExit(c.ID, st.PID); ok {
			// containerd deleted the task as it started; the shim had
			// kept its exit until then (exits.go).
			st, kept = exitedStatus(st, e), true
			break
		}
		// The task vanished with its shim: nobody knows the exit status.
		st = lostExit(st, "the container's task was lost while accel-cri was not running")
	}
	// What recovery found is the container's status. An exited one's exit
	// is recorded as any other (nobody listens yet: no NRI plugin has
	// connected, no event subscriber).
	if _, err := r.store.updateContainer(c, func(containerStatus) (containerStatus, error) { return st, nil }); err != nil {
		return err
	}
	if kept {
		r.dropKeptExit(c.ID)
	}
	if st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		r.recordExit(c, func(cur containerStatus) containerStatus { return cur })
	}
	if p := r.store.podExact(c.PodID); p != nil && st.State == runtimeapi.ContainerState_CONTAINER_CREATED {
		// Its start may have been cut short while the pod's shim started:
		// the pod's next start looks for a shim left serving nothing.
		p.shimSuspect.Store(true)
	}
	// A container still created has its start to come: exit events for
	// it (a cut-short earlier start's init) wait for that start's outcome,
	// as for a container created by this run.
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		c.markStartDone()
	}
	r.store.addContainer(c)
	return r.store.reserveName(containerName(c.PodID, c.Config.GetMetadata()), c.ID)
}

// lostExit is st after an exit nobody saw whose status containerd did not
// keep: Unknown (255), for the reason msg.
func lostExit(st containerStatus, msg string) containerStatus {
	st = exitedStatus(st, exitInfo{code: exitCodeUnknown, at: time.Now(), unknown: true})
	st.Reason, st.Message = reasonUnknown, msg
	return st
}

// creatingPath marks a pod whose RunPodSandbox is in progress: written
// before the first side effect, removed when the pod is complete or undone.
func (r *Runtime) creatingPath(id string) string {
	return filepath.Join(r.rootDir, "pods", id+".creating.json")
}

// cleanCreating undoes pods whose RunPodSandbox was cut short before their
// pause container existed (netns, CNI, files).
func (r *Runtime) cleanCreating(ctx context.Context) {
	matches, _ := filepath.Glob(filepath.Join(r.rootDir, "pods", "*.creating.json"))
	for _, m := range matches {
		var meta podMeta
		if ok, err := readJSON(m, &meta); err != nil || !ok || meta.ID == "" {
			_ = os.Remove(m)
			continue
		}
		if r.store.podExact(meta.ID) != nil {
			_ = os.Remove(m)
			continue
		}
		klog.InfoS("Cleaning pod whose creation was interrupted", "pod", meta.ID)
		logErr(r.cleanPod(ctx, &meta), "Clean interrupted pod", "pod", meta.ID)
	}
}

// cleanOrphanNetNS removes network namespaces no pod owns (left by a crash
// at a moment no checkpoint covers).
func (r *Runtime) cleanOrphanNetNS() {
	owned := map[string]bool{}
	for _, p := range r.store.listPods() {
		owned[p.NetNSPath] = true
	}
	podnet.RemoveOrphanNetNS(r.netnsDir(), owned)
}

// cleanLeases deletes the leases left in accel-cri's namespace. containerd's
// client takes a lease (expiring after 24h) for the length of each call that
// makes content or snapshots (NewContainer, NewTask, pulls); a crash during
// such a call leaves it behind, holding what it names from the garbage
// collector for a day. Nothing of accel-cri runs yet, so no lease here
// protects a call in flight; containers and images hold their own references.
func (r *Runtime) cleanLeases(ctx context.Context) {
	ls := r.client.LeasesService()
	left, err := ls.List(ctx)
	if err != nil {
		klog.ErrorS(err, "List leases left by an interrupted call")
		return
	}
	for _, l := range left {
		klog.InfoS("Deleting lease left by an interrupted call", "lease", l.ID, "created", l.CreatedAt)
		logErr(ls.Delete(ctx, l), "Delete leftover lease", "lease", l.ID)
	}
}

// openStartFIFOs opens (O_RDWR: never blocks) every FIFO under the state
// directory of each app container whose checkpoint does not say it
// started, and returns the function that closes them again.
func (r *Runtime) openStartFIFOs(ctx context.Context, ctrs []containerd.Container) func() {
	var files []*os.File
	for _, ctr := range ctrs {
		labels, err := ctr.Labels(ctx)
		if err != nil || labels[labelKind] != kindCtr {
			continue
		}
		var st containerStatus
		if found, err := readJSON(r.store.containerStatusPath(ctr.ID()), &st); err != nil || (found && st.State != runtimeapi.ContainerState_CONTAINER_CREATED) {
			continue
		}
		_ = filepath.WalkDir(r.containerDir(ctr.ID()), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeNamedPipe == 0 {
				return nil
			}
			if f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
				files = append(files, f)
			}
			return nil
		})
	}
	if len(files) > 0 {
		klog.InfoS("Opened the FIFOs of containers whose start was interrupted", "fifos", len(files))
	}
	return func() {
		for _, f := range files {
			f.Close()
		}
	}
}

// cleanOrphanFiles removes the status checkpoints and state directories of
// pods and containers containerd no longer has: Remove deletes the
// containerd container first and its files after, so a crash in between
// leaves files nothing would ever read or remove.
func (r *Runtime) cleanOrphanFiles() {
	podKnown := func(id string) bool { return r.store.podExact(id) != nil }
	ctrKnown := func(id string) bool { return r.store.containerExact(id) != nil }
	for _, d := range []struct {
		glob  string
		known func(string) bool
		rm    func(string) error
	}{
		{filepath.Join(r.rootDir, "pods", "*.json"), podKnown, os.Remove},
		{filepath.Join(r.rootDir, "containers", "*.json"), ctrKnown, os.Remove},
		{r.podDir("*"), podKnown, podns.RemoveFiles},
		{r.containerDir("*"), ctrKnown, os.RemoveAll},
	} {
		matches, _ := filepath.Glob(d.glob)
		for _, m := range matches {
			id := strings.TrimSuffix(filepath.Base(m), ".json")
			if strings.HasSuffix(m, ".creating.json") || d.known(id) {
				continue
			}
			klog.InfoS("Removing files of a pod or container containerd no longer has", "path", m)
			logErr(d.rm(m), "Remove orphan file", "path", m)
		}
	}
}
