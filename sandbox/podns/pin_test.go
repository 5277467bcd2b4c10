package podns

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// readInNS reads path on a thread that joined the namespace at nsPath.
func readInNS(t *testing.T, nsPath string, nstype int, read func() string) string {
	t.Helper()
	out := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends in nsPath's namespace
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			out <- "open: " + err.Error()
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, nstype); err != nil {
			out <- "setns: " + err.Error()
			return
		}
		out <- read()
	}()
	return <-out
}

func TestPin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("pinning namespaces needs root (run the unit tests as root, as CI does)")
	}
	dir := t.TempDir()
	hostBefore, _ := os.Hostname()
	shmBefore, _ := os.ReadFile("/proc/sys/kernel/shmmni")
	cfg := &runtimeapi.PodSandboxConfig{
		Hostname: "pinned-pod",
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			Sysctls: map[string]string{"kernel.shmmni": "1234"},
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
	p, err := Pin(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Unpin(p) })
	if p.UTS == "" || p.IPC == "" || !p.Mounted() {
		t.Fatalf("pinned = %+v (mounted: %v), want both namespaces pinned", p, p.Mounted())
	}
	hostname := readInNS(t, p.UTS, unix.CLONE_NEWUTS, func() string {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err.Error()
		}
		return unix.ByteSliceToString(u.Nodename[:])
	})
	if hostname != "pinned-pod" {
		t.Errorf("hostname in the pod's UTS namespace = %q, want pinned-pod", hostname)
	}
	shm := readInNS(t, p.IPC, unix.CLONE_NEWIPC, func() string {
		b, err := os.ReadFile("/proc/sys/kernel/shmmni")
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(string(b))
	})
	if shm != "1234" {
		t.Errorf("kernel.shmmni in the pod's IPC namespace = %q, want 1234", shm)
	}
	if h, _ := os.Hostname(); h != hostBefore {
		t.Errorf("host name changed to %q", h)
	}
	if b, _ := os.ReadFile("/proc/sys/kernel/shmmni"); string(b) != string(shmBefore) {
		t.Errorf("host kernel.shmmni changed to %q", b)
	}
	if err := Unpin(p); err != nil {
		t.Fatal(err)
	}
	if p.Mounted() {
		t.Error("namespaces still pinned after unpin")
	}
	if _, err := os.Stat(p.UTS); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", p.UTS, err)
	}
	if err := Unpin(p); err != nil {
		t.Errorf("second unpin: %v", err)
	}
}

func TestPinHostIPCAndNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("pinning namespaces needs root")
	}
	cfg := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
		SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER}}}}
	p, err := Pin(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p != (Namespaces{}) {
		t.Errorf("pinned = %+v, want nothing for a host network and IPC pod", p)
	}
}
