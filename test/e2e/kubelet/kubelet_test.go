package kubelet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/accel-cri/accel-cri/devices/devicetest"
	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// The suite: a real kubelet (hack/build-kubelet.sh), standalone with
// static pods, on accel-cri with CNI; every case is checked from outside
// (kubelet's /pods, pod IP, files, CRI listings, pod-resources API). The
// last case runs the first pod on containerd's own CRI for comparison.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "kubelet e2e tests need root; run via `make test`")
		os.Exit(1)
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", framework.RegistryBinary, "go", "unshare"} {
		if _, err := exec.LookPath(b); err != nil {
			fmt.Fprintf(os.Stderr, "kubelet e2e: %s not found: run hack/install-deps.sh (make deps)\n", b)
			os.Exit(1)
		}
	}
	framework.SweepStale(framework.StderrT{})
	code := m.Run()
	framework.CleanupBinaries()
	os.Exit(code)
}

// env is accel-cri with CNI, the test images and a kubelet on it.
type env struct {
	a    *framework.AccelCRI
	imgs framework.TestImages
	k    *Kubelet
	bin  string
	reg  *framework.Registry
}

func startEnv(t *testing.T) *env {
	t.Helper()
	bin := kubeletBinary(t, framework.ModuleRoot(t))
	// kubelet's directory exists before accel-cri, whose device plugin
	// registers at <dir>/device-plugins/kubelet.sock (kubelet's fixed
	// /var/lib/kubelet/device-plugins in its mount namespace). Removed last.
	kdir, err := os.MkdirTemp("", "acri-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	framework.MarkOwned(t, kdir)
	// Nothing of this test goes to the host-wide /var/run/netns: accel-cri
	// keeps its pods' netns under its state dir, and the comparison's
	// containerd under its own (netns_mounts_under_state_dir), where their
	// leak checks count them. What appears in /var/run/netns meanwhile is
	// another runtime's: reported, never touched.
	netnsBefore := dirNames("/var/run/netns")
	// A netns named like containerd's made after that snapshot stands for
	// another runtime's pod started meanwhile (issue 24: the suite removed
	// those): it must outlive the cleanup below.
	bystander := "cni-acri-bystander-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if out, err := exec.Command("ip", "netns", "add", bystander).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", bystander, err, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat("/var/run/netns/" + bystander); err != nil {
			t.Errorf("the suite removed /var/run/netns/%s, which it did not make: %v", bystander, err)
			return
		}
		if out, err := exec.Command("ip", "netns", "del", bystander).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", bystander, err, out)
		}
	})
	_, err = os.Stat("/var/lib/kubelet")
	hadVarLibKubelet := err == nil
	t.Cleanup(func() {
		os.RemoveAll(kdir)
		for name := range dirNames("/var/run/netns") {
			if !netnsBefore[name] && name != bystander {
				t.Logf("/var/run/netns/%s appeared during the test, not made by it: left alone", name)
			}
		}
		// The test's kubelets have a /var/lib of their own (checked as
		// they start): this one is not theirs.
		if _, err := os.Stat("/var/lib/kubelet"); err == nil && !hadVarLibKubelet {
			t.Logf("/var/lib/kubelet appeared on the host during the test, not made by it: left alone")
		}
	})
	// A fake GPU: sysfs and /dev/dri nodes reusing harmless host device
	// numbers (devices/devicetest), discovered by accel-cri's own code.
	for _, p := range []string{"/dev/fuse", "/dev/loop-control"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the fake GPU reuses the numbers of %s: %v", p, err)
		}
	}
	h := devicetest.NewHost(t, t.TempDir())
	h.AddDRMGPU(devicetest.DRMGPU{PCI: "0000:00:02.0", Vendor: "0x8086", Device: "0x4680", Driver: "i915", Card: 0, Render: 128,
		CardNum: devicetest.LoopControl, RenderNum: devicetest.Fuse, CardGID: 44, RenderGID: 993})
	cdiDir := filepath.Join(h.Root, "cdi")
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Config: h.AccelCRIConfig(cdiDir, fmt.Sprintf("device_plugin = true\nkubelet_plugin_dir = %q", filepath.Join(kdir, "device-plugins")))})
	// kubelet's cgroupRoot is the instance's own cgroup root, so the
	// framework's cleanup and SweepStale remove what is left under it.
	k := NewKubelet(t, KubeletOptions{Bin: bin, Dir: kdir, Endpoint: "unix://" + a.Socket, CgroupRoot: a.CgroupRoot(),
		Drained: func() bool { return a.Runtime != nil && NoReadySandbox(a.Runtime)() }})
	return &env{a: a, imgs: imgs, k: k, bin: bin, reg: reg}
}

