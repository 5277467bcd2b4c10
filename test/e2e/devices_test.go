package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/accel-cri/accel-cri/devices/devicetest"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// The fake host: two Intel GPUs whose nodes reuse the numbers of harmless
// host devices that runc's default rules do not allow (fuse, kvm,
// loop-control), owned root:render 0660 like udev makes them.
const fakeRenderGID = 993

var (
	fakeGPU0 = devicetest.DRMGPU{PCI: "0000:00:02.0", Vendor: "0x8086", Device: "0x4680", Driver: "i915", Card: 0, Render: 128,
		CardNum: devicetest.LoopControl, RenderNum: devicetest.Fuse, CardGID: 44, RenderGID: fakeRenderGID}
	fakeGPU1 = devicetest.DRMGPU{PCI: "0000:03:00.0", Vendor: "0x8086", Device: "0x56a0", Driver: "xe", Card: 1, Render: 129,
		CardNum: devicetest.LoopControl, RenderNum: devicetest.KVM, CardGID: 44, RenderGID: fakeRenderGID}
)

type deviceEnv struct {
	podEnv
	host   *devicetest.Host
	cdiDir string
	reg    *framework.Registry
}

// startDeviceEnv starts accel-cri whose device discovery reads a fake
// sysfs and dev tree and whose CDI spec dir is a temp dir.
func startDeviceEnv(t *testing.T, extraConfig string) deviceEnv {
	t.Helper()
	for _, p := range []string{"/dev/fuse", "/dev/kvm", "/dev/loop-control"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("this test reuses the numbers of %s: %v", p, err)
		}
	}
	dir := t.TempDir()
	h := devicetest.NewHost(t, dir)
	h.AddDRMGPU(fakeGPU0)
	h.AddDRMGPU(fakeGPU1)
	cdiDir := filepath.Join(dir, "cdi")
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Config: h.AccelCRIConfig(cdiDir, extraConfig)})
	if _, err := a.Images.PullImage(ctxT(t, 2*time.Minute), spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}
	return deviceEnv{podEnv: podEnv{AccelCRI: a, imgs: imgs}, host: h, cdiDir: cdiDir, reg: reg}
}

// nonRoot runs c as uid 1000 (no supplemental groups of its own).
func nonRoot(c *runtimeapi.ContainerConfig) *runtimeapi.ContainerConfig {
	c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
	return c
}

// gpuScript prints what the checks below look for: the container's view
// of /dev/dri, its groups, whether the first render node opens read-write,
// and what opening a node it did not ask for (GPU 0's render node, through
// a bind mount of the fake dev root) does.
const gpuScript = `ls -ln /dev/dri; echo groups=$(id -G)
(exec 3<>/dev/dri/renderD128) && echo render128-rw-ok
[ -e /dev/dri/renderD129 ] && echo has-renderD129
(exec 4<>/hostdev/dri/renderD128) 2>&1 | sed 's/^/unrequested: /'
true`

