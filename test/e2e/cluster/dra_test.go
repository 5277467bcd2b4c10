//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/accel-cri/accel-cri/devices/devicetest"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// The DRA drivers accel-cri runs, the DeviceClass of Intel GPUs in
// deploy/dra, and the taint of a vanished device (package dra).
const (
	driverGPU      = "gpu.accel-cri.io"
	driverFPGA     = "fpga.accel-cri.io"
	driverStatic   = "device.accel-cri.io"
	intelGPUClass  = "intel-gpu.accel-cri.io"
	taintUnhealthy = "accel-cri.io/unhealthy"
	pciBusIDAttr   = "resource.kubernetes.io/pciBusID"
)

// draGPUs are the DRA cluster's fake GPUs: GPU2 is the one that vanishes.
var draGPUs = []devicetest.DRMGPU{GPU, GPU2}

// TestClusterDRA starts a cluster whose accel-cri is the node's DRA driver
// (Options.DRA: no device plugin) with two fake Intel GPUs shared by two
// claims each (replicas), and runs the DRA cases on it, each in a
// namespace of its own, then what hack/gpu-check.sh can show without an
// NVIDIA GPU (testGPUCheck).
func TestClusterDRA(t *testing.T) {
	c := Start(t, Options{DRA: true, GPUs: draGPUs, DevicesConfig: "replicas = { intel-gpu = 2 }"})
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *Cluster)
	}{
		{"slices", testDRASlices},
		{"claim-template", testDRAClaimTemplate},
		{"extended-resource", testDRAExtendedResource},
		{"share", testDRAShare},
		{"unhealthy", testDRAUnhealthy},
		{"restart", testDRARestart},
		{"gpu-check", testGPUCheck},
		{"bad-input", testDRABadInput},
		{"admin-access", testDRAAdminAccess},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, c) }) && c.broken() {
			t.Fatalf("%s left the cluster broken: the cases after it do not run", tc.name)
		}
	}
}

// draDeviceName is a GPU's device name in its pool: "gpu-" and the PCI
// address as a DNS label (dra.DeviceName), spelled out here.
func draDeviceName(g devicetest.DRMGPU) string {
	return "gpu-" + strings.NewReplacer(":", "-", ".", "-").Replace(g.PCI)
}

// draGPU is the fake GPU of a device name.
func draGPU(t *testing.T, name string) devicetest.DRMGPU {
	t.Helper()
	for _, g := range draGPUs {
		if draDeviceName(g) == name {
			return g
		}
	}
	t.Fatalf("device %q is none of the fake GPUs", name)
	return devicetest.DRMGPU{}
}

// nodeSlices lists the node's ResourceSlices by driver.
func nodeSlices(ctx context.Context, c *Cluster) (map[string][]resourceapi.ResourceSlice, error) {
	list, err := c.Client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + NodeName})
	if err != nil {
		return nil, err
	}
	out := map[string][]resourceapi.ResourceSlice{}
	for _, s := range list.Items {
		out[s.Spec.Driver] = append(out[s.Spec.Driver], s)
	}
	return out, nil
}

// sliceDevices are the devices of a driver's slices by name.
func sliceDevices(slices []resourceapi.ResourceSlice) map[string]resourceapi.Device {
	out := map[string]resourceapi.Device{}
	for _, s := range slices {
		for _, d := range s.Spec.Devices {
			out[d.Name] = d
		}
	}
	return out
}

// waitGPUDevices waits until the gpu driver's slices satisfy check and
// returns its devices.
func waitGPUDevices(t *testing.T, c *Cluster, ctx context.Context, what string, check func(map[string]resourceapi.Device) error) map[string]resourceapi.Device {
	t.Helper()
	return waitFor(t, 2*time.Minute, what, func() (map[string]resourceapi.Device, error) {
		bySlice, err := nodeSlices(ctx, c)
		if err != nil {
			return nil, err
		}
		devs := sliceDevices(bySlice[driverGPU])
		if err := check(devs); err != nil {
			return nil, fmt.Errorf("%w; accel-cri log tail:\n%s", err, c.AccelCRI.LogTail(15))
		}
		return devs, nil
	})
}

// hasTaint reports whether d carries the unhealthy taint with NoSchedule.
func hasTaint(d resourceapi.Device) bool {
	return slices.ContainsFunc(d.Taints, func(tt resourceapi.DeviceTaint) bool {
		return tt.Key == taintUnhealthy && tt.Effect == resourceapi.DeviceTaintEffectNoSchedule
	})
}