// webPod is two containers sharing an emptyDir: one writes the page, the
// other serves it on 8080.
func webPod(name, image string, extra string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: e2e
  labels: {app: %s}
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: www
    emptyDir: {}
  containers:
  - name: writer
    image: %s
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo hello-from-$(hostname) > /www/index.html; exec sleep 3600']
    volumeMounts: [{name: www, mountPath: /www}]
  - name: httpd
    image: %s
    imagePullPolicy: IfNotPresent
    command: [httpd, -f, -p, "8080", -h, /www]
    volumeMounts: [{name: www, mountPath: /www}]
%s`, name, name, image, image, extra)
}

func busyboxPod(name, image, script, extraPod, extraContainer string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: e2e
spec:
  terminationGracePeriodSeconds: 2
%s  containers:
  - name: main
    image: %s
    imagePullPolicy: IfNotPresent
    command: [sh, -c, %q]
%s`, name, extraPod, image, script, extraContainer)
}

// runWeb writes the web pod's manifest, waits until kubelet reports both
// containers running and returns the pod and the time that took.
func runWeb(t *testing.T, k *Kubelet, name, image string) (*Pod, time.Duration) {
	t.Helper()
	written := k.WriteManifest(t, name, webPod(name, image, ""))
	p := k.WaitPod(t, name, 2*time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(2) })
	took := time.Since(written)
	if ip := net.ParseIP(p.Status.PodIP); ip == nil {
		t.Fatalf("pod IP %q", p.Status.PodIP)
	}
	body := framework.HTTPGet(t, "http://"+net.JoinHostPort(p.Status.PodIP, "8080")+"/", 30*time.Second)
	if !strings.Contains(body, "hello-from-"+name) {
		t.Fatalf("GET pod IP: %q", body)
	}
	return p, took
}