func TestDevicesCDI(t *testing.T) {
	e := startDeviceEnv(t, "")
	ctx := ctxT(t, 10*time.Minute)

	hostdev := &runtimeapi.Mount{ContainerPath: "/hostdev", HostPath: e.host.Dev}

	t.Run("devices command and published specs", func(t *testing.T) {
		cfgPath := filepath.Join(e.Dir, "devices.toml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("[devices]\nsysfs_root = %q\ndev_root = %q\nnvml_library = \"/nonexistent/libnvidia-ml.so.1\"\n", e.host.Sysfs, e.host.Dev)), 0o644)
		out, err := runBinary(t, "devices", "--config", cfgPath)
		if err != nil {
			t.Fatalf("accel-cri devices: %v\n%s", err, out)
		}
		mustContain(t, out, "accel-cri.io/intel-gpu=0", "accel-cri.io/intel-gpu=0000:03:00.0", "i915", "xe", "Healthy", "/dri/renderD129")
		if _, err := os.Stat(filepath.Join(e.cdiDir, "accel-cri.io-intel-gpu.json")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("CDI field: second GPU appears as renderD128, usable by non-root, nothing else", func(t *testing.T) {
		podID, pod := e.runPod(t, "gpu-cdi")
		c := nonRoot(e.busybox("gpu", gpuScript))
		c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=1"}}
		c.Mounts = []*runtimeapi.Mount{hostdev}
		out := e.runToExit(t, podID, pod, c)
		t.Logf("container output:\n%s", out)
		// GPU 1's render node is kvm's 10:232 on this fake host.
		mustContain(t, out, "10, 232", "renderD128", "render128-rw-ok", fmt.Sprint(fakeRenderGID),
			"unrequested: ", "Operation not permitted")
		if strings.Contains(out, "has-renderD129") || strings.Contains(out, "10, 229") {
			t.Errorf("container sees more than it asked for:\n%s", out)
		}
	})

	t.Run("CDI annotations (device plugin style) with both GPUs in order", func(t *testing.T) {
		podID, pod := e.runPod(t, "gpu-ann")
		c := nonRoot(e.busybox("gpu2", `ls -ln /dev/dri`))
		c.Annotations = map[string]string{"cdi.k8s.io/accel-cri.io_test": "accel-cri.io/intel-gpu=0000:03:00.0,accel-cri.io/intel-gpu=0"}
		out := e.runToExit(t, podID, pod, c)
		// First requested (GPU 1, kvm 10:232) is renderD128, GPU 0 (fuse
		// 10:229) renderD129.
		lines := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				lines[f[len(f)-1]] = l
			}
		}
		if !strings.Contains(lines["renderD128"], "10, 232") || !strings.Contains(lines["renderD129"], "10, 229") {
			t.Errorf("render nodes not in request order:\n%s", out)
		}
	})

	t.Run("ContainerConfig.Devices: exactly that node", func(t *testing.T) {
		podID, pod := e.runPod(t, "gpu-devices")
		c := e.busybox("dev", gpuScript)
		c.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/dri/renderD128", Permissions: "rw"}}
		c.Mounts = []*runtimeapi.Mount{hostdev}
		out := e.runToExit(t, podID, pod, c)
		// Unrequested here: GPU 0's render node is fuse too, so look at kvm.
		mustContain(t, out, "10, 229", "render128-rw-ok")
		c2 := e.busybox("dev2", `(exec 4<>/hostdev/dri/renderD129) 2>&1 | sed 's/^/unrequested: /'; true`)
		c2.Devices = c.Devices
		c2.Mounts = c.Mounts
		mustContain(t, e.runToExit(t, podID, pod, c2), "unrequested: ", "Operation not permitted")
	})

	t.Run("bad input: no container is created", func(t *testing.T) {
		podID, pod := e.runPod(t, "gpu-bad")
		before, _ := e.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID})
		// A malformed spec file next to accel-cri's own.
		if err := os.WriteFile(filepath.Join(e.cdiDir, "broken.json"), []byte(`{"cdiVersion": "0.6.0", "kind": "broken.example/x", "devices": [`), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			desc   string
			mutate func(*runtimeapi.ContainerConfig)
			code   codes.Code
			msg    string
		}{
			{"unknown CDI device", func(c *runtimeapi.ContainerConfig) {
				c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=7"}}
			}, codes.NotFound, "broken.json"},
			{"unknown CDI device by annotation", func(c *runtimeapi.ContainerConfig) {
				c.Annotations = map[string]string{"cdi.k8s.io/x": "accel-cri.io/fpga=0"}
			}, codes.NotFound, `unknown CDI device "accel-cri.io/fpga=0"`},
			{"malformed CDI name", func(c *runtimeapi.ContainerConfig) {
				c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "intel-gpu=0"}}
			}, codes.InvalidArgument, "CDI_devices[0]"},
			{"device outside /dev", func(c *runtimeapi.ContainerConfig) {
				c.Devices = []*runtimeapi.Device{{HostPath: filepath.Join(e.host.Dev, "dri", "renderD128"), ContainerPath: "/dev/dri/renderD128", Permissions: "rw"}}
			}, codes.InvalidArgument, "must be under /dev"},
			{"device that is not a device", func(c *runtimeapi.ContainerConfig) {
				c.Devices = []*runtimeapi.Device{{HostPath: "/dev/shm", ContainerPath: "/dev/x", Permissions: "rw"}}
			}, codes.InvalidArgument, "not a character or block device"},
		} {
			c := e.busybox("bad", "true")
			tc.mutate(c)
			_, err := e.Runtime.CreateContainer(ctx, podID, c, pod)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: got %v, want %s containing %q", tc.desc, err, tc.code, tc.msg)
			}
		}
		after, _ := e.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID})
		if len(after) != len(before) {
			t.Errorf("containers after bad requests: %d, before %d", len(after), len(before))
		}
		// The other specs keep working.
		c := e.busybox("good", `ls -ln /dev/dri`)
		c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=0"}}
		mustContain(t, e.runToExit(t, podID, pod, c), "renderD128")
		os.Remove(filepath.Join(e.cdiDir, "broken.json"))
	})

	t.Run("a deleted spec file does not matter", func(t *testing.T) {
		// accel-cri resolves its own names from what it found, not from
		// the files it writes for others.
		if err := os.Remove(filepath.Join(e.cdiDir, "accel-cri.io-intel-gpu.json")); err != nil {
			t.Fatal(err)
		}
		podID, pod := e.runPod(t, "gpu-nospec")
		c := e.busybox("nospec", `ls -ln /dev/dri`)
		c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=0000:03:00.0"}}
		mustContain(t, e.runToExit(t, podID, pod, c), "renderD128")
	})

	t.Run("a vanished device leaves the spec", func(t *testing.T) {
		e.host.RemoveDRMGPU(fakeGPU1)
		deadline := time.Now().Add(20 * time.Second)
		for {
			// Rewritten (it was deleted above) without the GPU.
			b, err := os.ReadFile(filepath.Join(e.cdiDir, "accel-cri.io-intel-gpu.json"))
			if err == nil && !strings.Contains(string(b), "0000:03:00.0") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("spec still has the vanished GPU:\n%s", b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		podID, pod := e.runPod(t, "gpu-gone")
		c := e.busybox("gone", "true")
		c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "accel-cri.io/intel-gpu=1"}}
		// accel-cri's registry still knows it: FailedPrecondition, naming
		// the device, not NotFound.
		if _, err := e.Runtime.CreateContainer(ctx, podID, c, pod); status.Code(err) != codes.FailedPrecondition ||
			!strings.Contains(err.Error(), "0000:03:00.0") || !strings.Contains(err.Error(), "no longer on the node") {
			t.Errorf("vanished GPU: %v", err)
		}
	})
}

