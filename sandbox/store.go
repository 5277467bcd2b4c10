package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/accel-cri/accel-cri/internal/fsutil"
	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/stdio"
)

// PodState and ContainerState use the CRI's enums: they are the vocabulary
// kubelet reasons in, and translating them twice would only add mistakes.
type (
	PodState       = runtimeapi.PodSandboxState
	ContainerState = runtimeapi.ContainerState
)

// podMeta is what accel-cri records about a pod when it creates it. It is
// stored as an extension of the pause container in containerd, so it
// survives accel-cri restarts together with the container it describes.
type podMeta struct {
	ID             string                       `json:"id"`
	Config         *runtimeapi.PodSandboxConfig `json:"config"`
	RuntimeHandler string                       `json:"runtimeHandler,omitempty"`
	NetNSPath      string                       `json:"netnsPath,omitempty"`
	// Infraless pods have no pause process: their containerd container is
	// a record without a task, and Pinned holds their UTS/IPC namespaces.
	Infraless   bool             `json:"infraless,omitempty"`
	Pinned      PinnedNamespaces `json:"pinned,omitempty"`
	Files       PodFiles         `json:"files"`
	CgroupsPath string           `json:"cgroupsPath"`
	CreatedAt   time.Time        `json:"createdAt"`
}

// podStatus changes over the pod's life; it is checkpointed to a file.
type podStatus struct {
	State   PodState   `json:"state"`
	PID     uint32     `json:"pid,omitempty"`
	Network podnet.IPs `json:"network"`
	// NetworkDown records that CNI DEL and the netns removal are done, so
	// a repeated stop does not run them again.
	NetworkDown bool `json:"networkDown,omitempty"`
	// Overhead and Resources are the pod-level resources kubelet last set.
	Overhead  *runtimeapi.LinuxContainerResources `json:"overhead,omitempty"`
	Resources *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
}

// Pod is one pod sandbox.
type Pod struct {
	podMeta

	mu sync.Mutex // serialises lifecycle operations on the pod
	// statusMu serialises status changes (store.updatePod, the only writer
	// of status). It is held only while a change is made and persisted,
	// never across a containerd or NRI call.
	statusMu sync.Mutex
	status   podStatus
	// shown (guarded by store.mu) is false while RunPodSandbox makes the
	// pod: the CRI does not see it (pod, listPods) until it is ready,
	// and NRI plugins' RunPodSandbox hook runs before that.
	shown    bool
	exited   chan struct{} // closed when the pause task's exit is recorded
	exitOnce sync.Once
	// item is the pod's last ListPodSandbox entry (listItem).
	item atomic.Pointer[runtimeapi.PodSandbox]
	// shimSuspect: a task create of the pod failed or may have been cut
	// short, and may have left a shim that swallows the pod's next task
	// (sandbox/shim); the next start ends such a shim first.
	shimSuspect atomic.Bool
}

func newPod(m podMeta) *Pod { return &Pod{podMeta: m, exited: make(chan struct{})} }

// containerMeta is recorded at creation as an extension of the containerd
// container.
type containerMeta struct {
	ID          string                      `json:"id"`
	PodID       string                      `json:"podID"`
	Config      *runtimeapi.ContainerConfig `json:"config"`
	ImageName   string                      `json:"imageName"`
	ImageID     string                      `json:"imageID"`
	ImageRef    string                      `json:"imageRef"`
	LogPath     string                      `json:"logPath,omitempty"`
	StopSignal  string                      `json:"stopSignal,omitempty"`
	CgroupsPath string                      `json:"cgroupsPath"`
	CreatedAt   time.Time                   `json:"createdAt"`
	// ImageVolumes are the container's image volumes (imagevolume.go).
	ImageVolumes []*imageVolume `json:"imageVolumes,omitempty"`
}

// containerStatus is checkpointed to a file whenever it changes, before the
// change is published, so a crash never loses an exit code.
type containerStatus struct {
	State      ContainerState                      `json:"state"`
	PID        uint32                              `json:"pid,omitempty"`
	StartedAt  time.Time                           `json:"startedAt,omitzero"`
	FinishedAt time.Time                           `json:"finishedAt,omitzero"`
	ExitCode   int32                               `json:"exitCode"`
	Reason     string                              `json:"reason,omitempty"`
	Message    string                              `json:"message,omitempty"`
	OOMKilled  bool                                `json:"oomKilled,omitempty"`
	User       *runtimeapi.ContainerUser           `json:"user,omitempty"`
	Resources  *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
}

