package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// Host ranges of the pods below, as kubelet picks them (multiples of 65536).
// uids and gids differ so that a mix-up shows.
const (
	usernsUID = 41 * 65536
	usernsGID = 42 * 65536
	usernsLen = 65536
)

// usernsOptions is a pod's own user namespace with uids from hostUID and
// gids from hostGID.
func usernsOptions(hostUID, hostGID uint32) *runtimeapi.UserNamespace {
	return &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostUID, Length: usernsLen}},
		Gids: []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostGID, Length: usernsLen}},
	}
}

// TestUserNamespaces runs pods with a user namespace of their own
// (hostUsers: false): root inside is the pod's host range, its root
// filesystem and pod files are idmapped to it, volumes that come with
// kubelet's mappings too; the pod survives an accel-cri crash and leaves
// nothing when removed. Three handlers: runc on overlayfs (idmapped
// layers), runc on the native snapshotter (layers copied with shifted
// owners) and a runc whose `features` lacks idmapped mounts (refused).
func TestUserNamespaces(t *testing.T) {
	dir := t.TempDir()
	noidmap := filepath.Join(dir, "runc-noidmap")
	// runc 1.1's answer, without mountExtensions.idmap; everything else is
	// the real runc.
	script := "#!/bin/sh\nif [ \"$1\" = features ]; then echo '{\"ociVersionMin\":\"1.0.0\",\"ociVersionMax\":\"1.1.0\",\"mountOptions\":[\"rro\"]}'; exit 0; fi\nexec /usr/local/sbin/runc \"$@\"\n"
	if err := os.WriteFile(noidmap, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true, Config: fmt.Sprintf(`
[runtimes.native]
  snapshotter = "native"
[runtimes.noidmap]
  binary_name = %q
`, noidmap)})
	e := podEnv{AccelCRI: a, imgs: imgs}
	ctx := ctxT(t, 10*time.Minute)
	for _, h := range []string{"", "native"} {
		if _, err := a.Images.PullImage(ctx, &runtimeapi.ImageSpec{Image: imgs.Busybox.Ref, RuntimeHandler: h}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	// runPod runs a pod of handler with the user namespace u (and the
	// pod's net and IPC sysctls, which the pause can write only where the
	// pod's root owns the namespaces).
	runPod := func(t *testing.T, name, handler string, u *runtimeapi.UserNamespace, mutate ...func(*runtimeapi.PodSandboxConfig)) (string, *runtimeapi.PodSandboxConfig) {
		t.Helper()
		cfg := e.PodConfig(t, name)
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
		cfg.Linux.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shmmni": "1234"}
		for _, m := range mutate {
			m(cfg)
		}
		id, err := a.Runtime.RunPodSandbox(ctx, cfg, handler)
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v\n%s", name, err, a.LogTail(20))
		}
		return id, cfg
	}
	// ctrIn is a busybox container running script with the pod's namespace
	// options, as kubelet copies them.
	ctrIn := func(pod *runtimeapi.PodSandboxConfig, name, script string, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
		c := e.busybox(name, script)
		c.Linux.SecurityContext.NamespaceOptions = pod.Linux.SecurityContext.NamespaceOptions
		c.Mounts = mounts
		return c
	}
	sh := func(t *testing.T, id, script string) string {
		t.Helper()
		out, stderr, err := a.Runtime.ExecSync(ctx, id, []string{"sh", "-c", script}, 30*time.Second)
		if err != nil {
			t.Fatalf("%q: %v\n%s%s", script, err, out, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	wantMaps := func(t *testing.T, id string, uid, gid uint32) {
		t.Helper()
		got := normLines(sh(t, id, "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g"))
		want := fmt.Sprintf("0 %d %d\n0 %d %d\n0\n0", uid, usernsLen, gid, usernsLen)
		if got != want {
			t.Errorf("uid_map, gid_map, id -u, id -g:\n%s\nwant\n%s", got, want)
		}
	}

	t.Run("Status reports user namespaces for handlers with idmapped mounts", func(t *testing.T) {
		st, err := a.Runtime.Status(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"": true, "runc": true, "native": true, "noidmap": false}
		for _, h := range st.GetRuntimeHandlers() {
			w, ok := want[h.GetName()]
			if !ok {
				t.Errorf("unexpected handler %q", h.GetName())
				continue
			}
			delete(want, h.GetName())
			if got := h.GetFeatures().GetUserNamespaces(); got != w {
				t.Errorf("handler %q: user_namespaces %v, want %v", h.GetName(), got, w)
			}
		}
		if len(want) != 0 {
			t.Errorf("handlers missing from Status: %v", want)
		}
	})

	t.Run("a handler without idmapped mounts refuses the pod", func(t *testing.T) {
		cfg := a.PodConfig(t, "noidmap")
		cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions(usernsUID, usernsGID)
		_, err := a.Runtime.RunPodSandbox(ctx, cfg, "noidmap")
		if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "idmapped mounts") {
			t.Fatalf("RunPodSandbox: %v, want Unimplemented naming idmapped mounts", err)
		}
		if n := dirCount(t, filepath.Join(a.State, "sandbox", "netns")); n != 0 {
			t.Errorf("%d network namespaces left by the refused pod", n)
		}
		// The same handler runs pods in the host's user namespace.
		cfg = a.PodConfig(t, "noidmap-host")
		id, err := a.Runtime.RunPodSandbox(ctx, cfg, "noidmap")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	})

	vol := filepath.Join(a.Dir, "userns-vol")     // mounted with kubelet's mappings
	plain := filepath.Join(a.Dir, "userns-plain") // mounted without
	for _, d := range []string{vol, plain} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	podID, pod := runPod(t, "userns", "", usernsOptions(usernsUID, usernsGID))
	u := pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions
	app := ctrIn(pod, "app", "sleep 3600",
		&runtimeapi.Mount{ContainerPath: "/vol", HostPath: vol, UidMappings: u.Uids, GidMappings: u.Gids},
		&runtimeapi.Mount{ContainerPath: "/plain", HostPath: plain})
	appID := a.RunContainer(t, podID, pod, app)

	t.Run("root inside is the pod's host range", func(t *testing.T) {
		wantMaps(t, appID, usernsUID, usernsGID)
		if got := sh(t, appID, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni"); got != "80\n1234" {
			t.Errorf("pod sysctls seen inside: %q", got)
		}
		if got := sh(t, appID, "stat -f -c %T /sys"); got != "sysfs" {
			t.Errorf("/sys is %q, want a sysfs of the pod's network namespace", got)
		}
	})

	t.Run("the root filesystem is the pod root's and writable", func(t *testing.T) {
		if got := sh(t, appID, "stat -c %u:%g / /bin/sh /etc/passwd"); got != "0:0\n0:0\n0:0" {
			t.Errorf("owners in the image: %q, want root's", got)
		}
		sh(t, appID, "echo data > /made-in-pod && mkdir /etc/newdir")
		wantHostOwner(t, filepath.Join(containerRoot(t, a, appID), "made-in-pod"), usernsUID, usernsGID)
		wantHostOwner(t, filepath.Join(containerRoot(t, a, appID), "etc", "newdir"), usernsUID, usernsGID)
	})

	t.Run("pod files are idmapped", func(t *testing.T) {
		if got := sh(t, appID, "stat -c %u:%g /etc/hosts /etc/hostname /etc/resolv.conf"); got != "0:0\n0:0\n0:0" {
			t.Errorf("pod files' owners inside: %q, want root's", got)
		}
		sh(t, appID, "echo '10.9.9.9 added-in-pod' >> /etc/hosts")
		if got := sh(t, appID, "stat -c %a /dev/shm && touch /dev/shm/x"); got != "1777" {
			t.Errorf("/dev/shm mode %q", got)
		}
	})

	t.Run("volumes with mappings are idmapped, others are not", func(t *testing.T) {
		if got := sh(t, appID, "stat -c %u:%g /vol && touch /vol/made-in-pod"); got != "0:0" {
			t.Errorf("/vol owner inside %q, want 0:0", got)
		}
		// Through the idmapped mount the pod's root writes as the host's.
		wantHostOwner(t, filepath.Join(vol, "made-in-pod"), 0, 0)
		if got := sh(t, appID, "stat -c %u:%g /plain"); got != "65534:65534" {
			t.Errorf("/plain owner inside %q, want the overflow ids 65534:65534", got)
		}
		out, _, err := a.Runtime.ExecSync(ctx, appID, []string{"touch", "/plain/x"}, 30*time.Second)
		if err == nil {
			t.Errorf("the pod's root wrote to a host directory it does not own: %s", out)
		}
	})

	t.Run("stdio can be reopened by the container", func(t *testing.T) {
		// /dev/stdout is /proc/self/fd/1, a pipe of the shim: only its
		// owner may open it again.
		c := ctrIn(pod, "stdio", "echo reopened > /dev/stdout && echo reopened-err > /dev/stderr")
		st := a.WaitContainer(t, a.RunContainer(t, podID, pod, c), exited, 30*time.Second)
		if st.ExitCode != 0 {
			t.Fatalf("exit code %d: %s", st.ExitCode, framework.LogContent(t, logPath(pod, c)))
		}
		if lines := strings.Split(framework.LogContent(t, logPath(pod, c)), "\n"); !slices.Contains(lines, "reopened") || !slices.Contains(lines, "reopened-err") {
			t.Errorf("log %q, want the lines written through /dev/stdout and /dev/stderr", lines)
		}
	})

	t.Run("the pod survives an accel-cri crash", func(t *testing.T) {
		a.Kill(t)
		a.Start(t)
		st, err := a.Runtime.PodSandboxStatus(ctx, podID, false)
		if err != nil || st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatalf("pod after restart: %v %v", st.GetStatus().GetState(), err)
		}
		a.WaitContainer(t, appID, running, 5*time.Second)
		wantMaps(t, appID, usernsUID, usernsGID)
		late := a.RunContainer(t, podID, pod, ctrIn(pod, "late", "touch /late && sleep 3600"))
		wantMaps(t, late, usernsUID, usernsGID)
		if got := sh(t, late, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; stat -c %u /late"); got != "80\n0" {
			t.Errorf("late container: %q", got)
		}
		// Both containers are in the pause's user namespace.
		if a1, a2 := sh(t, appID, "readlink /proc/self/ns/user"), sh(t, late, "readlink /proc/self/ns/user"); a1 != a2 {
			t.Errorf("user namespaces %s and %s differ", a1, a2)
		}
	})

	t.Run("stop and remove leave nothing", func(t *testing.T) {
		podDir := filepath.Join(a.State, "sandbox", "pods", podID)
		if _, err := os.Stat(filepath.Join(podDir, "ns", "user")); err != nil {
			t.Fatalf("pinned user namespace: %v", err)
		}
		if err := a.Runtime.StopPodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(podDir, "ns", "user")); !os.IsNotExist(err) {
			t.Errorf("pinned user namespace after stop: %v", err)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
		if m := append(mountsUnder(t, a.State), mountsUnder(t, a.Root)...); len(m) != 0 {
			t.Errorf("mounts left: %v", m)
		}
		if n := dirCount(t, filepath.Join(a.State, "sandbox", "netns")); n != 0 {
			t.Errorf("%d network namespaces left", n)
		}
		if _, err := os.Stat(podDir); !os.IsNotExist(err) {
			t.Errorf("pod dir left: %v", err)
		}
		if left := podSnapshots(t, a, "overlayfs"); len(left) != 0 {
			t.Errorf("snapshots left: %v", left)
		}
		if left := a.LeftCgroups(); len(left) != 0 {
			t.Errorf("cgroups left: %v", left)
		}
	})

	t.Run("host network: the host's /sys, read-only", func(t *testing.T) {
		id, cfg := runPod(t, "userns-hostnet", "", usernsOptions(usernsUID+usernsLen*4, usernsGID+usernsLen*4), func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
			c.Linux.Sysctls = nil // net sysctls need a network namespace of the pod's
		})
		cid := a.RunContainer(t, id, cfg, ctrIn(cfg, "hostnet", "sleep 3600"))
		wantMaps(t, cid, usernsUID+usernsLen*4, usernsGID+usernsLen*4)
		if got := sh(t, cid, "test -d /sys/class/net/lo && echo lo; touch /sys/x 2>&1 || true"); !strings.HasPrefix(got, "lo\n") || !strings.Contains(got, "Read-only file system") {
			t.Errorf("/sys inside: %q, want the host's sysfs, read-only", got)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("native snapshotter: layers copied with shifted owners", func(t *testing.T) {
		id, cfg := runPod(t, "userns-native", "native", usernsOptions(usernsUID+usernsLen*2, usernsGID+usernsLen*2))
		cid := a.RunContainer(t, id, cfg, ctrIn(cfg, "native", "sleep 3600"))
		wantMaps(t, cid, usernsUID+usernsLen*2, usernsGID+usernsLen*2)
		if got := sh(t, cid, "stat -c %u:%g / /bin/sh && touch /made-in-pod"); got != "0:0\n0:0" {
			t.Errorf("owners in the image: %q, want root's", got)
		}
		wantHostOwner(t, filepath.Join(containerRoot(t, a, cid), "made-in-pod"), usernsUID+usernsLen*2, usernsGID+usernsLen*2)
		if err := a.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
		if m := append(mountsUnder(t, a.State), mountsUnder(t, a.Root)...); len(m) != 0 {
			t.Errorf("mounts left: %v", m)
		}
		if left := podSnapshots(t, a, "native"); len(left) != 0 {
			t.Errorf("snapshots left: %v", left)
		}
	})

	t.Run("mode NODE is the host's user namespace", func(t *testing.T) {
		id, cfg := runPod(t, "userns-node", "", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE})
		cid := a.RunContainer(t, id, cfg, ctrIn(cfg, "node", "sleep 3600"))
		host, err := os.ReadFile("/proc/self/uid_map")
		if err != nil {
			t.Fatal(err)
		}
		if got := normLines(sh(t, cid, "cat /proc/self/uid_map")); got != normLines(string(host)) {
			t.Errorf("uid_map %q, want the host's %q", got, host)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("mappings accel-cri cannot run are refused", func(t *testing.T) {
		m := func(c, h, l uint32) *runtimeapi.IDMapping {
			return &runtimeapi.IDMapping{ContainerId: c, HostId: h, Length: l}
		}
		for _, tc := range []struct {
			desc string
			u    *runtimeapi.UserNamespace
			code codes.Code
		}{
			{"two mappings", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{m(0, 1000, 100000), m(0, 2000, 100000)}, Gids: []*runtimeapi.IDMapping{m(0, 1000, 100000)}}, codes.Unimplemented},
			{"root not mapped", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{m(1, 1000, 100000)}, Gids: []*runtimeapi.IDMapping{m(1, 1000, 100000)}}, codes.InvalidArgument},
			{"mode CONTAINER", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, codes.InvalidArgument},
		} {
			cfg := a.PodConfig(t, "userns-bad")
			cfg.Linux.SecurityContext.NamespaceOptions.UsernsOptions = tc.u
			if _, err := a.Runtime.RunPodSandbox(ctx, cfg, ""); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %s", tc.desc, err, tc.code)
			}
		}
		if n := dirCount(t, filepath.Join(a.State, "sandbox", "netns")); n != 0 {
			t.Errorf("%d network namespaces left by refused pods", n)
		}
	})
}

// containerRoot is a running container's root filesystem as the host sees
// it (/proc/<pid>/root).
func containerRoot(t *testing.T, a *framework.AccelCRI, id string) string {
	t.Helper()
	st, err := a.Runtime.ContainerStatus(ctxT(t, time.Minute), id, true)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.PID == 0 {
		t.Fatalf("pid of container %s from %q: %v", id, st.GetInfo()["info"], err)
	}
	return fmt.Sprintf("/proc/%d/root", info.PID)
}

// podSnapshots lists the snapshots of a snapshotter that a container
// made: active ones (root filesystems) and those labelled with a user
// namespace mapping. (The copies with shifted owners the client makes for
// snapshotters that cannot idmap are committed without that label and go
// with containerd's garbage collection, as under containerd's CRI.)
func podSnapshots(t *testing.T, a *framework.AccelCRI, snapshotter string) []string {
	t.Helper()
	c, err := containerd.New(filepath.Join(a.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []string
	err = c.SnapshotService(snapshotter).Walk(ctxT(t, 30*time.Second), func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive || info.Labels[snapshots.LabelSnapshotUIDMapping] != "" {
			out = append(out, fmt.Sprintf("%s (%s, %v)", info.Name, info.Kind, info.Labels))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantHostOwner checks the owner of path as the host sees it.
func wantHostOwner(t *testing.T, path string, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s is owned by %d:%d on the host, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

// normLines joins the fields of each line with one space.
func normLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}
