package sandbox

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodNeedsInfra(t *testing.T) {
	runc := &handler{runtimeType: RuntimeTypeRunc, binary: "runc"}
	crun := &handler{runtimeType: RuntimeTypeRunc, binary: "/usr/bin/crun"}
	gvisor := &handler{runtimeType: RuntimeTypeRunc, binary: "runsc", sandboxPerContainer: true}
	kata := &handler{runtimeType: "io.containerd.kata.v2"}
	pod := func(ns *runtimeapi.NamespaceOption) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}}}
	}
	perContainer := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	for _, tc := range []struct {
		desc   string
		cfg    *runtimeapi.PodSandboxConfig
		h      *handler
		always bool
		want   bool
	}{
		{"kubelet's default pod on runc", pod(perContainer), runc, false, false},
		{"crun", pod(perContainer), crun, false, false},
		{"host network and ipc", pod(&runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER}), runc, false, false},
		{"host user namespace", pod(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}), runc, false, false},
		{"configured to always have one", pod(perContainer), runc, true, true},
		{"shared pid namespace", pod(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}), runc, false, true},
		{"no namespace options (POD is the zero value)", pod(nil), runc, false, true},
		{"user namespace", pod(&runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER, UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}), runc, false, true},
		{"gVisor", pod(perContainer), gvisor, false, true},
		{"VM handler", pod(perContainer), kata, false, true},
	} {
		if got := podNeedsInfra(tc.cfg, tc.h, tc.always); got != tc.want {
			t.Errorf("%s: podNeedsInfra = %v, want %v", tc.desc, got, tc.want)
		}
	}
}

func TestSysctlPath(t *testing.T) {
	for in, want := range map[string]string{
		"kernel.shmmax":                     "/proc/sys/kernel/shmmax",
		"net.ipv4.ip_local_port_range":      "/proc/sys/net/ipv4/ip_local_port_range",
		"net.ipv4.conf.eth0/100.forwarding": "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"net/ipv4/conf/eth0.100/forwarding": "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"fs.mqueue.msg_max":                 "/proc/sys/fs/mqueue/msg_max",
	} {
		if got := sysctlPath(in); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", in, got, want)
		}
	}
	ipc, net := splitSysctls(map[string]string{"kernel.sem": "1 2 3 4", "net.ipv4.ping_group_range": "0 0", "net/core/somaxconn": "1024"})
	if len(ipc) != 1 || ipc["kernel.sem"] == "" || len(net) != 2 {
		t.Errorf("splitSysctls: ipc %v net %v", ipc, net)
	}
}

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

func TestPinPodNamespaces(t *testing.T) {
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
	p, err := pinPodNamespaces(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unpinPodNamespaces(p) })
	if p.UTS == "" || p.IPC == "" || !p.pinned() {
		t.Fatalf("pinned = %+v (mounted: %v), want both namespaces pinned", p, p.pinned())
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
	if err := unpinPodNamespaces(p); err != nil {
		t.Fatal(err)
	}
	if p.pinned() {
		t.Error("namespaces still pinned after unpin")
	}
	if _, err := os.Stat(p.UTS); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", p.UTS, err)
	}
	if err := unpinPodNamespaces(p); err != nil {
		t.Errorf("second unpin: %v", err)
	}
}

func TestPinPodNamespacesHostIPCAndNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("pinning namespaces needs root")
	}
	cfg := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
		SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER}}}}
	p, err := pinPodNamespaces(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p != (PinnedNamespaces{}) {
		t.Errorf("pinned = %+v, want nothing for a host network and IPC pod", p)
	}
}