// runBinary runs the accel-cri binary with args.
func runBinary(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(framework.Binary(t), args...).CombinedOutput()
	return string(out), err
}

// TestDevicePluginAllocate plays kubelet: it serves the Registration
// service on a kubelet.sock in a temp dir, takes accel-cri's registration,
// reads ListAndWatch and calls Allocate on the plugin's socket, then creates
// the container with the CDI names Allocate returned.
func TestDevicePluginAllocate(t *testing.T) {
	kdir := filepath.Join(t.TempDir(), "device-plugins")
	os.MkdirAll(kdir, 0o755)
	kl := devicetest.StartKubelet(t, kdir)
	e := startDeviceEnv(t, fmt.Sprintf("device_plugin = true\nkubelet_plugin_dir = %q\nreplicas = { intel-gpu = 2 }\ndevice_ownership_from_security_context = true", kdir))
	ctx := ctxT(t, 5*time.Minute)

	reg := kl.WaitRegistered("accel-cri.io/intel-gpu", 30*time.Second)
	plugin := kl.Dial(reg)
	stream, err := plugin.ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	list, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range list.Devices {
		if d.Health != pluginapi.Healthy {
			t.Errorf("device %s is %s", d.ID, d.Health)
		}
		ids = append(ids, d.ID)
	}
	t.Logf("ListAndWatch: %v", ids)
	if len(ids) != 4 { // two GPUs, two replicas each
		t.Fatalf("devices %v", ids)
	}
	// kubelet picks the second GPU's first replica.
	resp, err := plugin.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"0000:03:00.0::0"}}}})
	if err != nil {
		t.Fatal(err)
	}
	alloc := resp.ContainerResponses[0]
	podID, pod := e.runPod(t, "gpu-plugin")
	c := nonRoot(e.busybox("plugin", gpuScript))
	for _, d := range alloc.CdiDevices {
		c.CDIDevices = append(c.CDIDevices, &runtimeapi.CDIDevice{Name: d.Name})
	}
	c.Annotations = alloc.Annotations
	c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/hostdev", HostPath: e.host.Dev}}
	out := e.runToExit(t, podID, pod, c)
	mustContain(t, out, "10, 232", "renderD128", "render128-rw-ok", "Operation not permitted")

	// With device_ownership_from_security_context, a CRI device (host
	// /dev/fuse is root 0600) is usable by the non-root container too.
	cd := nonRoot(e.busybox("crident", `ls -ln /dev/dri; (exec 3<>/dev/dri/renderD128) && echo render128-rw-ok`))
	cd.Devices = []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/dri/renderD128", Permissions: "rw"}}
	mustContain(t, e.runToExit(t, podID, pod, cd), "1000     1000       10, 229", "render128-rw-ok")

	// The device vanishes: kubelet hears it is unhealthy.
	e.host.RemoveDRMGPU(fakeGPU1)
	for {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		unhealthy := 0
		for _, d := range r.Devices {
			if d.Health == pluginapi.Unhealthy {
				unhealthy++
			}
		}
		if unhealthy == 2 {
			break
		}
	}
}