func str(a resourceapi.DeviceAttribute) string {
	switch {
	case a.StringValue != nil:
		return *a.StringValue
	case a.IntValue != nil:
		return fmt.Sprint(*a.IntValue)
	case a.BoolValue != nil:
		return fmt.Sprint(*a.BoolValue)
	case a.VersionValue != nil:
		return *a.VersionValue
	}
	return "<none>"
}

// testDRASlices: accel-cri publishes the node's ResourceSlices: both GPUs
// under gpu.accel-cri.io with the standard PCI attributes and accel-cri's
// own, shareable twice (replicas: AllowMultipleAllocations and a capacity
// "shares" of 2); fpga.accel-cri.io and device.accel-cri.io an empty pool.
func testDRASlices(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The node has no accel-cri.io/intel-gpu of a device plugin.
	node, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q, ok := node.Status.Capacity[ResourceName]; ok {
		t.Errorf("the node's capacity lists %s=%s: the device plugin runs beside DRA", ResourceName, q.String())
	}
	devs := waitGPUDevices(t, c, ctx, "both GPUs in the node's "+driverGPU+" slices", func(devs map[string]resourceapi.Device) error {
		for _, g := range draGPUs {
			if _, ok := devs[draDeviceName(g)]; !ok {
				return fmt.Errorf("no device %s among %v", draDeviceName(g), slices.Sorted(maps.Keys(devs)))
			}
		}
		return nil
	})
	if len(devs) != len(draGPUs) {
		t.Errorf("%s publishes %d devices, want %d: %v", driverGPU, len(devs), len(draGPUs), slices.Sorted(maps.Keys(devs)))
	}
	for _, g := range draGPUs {
		d := devs[draDeviceName(g)]
		want := map[resourceapi.QualifiedName]string{
			pciBusIDAttr:                      g.PCI,
			"resource.kubernetes.io/pcieRoot": "pci0000:00",
			"class":                           "intel-gpu",
			"vendor":                          "intel",
			"model":                           g.Device,
			"driver":                          g.Driver,
			"cardMinor":                       fmt.Sprint(g.Card),
			"renderMinor":                     fmt.Sprint(g.Render),
		}
		for name, v := range want {
			if a, ok := d.Attributes[name]; !ok || str(a) != v {
				t.Errorf("device %s: attribute %s = %s (present %v), want %s", d.Name, name, str(a), ok, v)
			}
		}
		if len(d.Taints) != 0 {
			t.Errorf("device %s: taints %+v, want none", d.Name, d.Taints)
		}
		if d.AllowMultipleAllocations == nil || !*d.AllowMultipleAllocations {
			t.Errorf("device %s: allowMultipleAllocations %v, want true (replicas intel-gpu = 2)", d.Name, d.AllowMultipleAllocations)
		}
		if name, capa, ok := sharesCapacity(d); !ok || capa.Value.Cmp(resource.MustParse("2")) != 0 {
			t.Errorf("device %s: capacity %q = %+v (found %v), want shares 2; capacity %+v", d.Name, name, capa, ok, d.Capacity)
		}
		t.Logf("device %s: attributes %v, capacity %v", d.Name, attrString(d), d.Capacity)
	}

	bySlice, err := nodeSlices(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range bySlice[driverGPU] {
		if s.Spec.Pool.Name != NodeName || s.Spec.NodeName == nil || *s.Spec.NodeName != NodeName {
			t.Errorf("slice %s: pool %q, node %v; want both %s", s.Name, s.Spec.Pool.Name, s.Spec.NodeName, NodeName)
		}
	}
	// The FPGA and static drivers run with nothing to offer: a pool of
	// the node with slices and no devices.
	for _, driver := range []string{driverFPGA, driverStatic} {
		ss := waitFor(t, time.Minute, "the "+driver+" pool", func() ([]resourceapi.ResourceSlice, error) {
			by, err := nodeSlices(ctx, c)
			if err != nil {
				return nil, err
			}
			if len(by[driver]) == 0 {
				return nil, fmt.Errorf("no slice of %s; drivers with slices: %v", driver, slices.Sorted(maps.Keys(by)))
			}
			return by[driver], nil
		})
		for _, s := range ss {
			if s.Spec.Pool.Name != NodeName || len(s.Spec.Devices) != 0 {
				t.Errorf("%s slice %s: pool %q with %d devices, want pool %s, empty", driver, s.Name, s.Spec.Pool.Name, len(s.Spec.Devices), NodeName)
			}
		}
	}
}

func attrString(d resourceapi.Device) string {
	var out []string
	for name, a := range d.Attributes {
		out = append(out, string(name)+"="+str(a))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// sharesCapacity is the device's capacity "shares" (its name as the
// driver publishes it, qualified or not).
func sharesCapacity(d resourceapi.Device) (resourceapi.QualifiedName, resourceapi.DeviceCapacity, bool) {
	for name, capa := range d.Capacity {
		if name == "shares" || strings.HasSuffix(string(name), "/shares") {
			return name, capa, true
		}
	}
	return "", resourceapi.DeviceCapacity{}, false
}

// gpuClaimSpec asks for one Intel GPU; pci, if set, selects it by its
// pciBusID, and capacity requests capacities of it.
func gpuClaimSpec(pci string, capacity map[resourceapi.QualifiedName]resource.Quantity) resourceapi.ResourceClaimSpec {
	req := &resourceapi.ExactDeviceRequest{
		DeviceClassName: intelGPUClass,
		AllocationMode:  resourceapi.DeviceAllocationModeExactCount,
		Count:           1,
	}
	if pci != "" {
		req.Selectors = []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{
			Expression: fmt.Sprintf("device.attributes['resource.kubernetes.io'].pciBusID == '%s'", pci),
		}}}
	}
	if capacity != nil {
		req.Capacity = &resourceapi.CapacityRequirements{Requests: capacity}
	}
	return resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
		Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: req}},
	}}
}

