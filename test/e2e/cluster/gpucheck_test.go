//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// testGPUCheck runs what hack/gpu-check.sh can do without an NVIDIA GPU
// against the DRA cluster: its manifests are objects this API server
// accepts (a server-side dry run, which creates nothing), and with fake
// nvidia-smi and accel-cri tools it stops with the status and message a
// node operator would see: 2 when the driver does not answer, 1 when
// accel-cri's discovery or the node's ResourceSlices lack the GPU that
// nvidia-smi lists, before it creates anything.
func testGPUCheck(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script := filepath.Join(framework.ModuleRoot(t), "hack", "gpu-check.sh")
	ns := c.Namespace(t, "gpu-check")

	manifests, err := exec.CommandContext(ctx, "bash", script, "manifests", "--namespace", ns, "--image", c.Images.Busybox.Ref, "--node", NodeName).Output()
	if err != nil {
		t.Fatalf("gpu-check.sh manifests: %v", err)
	}
	apply := exec.CommandContext(ctx, c.Bins["kubectl"], "--kubeconfig", c.AdminKubeconfig, "apply", "--dry-run=server", "-f", "-")
	apply.Stdin = bytes.NewReader(manifests)
	out, err := apply.CombinedOutput()
	if err != nil {
		t.Fatalf("the API server refuses gpu-check.sh's manifests: %v\n%s\n%s", err, out, manifests)
	}
	for _, want := range []string{"resourceclaimtemplate.resource.k8s.io/one-nvidia-gpu created (server dry run)", "pod/nvidia-smi created (server dry run)", "job.batch/nvenc created (server dry run)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("kubectl apply --dry-run=server: no %q in\n%s", want, out)
		}
	}
	if pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) > 0 {
		t.Fatalf("a dry run created pods: %v %v", pods, err)
	}

	const uuid = "GPU-0b7c9f1e-4c3a-4f65-9a8e-2d6b1c0e7f3a"
	bin := t.TempDir()
	tool := func(name, script string) string {
		p := filepath.Join(bin, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listsGPU := "echo '" + uuid + ", 00000000:65:00.0, 550.54.15, NVIDIA L4'\n"
	findsGPU := tool("accel-cri-finds", "printf 'CDI NAME  ALSO  VENDOR\\naccel-cri.io/gpu=0  accel-cri.io/gpu="+uuid+",accel-cri.io/gpu=0000:65:00.0  nvidia\\nNVIDIA driver 550.54.15: 4 control nodes, 9 libraries\\n'\n")
	findsNone := tool("accel-cri-none", "echo '(no devices found)'\n")
	for _, tc := range []struct {
		desc, smi, accelCRI string
		wantCode            int
		want                string
	}{
		{"no driver", "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"; exit 9\n", findsGPU,
			2, "CANNOT CHECK: nvidia-smi failed: no NVIDIA GPU or driver on this node"},
		{"not discovered", listsGPU, findsNone, 1, "FAIL: accel-cri did not find GPU " + uuid + " through NVML"},
		{"not published", listsGPU, findsGPU, 1, "FAIL: GPU " + uuid + " is not in the node's ResourceSlices"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			tool("nvidia-smi", tc.smi)
			cmd := exec.CommandContext(ctx, "bash", script, "--image", c.Images.Busybox.Ref, "--node", NodeName,
				"--kubeconfig", c.AdminKubeconfig, "--accel-cri", tc.accelCRI, "--wait", "4")
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+filepath.Dir(c.Bins["kubectl"])+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.wantCode || !strings.Contains(string(out), tc.want) {
				t.Fatalf("gpu-check.sh: %v, want exit status %d and %q:\n%s", err, tc.wantCode, tc.want, out)
			}
		})
	}
	// It stopped before step 4: no namespace of its own.
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nss.Items {
		if strings.HasPrefix(n.Name, "gpu-check-") {
			t.Errorf("gpu-check.sh made namespace %s before its checks passed", n.Name)
		}
	}
}
