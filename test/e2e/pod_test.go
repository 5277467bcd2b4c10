package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/internal/cgroups"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

const (
	running = runtimeapi.ContainerState_CONTAINER_RUNNING
	exited  = runtimeapi.ContainerState_CONTAINER_EXITED
)

// podEnv is one accel-cri with CNI and the test images.
type podEnv struct {
	*framework.AccelCRI
	imgs framework.TestImages
}

func startPodEnv(t *testing.T) podEnv {
	t.Helper()
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true})
	ctx := ctxT(t, 2*time.Minute)
	if _, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}
	return podEnv{AccelCRI: a, imgs: imgs}
}

func (e podEnv) runPod(t *testing.T, name string, mutate ...func(*runtimeapi.PodSandboxConfig)) (string, *runtimeapi.PodSandboxConfig) {
	t.Helper()
	cfg := e.PodConfig(t, name)
	for _, m := range mutate {
		m(cfg)
	}
	id, err := e.Runtime.RunPodSandbox(ctxT(t, 2*time.Minute), cfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, e.LogTail(20))
	}
	return id, cfg
}

func (e podEnv) busybox(name string, script string) *runtimeapi.ContainerConfig {
	return framework.ContainerConfig(name, e.imgs.Busybox.Ref, "sh", "-c", script)
}

func logPath(pod *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) string {
	return filepath.Join(pod.LogDirectory, c.LogPath)
}