// Container is one app container of a pod.
type Container struct {
	containerMeta

	// mu serialises Create/Start/Stop/Remove. The exit monitor never takes
	// it: Stop holds it while it waits for the exit to be recorded.
	mu sync.Mutex
	// statusMu serialises status changes (store.updateContainer, the only
	// writer of status and pendingExit). It is held only while a change is
	// made and persisted, never across a containerd or NRI call.
	statusMu sync.Mutex
	status   containerStatus
	// pendingExit is an exit persisted but not yet published (persistExit):
	// every checkpoint written until it is published carries it.
	pendingExit *exitInfo

	exited    chan struct{} // closed once the exit is recorded
	exitOnce  sync.Once
	startDone chan struct{} // closed when Start has recorded its outcome
	startOnce sync.Once
	io        *stdio.ContainerIO // set by Start; nil before

	// running caches the task of a started container and its process spec,
	// so an exec needs no containerd lookups (nil: not known yet).
	running atomic.Pointer[runningTask]
	// process is the spec's process, known from Create (nil after a
	// restart of accel-cri: read from containerd on first use).
	process *runtimespec.Process
	// item is the container's last ListContainers entry (listItem).
	item atomic.Pointer[runtimeapi.Container]
	// mounts are the mounts ContainerStatus reports (statusMounts).
	mounts []*runtimeapi.Mount
}

// recovered reports whether the container was created before accel-cri's
// last start (read back by recovery), so an interrupted task creation may
// have left something behind (clearStaleTask).
func (c *Container) recovered() bool { return c.process == nil }

type runningTask struct {
	task    containerd.Task
	process *runtimespec.Process

	// The socket of the task's shim for direct execs, looked up once per
	// task (shimSocket).
	shimOnce    sync.Once
	shimPath    string
	shimPathErr error
}

func newContainer(m containerMeta) *Container {
	return &Container{containerMeta: m, exited: make(chan struct{}), startDone: make(chan struct{}),
		mounts: statusMounts(m.Config, m.ImageVolumes)}
}

func (c *Container) markStartDone() { c.startOnce.Do(func() { close(c.startDone) }) }

// store indexes pods and containers in memory and checkpoints their status
// under root; a status changes only through updatePod and updateContainer.
// containerd holds everything else.
type store struct {
	root string

	mu         sync.RWMutex
	pods       map[string]*Pod
	containers map[string]*Container
	// byPod indexes containers by pod: kubelet's stats calls ask for the
	// containers of every pod.
	byPod map[string]map[string]*Container
	names map[string]string // reserved name -> id
}

func newStore(root string) *store {
	return &store{root: root, pods: map[string]*Pod{}, containers: map[string]*Container{},
		byPod: map[string]map[string]*Container{}, names: map[string]string{}}
}

// podName is the unique name kubelet expects per pod attempt.
func podName(m *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{m.GetName(), m.GetNamespace(), m.GetUid(), fmt.Sprint(m.GetAttempt())}, "_")
}

// containerName is unique per pod, container name and attempt.
func containerName(podID string, m *runtimeapi.ContainerMetadata) string {
	return strings.Join([]string{m.GetName(), podID, fmt.Sprint(m.GetAttempt())}, "_")
}

// reserveName claims name for id; AlreadyExists names the holder.
func (s *store) reserveName(name, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if holder, ok := s.names[name]; ok && holder != id {
		return fmt.Errorf("%w: name %q is reserved for %q", errdefs.ErrAlreadyExists, name, holder)
	}
	s.names[name] = id
	return nil
}

func (s *store) releaseName(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names[name] == id {
		delete(s.names, name)
	}
}

// addPod adds a pod. One being made (not yet shown) is found only by
// podExact, as the exit monitor must find its pause, until showPod.
func (s *store) addPod(p *Pod) {
	s.mu.Lock()
	s.pods[p.ID] = p
	s.mu.Unlock()
}

// showPod makes a pod RunPodSandbox finished visible to the CRI.
func (s *store) showPod(p *Pod) {
	s.mu.Lock()
	p.shown = true
	s.mu.Unlock()
}

func (s *store) addContainer(c *Container) {
	s.mu.Lock()
	s.containers[c.ID] = c
	if s.byPod[c.PodID] == nil {
		s.byPod[c.PodID] = map[string]*Container{}
	}
	s.byPod[c.PodID][c.ID] = c
	s.mu.Unlock()
}

func (s *store) deletePod(id string) {
	s.mu.Lock()
	delete(s.pods, id)
	s.mu.Unlock()
}

func (s *store) deleteContainer(id string) {
	s.mu.Lock()
	if c, ok := s.containers[id]; ok {
		delete(s.byPod[c.PodID], id)
		if len(s.byPod[c.PodID]) == 0 {
			delete(s.byPod, c.PodID)
		}
	}
	delete(s.containers, id)
	s.mu.Unlock()
}

// pod finds a shown pod by full id or unique id prefix (crictl and humans
// use prefixes).
func (s *store) pod(id string) (*Pod, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if p, ok := s.pods[id]; ok && p.shown {
		return p, nil
	}
	var found *Pod
	for k, p := range s.pods {
		if id != "" && p.shown && strings.HasPrefix(k, id) {
			if found != nil {
				return nil, fmt.Errorf("%w: pod id prefix %q is ambiguous", errdefs.ErrInvalidArgument, id)
			}
			found = p
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: pod sandbox %q", errdefs.ErrNotFound, id)
	}
	return found, nil
}

func (s *store) container(id string) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if c, ok := s.containers[id]; ok {
		return c, nil
	}
	var found *Container
	for k, c := range s.containers {
		if id != "" && strings.HasPrefix(k, id) {
			if found != nil {
				return nil, fmt.Errorf("%w: container id prefix %q is ambiguous", errdefs.ErrInvalidArgument, id)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: container %q", errdefs.ErrNotFound, id)
	}
	return found, nil
}

// listPods lists the shown pods, oldest first.
func (s *store) listPods() []*Pod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Pod, 0, len(s.pods))
	for _, p := range s.pods {
		if p.shown {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *Pod) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

func (s *store) listContainers() []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Container, 0, len(s.containers))
	for _, c := range s.containers {
		out = append(out, c)
	}
	sortContainers(out)
	return out
}

