package podns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containerd/containerd/v2/pkg/sys"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// A pod without a pause process (an "infra-less" pod, as CRI-O's
// drop_infra_ctr) holds its UTS and IPC namespaces with bind mounts, as the
// network namespace always is. Its containers join the namespaces by path.
// Whether a pod goes without a pause process is the caller's decision.

// nsDir is the directory of a pod's pinned namespaces inside its pod
// directory; RemoveFiles unmounts everything under the pod directory.
const nsDir = "ns"

// Namespaces are the bind-mounted namespaces of a pod: the UTS and IPC
// namespaces of an infra-less pod, and the user namespace that owns a
// user-namespaced pod's network namespace (PinNetNSOwner). An empty path is
// a namespace the pod shares with the host (or, for User, one its pause
// made). The JSON form is part of the pod's checkpoint.
type Namespaces struct {
	UTS  string `json:"uts,omitempty"`
	IPC  string `json:"ipc,omitempty"`
	User string `json:"user,omitempty"`
}

// Pin creates the pod's UTS namespace (with its hostname) unless the pod
// uses the host network, and its IPC namespace unless it uses the host's,
// applies the IPC sysctls inside, and bind-mounts both under podDir/ns. The
// net sysctls are applied by ApplyNetSysctls once the network namespace
// exists.
func Pin(podDir string, cfg *runtimeapi.PodSandboxConfig) (Namespaces, error) {
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	newUTS := nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE
	newIPC := nsOpts.GetIpc() != runtimeapi.NamespaceMode_NODE
	ipcSysctls, _ := SplitSysctls(cfg.GetLinux().GetSysctls())
	var out Namespaces
	if !newUTS && !newIPC {
		return out, nil
	}
	dir := filepath.Join(podDir, nsDir)
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
		_ = Unpin(out)
		return Namespaces{}, err
	}
	return out, nil
}

func pinOnThisThread(p Namespaces, hostname string, ipcSysctls map[string]string) error {
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

// PinNetNSOwner bind-mounts the user namespace that owns the network
// namespace at netnsPath onto podDir/ns/user and returns that path, for a
// user-namespaced pod's pause to join. Unpin releases it.
func PinNetNSOwner(netnsPath, podDir string) (_ string, retErr error) {
	dir := filepath.Join(podDir, nsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pin user namespace: %w", err)
	}
	path := filepath.Join(dir, "user")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return "", fmt.Errorf("pin user namespace: %w", err)
	}
	f.Close()
	defer func() {
		if retErr != nil {
			os.Remove(path)
		}
	}()
	nsf, err := os.Open(netnsPath)
	if err != nil {
		return "", fmt.Errorf("pin user namespace: %w", err)
	}
	defer nsf.Close()
	userns, err := sys.GetUsernsForNamespace(nsf.Fd())
	if err != nil {
		return "", fmt.Errorf("pin user namespace of %s: %w", netnsPath, err)
	}
	defer userns.Close()
	if err := unix.Mount(userns.Name(), path, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("pin user namespace of %s at %s: %w", netnsPath, path, err)
	}
	return path, nil
}

// Unpin releases a pod's pinned namespaces (and so an infra-less pod's IPC
// objects). Idempotent.
func Unpin(p Namespaces) error {
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

// Mounted reports whether the pod's pinned namespaces are still mounted
// (they are gone after a reboot, or when /run was cleaned).
func (p Namespaces) Mounted() bool {
	return Mounted(p.UTS) && Mounted(p.IPC) && Mounted(p.User)
}

// Mounted reports whether a namespace (a pod's network namespace, or one of
// its pinned ones) is still mounted at path. "" is the host's, which always
// is.
func Mounted(path string) bool {
	if path == "" {
		return true
	}
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