func TestPodsAndContainers(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 10*time.Minute)

	t.Run("two containers share a volume; DNS and hostname visible", func(t *testing.T) {
		podID, pod := e.runPod(t, "shared")
		vol := filepath.Join(e.Dir, "emptydir-"+podID[:8])
		if err := os.MkdirAll(vol, 0o777); err != nil {
			t.Fatal(err)
		}
		mount := []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: vol}}
		writer := e.busybox("writer", "echo from-writer > /data/msg; cat /etc/resolv.conf; echo host=$(hostname); sleep 3600")
		writer.Mounts = mount
		reader := e.busybox("reader", "while [ ! -f /data/msg ]; do sleep 0.1; done; echo got=$(cat /data/msg); sleep 3600")
		reader.Mounts = mount
		wid := e.RunContainer(t, podID, pod, writer)
		rid := e.RunContainer(t, podID, pod, reader)

		wlog := framework.WaitLog(t, logPath(pod, writer), "host=shared", 30*time.Second)
		for _, want := range []string{"nameserver 10.96.0.10", "search e2e.svc.cluster.local svc.cluster.local", "options ndots:5"} {
			if !strings.Contains(wlog, want) {
				t.Errorf("resolv.conf lacks %q:\n%s", want, wlog)
			}
		}
		framework.WaitLog(t, logPath(pod, reader), "got=from-writer", 30*time.Second)

		// One shim per pod: its tasks are grouped by the
		// io.kubernetes.cri.sandbox-id annotation, as shim-per-pod (VM)
		// runtimes need. The pod's first task started it: this pod has no
		// pause process (its PID namespaces are per container), so that is
		// the writer.
		if shims := e.Shims(); len(shims) != 1 || shims[0].ID != wid {
			t.Errorf("shims for a pod with two containers: %q, want one, started by its first container %s", shims, wid)
		}

		st, err := e.Runtime.PodSandboxStatus(ctx, podID, true)
		if err != nil {
			t.Fatal(err)
		}
		s := st.Status
		if s.State != runtimeapi.PodSandboxState_SANDBOX_READY || net.ParseIP(s.GetNetwork().GetIp()) == nil {
			t.Fatalf("pod status %v", s)
		}
		if s.Annotations["e2e/unicode"] != "Grüße ✓" || s.Labels["app"] != "shared" || s.Metadata.Uid != pod.Metadata.Uid {
			t.Errorf("labels/annotations/metadata not kept exactly: %v %v %v", s.Labels, s.Annotations, s.Metadata)
		}
		if len(st.ContainersStatuses) != 2 {
			t.Errorf("pod status has %d container statuses, want 2", len(st.ContainersStatuses))
		}
		if !strings.Contains(st.Info["info"], `"pid"`) {
			t.Errorf("verbose pod info = %v", st.Info)
		}

		cs, err := e.Runtime.ContainerStatus(ctx, wid, false)
		if err != nil {
			t.Fatal(err)
		}
		c := cs.Status
		if c.State != running || c.StartedAt == 0 || c.CreatedAt == 0 || c.LogPath != logPath(pod, writer) || c.ImageId == "" || !strings.Contains(c.ImageRef, "@sha256:") {
			t.Errorf("container status %v", c)
		}
		if len(c.Mounts) != 1 || c.Mounts[0].ContainerPath != "/data" {
			t.Errorf("mounts %v", c.Mounts)
		}

		// List filters.
		byLabel, _ := e.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "shared"}})
		byPrefix, _ := e.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{Id: podID[:12]})
		none, _ := e.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "nope"}})
		if len(byLabel) != 1 || len(byPrefix) != 1 || len(none) != 0 {
			t.Errorf("ListPodSandbox filters: label %d, prefix %d, none %d", len(byLabel), len(byPrefix), len(none))
		}
		ctrs, _ := e.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{PodSandboxId: podID, State: &runtimeapi.ContainerStateValue{State: running}})
		reader1, _ := e.Runtime.ListContainers(ctx, &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"container": "reader"}, PodSandboxId: podID})
		if len(ctrs) != 2 || len(reader1) != 1 || reader1[0].Id != rid {
			t.Errorf("ListContainers filters: %d running, reader %v", len(ctrs), reader1)
		}
	})

	t.Run("hostPort reachable on 127.0.0.1 and pod IP reachable", func(t *testing.T) {
		port, err := framework.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		podID, pod := e.runPod(t, "web", func(c *runtimeapi.PodSandboxConfig) {
			c.PortMappings = []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(port), HostIp: "127.0.0.1"}}
		})
		e.RunContainer(t, podID, pod, e.busybox("httpd", "mkdir -p /tmp/www && echo hello-hostport > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"))
		st, err := e.Runtime.PodSandboxStatus(ctx, podID, false)
		if err != nil {
			t.Fatal(err)
		}
		ip := st.Status.Network.Ip
		for _, url := range []string{fmt.Sprintf("http://127.0.0.1:%d/", port), fmt.Sprintf("http://%s/", net.JoinHostPort(ip, "8080"))} {
			body := httpGet(t, url, 30*time.Second)
			if !strings.Contains(body, "hello-hostport") {
				t.Fatalf("GET %s = %q", url, body)
			}
		}
		// Network counters are sampled every stats_collection_period (10s by
		// default); the HTTP exchange shows at the next sample.
		deadline := time.Now().Add(25 * time.Second)
		for {
			stats, err := e.Runtime.PodSandboxStats(ctx, podID)
			if err != nil {
				t.Fatal(err)
			}
			if stats.GetLinux().GetNetwork().GetDefaultInterface().GetRxBytes().GetValue() > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod network stats show no received bytes 25s after HTTP traffic: %v", stats.GetLinux().GetNetwork())
			}
			time.Sleep(500 * time.Millisecond)
		}
	})

	t.Run("exit codes and reasons", func(t *testing.T) {
		podID, pod := e.runPod(t, "exits")
		ok := e.RunContainer(t, podID, pod, e.busybox("ok", "echo done"))
		bad := e.RunContainer(t, podID, pod, e.busybox("bad", "exit 3"))
		s := e.WaitContainer(t, ok, exited, 30*time.Second)
		if s.ExitCode != 0 || s.Reason != "Completed" || s.FinishedAt < s.StartedAt {
			t.Errorf("ok: code %d reason %q started %d finished %d", s.ExitCode, s.Reason, s.StartedAt, s.FinishedAt)
		}
		s = e.WaitContainer(t, bad, exited, 30*time.Second)
		if s.ExitCode != 3 || s.Reason != "Error" {
			t.Errorf("bad: code %d reason %q", s.ExitCode, s.Reason)
		}
		if _, err := e.Runtime.CreateContainer(ctx, podID, e.busybox("ok", "true"), pod); status.Code(err) != codes.AlreadyExists {
			t.Errorf("duplicate container name: %v, want AlreadyExists", err)
		}
	})

	t.Run("OOM kill is reported as OOMKilled with exit 137", func(t *testing.T) {
		podID, pod := e.runPod(t, "oom")
		c := e.busybox("hog", "tail /dev/zero")
		c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}
		id := e.RunContainer(t, podID, pod, c)
		s := e.WaitContainer(t, id, exited, 60*time.Second)
		if s.ExitCode != 137 || s.Reason != "OOMKilled" {
			t.Fatalf("exit %d reason %q, want 137 OOMKilled", s.ExitCode, s.Reason)
		}
	})

	t.Run("seccomp", func(t *testing.T) {
		profile := filepath.Join(e.Dir, "no-mkdir.json")
		os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644)
		podID, pod := e.runPod(t, "seccomp")
		cases := []struct {
			name    string
			profile *runtimeapi.SecurityProfile
			want    string
		}{
			{"localhost", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}, "mkdir-denied mode=2"},
			{"runtime-default", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, "mkdir-ok mode=2"},
			{"unconfined", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, "mkdir-ok mode=0"},
		}
		for _, tc := range cases {
			c := e.busybox("sc-"+tc.name, `if mkdir /tmp/d 2>/dev/null; then r=mkdir-ok; else r=mkdir-denied; fi; echo "$r mode=$(grep Seccomp: /proc/self/status | tr -dc 0-9)"`)
			c.Linux.SecurityContext.Seccomp = tc.profile
			id := e.RunContainer(t, podID, pod, c)
			e.WaitContainer(t, id, exited, 30*time.Second)
			framework.WaitLog(t, logPath(pod, c), tc.want, 10*time.Second)
		}
	})

	// critest "should ignore a seccomp profile that blocks setting hostname
	// when privileged": a privileged container runs unconfined whatever
	// profile it names, as with containerd and CRI-O.
	t.Run("privileged containers ignore their seccomp profile", func(t *testing.T) {
		profile := filepath.Join(e.Dir, "no-mkdir-priv.json")
		os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`), 0o644)
		podID, pod := e.runPod(t, "seccomp-priv", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Privileged = true
		})
		c := e.busybox("priv", `if mkdir /tmp/d 2>/dev/null; then r=mkdir-ok; else r=mkdir-denied; fi; echo "$r mode=$(grep Seccomp: /proc/self/status | tr -dc 0-9)"`)
		c.Linux.SecurityContext.Privileged = true
		c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}
		id := e.RunContainer(t, podID, pod, c)
		e.WaitContainer(t, id, exited, 30*time.Second)
		framework.WaitLog(t, logPath(pod, c), "mkdir-ok mode=0", 10*time.Second)
	})

	// A pod log directory nobody made (crictl, critest) is made at
	// StartContainer, as containerd and CRI-O do, instead of failing the
	// start with Unknown.
	t.Run("a missing log directory is made", func(t *testing.T) {
		podID, pod := e.runPod(t, "nologdir", func(c *runtimeapi.PodSandboxConfig) {
			c.LogDirectory = filepath.Join(e.Dir, "not-made-yet", c.Metadata.Uid)
		})
		c := e.busybox("hello", "echo hello from a new directory")
		c.LogPath = "hello/0.log"
		id := e.RunContainer(t, podID, pod, c)
		e.WaitContainer(t, id, exited, 30*time.Second)
		framework.WaitLog(t, logPath(pod, c), "hello from a new directory", 10*time.Second)
	})

	t.Run("non-root user, groups, read-only rootfs, no capabilities", func(t *testing.T) {
		podID, pod := e.runPod(t, "users")
		c := e.busybox("nonroot", `echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"; touch /x 2>/dev/null || echo ro-denied; grep CapEff /proc/self/status; ls /root >/dev/null 2>&1 || echo root-denied`)
		c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
		c.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 1000}
		c.Linux.SecurityContext.SupplementalGroups = []int64{2000}
		c.Linux.SecurityContext.ReadonlyRootfs = true
		c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}
		id := e.RunContainer(t, podID, pod, c)
		e.WaitContainer(t, id, exited, 30*time.Second)
		log := framework.WaitLog(t, logPath(pod, c), "root-denied", 10*time.Second)
		for _, want := range []string{"uid=1000 gid=1000", "2000", "ro-denied", "CapEff:\t0000000000000000"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
		st, _ := e.Runtime.ContainerStatus(ctx, id, false)
		if u := st.GetStatus().GetUser().GetLinux(); u.GetUid() != 1000 || u.GetGid() != 1000 {
			t.Errorf("status user = %v", u)
		}

		byName := e.busybox("byname", `echo "uid=$(id -u)"`)
		byName.Linux.SecurityContext.RunAsUsername = "app"
		id = e.RunContainer(t, podID, pod, byName)
		e.WaitContainer(t, id, exited, 30*time.Second)
		framework.WaitLog(t, logPath(pod, byName), "uid=1000", 10*time.Second)
	})

	t.Run("stop signal, grace period and idempotent stop/remove", func(t *testing.T) {
		podID, pod := e.runPod(t, "stop")
		polite := e.RunContainer(t, podID, pod, e.busybox("polite", `trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done`))
		stubborn := e.RunContainer(t, podID, pod, e.busybox("stubborn", `trap '' TERM; echo ready; while true; do sleep 0.1; done`))
		framework.WaitLog(t, filepath.Join(pod.LogDirectory, "polite.log"), "ready", 20*time.Second)
		framework.WaitLog(t, filepath.Join(pod.LogDirectory, "stubborn.log"), "ready", 20*time.Second)

		if err := e.Runtime.StopContainer(ctx, polite, 30); err != nil {
			t.Fatal(err)
		}
		if s := e.WaitContainer(t, polite, exited, time.Second); s.ExitCode != 0 {
			t.Errorf("polite exit %d", s.ExitCode)
		}
		framework.WaitLog(t, filepath.Join(pod.LogDirectory, "polite.log"), "got-term", 5*time.Second)

		start := time.Now()
		if err := e.Runtime.StopContainer(ctx, stubborn, 2); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		if s := e.WaitContainer(t, stubborn, exited, time.Second); s.ExitCode != 137 || took < 2*time.Second || took > 15*time.Second {
			t.Errorf("stubborn: exit %d after %s, want 137 after about 2s", s.ExitCode, took)
		}
		for i := 0; i < 2; i++ {
			if err := e.Runtime.StopContainer(ctx, polite, 0); err != nil {
				t.Errorf("repeated stop: %v", err)
			}
			if err := e.Runtime.RemoveContainer(ctx, polite); err != nil {
				t.Errorf("repeated remove: %v", err)
			}
		}
		if _, err := e.Runtime.ContainerStatus(ctx, polite, false); status.Code(err) != codes.NotFound {
			t.Errorf("status of removed container: %v, want NotFound", err)
		}
		for i := 0; i < 2; i++ {
			if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
				t.Errorf("stop pod #%d: %v", i, err)
			}
		}
		st, _ := e.Runtime.PodSandboxStatus(ctx, podID, false)
		if st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("stopped pod state %v", st.GetStatus().GetState())
		}
		for i := 0; i < 2; i++ {
			if err := e.Runtime.RemovePodSandbox(ctx, podID); err != nil {
				t.Errorf("remove pod #%d: %v", i, err)
			}
		}
		if _, err := e.Runtime.PodSandboxStatus(ctx, podID, false); status.Code(err) != codes.NotFound {
			t.Errorf("status of removed pod: %v", err)
		}
	})

	t.Run("logs are CRI format and survive rotation", func(t *testing.T) {
		podID, pod := e.runPod(t, "logs")
		c := e.busybox("counter", `i=0; while [ $i -lt 400 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.01; done; echo end`)
		id := e.RunContainer(t, podID, pod, c)
		path := logPath(pod, c)
		framework.WaitLog(t, path, "line 50", 20*time.Second)
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		if err := e.Runtime.ReopenContainerLog(ctx, id); err != nil {
			t.Fatal(err)
		}
		e.WaitContainer(t, id, exited, 60*time.Second)
		all := framework.LogContent(t, path+".1") + framework.LogContent(t, path)
		for i := 0; i < 400; i++ {
			for _, s := range []string{"line", "err"} {
				if n := strings.Count(all, fmt.Sprintf("%s %d\n", s, i)); n != 1 {
					t.Fatalf("%q appears %d times across the rotated logs", fmt.Sprintf("%s %d", s, i), n)
				}
			}
		}
		raw, _ := os.ReadFile(path)
		first := strings.SplitN(string(raw), "\n", 2)[0]
		f := strings.SplitN(first, " ", 4)
		if len(f) != 4 || (f[1] != "stdout" && f[1] != "stderr") || f[2] != "F" {
			t.Fatalf("not a CRI log line: %q", first)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[0]); err != nil {
			t.Fatalf("timestamp %q: %v", f[0], err)
		}
		if err := e.Runtime.ReopenContainerLog(ctx, id); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("reopen on exited container: %v, want FailedPrecondition", err)
		}
	})

	t.Run("stats, update resources and metrics", func(t *testing.T) {
		podID, pod := e.runPod(t, "stats")
		c := e.busybox("busy", `while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.05; done`)
		c.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 512}
		id := e.RunContainer(t, podID, pod, c)
		time.Sleep(500 * time.Millisecond)
		e.Runtime.ContainerStats(ctx, id) // first sample for the CPU rate
		time.Sleep(500 * time.Millisecond)
		st, err := e.Runtime.ContainerStats(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.GetMemory().GetWorkingSetBytes().GetValue() == 0 || st.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || st.GetCpu().GetUsageNanoCores().GetValue() == 0 || st.GetWritableLayer() == nil {
			t.Errorf("container stats %v", st)
		}
		list, err := e.Runtime.ListContainerStats(ctx, &runtimeapi.ContainerStatsFilter{PodSandboxId: podID})
		if err != nil || len(list) != 1 {
			t.Errorf("ListContainerStats = %d, %v", len(list), err)
		}
		pods, err := e.Runtime.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{Id: podID})
		if err != nil || len(pods) != 1 || len(pods[0].GetLinux().GetContainers()) != 1 {
			t.Errorf("ListPodSandboxStats = %v, %v", pods, err)
		}
		if err := e.Runtime.UpdateContainerResources(ctx, id, &runtimeapi.ContainerResources{Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuShares: 256}}); err != nil {
			t.Fatal(err)
		}
		cs, _ := e.Runtime.ContainerStatus(ctx, id, false)
		if cs.GetStatus().GetResources().GetLinux().GetMemoryLimitInBytes() != 96<<20 {
			t.Errorf("status resources %v", cs.GetStatus().GetResources())
		}
		limit, err := os.ReadFile(filepath.Join(cgroups.Local().ControllerDir("memory", filepath.Join(pod.Linux.CgroupParent, id)), "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(limit)) != strconv.Itoa(96<<20) {
			t.Errorf("cgroup memory limit = %q, %v", limit, err)
		}
		desc, err := e.Runtime.ListMetricDescriptors(ctx)
		if err != nil || len(desc) == 0 {
			t.Errorf("ListMetricDescriptors = %v, %v", desc, err)
		}
		metrics, err := e.Runtime.ListPodSandboxMetrics(ctx)
		if err != nil || len(metrics) == 0 {
			t.Errorf("ListPodSandboxMetrics = %v, %v", metrics, err)
		}
	})

	t.Run("pod metrics: cAdvisor names, labels and values", func(t *testing.T) { testPodMetrics(ctx, t, e) })

	t.Run("container events", func(t *testing.T) {
		podID, pod := e.runPod(t, "events")
		evs := make(chan *runtimeapi.ContainerEventResponse, 100)
		ectx, cancel := context.WithCancel(ctx)
		defer cancel()
		established := make(chan struct{})
		go e.Runtime.GetContainerEvents(ectx, evs, func(runtimeapi.RuntimeService_GetContainerEventsClient) { close(established) })
		select {
		case <-established:
		case <-time.After(10 * time.Second):
			t.Fatal("event stream not established")
		}
		id := e.RunContainer(t, podID, pod, e.busybox("ev", "exit 0"))
		e.WaitContainer(t, id, exited, 30*time.Second)
		if err := e.Runtime.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		want := []runtimeapi.ContainerEventType{
			runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
			runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
		}
		var got []runtimeapi.ContainerEventType
		timeout := time.After(10 * time.Second)
		for len(got) < len(want) {
			select {
			case ev := <-evs:
				if ev.ContainerId == id {
					got = append(got, ev.ContainerEventType)
					if ev.PodSandboxStatus.GetId() != podID {
						t.Errorf("event without its pod status: %v", ev)
					}
				}
			case <-timeout:
				t.Fatalf("events for %s: got %v, want %v", id, got, want)
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("events %v, want %v", got, want)
			}
		}
	})

	t.Run("removing pods leaves no netns, IP, mount, iptables rule or cgroup", func(t *testing.T) {
		pods, err := e.Runtime.ListPodSandbox(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, p := range pods {
			st, _ := e.Runtime.PodSandboxStatus(ctx, p.Id, false)
			if ip := st.GetStatus().GetNetwork().GetIp(); ip != "" {
				ips = append(ips, ip)
			}
			if err := e.Runtime.StopPodSandbox(ctx, p.Id); err != nil {
				t.Fatal(err)
			}
			if err := e.Runtime.RemovePodSandbox(ctx, p.Id); err != nil {
				t.Fatal(err)
			}
		}
		if n := dirCount(t, filepath.Join(e.State, "sandbox", "netns")); n != 0 {
			t.Errorf("%d network namespaces left", n)
		}
		if left := ipamLeft(t, filepath.Join(e.Dir, "ipam")); len(left) != 0 {
			t.Errorf("IP allocations left: %v", left)
		}
		if m := mountsUnder(t, e.State); len(m) != 0 {
			t.Errorf("mounts left: %v", m)
		}
		out, _ := exec.Command("iptables-save").Output()
		for _, ip := range ips {
			if strings.Contains(string(out), ip+"/") || strings.Contains(string(out), ip+":") {
				t.Errorf("iptables still mentions pod IP %s", ip)
			}
		}
		if left := e.LeftCgroups(); len(left) != 0 {
			t.Errorf("cgroups left: %v", left)
		}
	})
}

func httpGet(t *testing.T, url string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dirCount(t *testing.T, dir string) int {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// ipamLeft lists host-local allocations (files named by IP).
func ipamLeft(t *testing.T, dir string) []string {
	var left []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && net.ParseIP(d.Name()) != nil {
			left = append(left, p)
		}
		return nil
	})
	return left
}

func mountsUnder(t *testing.T, dir string) []string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			out = append(out, f[1])
		}
	}
	return out
}