func createClaim(t *testing.T, c *Cluster, ctx context.Context, ns, name string, spec resourceapi.ResourceClaimSpec) *resourceapi.ResourceClaim {
	t.Helper()
	cl, err := c.Client.ResourceV1().ResourceClaims(ns).Create(ctx, &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// holdScript keeps a container running; SIGTERM (kill 1 from kubectl
// exec) ends it with status 7.
const holdScript = `trap 'exit 7' TERM; echo holding; while true; do sleep 1; done`

// claimPod is a busybox pod running holdScript whose container uses the
// pod claim "gpu": the ResourceClaim claim, or one made from the
// ResourceClaimTemplate template.
func claimPod(c *Cluster, ns, name, claim, template string) *corev1.Pod {
	p := busyboxPod(c, ns, name, holdScript)
	pc := corev1.PodResourceClaim{Name: "gpu"}
	if claim != "" {
		pc.ResourceClaimName = ptr.To(claim)
	} else {
		pc.ResourceClaimTemplateName = ptr.To(template)
	}
	p.Spec.ResourceClaims = []corev1.PodResourceClaim{pc}
	p.Spec.Containers[0].Resources.Claims = []corev1.ResourceClaim{{Name: "gpu"}}
	return p
}

// allocatedGPU is the one GPU the claim is allocated: it fails the test
// unless the allocation is one device of the node's gpu pool.
func allocatedGPU(t *testing.T, cl *resourceapi.ResourceClaim) (devicetest.DRMGPU, resourceapi.DeviceRequestAllocationResult) {
	t.Helper()
	if cl.Status.Allocation == nil {
		t.Fatalf("claim %s is not allocated: %+v", cl.Name, cl.Status)
	}
	res := cl.Status.Allocation.Devices.Results
	if len(res) != 1 || res[0].Driver != driverGPU || res[0].Pool != NodeName {
		t.Fatalf("claim %s allocated %+v, want one device of %s's pool %s", cl.Name, res, driverGPU, NodeName)
	}
	return draGPU(t, res[0].Device), res[0]
}

func getClaim(t *testing.T, c *Cluster, ctx context.Context, ns, name string) *resourceapi.ResourceClaim {
	t.Helper()
	cl, err := c.Client.ResourceV1().ResourceClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// checkPodGPU checks, with kubectl exec, that the pod's container sees
// exactly one card and one render node, card0 and renderD128 (accel-cri
// renumbers them), with the host numbers of g's nodes.
func checkPodGPU(t *testing.T, c *Cluster, ctx context.Context, ns, pod string, g devicetest.DRMGPU) {
	t.Helper()
	out, err := c.Kubectl(ctx, "-n", ns, "exec", pod, "--", "sh", "-c",
		`echo $(ls /dev/dri); stat -c '%F %t %T' /dev/dri/card0 /dev/dri/renderD128`)
	want := fmt.Sprintf("card0 renderD128\ncharacter special file %x %x\ncharacter special file %x %x\n",
		g.CardNum.Major, g.CardNum.Minor, g.RenderNum.Major, g.RenderNum.Minor)
	if err != nil || out != want {
		t.Errorf("pod %s's /dev/dri (ls; stat card0 renderD128):\n%s(%v)\nwant GPU %s's nodes:\n%s", pod, out, err, g.PCI, want)
	}
}

// testDRAClaimTemplate: a pod with a claim from a ResourceClaimTemplate
// (one Intel GPU) runs; its claim is allocated one of the two GPUs and
// reserved for the pod, and the container sees exactly that GPU; when
// the pod is deleted the claim goes.
func testDRAClaimTemplate(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "dra-template")
	if _, err := c.Client.ResourceV1().ResourceClaimTemplates(ns).Create(ctx, &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu", Namespace: ns},
		Spec:       resourceapi.ResourceClaimTemplateSpec{Spec: gpuClaimSpec("", nil)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	runPod(t, c, ctx, claimPod(c, ns, "gpu-pod", "", "gpu"))
	p := getPod(t, c, ctx, ns, "gpu-pod")
	var claimName string
	for _, s := range p.Status.ResourceClaimStatuses {
		if s.Name == "gpu" && s.ResourceClaimName != nil {
			claimName = *s.ResourceClaimName
		}
	}
	if claimName == "" {
		t.Fatalf("pod gpu-pod has no claim made for it: %+v", p.Status.ResourceClaimStatuses)
	}
	cl := getClaim(t, c, ctx, ns, claimName)
	g, res := allocatedGPU(t, cl)
	if !slices.ContainsFunc(cl.Status.ReservedFor, func(r resourceapi.ResourceClaimConsumerReference) bool { return r.UID == p.UID }) {
		t.Errorf("claim %s reserved for %+v, not pod gpu-pod (%s)", cl.Name, cl.Status.ReservedFor, p.UID)
	}
	checkPodGPU(t, c, ctx, ns, "gpu-pod", g)
	t.Logf("claim %s: device %s (%s)", cl.Name, res.Device, g.PCI)

	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "gpu-pod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "claim "+claimName+" deleted with its pod", func() (bool, error) {
		cl, err := c.Client.ResourceV1().ResourceClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return false, fmt.Errorf("claim still there: allocation %v, reserved for %+v, deleting %v", cl.Status.Allocation != nil, cl.Status.ReservedFor, cl.DeletionTimestamp)
	})
}

// testDRAExtendedResource: with the device plugin off, a non-root Job
// asking for accel-cri.io/intel-gpu: 1 is served by DRA (the
// DeviceClass's extendedResourceName): the scheduler makes a claim for the
// pod, allocated one GPU, which the container gets as renderD128 and
// the render group, opens read-write and transcodes with (software: the
// fake GPU has no VAAPI); the output passes ffprobe.
func testDRAExtendedResource(t *testing.T, c *Cluster) {
	for _, b := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found: run hack/install-deps.sh (Debian ffmpeg)", b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	img := framework.PushFFmpegImage(t, c.Registry, "library/")
	t.Logf("ffmpeg image built and pushed in %s", time.Since(start).Round(time.Second))
	ns := c.Namespace(t, "dra-extended")
	out, err := os.MkdirTemp("", "acri-cluster-media-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(out) })
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, transcodeJob("transcode", img.Ref, out), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := waitJobPod(t, c, ctx, ns, "transcode", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	log := waitKubectlTimeout(t, c, ctx, 5*time.Minute, "holding the device", "-n", ns, "logs", pod.Name)
	t.Logf("transcode (%s) holds its GPU; log:\n%s", pod.Name, log)
	checkTranscodeLog(t, "transcode", log)

	pod = getPod(t, c, ctx, ns, pod.Name)
	st := pod.Status.ExtendedResourceClaimStatus
	if st == nil || st.ResourceClaimName == "" {
		t.Fatalf("pod %s has no extended-resource claim: %+v", pod.Name, pod.Status)
	}
	g, res := allocatedGPU(t, getClaim(t, c, ctx, ns, st.ResourceClaimName))
	checkPodGPU(t, c, ctx, ns, pod.Name, g)
	t.Logf("claim %s made by the scheduler for %s: device %s, mappings %+v", st.ResourceClaimName, ResourceName, res.Device, st.RequestMappings)

	if err := os.WriteFile(filepath.Join(out, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitJobComplete(t, c, ctx, ns, "transcode")
	probe, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "default=nw=1", filepath.Join(out, "clip.mp4")).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, probe)
	}
	for _, want := range []string{"codec_name=h264", "width=320", "height=240", "nb_read_frames=50"} {
		if !strings.Contains(string(probe), want) {
			t.Errorf("ffprobe of the clip: %q lacks %s", probe, want)
		}
	}
}

// noAllocation is the scheduler's reason for a node on which a pod's
// claims cannot be allocated.
const noAllocation = "cannot allocate all claims"

// testDRAShare: replicas intel-gpu = 2 makes each GPU shareable by two
// claims. Two pods whose claims select GPU by its pciBusID and request one
// share each both run on it; a third such claim stays unallocated, its pod
// Pending, while they hold it, and runs once one of them is gone.
func testDRAShare(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "dra-share")
	devs := waitGPUDevices(t, c, ctx, "GPU "+GPU.PCI+" shareable", func(devs map[string]resourceapi.Device) error {
		d, ok := devs[draDeviceName(GPU)]
		if !ok {
			return fmt.Errorf("no device %s", draDeviceName(GPU))
		}
		if _, _, ok := sharesCapacity(d); !ok || d.AllowMultipleAllocations == nil || !*d.AllowMultipleAllocations {
			return fmt.Errorf("device %s: allowMultipleAllocations %v, capacity %v", d.Name, d.AllowMultipleAllocations, d.Capacity)
		}
		return nil
	})
	shares, _, _ := sharesCapacity(devs[draDeviceName(GPU)])
	spec := gpuClaimSpec(GPU.PCI, map[resourceapi.QualifiedName]resource.Quantity{shares: resource.MustParse("1")})
	for _, name := range []string{"share-1", "share-2", "share-3"} {
		createClaim(t, c, ctx, ns, name, spec)
	}
	shareIDs := map[string]bool{}
	for _, name := range []string{"share-1", "share-2"} {
		runPod(t, c, ctx, claimPod(c, ns, name, name, ""))
		g, res := allocatedGPU(t, getClaim(t, c, ctx, ns, name))
		if g.PCI != GPU.PCI {
			t.Errorf("claim %s allocated %s, want %s", name, g.PCI, GPU.PCI)
		}
		if q, ok := res.ConsumedCapacity[shares]; !ok || q.Cmp(resource.MustParse("1")) != 0 {
			t.Errorf("claim %s consumes %v of the device, want %s: 1", name, res.ConsumedCapacity, shares)
		}
		if res.ShareID == nil {
			t.Errorf("claim %s's allocation of a shared device has no shareID", name)
		} else {
			shareIDs[string(*res.ShareID)] = true
		}
		checkPodGPU(t, c, ctx, ns, name, g)
	}
	if len(shareIDs) != 2 {
		t.Errorf("the two allocations' share IDs: %v, want two distinct", shareIDs)
	}

	// The third waits: GPU's two shares are taken, and the selector
	// rules out the other GPU.
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, claimPod(c, ns, "share-3", "share-3", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	msg := waitPodEvent(t, c, ctx, ns, "share-3", "FailedScheduling", noAllocation)
	waitUnschedulable(t, c, ctx, ns, "share-3", noAllocation)
	if cl := getClaim(t, c, ctx, ns, "share-3"); cl.Status.Allocation != nil {
		t.Errorf("claim share-3 allocated %+v while share-1 and share-2 hold both shares", cl.Status.Allocation.Devices.Results)
	}
	t.Logf("share-3 Pending: %s", msg)

	// share-1 goes: its claim is deallocated and share-3 gets the share.
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "share-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitRunning(t, c, ctx, ns, "share-3", 3*time.Minute)
	g, _ := allocatedGPU(t, getClaim(t, c, ctx, ns, "share-3"))
	if g.PCI != GPU.PCI {
		t.Errorf("claim share-3 allocated %s, want %s", g.PCI, GPU.PCI)
	}
	checkPodGPU(t, c, ctx, ns, p.Name, g)
}

// testDRAUnhealthy: GPU2 vanishes (its sysfs class links and /dev nodes
// go, as on hot unplug) under a pod using it: its device gets the
// NoSchedule taint accel-cri.io/unhealthy, the kubelet shows the pod's
// device Unhealthy (the driver's health reports), the claim's
// status.devices says Healthy=False DeviceVanished, and the pod runs on
// (its container, restarted, is refused with FailedPrecondition naming the
// device until the GPU is back); a
// claim selecting GPU2 is not allocated (its pod Pending,
// FailedScheduling) while GPU stays allocatable; once GPU2 is back the
// taint goes, the device is Healthy again (DevicePresent in the claim) and
// the waiting pod runs on it.
func testDRAUnhealthy(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "dra-unhealthy")
	// A Host of this subtest on the cluster's tree, so that its failures
	// are this test's.
	h := devicetest.NewHost(t, c.Devices.Root)
	vanished := false
	t.Cleanup(func() {
		if vanished {
			h.AddDRMGPU(GPU2)
		}
	})
	createClaim(t, c, ctx, ns, "user", gpuClaimSpec(GPU2.PCI, nil))
	runPod(t, c, ctx, claimPod(c, ns, "user", "user", ""))
	if g, _ := allocatedGPU(t, getClaim(t, c, ctx, ns, "user")); g.PCI != GPU2.PCI {
		t.Fatalf("claim user allocated %s, want %s", g.PCI, GPU2.PCI)
	}
	waitDeviceHealth(t, c, ctx, ns, "user", GPU2, corev1.ResourceHealthStatusHealthy)
	waitClaimDeviceCondition(t, c, ctx, ns, "user", GPU2, metav1.ConditionTrue, "DevicePresent")

	vanished = true
	h.RemoveDRMGPU(GPU2)
	gone, ok := draDeviceName(GPU2), draDeviceName(GPU)
	waitGPUDevices(t, c, ctx, gone+" tainted "+taintUnhealthy, func(devs map[string]resourceapi.Device) error {
		if d, found := devs[gone]; !found || !hasTaint(d) {
			return fmt.Errorf("device %s (published %v): taints %+v", gone, found, d.Taints)
		}
		if d := devs[ok]; len(d.Taints) != 0 {
			return fmt.Errorf("device %s: taints %+v, want none", ok, d.Taints)
		}
		return nil
	})
	msg := waitDeviceHealth(t, c, ctx, ns, "user", GPU2, corev1.ResourceHealthStatusUnhealthy)
	t.Logf("pod user's %s: Unhealthy: %s", gone, msg)
	msg = waitClaimDeviceCondition(t, c, ctx, ns, "user", GPU2, metav1.ConditionFalse, "DeviceVanished")
	t.Logf("claim user's status.devices: Healthy=False DeviceVanished: %s", msg)
	if cs := containerStatus(getPod(t, c, ctx, ns, "user"), "main"); cs == nil || cs.State.Running == nil || cs.RestartCount != 0 {
		t.Errorf("pod user's container after its GPU vanished: %+v, want running, not restarted (NoSchedule evicts nothing)", cs)
	}
	// The container ends (exit 7) and the kubelet starts it again: that
	// CreateContainer fails with accel-cri's FailedPrecondition naming the
	// device, and the container waits until the GPU is back (below).
	if out, err := c.Kubectl(ctx, "-n", ns, "exec", "user", "--", "kill", "1"); err != nil {
		t.Fatalf("kill 1 in pod user: %v\n%s", err, out)
	}
	msg = waitPodEvent(t, c, ctx, ns, "user", "Failed", "vanished and is no longer on the node")
	if want := `CDI device "accel-cri.io/intel-gpu=` + GPU2.PCI + `"`; !strings.Contains(msg, want) || !strings.Contains(msg, "failed precondition") {
		t.Errorf("pod user's restart refused with %q, want FailedPrecondition naming %s", msg, want)
	}
	t.Logf("pod user's restart: %s", msg)

	createClaim(t, c, ctx, ns, "on-vanished", gpuClaimSpec(GPU2.PCI, nil))
	createClaim(t, c, ctx, ns, "on-healthy", gpuClaimSpec(GPU.PCI, nil))
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, claimPod(c, ns, "on-vanished", "on-vanished", ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	msg = waitPodEvent(t, c, ctx, ns, "on-vanished", "FailedScheduling", noAllocation)
	waitUnschedulable(t, c, ctx, ns, "on-vanished", noAllocation)
	t.Logf("on-vanished Pending: %s", msg)
	runPod(t, c, ctx, claimPod(c, ns, "on-healthy", "on-healthy", ""))
	g, _ := allocatedGPU(t, getClaim(t, c, ctx, ns, "on-healthy"))
	if g.PCI != GPU.PCI {
		t.Errorf("claim on-healthy allocated %s, want %s", g.PCI, GPU.PCI)
	}
	checkPodGPU(t, c, ctx, ns, "on-healthy", g)
	if p := getPod(t, c, ctx, ns, "on-vanished"); p.Spec.NodeName != "" || getClaim(t, c, ctx, ns, "on-vanished").Status.Allocation != nil {
		t.Fatalf("pod on-vanished bound to %q / its claim allocated while %s is gone", p.Spec.NodeName, GPU2.PCI)
	}

	// GPU2 is back: the taint goes, the waiting pod runs on it.
	h.AddDRMGPU(GPU2)
	vanished = false
	waitGPUDevices(t, c, ctx, gone+" untainted", func(devs map[string]resourceapi.Device) error {
		if d, found := devs[gone]; !found || len(d.Taints) != 0 {
			return fmt.Errorf("device %s (published %v): taints %+v", gone, found, d.Taints)
		}
		return nil
	})
	waitDeviceHealth(t, c, ctx, ns, "user", GPU2, corev1.ResourceHealthStatusHealthy)
	waitClaimDeviceCondition(t, c, ctx, ns, "user", GPU2, metav1.ConditionTrue, "DevicePresent")
	waitFor(t, 5*time.Minute, "pod user's container started again with its GPU back", func() (bool, error) {
		cs := containerStatus(getPod(t, c, ctx, ns, "user"), "main")
		if cs == nil || cs.State.Running == nil || cs.RestartCount < 1 {
			return false, fmt.Errorf("%+v", cs)
		}
		return true, nil
	})
	checkPodGPU(t, c, ctx, ns, "user", GPU2)
	waitRunning(t, c, ctx, ns, "on-vanished", 3*time.Minute)
	g, _ = allocatedGPU(t, getClaim(t, c, ctx, ns, "on-vanished"))
	if g.PCI != GPU2.PCI {
		t.Errorf("claim on-vanished allocated %s, want %s", g.PCI, GPU2.PCI)
	}
	checkPodGPU(t, c, ctx, ns, "on-vanished", g)
}

// waitDeviceHealth waits until the kubelet shows g's device, allocated to
// the pod's container "main" through its claim "gpu", with health want
// (status.containerStatuses[].allocatedResourcesStatus), and returns the
// health message. The kubelet names the device by the first CDI id the
// driver prepared it as: accel-cri.io/intel-gpu=<PCI address>.
func waitDeviceHealth(t *testing.T, c *Cluster, ctx context.Context, ns, pod string, g devicetest.DRMGPU, want corev1.ResourceHealthStatus) string {
	t.Helper()
	return waitFor(t, 3*time.Minute, fmt.Sprintf("pod %s's %s %s", pod, draDeviceName(g), want), func() (string, error) {
		cs := containerStatus(getPod(t, c, ctx, ns, pod), "main")
		if cs == nil {
			return "", fmt.Errorf("no status of container main")
		}
		for _, rs := range cs.AllocatedResourcesStatus {
			if !strings.HasPrefix(string(rs.Name), "claim:gpu") {
				continue
			}
			for _, r := range rs.Resources {
				if string(r.ResourceID) == "accel-cri.io/intel-gpu="+g.PCI && r.Health == want {
					return ptr.Deref(r.Message, ""), nil
				}
			}
		}
		return "", fmt.Errorf("allocatedResourcesStatus %+v", cs.AllocatedResourcesStatus)
	})
}

// waitClaimDeviceCondition waits until the claim's status.devices entry of
// g's device (written by the driver once the claim is prepared and when
// the device's health changes, as deploy/dra/rbac.yaml lets the node) has the condition Healthy with
// status and reason, and returns its message.
func waitClaimDeviceCondition(t *testing.T, c *Cluster, ctx context.Context, ns, claim string, g devicetest.DRMGPU, status metav1.ConditionStatus, reason string) string {
	t.Helper()
	return waitFor(t, 3*time.Minute, fmt.Sprintf("claim %s's %s Healthy=%s %s", claim, draDeviceName(g), status, reason), func() (string, error) {
		cl := getClaim(t, c, ctx, ns, claim)
		for _, d := range cl.Status.Devices {
			if d.Driver != driverGPU || d.Pool != NodeName || d.Device != draDeviceName(g) {
				continue
			}
			for _, cond := range d.Conditions {
				if cond.Type == "Healthy" && cond.Status == status && cond.Reason == reason {
					return cond.Message, nil
				}
			}
		}
		return "", fmt.Errorf("status.devices %+v", cl.Status.Devices)
	})
}

// testDRARestart: a pod holds a claim; accel-cri restarts: the driver's
// checkpoint still lists the claim and the container still has its GPU; a
// container kubelet restarts afterwards (a new CreateContainer) gets it
// again; a new claim is prepared by the restarted driver (the kubelet
// found its new sockets); when the pod is deleted the claim is unprepared
// and leaves the checkpoint.
func testDRARestart(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "dra-restart")
	cl := createClaim(t, c, ctx, ns, "held", gpuClaimSpec("", nil))
	runPod(t, c, ctx, claimPod(c, ns, "holder", "held", ""))
	g, _ := allocatedGPU(t, getClaim(t, c, ctx, ns, "held"))
	checkPodGPU(t, c, ctx, ns, "holder", g)

	checkpoint := filepath.Join(c.DRAPluginsDir, driverGPU, "checkpoint.json")
	lists := func() (bool, string) {
		b, err := os.ReadFile(checkpoint)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(b), string(cl.UID)), string(b)
	}
	if ok, content := lists(); !ok {
		t.Fatalf("%s does not list claim held (%s): %s", checkpoint, cl.UID, content)
	}

	start := time.Now()
	c.AccelCRI.Restart(t)
	t.Logf("accel-cri restarted in %s", time.Since(start).Round(time.Millisecond))
	c.WaitNodeReady(t, 2*time.Minute)
	if ok, content := lists(); !ok {
		t.Errorf("after the restart %s does not list claim held (%s): %s", checkpoint, cl.UID, content)
	}
	checkPodGPU(t, c, ctx, ns, "holder", g)

	// The container ends (SIGTERM to its shell); kubelet creates it again.
	if out, err := c.Kubectl(ctx, "-n", ns, "exec", "holder", "--", "kill", "1"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, 3*time.Minute, "holder's container restarted and ready", func() (bool, error) {
		p := getPod(t, c, ctx, ns, "holder")
		cs := containerStatus(p, "main")
		if cs == nil || cs.RestartCount < 1 || !cs.Ready || cs.State.Running == nil {
			return false, fmt.Errorf("container status %+v", cs)
		}
		if term := cs.LastTerminationState.Terminated; term == nil || term.ExitCode != 7 {
			t.Fatalf("holder's container ended with %+v, want exit 7 (its SIGTERM trap)", cs.LastTerminationState)
		}
		return true, nil
	})
	checkPodGPU(t, c, ctx, ns, "holder", g)

	createClaim(t, c, ctx, ns, "fresh", gpuClaimSpec("", nil))
	runPod(t, c, ctx, claimPod(c, ns, "after-restart", "fresh", ""))
	g2, _ := allocatedGPU(t, getClaim(t, c, ctx, ns, "fresh"))
	checkPodGPU(t, c, ctx, ns, "after-restart", g2)

	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "holder", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Minute, "claim held unprepared: gone from "+checkpoint, func() (bool, error) {
		if ok, content := lists(); ok {
			return false, fmt.Errorf("still listed: %s", content)
		}
		return true, nil
	})
	waitFor(t, 2*time.Minute, "claim held deallocated", func() (bool, error) {
		if cl := getClaim(t, c, ctx, ns, "held"); cl.Status.Allocation != nil || len(cl.Status.ReservedFor) != 0 {
			return false, fmt.Errorf("allocation %v, reserved for %+v", cl.Status.Allocation != nil, cl.Status.ReservedFor)
		}
		return true, nil
	})
}