func criPods(t testing.TB, a *framework.AccelCRI, name string) []*runtimeapi.PodSandbox {
	t.Helper()
	pods, err := a.Runtime.ListPodSandbox(context.Background(), &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.name": name + "-" + NodeName}})
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

func TestKubeletOnAccelCRI(t *testing.T) {
	e := startEnv(t)
	k, a := e.k, e.a
	img := e.imgs.Busybox.Ref

	t.Run("kubelet started; /pods needs a client certificate", func(t *testing.T) {
		if _, err := k.Pods(); err != nil {
			t.Fatalf("/pods with client cert: %v", err)
		}
		// Anonymous requests are refused.
		tlsc := k.client.Transport.(*http.Transport).TLSClientConfig.Clone()
		tlsc.Certificates = nil
		resp, err := (&http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsc}}).Get(fmt.Sprintf("https://127.0.0.1:%d/pods", k.Port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET /pods: %s, want 401", resp.Status)
		}
	})

	var web *Pod
	var accelTimes [2]time.Duration
	t.Run("two containers share an emptyDir and serve HTTP on the pod IP", func(t *testing.T) {
		var took time.Duration
		web, took = runWeb(t, k, "web", img)
		_, warm := runWeb(t, k, "web-warm", img)
		k.RemoveManifest(t, "web-warm")
		accelTimes = [2]time.Duration{took, warm}
		t.Logf("accel-cri: manifest written -> all containers running: %s (images cached: %s)", took.Round(time.Millisecond), warm.Round(time.Millisecond))
		pods := criPods(t, a, "web")
		if len(pods) != 1 || pods[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatalf("CRI sandboxes for web: %v", pods)
		}
		ctrs, err := a.Runtime.ListContainers(context.Background(), &runtimeapi.ContainerFilter{PodSandboxId: pods[0].Id})
		if err != nil || len(ctrs) != 2 {
			t.Fatalf("CRI containers of web: %v %v", ctrs, err)
		}
	})

	t.Run("restartPolicy Never runs to completion with its exit code", func(t *testing.T) {
		k.WriteManifest(t, "batch", busyboxPod("batch", img, "echo working; sleep 1; exit 3", "  restartPolicy: Never\n", ""))
		p := k.WaitPod(t, "batch", 2*time.Minute, "Failed", func(p *Pod) bool { return p != nil && p.Status.Phase == "Failed" })
		c := p.Container("main")
		if c == nil || c.State.Terminated == nil || c.State.Terminated.ExitCode != 3 || c.RestartCount != 0 {
			t.Fatalf("batch container status %+v", c)
		}
		k.RemoveManifest(t, "batch")
	})

	t.Run("exec liveness probe fails and kubelet restarts the container", func(t *testing.T) {
		k.WriteManifest(t, "live", busyboxPod("live", img, "touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 3600", "",
			`    livenessProbe:
      exec: {command: [test, -f, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
      timeoutSeconds: 2
`))
		p := k.WaitPod(t, "live", 90*time.Second, "restarted once", func(p *Pod) bool {
			c := p.Container0()
			return c != nil && c.RestartCount >= 1 && c.State.Running != nil
		})
		if c := p.Container0(); c.RestartCount != 1 {
			t.Errorf("restartCount = %d, want 1", c.RestartCount)
		}
		ctrs, _ := a.Runtime.ListContainers(context.Background(), &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.pod.name": "live-" + NodeName}})
		if len(ctrs) < 2 {
			t.Errorf("CRI lists %d containers for live, want the killed one and its replacement", len(ctrs))
		}
		k.RemoveManifest(t, "live")
	})

	t.Run("httpGet readiness probe", func(t *testing.T) {
		k.WriteManifest(t, "ready", busyboxPod("ready", img,
			"mkdir -p /www; httpd -p 8080 -h /www; sleep 4; echo ok > /www/ready; exec sleep 3600", "",
			`    readinessProbe:
      httpGet: {path: /ready, port: 8080}
      periodSeconds: 1
      failureThreshold: 1
`))
		p := k.WaitPod(t, "ready", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		if time.Since(parseTime(p.Container0().State.Running.StartedAt)) < 3*time.Second && p.Ready() {
			t.Errorf("pod ready before /ready exists")
		}
		k.WaitPod(t, "ready", time.Minute, "ready", func(p *Pod) bool { return p != nil && p.Ready() && p.Container0().Ready })
		k.RemoveManifest(t, "ready")
	})

	t.Run("hostPort", func(t *testing.T) {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		k.WriteManifest(t, "hp", busyboxPod("hp", img,
			"mkdir -p /www; echo hello-hostport > /www/index.html; exec httpd -f -p 8080 -h /www", "",
			fmt.Sprintf("    ports: [{containerPort: 8080, hostPort: %d, hostIP: 127.0.0.1}]\n", port)))
		k.WaitPod(t, "hp", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		if body := framework.HTTPGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 30*time.Second); !strings.Contains(body, "hello-hostport") {
			t.Fatalf("GET hostPort: %q", body)
		}
		k.RemoveManifest(t, "hp")
	})

	t.Run("deleting the manifest leaves no netns, IP, mount or cgroup", func(t *testing.T) {
		if web == nil {
			t.Skip("web pod did not run")
		}
		pods := criPods(t, a, "web")
		if len(pods) != 1 {
			t.Fatalf("web sandboxes %v", pods)
		}
		id := pods[0].Id
		st, err := a.Runtime.PodSandboxStatus(context.Background(), id, true)
		if err != nil {
			t.Fatal(err)
		}
		netns := netnsOf(st.Info["info"])
		ip := web.Status.PodIP
		k.RemoveManifest(t, "web")
		removed, lastLog := time.Now(), time.Now()
		k.WaitPod(t, "web", time.Minute, "gone", func(p *Pod) bool { return p == nil })
		// StopPodSandbox releases everything (network, netns, /dev/shm);
		// nothing waits for kubelet's garbage collection.
		deadline := time.Now().Add(20 * time.Second)
		var left []string
		for {
			left = nil
			for _, p := range criPods(t, a, "web") {
				if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
					left = append(left, "sandbox "+p.Id+" still ready")
				}
			}
			if netns != "" {
				if _, err := os.Stat(netns); err == nil {
					left = append(left, "netns "+netns)
				}
			}
			if _, err := os.Stat(filepath.Join(a.Dir, "ipam", a.NetworkName, ip)); err == nil {
				left = append(left, "IP "+ip+" still allocated")
			}
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			for _, l := range strings.Split(string(mi), "\n") {
				if strings.Contains(l, id) || strings.Contains(l, web.Metadata.UID) {
					left = append(left, "mount "+strings.Fields(l)[4])
				}
			}
			for _, p := range cgroups.Local().Walk(a.CgroupRoot()) {
				if strings.Contains(p, web.Metadata.UID) || strings.Contains(p, id) {
					left = append(left, "cgroup "+p)
				}
			}
			if len(left) == 0 {
				t.Logf("everything of the pod was gone %s after the manifest was removed", time.Since(removed).Round(100*time.Millisecond))
				break
			}
			if time.Since(lastLog) > 5*time.Second {
				t.Logf("still left after %s: %s", time.Since(removed).Round(time.Second), strings.Join(left, "; "))
				lastLog = time.Now()
			}
			if time.Now().After(deadline) {
				t.Fatalf("after deleting the manifest, left behind:\n%s", strings.Join(left, "\n"))
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	t.Run("logs in CRI format under podLogsDir and rotation through ReopenContainerLog", func(t *testing.T) {
		k.WriteManifest(t, "logs", busyboxPod("logs", img,
			"i=0; while true; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); usleep 5000; done", "", ""))
		p := k.WaitPod(t, "logs", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		dir := filepath.Join(k.PodLogsDir, "e2e_logs-"+NodeName+"_"+p.Metadata.UID, "main")
		current := filepath.Join(dir, "0.log")
		framework.WaitLog(t, current, "line-1-", 30*time.Second)
		// kubelet checks every 3s (containerLogMonitorInterval) for logs over
		// 16Ki, renames 0.log and has the runtime reopen it.
		var rotated string
		deadline := time.Now().Add(60 * time.Second)
		for rotated == "" {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "0.log.") && !strings.HasSuffix(e.Name(), ".gz") && !strings.HasSuffix(e.Name(), ".tmp") {
					rotated = filepath.Join(dir, e.Name())
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no rotated log in %s after 60s: %v", dir, ents)
			}
			time.Sleep(100 * time.Millisecond)
		}
		last := lastSeq(framework.LogContent(t, rotated))
		// The runtime reopened 0.log: new lines continue the sequence there.
		deadline = time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(current); err == nil {
				if first := firstSeq(framework.LogContent(t, current)); first > last {
					t.Logf("rotated %s ends at line %d; reopened 0.log starts at line %d", filepath.Base(rotated), last, first)
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("0.log did not continue after rotation (rotated file ends at %d)", last)
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(10 * time.Second) // a few more rotations
		ents, _ := os.ReadDir(dir)
		if len(ents) > 3 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("containerLogMaxFiles 3, found %v", names)
		}
		k.RemoveManifest(t, "logs")
	})

	t.Run("kubelet restarted while pods run: they keep running and are adopted", func(t *testing.T) {
		k.WriteManifest(t, "keep", busyboxPod("keep", img, "exec sleep 3600", "", ""))
		before := k.WaitPod(t, "keep", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		k.Stop()
		time.Sleep(2 * time.Second)
		cid := before.Container0().ContainerID[strings.Index(before.Container0().ContainerID, "://")+3:]
		if st, err := a.Runtime.ContainerStatus(context.Background(), cid, false); err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container after kubelet stopped: %v %v", st, err)
		}
		k.Start(t)
		after := k.WaitPod(t, "keep", time.Minute, "running again", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		time.Sleep(6 * time.Second) // a sync period: kubelet would have replaced what it did not adopt
		after = k.WaitPod(t, "keep", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		if c := after.Container0(); c.ContainerID != before.Container0().ContainerID || c.RestartCount != 0 {
			t.Errorf("after kubelet restart: container %s restarts %d, want %s and 0", c.ContainerID, c.RestartCount, before.Container0().ContainerID)
		}
		if pods := criPods(t, a, "keep"); len(pods) != 1 {
			t.Errorf("CRI sandboxes for keep after kubelet restart: %d, want 1", len(pods))
		}
	})

	t.Run("accel-cri restarted while pods run: kubelet keeps going", func(t *testing.T) {
		before := k.WaitPod(t, "keep", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		a.Restart(t)
		time.Sleep(6 * time.Second)
		if !k.Running() {
			t.Fatalf("kubelet exited when accel-cri restarted:\n%s", k.LogTail(30))
		}
		after := k.WaitPod(t, "keep", time.Minute, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		if c := after.Container0(); c.ContainerID != before.Container0().ContainerID || c.RestartCount != 0 {
			t.Errorf("after accel-cri restart: container %s restarts %d, want %s and 0", c.ContainerID, c.RestartCount, before.Container0().ContainerID)
		}
		// kubelet talks to the new accel-cri: a new pod runs.
		_, took := runWeb(t, k, "web2", img)
		t.Logf("new pod after accel-cri restart running in %s", took.Round(time.Millisecond))
		k.RemoveManifest(t, "web2")
		k.RemoveManifest(t, "keep")
		k.WaitPod(t, "keep", time.Minute, "gone", func(p *Pod) bool { return p == nil })
	})

	t.Run("a pod requesting accel-cri.io/intel-gpu gets the device via kubelet's device manager", func(t *testing.T) {
		// accel-cri's device plugin registered with kubelet's device manager.
		pr := k.PodResources(t)
		var ids []string
		deadline := time.Now().Add(60 * time.Second)
		for len(ids) == 0 {
			if r, err := pr.GetAllocatableResources(context.Background(), &podresourcesapi.AllocatableResourcesRequest{}); err == nil {
				for _, d := range r.Devices {
					if d.ResourceName == "accel-cri.io/intel-gpu" {
						ids = append(ids, d.DeviceIds...)
					}
				}
			}
			if len(ids) == 0 && time.Now().After(deadline) {
				t.Fatalf("kubelet's device manager has no accel-cri.io/intel-gpu after 60s:\n%s", grepLines(a.LogTail(100000), "evice plugin"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("kubelet can allocate accel-cri.io/intel-gpu %v", ids)
		k.WriteManifest(t, "gpu", busyboxPod("gpu", img, "ls /dev/dri; echo gpu-listed; exec sleep 3600", "",
			"    resources: {limits: {accel-cri.io/intel-gpu: \"1\"}}\n"))
		p := k.WaitPod(t, "gpu", 90*time.Second, "running", func(p *Pod) bool { return p != nil && p.AllRunning(1) })
		logf := filepath.Join(k.PodLogsDir, "e2e_gpu-"+NodeName+"_"+p.Metadata.UID, "main", "0.log")
		got := framework.WaitLog(t, logf, "gpu-listed", 30*time.Second)
		if !strings.Contains(got, "renderD128") || !strings.Contains(got, "card0") {
			t.Errorf("container's /dev/dri: %q, want card0 and renderD128", got)
			t.Logf("accel-cri log lines about devices:\n%s", grepLines(a.LogTail(100000), "cdi", "CDI", "evice", "Allocate"))
			t.Logf("kubelet log lines about devices:\n%s", grepLines(k.LogTail(100000), "evice", "cdi", "CDI", "gpu"))
		}
		// kubelet's device manager allocated the device to this container.
		list, err := pr.List(context.Background(), &podresourcesapi.ListPodResourcesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var alloc []string
		for _, pod := range list.PodResources {
			if pod.Name == "gpu-"+NodeName {
				for _, c := range pod.Containers {
					for _, d := range c.Devices {
						alloc = append(alloc, c.Name+":"+d.ResourceName+"="+strings.Join(d.DeviceIds, ","))
					}
				}
			}
		}
		if len(alloc) != 1 || alloc[0] != "main:accel-cri.io/intel-gpu=0000:00:02.0" {
			t.Errorf("pod-resources List for gpu: %v, want main:accel-cri.io/intel-gpu=0000:00:02.0", alloc)
		}
		k.RemoveManifest(t, "gpu")
		k.WaitPod(t, "gpu", time.Minute, "gone", func(p *Pod) bool { return p == nil })
	})

	t.Run("kubelet wrote its kernel tunables to private copies, not the host", func(t *testing.T) {
		// The host's values are checked (and restored) again at cleanup.
		t.Logf("kubelet's copies: vm.overcommit_memory=%s kernel.panic=%s kernel.panic_on_oops=%s",
			k.SysctlWritten("vm/overcommit_memory"), k.SysctlWritten("kernel/panic"), k.SysctlWritten("kernel/panic_on_oops"))
		if k.SysctlWritten("vm/overcommit_memory") != "1" || k.SysctlWritten("kernel/panic") != "10" || k.SysctlWritten("kernel/panic_on_oops") != "1" {
			t.Errorf("kubelet did not write its tunables to the private copies")
		}
	})

	t.Run("comparison: the same pod on containerd's own CRI", func(t *testing.T) {
		k.Stop()
		ctrd := framework.StartContainerdCRI(t, filepath.Join(a.Dir, "containerd-cri"), a.CNIConfDir, e.imgs.Pause.Ref, e.reg.Host())
		k2 := NewKubelet(t, KubeletOptions{Bin: e.bin, Dir: filepath.Join(a.Dir, "kubelet-containerd"), Endpoint: "unix://" + ctrd.Socket, CgroupRoot: a.CgroupRoot(),
			Drained: NoReadySandbox(ctrd.Runtime)})
		_, cold := runWeb(t, k2, "web", img)
		// Its pods' netns are where its cleanup's leak check counts them.
		sbs, err := ctrd.Runtime.ListPodSandbox(context.Background(), nil)
		if err != nil || len(sbs) != 1 {
			t.Fatalf("containerd CRI sandboxes: %v %v", sbs, err)
		}
		st, err := ctrd.Runtime.PodSandboxStatus(context.Background(), sbs[0].Id, true)
		if err != nil {
			t.Fatal(err)
		}
		if ns := netnsOf(st.Info["info"]); !strings.HasPrefix(ns, ctrd.NetNSDir()+"/") {
			t.Errorf("containerd CRI put the pod's netns at %q, not under its own %s", ns, ctrd.NetNSDir())
		}
		_, warm := runWeb(t, k2, "web-warm", img)
		t.Logf("containerd CRI: manifest written -> all containers running: %s (images cached: %s)", cold.Round(time.Millisecond), warm.Round(time.Millisecond))
		report := fmt.Sprintf("KUBELET-E2E time from manifest written to all containers running (first pod, pulls images / second pod, images cached):\n"+
			"KUBELET-E2E   accel-cri:      %8s / %8s\n"+
			"KUBELET-E2E   containerd CRI: %8s / %8s\n",
			accelTimes[0].Round(time.Millisecond), accelTimes[1].Round(time.Millisecond), cold.Round(time.Millisecond), warm.Round(time.Millisecond))
		fmt.Print(report) // shown with -v
		// `go test ./...` hides a passing package's output: with
		// KUBELET_E2E_REPORT set, the numbers are appended to that file too.
		if path := os.Getenv("KUBELET_E2E_REPORT"); path != "" {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(report)
			f.Close()
		}
	})
}

// dirNames returns the names in dir (none when it does not exist).
func dirNames(dir string) map[string]bool {
	names := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names[e.Name()] = true
	}
	return names
}

// Container0 is the first container's status, nil for a nil pod.
func (p *Pod) Container0() *ContainerStatus {
	if p == nil || len(p.Status.ContainerStatuses) == 0 {
		return nil
	}
	return &p.Status.ContainerStatuses[0]
}

func parseTime(s string) time.Time {
	tm, _ := time.Parse(time.RFC3339, s)
	return tm
}

// netnsOf finds the netns path in a verbose sandbox info JSON.
func netnsOf(info string) string {
	i := strings.Index(info, "/netns/")
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(info[:i], `"`) + 1
	end := strings.Index(info[i:], `"`)
	if end < 0 {
		return ""
	}
	return info[start : i+end]
}

// lastSeq and firstSeq return the last and first line-<n> numbers in a log.
func lastSeq(log string) int {
	n := -1
	for _, l := range strings.Split(log, "\n") {
		if v, ok := seq(l); ok {
			n = v
		}
	}
	return n
}

func firstSeq(log string) int {
	for _, l := range strings.Split(log, "\n") {
		if v, ok := seq(l); ok {
			return v
		}
	}
	return -1
}

func seq(l string) (int, bool) {
	if !strings.HasPrefix(l, "line-") {
		return 0, false
	}
	f := strings.SplitN(l, "-", 3)
	if len(f) < 3 {
		return 0, false
	}
	v, err := strconv.Atoi(f[1])
	return v, err == nil
}

// grepLines returns the lines of s containing any of words (at most 60).
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out[max(0, len(out)-60):], "\n")
}
