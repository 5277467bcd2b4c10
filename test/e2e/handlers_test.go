package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
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

// TestRuntimeHandlers runs pods under three real OCI runtimes side by side:
// runc (the default), crun and gVisor's runsc, each a handler of the runc.v2
// shim with a state directory of its own.
func TestRuntimeHandlers(t *testing.T) {
	dir := t.TempDir()
	// Runs after the framework's cleanup (cleanups run last-in first-out):
	// no gVisor sandbox or gofer of this test may outlive it.
	t.Cleanup(func() { checkNoProcsWithArg(t, dir) })
	roots := map[string]string{"runc": "", "crun": filepath.Join(dir, "crun"), "runsc": filepath.Join(dir, "runsc")}
	crun, runsc := framework.OCIRuntimes(t, dir)
	cfg := fmt.Sprintf(`
[runtimes.crun]
  binary_name = %q
  root = %q
  pod_annotations = ["e2e/annotation"]
[runtimes.runsc]
  binary_name = %q
  root = %q
  sandbox_per_container = true
  snapshotter = "native"
`, crun, roots["crun"], runsc, roots["runsc"])

	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Config: cfg})
	roots["runc"] = filepath.Join(a.State, "sandbox", "runtimes", "runc")
	e := podEnv{AccelCRI: a, imgs: imgs}
	ctx := ctxT(t, 10*time.Minute)
	hostKernel := strings.TrimSpace(mustRead(t, "/proc/sys/kernel/osrelease"))
	if _, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("Status lists every handler with its features", func(t *testing.T) {
		st, err := a.Runtime.Status(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, h := range st.GetRuntimeHandlers() {
			names = append(names, h.GetName())
			if h.GetName() == "runsc" && (h.GetFeatures().GetRecursiveReadOnlyMounts() || h.GetFeatures().GetUserNamespaces()) {
				t.Errorf("runsc claims features it lacks: %v", h.GetFeatures())
			}
		}
		// runsc ignores nodev and nosuid: the node can not promise bind
		// mount options to every pod while it has a runsc handler.
		if st.GetFeatures().GetMountOptions() {
			t.Errorf("Status features %v: mount_options true with a runsc handler", st.GetFeatures())
		}
		if got := strings.Join(names, ","); got != ",crun,runc,runsc" {
			t.Errorf("handlers %q, want the default (\"\") then crun, runc, runsc", got)
		}
	})

	t.Run("an unknown handler is NotFound for pods and pulls", func(t *testing.T) {
		_, err := a.Runtime.RunPodSandbox(ctx, a.PodConfig(t, "nohandler"), "kata-nope")
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"kata-nope"`) {
			t.Errorf("RunPodSandbox: %v, want NotFound naming the handler", err)
		}
		_, err = a.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: imgs.Busybox.Ref, RuntimeHandler: "kata-nope"}, nil, nil)
		if status.Code(err) != codes.NotFound {
			t.Errorf("PullImage: %v, want NotFound", err)
		}
	})

	// runsc's handler has a snapshotter of its own (native): pulls for it
	// and its pods' root filesystems go there.
	nativeSnapshots := filepath.Join(a.Root, "containerd", "io.containerd.snapshotter.v1.native", "snapshots")
	t.Run("ImageSpec.runtime_handler unpacks into the handler's snapshotter", func(t *testing.T) {
		if n := dirEntries(t, nativeSnapshots); n != 0 {
			t.Fatalf("%d native snapshots before any pull for runsc", n)
		}
		if _, err := a.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: imgs.Busybox.Ref, RuntimeHandler: "runsc"}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if n := dirEntries(t, nativeSnapshots); n == 0 {
			t.Errorf("no native snapshot after a pull for runsc")
		}
	})

	// A host dir with a script, for mounts with mount_options.
	optsDir := filepath.Join(dir, "mountopts")
	if err := os.MkdirAll(optsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(optsDir, "run.sh"), []byte("#!/bin/sh\necho script-ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	kernels := map[string]string{}
	for _, handler := range []string{"runc", "crun", "runsc"} {
		t.Run(handler, func(t *testing.T) {
			start := time.Now()
			pod := a.PodConfig(t, "h-"+handler)
			podID, err := a.Runtime.RunPodSandbox(ctx, pod, handler)
			if err != nil {
				t.Fatalf("RunPodSandbox: %v\n%s", err, a.LogTail(30))
			}
			ps, err := a.Runtime.PodSandboxStatus(ctx, podID, false)
			if err != nil || ps.GetStatus().GetRuntimeHandler() != handler {
				t.Fatalf("pod status handler %q, %v", ps.GetStatus().GetRuntimeHandler(), err)
			}

			// Exit codes and the kernel the container sees.
			c := e.busybox("uname", "echo kernel=$(uname -r); exit 3")
			id := a.RunContainer(t, podID, pod, c)
			st := a.WaitContainer(t, id, exited, 60*time.Second)
			log := framework.LogContent(t, logPath(pod, c))
			if st.ExitCode != 3 || st.Reason != "Error" {
				t.Errorf("exit %d (%s %s), want 3 (Error):\n%s", st.ExitCode, st.Reason, st.Message, log)
			}
			k := strings.TrimSpace(after(log, "kernel="))
			kernels[handler] = k
			if handler == "runsc" {
				if k == "" || k == hostKernel {
					t.Errorf("runsc container reports kernel %q, host %q: not gVisor's", k, hostKernel)
				}
			} else if k != hostKernel {
				t.Errorf("%s container reports kernel %q, want the host's %q", handler, k, hostKernel)
			}

			// Bind mount options: runc and crun put them on the host mount,
			// where the kernel enforces them; runsc would drop nodev and
			// nosuid, so its containers asking for them are refused
			// before anything is made.
			mc := e.busybox("mountopts", `echo opts=$(awk '$5 == "/m" {print $6}' /proc/self/mountinfo); /m/run.sh 2>&1 || echo exec-denied`)
			mc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/m", HostPath: optsDir, MountOptions: []string{"noexec", "nodev", "nosuid"}}}
			if handler == "runsc" {
				_, err := a.Runtime.CreateContainer(ctx, podID, mc, pod)
				if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "mount_options") {
					t.Errorf("CreateContainer with mount_options under runsc: %v, want Unimplemented naming mount_options", err)
				}
			} else {
				mid := a.RunContainer(t, podID, pod, mc)
				st := a.WaitContainer(t, mid, exited, 60*time.Second)
				mlog := framework.LogContent(t, logPath(pod, mc))
				opts := strings.Split(strings.TrimSpace(after(mlog, "opts=")), ",")
				for _, f := range []string{"nosuid", "nodev", "noexec"} {
					if !slices.Contains(opts, f) {
						t.Errorf("%s: /m mount options %q lack %s", handler, opts, f)
					}
				}
				if st.ExitCode != 0 || !strings.Contains(mlog, "Permission denied") || !strings.Contains(mlog, "exec-denied") {
					t.Errorf("%s: script on a noexec mount (exit %d):\n%s", handler, st.ExitCode, mlog)
				}
			}

			// A long-running container: the handler's own OCI runtime holds
			// its state, exec works, stop works.
			sleeper := e.busybox("sleeper", "trap 'exit 7' TERM; while true; do sleep 1; done")
			sid := a.RunContainer(t, podID, pod, sleeper)
			a.WaitContainer(t, sid, running, 30*time.Second)
			if !stateUnder(t, roots[handler], sid) {
				t.Errorf("no state of container %s under %s root %s", sid[:12], handler, roots[handler])
			}
			for other, root := range roots {
				if other != handler && root != "" && stateUnder(t, root, sid) {
					t.Errorf("container %s of handler %s has state under %s's root", sid[:12], handler, other)
				}
			}
			// The annotations each handler lets into the OCI spec.
			ann := bundleAnnotations(t, a, sid)
			if _, ok := ann["e2e/annotation"]; ok != (handler == "crun") {
				t.Errorf("pod annotation e2e/annotation in the spec = %v; only crun's pod_annotations allow it", ok)
			}
			if typ := ann["io.kubernetes.cri.container-type"]; typ != map[bool]string{true: "", false: "container"}[handler == "runsc"] {
				t.Errorf("container-type annotation %q (runsc: sandbox_per_container leaves it out)", typ)
			}
			if ann["io.kubernetes.cri.sandbox-id"] != podID {
				t.Errorf("sandbox-id annotation %q, want %s", ann["io.kubernetes.cri.sandbox-id"], podID)
			}
			stdout, stderr, err := a.Runtime.ExecSync(ctx, sid, []string{"sh", "-c", "uname -r; echo err >&2; exit 5"}, 30*time.Second)
			// cri-client reports a non-zero exit as an error with the code.
			var exitErr interface{ ExitStatus() int }
			if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 5 {
				t.Errorf("ExecSync: %v, want exit status 5", err)
			}
			if strings.TrimSpace(string(stdout)) != k || strings.TrimSpace(string(stderr)) != "err" {
				t.Errorf("exec: stdout %q stderr %q err %v; want kernel %q and \"err\"", stdout, stderr, err, k)
			}
			// Every handler's containers are in the pod's network namespace
			// (runsc: --network=host uses it through the host kernel).
			ipOut, _, err := a.Runtime.ExecSync(ctx, sid, []string{"ip", "-4", "addr"}, 30*time.Second)
			if podIP := ps.GetStatus().GetNetwork().GetIp(); err != nil || podIP == "" || !strings.Contains(string(ipOut), podIP+"/") {
				t.Errorf("container addresses %q (err %v), want the pod IP %q", ipOut, err, podIP)
			}
			// Its metrics: runc's and crun's read from the cgroup and /proc,
			// runsc's asked of the shim (gVisor's figures, no /proc ones).
			checkHandlerMetrics(ctx, t, a.Runtime, podID, sid, handler == "runsc")
			if err := a.Runtime.StopContainer(ctx, sid, 10); err != nil {
				t.Fatal(err)
			}
			st = a.WaitContainer(t, sid, exited, 30*time.Second)
			if st.ExitCode != 7 {
				t.Errorf("stopped container exit %d (%s), want 7 from its TERM trap", st.ExitCode, st.Reason)
			}
			if err := a.Runtime.StopPodSandbox(ctx, podID); err != nil {
				t.Fatal(err)
			}
			if err := a.Runtime.RemovePodSandbox(ctx, podID); err != nil {
				t.Fatal(err)
			}
			if stateUnder(t, roots[handler], sid) {
				t.Errorf("state of removed container %s left under %s", sid[:12], roots[handler])
			}
			t.Logf("%s: kernel %q, pod lifecycle %s", handler, k, time.Since(start).Round(time.Millisecond))
		})
	}

	t.Run("a runc pod next to a gVisor pod", func(t *testing.T) {
		// Both pods run at once: the gVisor kernel is per pod, not a global
		// switch.
		ids := map[string]string{}
		logs := map[string]string{}
		for _, handler := range []string{"runsc", "runc"} {
			pod := a.PodConfig(t, "side-"+handler)
			podID, err := a.Runtime.RunPodSandbox(ctx, pod, handler)
			if err != nil {
				t.Fatalf("%s: %v", handler, err)
			}
			c := e.busybox("k", "uname -r; sleep 3600")
			ids[handler] = a.RunContainer(t, podID, pod, c)
			logs[handler] = logPath(pod, c)
		}
		runscK := strings.TrimSpace(framework.WaitLog(t, logs["runsc"], "\n", 30*time.Second))
		runcK := strings.TrimSpace(framework.WaitLog(t, logs["runc"], "\n", 30*time.Second))
		if runscK == runcK || runcK != hostKernel {
			t.Errorf("side by side: runsc %q, runc %q, host %q", runscK, runcK, hostKernel)
		}
		t.Logf("gVisor reports %q, runc (the host) %q", runscK, runcK)
	})
}

// dirEntries counts the entries of dir (0 when it does not exist).
func dirEntries(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}

// after returns the rest of the first line of s that follows marker.
func after(s, marker string) string {
	_, rest, ok := strings.Cut(s, marker)
	if !ok {
		return ""
	}
	line, _, _ := strings.Cut(rest, "\n")
	return line
}

// stateUnder reports whether an OCI runtime root holds state for the
// container id. The runc shim runs the runtime with <root>/<namespace> as
// its root: runc and crun keep <id>/ there, runsc files whose names contain
// the id.
func stateUnder(t *testing.T, root, id string) bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "accel-cri"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), id) {
			return true
		}
	}
	return false
}

// bundleAnnotations reads the annotations of a running container's OCI spec
// from its containerd task bundle.
func bundleAnnotations(t *testing.T, a *framework.AccelCRI, id string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.State, "containerd", "daemon", "io.containerd.runtime.v2.task", "accel-cri", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Annotations
}

// checkNoProcsWithArg fails the test if a process whose command line
// mentions s still runs, and kills it.
func checkNoProcsWithArg(t *testing.T, s string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			t.Errorf("process %d outlived the test: %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