// testDRAAdminAccess: a monitoring pod's adminAccess claim, in a namespace
// labelled for it, gets a GPU another pod's claim holds: the scheduler
// allocates it beside the holder with admin access, accel-cri prepares it,
// and both pods see the GPU. (On a shared device the 1.37 allocator counts
// an admin-access claim's share like any other, so the holder leaves one
// free; accel-cri's own check lets admin access beside an exclusive holder
// too, as dra's TestPrepare shows.)
func testDRAAdminAccess(t *testing.T, c *Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := c.Namespace(t, "dra-admin-holder")
	mon := c.Namespace(t, "dra-admin-monitor")
	monNS, err := c.Client.CoreV1().Namespaces().Get(ctx, mon, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if monNS.Labels == nil {
		monNS.Labels = map[string]string{}
	}
	monNS.Labels[resourceapi.DRAAdminNamespaceLabelKey] = "true"
	if _, err := c.Client.CoreV1().Namespaces().Update(ctx, monNS, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	createClaim(t, c, ctx, ns, "holder", gpuClaimSpec(GPU.PCI, nil))
	runPod(t, c, ctx, claimPod(c, ns, "holder", "holder", ""))
	spec := gpuClaimSpec(GPU.PCI, nil)
	spec.Devices.Requests[0].Exactly.AdminAccess = ptr.To(true)
	createClaim(t, c, ctx, mon, "monitor", spec)
	runPod(t, c, ctx, claimPod(c, mon, "monitor", "monitor", ""))
	g, r := allocatedGPU(t, getClaim(t, c, ctx, mon, "monitor"))
	if g.PCI != GPU.PCI || r.AdminAccess == nil || !*r.AdminAccess {
		t.Fatalf("claim monitor allocated %s, adminAccess %v; want %s with admin access", g.PCI, r.AdminAccess, GPU.PCI)
	}
	checkPodGPU(t, c, ctx, mon, "monitor", GPU)
	checkPodGPU(t, c, ctx, ns, "holder", GPU)
}
