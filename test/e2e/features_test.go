package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// runToExit runs a busybox script in the pod and returns its log once it exited.
func (e podEnv) runToExit(t *testing.T, podID string, pod *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := e.RunContainer(t, podID, pod, c)
	st := e.WaitContainer(t, id, exited, 60*time.Second)
	log := framework.LogContent(t, logPath(pod, c))
	if st.ExitCode != 0 {
		t.Fatalf("%s exited %d (%s %s):\n%s", c.Metadata.Name, st.ExitCode, st.Reason, st.Message, log)
	}
	return log
}

func mustContain(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
}

func TestContainerFeatures(t *testing.T) {
	e := startPodEnv(t)
	ctx := ctxT(t, 10*time.Minute)

	t.Run("oom_score_adj is clamped to what the host permits", func(t *testing.T) {
		st, err := e.Runtime.Status(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		var oom struct {
			Min        int  `json:"min"`
			Restricted bool `json:"restricted"`
		}
		if err := json.Unmarshal([]byte(st.Info["oomScoreAdj"]), &oom); err != nil {
			t.Fatal(err)
		}
		podID, pod := e.runPod(t, "oom-score")
		c := e.busybox("score", "echo score=$(cat /proc/self/oom_score_adj)")
		c.Linux.Resources = &runtimeapi.LinuxContainerResources{OomScoreAdj: -500}
		want := max(-500, oom.Min)
		mustContain(t, e.runToExit(t, podID, pod, c), "score="+strconv.Itoa(want)+"\n")
		t.Logf("requested -500, host minimum %d (restricted=%v): container got %d", oom.Min, oom.Restricted, want)
	})

	t.Run("pod without a pause process: pinned UTS and IPC namespaces, sysctls, hostname", func(t *testing.T) {
		podID, pod := e.runPod(t, "infraless", func(c *runtimeapi.PodSandboxConfig) {
			c.Hostname = "infraless-host"
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "81"}
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_CONTAINER
		})
		st, err := e.Runtime.PodSandboxStatus(ctx, podID, true)
		if err != nil {
			t.Fatal(err)
		}
		var info struct {
			PID   int  `json:"pid"`
			Pause bool `json:"pause"`
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
			t.Fatal(err)
		}
		if info.PID != 0 || info.Pause {
			t.Errorf("pod info %s, want no pause process", st.Info["info"])
		}
		// Two containers see one IPC namespace: a segment made by the first
		// is listed by the second.
		script := `echo host=$(hostname) rmid=$(cat /proc/sys/kernel/shm_rmid_forced) port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) pid1=$(cat /proc/1/cmdline | tr '\0' ' ') ipc=$(readlink /proc/self/ns/ipc) uts=$(readlink /proc/self/ns/uts)`
		c1 := e.busybox("first", script)
		c1.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
		out1 := e.runToExit(t, podID, pod, c1)
		mustContain(t, out1, "host=infraless-host", "rmid=1", "port=81", "pid1=sh -c")
		c2 := e.busybox("second", script)
		c2.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
		out2 := e.runToExit(t, podID, pod, c2)
		ns := func(out, key string) string {
			for _, f := range strings.Fields(out) {
				if strings.HasPrefix(f, key+"=") {
					return f
				}
			}
			return ""
		}
		for _, key := range []string{"ipc", "uts"} {
			if a, b := ns(out1, key), ns(out2, key); a == "" || a != b {
				t.Errorf("%s namespaces of two containers of the pod: %q and %q, want the same", key, a, b)
			}
		}
		if h, _ := os.Hostname(); h == "infraless-host" {
			t.Error("the pod's hostname leaked to the host")
		}
		// The pinned namespaces go with the pod's stop.
		pins, _ := filepath.Glob(filepath.Join(e.State, "sandbox", "pods", podID, "ns", "*"))
		if len(pins) != 2 {
			t.Errorf("pinned namespaces of the pod: %v, want uts and ipc", pins)
		}
		if err := e.Runtime.StopPodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
		if left, _ := filepath.Glob(filepath.Join(e.State, "sandbox", "pods", podID, "ns", "*")); len(left) != 0 {
			t.Errorf("pinned namespaces left after StopPodSandbox: %v", left)
		}
	})

	t.Run("namespaced sysctls and shared PID namespace", func(t *testing.T) {
		podID, pod := e.runPod(t, "ns", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "80"}
			c.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
		})
		c := e.busybox("sysctl", `echo rmid=$(cat /proc/sys/kernel/shm_rmid_forced) port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) pid1=$(cat /proc/1/cmdline | tr '\0' ' ')`)
		c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
		mustContain(t, e.runToExit(t, podID, pod, c), "rmid=1", "port=80", "pid1=/pause")
		own := e.busybox("ownpid", `echo pid1=$(cat /proc/1/cmdline | tr '\0' ' ')`)
		own.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
		mustContain(t, e.runToExit(t, podID, pod, own), "pid1=sh -c")
		if got := mustRead(t, "/proc/sys/kernel/shm_rmid_forced"); got == "1" {
			t.Log("host kernel.shm_rmid_forced is 1 already; the sysctl check above is still per-IPC-namespace")
		}
	})

	t.Run("host network pod skips CNI", func(t *testing.T) {
		podID, pod := e.runPod(t, "hostnet", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		})
		host, _ := os.Hostname()
		c := e.busybox("hostnet", `echo host=$(hostname); cat /proc/net/dev`)
		mustContain(t, e.runToExit(t, podID, pod, c), "host="+host, e.Bridge+":")
		st, _ := e.Runtime.PodSandboxStatus(ctx, podID, false)
		if st.GetStatus().GetNetwork().GetIp() != "" {
			t.Errorf("host-network pod got a pod IP: %v", st.GetStatus().GetNetwork())
		}
	})

	t.Run("tty, masked and read-only /proc paths", func(t *testing.T) {
		podID, pod := e.runPod(t, "tty")
		c := e.busybox("tty", `echo tty=$(tty); [ -s /proc/kcore ] || echo kcore-masked; echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo procsys-ro`)
		c.Tty = true
		mustContain(t, e.runToExit(t, podID, pod, c), "tty=/dev/pts/", "kcore-masked", "procsys-ro")
	})

	t.Run("devices: exactly the requested node with its permissions", func(t *testing.T) {
		// /dev/cpu_dma_latency (10:259) is not in runc's default allow
		// list, so only the rule for this request can let it be opened;
		// reading it has no side effect.
		podID, pod := e.runPod(t, "dev")
		c := e.busybox("dev", `od -An -tx1 < /dev/acri-lat >/dev/null && echo read-ok; (: > /dev/acri-lat) 2>/dev/null && echo write-allowed || echo write-denied; ls -l /dev/acri-lat`)
		c.Devices = []*runtimeapi.Device{{HostPath: "/dev/cpu_dma_latency", ContainerPath: "/dev/acri-lat", Permissions: "r"}}
		mustContain(t, e.runToExit(t, podID, pod, c), "read-ok", "write-denied", "10, 259")
		other := e.busybox("nodev", `(od -An -tx1 < /dev/cpu_dma_latency) >/dev/null 2>&1 && echo unrequested-open || echo unrequested-denied`)
		mustContain(t, e.runToExit(t, podID, pod, other), "unrequested-denied")
	})

	t.Run("read-only, recursive read-only and propagation", func(t *testing.T) {
		src := filepath.Join(e.Dir, "propagation")
		sub := filepath.Join(src, "sub")
		os.MkdirAll(sub, 0o755)
		mustRun(t, "mount", "--bind", src, src)
		t.Cleanup(func() { syscall.Unmount(src, syscall.MNT_DETACH) })
		mustRun(t, "mount", "--make-shared", src)
		mustRun(t, "mount", "-t", "tmpfs", "tmpfs", sub)
		t.Cleanup(func() { syscall.Unmount(sub, syscall.MNT_DETACH) })

		podID, pod := e.runPod(t, "mounts")
		ro := e.busybox("ro", `touch /m/x 2>/dev/null || echo top-ro; touch /m/sub/x 2>/dev/null && echo sub-rw`)
		ro.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: src, Readonly: true}}
		mustContain(t, e.runToExit(t, podID, pod, ro), "top-ro", "sub-rw")
		rro := e.busybox("rro", `touch /m/x 2>/dev/null || echo top-ro; touch /m/sub/y 2>/dev/null || echo sub-ro`)
		rro.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: src, Readonly: true, RecursiveReadOnly: true}}
		mustContain(t, e.runToExit(t, podID, pod, rro), "top-ro", "sub-ro")

		later := filepath.Join(src, "later")
		os.MkdirAll(later, 0o755)
		watcher := e.busybox("slave", `echo watching; while [ ! -f /m/later/flag ]; do sleep 0.1; done; echo saw-host-mount`)
		watcher.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: src, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
		wid := e.RunContainer(t, podID, pod, watcher)
		framework.WaitLog(t, logPath(pod, watcher), "watching", 20*time.Second)
		mustRun(t, "mount", "-t", "tmpfs", "tmpfs", later)
		t.Cleanup(func() { syscall.Unmount(later, syscall.MNT_DETACH) })
		os.WriteFile(filepath.Join(later, "flag"), []byte("x"), 0o644)
		e.WaitContainer(t, wid, exited, 20*time.Second)
		mustContain(t, framework.LogContent(t, logPath(pod, watcher)), "saw-host-mount")
	})

	t.Run("bind mount options noexec, nodev, nosuid", func(t *testing.T) {
		st, err := e.Runtime.Status(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if !st.GetFeatures().GetMountOptions() {
			t.Fatalf("Status features %v: mount_options false with runc as the only handler", st.GetFeatures())
		}
		// One host dir, mounted four times: /m with all three options,
		// /s with nosuid only (a program must run from it to show the
		// setuid bit ignored), /r read-only with noexec, /n without
		// options. In it a script, a /dev/null node and a setuid-root
		// program that prints its effective uid; below it a tmpfs with a
		// script: like ro, the options are the volume's mount's, not those
		// of mounts under it (rbind brings them along as they are).
		src := filepath.Join(e.Dir, "mountopts")
		sub := filepath.Join(src, "sub")
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		mustRun(t, "mount", "-t", "tmpfs", "tmpfs", sub)
		t.Cleanup(func() { syscall.Unmount(sub, syscall.MNT_DETACH) })
		for _, d := range []string{src, sub} {
			if err := os.WriteFile(filepath.Join(d, "run.sh"), []byte("#!/bin/sh\necho script-ran\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Mknod(filepath.Join(src, "null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
			t.Fatal(err)
		}
		buildEuid(t, filepath.Join(src, "euid"))

		podID, pod := e.runPod(t, "mountopts")
		c := e.busybox("mountopts", `for d in m s r n; do
  echo "$d opts=$(awk -v m=/$d '$5 == m {print $6}' /proc/self/mountinfo)"
  if out=$(/$d/run.sh 2>&1); then echo "$d exec=ok $out"; else echo "$d exec=denied $out"; fi
  if out=$(cat /$d/null 2>&1); then echo "$d dev=ok"; else echo "$d dev=denied $out"; fi
  echo "$d $(/$d/euid 2>&1)"
done
/m/sub/run.sh >/dev/null 2>&1 && echo "sub exec=ok" || echo "sub exec=denied"`)
		// A non-root user, so that a setuid-root program shows whether
		// its bit took effect; no_new_privs stays off (it would ignore
		// the bit on every mount).
		c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
		c.Mounts = []*runtimeapi.Mount{
			{ContainerPath: "/m", HostPath: src, MountOptions: []string{"noexec", "nodev", "nosuid"}},
			{ContainerPath: "/s", HostPath: src, MountOptions: []string{"nosuid"}},
			{ContainerPath: "/r", HostPath: src, Readonly: true, MountOptions: []string{"noexec"}},
			{ContainerPath: "/n", HostPath: src},
		}
		out := e.runToExit(t, podID, pod, c)
		t.Logf("container output:\n%s", out)
		lines := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if k, v, ok := strings.Cut(l, " "); ok {
				lines[k] += v + "\n"
			}
		}
		opts := func(d string) []string {
			_, after, _ := strings.Cut(lines[d], "opts=")
			first, _, _ := strings.Cut(after, "\n")
			return strings.Split(first, ",")
		}
		for _, tc := range []struct {
			dir       string
			has, lack []string
			out       []string
		}{
			{dir: "m", has: []string{"rw", "nosuid", "nodev", "noexec"}, out: []string{"exec=denied", "Permission denied", "dev=denied"}},
			{dir: "s", has: []string{"rw", "nosuid"}, lack: []string{"nodev", "noexec"}, out: []string{"exec=ok script-ran", "dev=ok", "euid=1000"}},
			{dir: "r", has: []string{"ro", "noexec"}, lack: []string{"nodev", "nosuid"}, out: []string{"exec=denied", "dev=ok"}},
			{dir: "n", has: []string{"rw"}, lack: []string{"nosuid", "nodev", "noexec"}, out: []string{"exec=ok script-ran", "dev=ok", "euid=0"}},
		} {
			o := opts(tc.dir)
			for _, f := range tc.has {
				if !slices.Contains(o, f) {
					t.Errorf("/%s mount options %q lack %s", tc.dir, o, f)
				}
			}
			for _, f := range tc.lack {
				if slices.Contains(o, f) {
					t.Errorf("/%s mount options %q have %s", tc.dir, o, f)
				}
			}
			mustContain(t, lines[tc.dir], tc.out...)
		}
		mustContain(t, lines["sub"], "exec=ok")
	})

	t.Run("privileged container in a privileged pod", func(t *testing.T) {
		podID, pod := e.runPod(t, "priv", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.Privileged = true
		})
		c := e.busybox("priv", `grep CapEff /proc/self/status; mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mount-ok; [ -e /dev/kmsg ] && echo host-devs`)
		c.Linux.SecurityContext.Privileged = true
		log := e.runToExit(t, podID, pod, c)
		mustContain(t, log, "mount-ok", "host-devs")
		if strings.Contains(log, "CapEff:\t0000000000000000") {
			t.Errorf("privileged container has no capabilities:\n%s", log)
		}
	})

	t.Run("long lines are split into partial entries", func(t *testing.T) {
		podID, pod := e.runPod(t, "longline")
		c := e.busybox("long", `head -c 40000 /dev/zero | tr '\0' 'a'; echo`)
		e.runToExit(t, podID, pod, c)
		raw, _ := os.ReadFile(logPath(pod, c))
		lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
		if len(lines) != 3 || strings.Fields(lines[0])[2] != "P" || strings.Fields(lines[1])[2] != "P" || strings.Fields(lines[2])[2] != "F" {
			t.Fatalf("want P, P, F entries for a 40000-byte line, got %d lines", len(lines))
		}
		if joined := framework.LogContent(t, logPath(pod, c)); joined != strings.Repeat("a", 40000)+"\n" {
			t.Fatalf("joined content has %d bytes", len(joined))
		}
	})

	t.Run("streaming list RPCs agree with the unary ones", func(t *testing.T) {
		sr := e.StreamingRuntime
		pods, err1 := e.Runtime.ListPodSandbox(ctx, nil)
		spods, err2 := sr.ListPodSandbox(ctx, nil)
		ctrs, err3 := e.Runtime.ListContainers(ctx, nil)
		sctrs, err4 := sr.ListContainers(ctx, nil)
		cstats, err5 := sr.ListContainerStats(ctx, nil)
		pstats, err6 := sr.ListPodSandboxStats(ctx, nil)
		metrics, err7 := sr.ListPodSandboxMetrics(ctx)
		for i, err := range []error{err1, err2, err3, err4, err5, err6, err7} {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if len(pods) != len(spods) || len(ctrs) != len(sctrs) || len(cstats) != len(ctrs) || len(pstats) != len(pods) || len(pods) == 0 {
			t.Fatalf("pods %d/%d containers %d/%d container stats %d pod stats %d", len(pods), len(spods), len(ctrs), len(sctrs), len(cstats), len(pstats))
		}
		ready := 0
		for _, p := range pods {
			if p.State == runtimeapi.PodSandboxState_SANDBOX_READY {
				ready++
			}
		}
		if len(metrics) != ready {
			t.Errorf("metrics for %d pods, %d ready", len(metrics), ready)
		}
	})

	t.Run("pod resources are recorded", func(t *testing.T) {
		podID, _ := e.runPod(t, "podres")
		_, err := e.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: podID,
			Resources:    &runtimeapi.LinuxContainerResources{CpuShares: 1024, MemoryLimitInBytes: 256 << 20},
		})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := e.Runtime.PodSandboxStatus(ctx, podID, true)
		mustContain(t, st.Info["info"], `"memory_limit_in_bytes":268435456`)
		_, err = e.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: podID, Resources: &runtimeapi.LinuxContainerResources{CpuShares: -5},
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("negative pod resources: %v", err)
		}
	})

	t.Run("user namespaces run on the default runc", func(t *testing.T) {
		// runc 1.5 (hack/install-deps.sh) does idmapped mounts; what such
		// pods get is TestUserNamespaces'.
		st, _ := e.Runtime.Status(ctx, false)
		for _, h := range st.GetRuntimeHandlers() {
			if h.Name == "" && !h.GetFeatures().GetUserNamespaces() {
				t.Errorf("the default handler reports no user namespaces: %v", h.GetFeatures())
			}
		}
		cfg := e.PodConfig(t, "userns")
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
			Mode: runtimeapi.NamespaceMode_POD,
			Uids: []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}},
			Gids: []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 0, Length: 65536}},
		}
		id, err := e.Runtime.RunPodSandbox(ctx, cfg, "")
		if err != nil {
			t.Fatalf("user-namespaced pod: %v", err)
		}
		if err := e.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	})
}

// buildEuid builds a static program that prints "euid=<effective uid>" to
// dst and makes it setuid root.
func buildEuid(t *testing.T, dst string) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	prog := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Printf(\"euid=%d\\n\", os.Geteuid()) }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", dst, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Chmod(dst, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