// podContainers lists a pod's containers, oldest first.
func (s *store) podContainers(podID string) []*Container {
	s.mu.RLock()
	cs := s.byPod[podID]
	out := make([]*Container, 0, len(cs))
	for _, c := range cs {
		out = append(out, c)
	}
	s.mu.RUnlock()
	sortContainers(out)
	return out
}

func sortContainers(cs []*Container) {
	slices.SortFunc(cs, func(a, b *Container) int {
		if n := a.CreatedAt.Compare(b.CreatedAt); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func (s *store) podStatusPath(id string) string {
	return filepath.Join(s.root, "pods", id+".json")
}

func (s *store) containerStatusPath(id string) string {
	return filepath.Join(s.root, "containers", id+".json")
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Checkpoints must survive a crash of accel-cri (they do: rename is
	// atomic), not of the machine: after a reboot every pod is gone anyway,
	// and readJSON treats a checkpoint torn by one as absent.
	return fsutil.ReplaceFile(path, b, 0o600)
}

// readJSON reads a checkpoint; a missing file leaves v unchanged and reports false.
func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		// Only a machine crash right after a write can leave a torn
		// checkpoint (they are replaced by rename); what it described did
		// not survive the crash either.
		klog.ErrorS(err, "Ignoring an unreadable checkpoint", "path", path)
		return false, nil
	}
	return true, nil
}

// updatePod is the one way a pod's status changes, as containerd's
// Status.UpdateSync: under the pod's status lock, update gets the current
// status and returns the new one, which is persisted, then published. An
// error from update or from the checkpoint changes nothing and is returned
// with the status as it stays. update must be quick and call nothing that
// takes a lock; events and NRI notifications go out after updatePod returns.
func (s *store) updatePod(p *Pod, update func(podStatus) (podStatus, error)) (podStatus, error) {
	p.statusMu.Lock()
	defer p.statusMu.Unlock()
	st, err := update(p.status)
	if err != nil {
		return p.status, err
	}
	if err := writeJSON(s.podStatusPath(p.ID), st); err != nil {
		return p.status, fmt.Errorf("checkpoint pod %s: %w", p.ID, err)
	}
	s.mu.Lock()
	p.status = st
	s.mu.Unlock()
	return st, nil
}

// updateContainer is updatePod for a container. A pending exit
// (persistExit) is folded into every checkpoint written until an exited
// status is published, so no other change can take it off the disk.
func (s *store) updateContainer(c *Container, update func(containerStatus) (containerStatus, error)) (containerStatus, error) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	st, err := update(c.status)
	if err != nil {
		return c.status, err
	}
	disk, pending := st, c.pendingExit
	switch {
	case st.State == runtimeapi.ContainerState_CONTAINER_EXITED:
		pending = nil // published now
	case pending != nil:
		disk = exitedStatus(st, *pending)
	}
	if err := writeJSON(s.containerStatusPath(c.ID), disk); err != nil {
		return c.status, fmt.Errorf("checkpoint container %s: %w", c.ID, err)
	}
	c.pendingExit = pending
	s.mu.Lock()
	c.status = st
	s.mu.Unlock()
	return st, nil
}

// persistExit writes the exit e into c's checkpoint only: the published
// status changes when the exit is recorded (recordExit), after the output
// has drained. A crash in between leaves the exit for recovery to report;
// until then every checkpoint of c carries it. An exit already recorded
// stays as it is.
func (s *store) persistExit(c *Container, e exitInfo) error {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
	if c.status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		return nil
	}
	c.pendingExit = &e
	if err := writeJSON(s.containerStatusPath(c.ID), exitedStatus(c.status, e)); err != nil {
		return fmt.Errorf("checkpoint exit of container %s: %w", c.ID, err)
	}
	return nil
}

// podStatusOf and containerStatusOf read the published status; readers
// take neither the lifecycle nor the status locks, so List and Status never
// wait for a slow Stop or a checkpoint write.
func (s *store) podStatusOf(p *Pod) podStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return p.status
}

func (s *store) containerStatusOf(c *Container) containerStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return c.status
}

func (s *store) removeCheckpoints(kind, id string) {
	_ = os.Remove(filepath.Join(s.root, kind, id+".json"))
}

// podExact and containerExact look up by full id only (events carry full
// ids); podExact also finds a pod still being made.
func (s *store) podExact(id string) *Pod {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pods[id]
}

func (s *store) containerExact(id string) *Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers[id]
}
