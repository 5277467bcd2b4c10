package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// kataUsable says why Kata cannot run here ("" when it can): it needs its
// shim and a CPU with hardware virtualization. This machine class has a
// /dev/kvm (PVM) that cannot boot ordinary guest kernels and shows no vmx/svm
// flag, so the test skips there.
func kataUsable() string {
	if _, err := exec.LookPath("containerd-shim-kata-v2"); err != nil {
		return "containerd-shim-kata-v2 is not installed (Kata Containers is not packaged for Debian bookworm)"
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || !regexp.MustCompile(`(?m)^flags\s*:.*\b(vmx|svm)\b`).Match(b) {
		return "the CPU shows no vmx/svm flag: Kata's guest kernel cannot boot (a PVM /dev/kvm is not enough)"
	}
	return ""
}

// TestKataHandler runs a pod in a Kata VM: the container sees the guest's
// kernel, exit codes come back, and a privileged container of the
// privileged_without_host_devices handler gets none of the host's devices.
func TestKataHandler(t *testing.T) {
	if why := kataUsable(); why != "" {
		t.Skip("Kata end-to-end test skipped: " + why)
	}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Config: `
[runtimes.kata]
  type = "io.containerd.kata.v2"
  privileged_without_host_devices = true
  pod_annotations = ["io.katacontainers.*"]
`})
	e := podEnv{AccelCRI: a, imgs: imgs}
	ctx := ctxT(t, 10*time.Minute)
	if _, err := a.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: imgs.Busybox.Ref, RuntimeHandler: "kata"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	hostKernel := strings.TrimSpace(mustRead(t, "/proc/sys/kernel/osrelease"))

	pod := a.PodConfig(t, "kata")
	pod.Linux.SecurityContext.Privileged = true
	podID, err := a.Runtime.RunPodSandbox(ctx, pod, "kata")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, a.LogTail(30))
	}
	c := e.busybox("guest", "echo kernel=$(uname -r); ls /dev; exit 4")
	c.Linux.SecurityContext.Privileged = true
	id := a.RunContainer(t, podID, pod, c)
	st := a.WaitContainer(t, id, exited, 3*time.Minute)
	log := framework.LogContent(t, logPath(pod, c))
	if st.ExitCode != 4 {
		t.Errorf("exit %d, want 4:\n%s", st.ExitCode, log)
	}
	if k := strings.TrimSpace(after(log, "kernel=")); k == "" || k == hostKernel {
		t.Errorf("container kernel %q, host %q: not a guest kernel", k, hostKernel)
	}
	if strings.Contains(log, "kvm") {
		t.Errorf("privileged VM container sees the host's /dev/kvm:\n%s", log)
	}
}
