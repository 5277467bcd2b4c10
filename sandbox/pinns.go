package sandbox

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	cnins "github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod without a pause process (an "infra-less" pod, as CRI-O's
// drop_infra_ctr) holds its UTS and IPC namespaces with bind mounts, as the
// network namespace always is. Its containers join the namespaces by path.
// A pod needs a pause process only where something must live in the pod
// for the whole pod life: a shared PID namespace (its init reaps zombies),
// a user namespace, and handlers whose sandbox is a process or a VM.

// podNSDir is the directory of a pod's pinned namespaces inside its pod
// directory; RemovePodFiles unmounts everything under the pod directory.
const podNSDir = "ns"

// PinnedNamespaces are the bind-mounted namespaces of a pod: the UTS and
// IPC namespaces of an infra-less pod, and the user namespace that owns a
// user-namespaced pod's network namespace (userns.go). An empty path is a
// namespace the pod shares with the host (or, for User, one its pause made).
type PinnedNamespaces struct {
	UTS  string `json:"uts,omitempty"`
	IPC  string `json:"ipc,omitempty"`
	User string `json:"user,omitempty"`
}

// podNeedsInfra reports whether a pod needs a pause process (see above).
func podNeedsInfra(cfg *runtimeapi.PodSandboxConfig, h *handler, always bool) bool {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch {
	case always, !h.infraless():
		return true
	case nsOpts.GetPid() == runtimeapi.NamespaceMode_POD:
		return true
	case ownUserns(nsOpts.GetUsernsOptions()):
		return true
	}
	return false
}

// pinPodNamespaces creates the pod's UTS namespace (with its hostname) unless
// the pod uses the host network, and its IPC namespace unless it uses the
// host's, applies the IPC sysctls inside, and bind-mounts both under
// podDir/ns. The net sysctls are applied by applyNetSysctls once the
// network namespace exists.
func pinPodNamespaces(podDir string, cfg *runtimeapi.PodSandboxConfig) (PinnedNamespaces, error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	newUTS := nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE
	newIPC := nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE
	ipcSysctls, _ := splitSysctls(cfg.GetLinux().GetSysctls())
	var out PinnedNamespaces
	if !newUTS && !newIPC {
		return out, nil
	}
	dir := filepath.Join(podDir, podNSDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return out, fmt.Errorf("pod namespaces: %w", err)
	}
	if newUTS {
		out.UTS = filepath.Join(dir, "uts")
	}
	if newIPC {
		out.IPC = filepath.Join(dir, "ipc")
	}
	errc := make(chan error, 1)
	// unshare(2) of UTS and IPC changes the calling thread only. The thread
	// is never unlocked, so the Go runtime ends it with the goroutine
	// instead of reusing a thread that sits in the pod's namespaces.
	go func() {
		runtime.LockOSThread()
		errc <- pinOnThisThread(out, cfg.GetHostname(), ipcSysctls)
	}()
	if err := <-errc; err != nil {
		_ = unpinPodNamespaces(out)
		return PinnedNamespaces{}, err
	}
	return out, nil
}

func pinOnThisThread(p PinnedNamespaces, hostname string, ipcSysctls map[string]string) error {
	flags := 0
	if p.UTS != "" {
		flags |= unix.CLONE_NEWUTS
	}
	if p.IPC != "" {
		flags |= unix.CLONE_NEWIPC
	}
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("pod namespaces: unshare: %w", err)
	}
	if p.UTS != "" && hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("pod namespaces: set hostname %q: %w", hostname, err)
		}
	}
	// /proc/sys/kernel/shm* and friends act on the writer's IPC namespace.
	if err := writeSysctls(ipcSysctls); err != nil {
		return err
	}
	self := fmt.Sprintf("/proc/%d/task/%d/ns/", os.Getpid(), unix.Gettid())
	for _, b := range []struct{ ns, path string }{{"uts", p.UTS}, {"ipc", p.IPC}} {
		if b.path == "" {
			continue
		}
		f, err := os.OpenFile(b.path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return fmt.Errorf("pod namespaces: %w", err)
		}
		f.Close()
		if err := unix.Mount(self+b.ns, b.path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pod namespaces: pin %s at %s: %w", b.ns, b.path, err)
		}
	}
	return nil
}

// unpinPodNamespaces releases a pod's pinned namespaces (and so an
// infra-less pod's IPC objects). Idempotent.
func unpinPodNamespaces(p PinnedNamespaces) error {
	var errs []error
	for _, path := range []string{p.UTS, p.IPC, p.User} {
		if path == "" {
			continue
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pinned reports whether the pod's pinned namespaces are still mounted (they
// are gone after a reboot, or when /run was cleaned).
func (p PinnedNamespaces) pinned() bool {
	for _, path := range []string{p.UTS, p.IPC, p.User} {
		if path == "" {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil || st.Type != unix.NSFS_MAGIC {
			return false
		}
	}
	return true
}

// applyNetSysctls writes the pod's net.* sysctls inside its network
// namespace (/proc/sys/net acts on the writer's network namespace).
func applyNetSysctls(netnsPath string, sysctls map[string]string) error {
	_, net := splitSysctls(sysctls)
	if len(net) == 0 {
		return nil
	}
	return cnins.WithNetNSPath(netnsPath, func(cnins.NetNS) error { return writeSysctls(net) })
}

// splitSysctls splits the pod's sysctls (validated to be namespaced) into
// IPC ones and net ones.
func splitSysctls(s map[string]string) (ipc, net map[string]string) {
	ipc, net = map[string]string{}, map[string]string{}
	for k, v := range s {
		if strings.HasPrefix(k, "net.") || strings.HasPrefix(k, "net/") {
			net[k] = v
		} else {
			ipc[k] = v
		}
	}
	return ipc, net
}

// writeSysctls writes sysctls in key order. Kubernetes names use '.' as the
// separator and '/' for a dot inside a component (a VLAN interface name),
// the reverse of the /proc/sys path.
func writeSysctls(s map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(s)) {
		if err := os.WriteFile(sysctlPath(k), []byte(s[k]), 0); err != nil {
			return fmt.Errorf("pod sysctl %s=%q: %w", k, s[k], err)
		}
	}
	return nil
}

func sysctlPath(name string) string {
	if i := strings.IndexAny(name, "./"); i < 0 || name[i] == '/' {
		return filepath.Join("/proc/sys", name) // already in slash form
	}
	swapped := strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
	return filepath.Join("/proc/sys", swapped)
}

// netnsExists reports whether a pod's network namespace is still mounted
// ("" is the host's, which always is).
func netnsExists(path string) bool {
	if path == "" {
		return true
	}
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
