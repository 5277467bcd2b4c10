package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/hack/testimages"
	"github.com/accel-cri/accel-cri/test/e2e/framework"
)

// labelImageVolumeOf is the label accel-cri puts on an image volume's view
// snapshot (sandbox/imagevolume.go); spelled out here, not imported.
const labelImageVolumeOf = "io.accel-cri/image-volume-of"

// TestImageVolumes mounts images into containers (CRI Mount.image,
// Kubernetes' ImageVolume) over the CRI socket: a one-layer image (its view
// is a bind of the layer) and a two-layer one (an overlay), whole and by a
// sub path; read-only, yet executable; ContainerStatus reports the id of
// each volume's image as its image_ref; removal leaves no view snapshot, no
// host mount and no lease; a pod with a user namespace of its own sees the
// image's owners; and what a crash leaves for containers that no longer
// exist is removed when accel-cri starts again.
func TestImageVolumes(t *testing.T) {
	reg := framework.StartRegistry(t, framework.RegistryOptions{})
	imgs := framework.PushTestImages(t, reg, "library/")
	a := framework.StartAccelCRI(t, framework.AccelCRIOptions{SandboxImage: imgs.Pause.Ref, WithCNI: true})
	e := podEnv{AccelCRI: a, imgs: imgs}
	ctx := ctxT(t, 10*time.Minute)

	base, err := testimages.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	two, err := testimages.AppendLayer(base,
		testimages.LayerFile{Name: "data/hello.txt", Data: []byte("from the second layer\n")},
		testimages.LayerFile{Name: "data/sub/deep.txt", Data: []byte("deep\n")},
		testimages.LayerFile{Name: "data/up", Link: "../bin"},               // a sub path through it stays in the image
		testimages.LayerFile{Name: "data/abs", Link: "/etc"},                // absolute: refused as a sub path
		testimages.LayerFile{Name: "etc/motd", Data: []byte("layer two\n")}, // in a directory of the first layer
	)
	if err != nil {
		t.Fatal(err)
	}
	twoRef := reg.Host() + "/library/imagevolume:two"
	if _, err := testimages.Push(ctx, two, twoRef, reg.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}
	busyboxID, err := a.Images.PullImage(ctx, spec(imgs.Busybox.Ref), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	twoID, err := a.Images.PullImage(ctx, spec(twoRef), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	client, err := containerd.New(filepath.Join(a.State, "containerd", "containerd.sock"), containerd.WithDefaultNamespace("accel-cri"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	volumesDir := filepath.Join(a.State, "sandbox", "imagevolumes")

	// runPod runs a pod that is removed when the subtest ends, also when
	// it fails half-way.
	runPod := func(t *testing.T, name string, mutate ...func(*runtimeapi.PodSandboxConfig)) (string, *runtimeapi.PodSandboxConfig) {
		id, cfg := e.runPod(t, name, mutate...)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := a.Runtime.RemovePodSandbox(ctx, id); err != nil {
				t.Errorf("remove pod %s: %v", name, err)
			}
		})
		return id, cfg
	}
	imageMount := func(dst, image, sub string) *runtimeapi.Mount {
		return &runtimeapi.Mount{ContainerPath: dst, Image: &runtimeapi.ImageSpec{Image: image}, Readonly: true, ImageSubPath: sub}
	}
	sh := func(t *testing.T, id, script string) string {
		t.Helper()
		out, stderr, err := a.Runtime.ExecSync(ctx, id, []string{"sh", "-c", script}, 30*time.Second)
		if err != nil {
			t.Fatalf("%q: %v\n%s%s", script, err, out, stderr)
		}
		return strings.TrimSpace(string(out))
	}
	// left reports the image volume snapshots, host mounts under the
	// volumes dir and leases that exist (for container id, or for any
	// when id is "").
	left := func(t *testing.T, id string) (views, mounts, leases []string) {
		t.Helper()
		filter := `labels."` + labelImageVolumeOf + `"`
		if id != "" {
			filter = `labels."` + labelImageVolumeOf + `"==` + id
		}
		if err := client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, i snapshots.Info) error {
			views = append(views, i.Name)
			return nil
		}, filter); err != nil {
			t.Fatal(err)
		}
		mounts = mountsUnder(t, filepath.Join(volumesDir, id))
		ls, err := client.LeasesService().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			leases = append(leases, l.ID)
		}
		return views, mounts, leases
	}

	t.Run("whole images and sub paths, read-only and executable", func(t *testing.T) {
		podID, pod := runPod(t, "imagevol")
		c := e.busybox("reader", "sleep 3600")
		c.Mounts = []*runtimeapi.Mount{
			imageMount("/vol/one", busyboxID, ""),
			imageMount("/vol/two", twoID, ""),
			imageMount("/vol/sub", twoID, "data/sub/"),
			imageMount("/vol/up", twoID, "data/up"),
		}
		id, err := a.Runtime.CreateContainer(ctx, podID, c, pod)
		if err != nil {
			t.Fatal(err)
		}
		if views, mounts, leases := left(t, id); len(views) != 4 || len(mounts) != 4 || len(leases) != 0 {
			t.Errorf("after create: views %q, mounts %q, leases %q; want 4, 4 and none", views, mounts, leases)
		}
		st, err := a.Runtime.ContainerStatus(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{busyboxID, twoID, twoID, twoID} {
			m := st.GetStatus().GetMounts()[i]
			if m.GetImage().GetImageRef() != want || m.GetImage().GetImage() != c.Mounts[i].Image.Image || m.GetImageSubPath() != c.Mounts[i].ImageSubPath {
				t.Errorf("status mount %d: %v, want image_ref %s", i, m, want)
			}
		}
		if err := a.Runtime.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := sh(t, id, "cat /vol/two/data/hello.txt /vol/two/etc/motd; /vol/one/bin/busybox echo ran"); got != "from the second layer\nlayer two\nran" {
			t.Errorf("image content: %q", got)
		}
		if got := sh(t, id, "cat /vol/sub/deep.txt; test -e /vol/sub/data || echo no-data; test -x /vol/up/busybox && echo bin"); got != "deep\nno-data\nbin" {
			t.Errorf("sub paths: %q", got)
		}
		for _, dir := range []string{"/vol/one", "/vol/two", "/vol/sub", "/vol/up"} {
			_, stderr, err := a.Runtime.ExecSync(ctx, id, []string{"touch", dir + "/written"}, 30*time.Second)
			if err == nil || !strings.Contains(string(stderr), "Read-only file system") {
				t.Errorf("touch in %s: %v %s, want a read-only file system", dir, err, stderr)
			}
		}
		for _, l := range strings.Split(sh(t, id, "cat /proc/self/mountinfo"), "\n") {
			f := strings.Fields(l)
			if len(f) > 5 && strings.HasPrefix(f[4], "/vol/") && !slices.Contains(strings.Split(f[5], ","), "ro") {
				t.Errorf("image volume mounted read-write: %s", l)
			}
		}

		if err := a.Runtime.StopContainer(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
		if err := a.Runtime.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if views, mounts, _ := left(t, id); len(views) != 0 || len(mounts) != 0 {
			t.Errorf("after removal: views %q, mounts %q", views, mounts)
		}
		if _, err := os.Stat(filepath.Join(volumesDir, id)); !os.IsNotExist(err) {
			t.Errorf("image volume dir of the removed container: %v", err)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a failed create undoes the volumes it made", func(t *testing.T) {
		podID, pod := runPod(t, "imagevol-undo")
		for _, tc := range []struct {
			desc string
			sub  string
			code codes.Code
		}{
			{"sub path missing", "data/none", codes.NotFound},
			{"sub path a file", "data/hello.txt", codes.InvalidArgument},
			{"sub path an absolute symlink", "data/abs", codes.InvalidArgument},
		} {
			c := e.busybox("undo", "sleep 3600")
			// The first two volumes are made before the third fails.
			c.Mounts = []*runtimeapi.Mount{imageMount("/a", busyboxID, ""), imageMount("/b", twoID, "data"), imageMount("/c", twoID, tc.sub)}
			_, err := a.Runtime.CreateContainer(ctx, podID, c, pod)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), "ImageVolumeMountFailed") {
				t.Errorf("%s: CreateContainer: %v, want %v starting ImageVolumeMountFailed", tc.desc, err, tc.code)
			}
			if views, mounts, leases := left(t, ""); len(views) != 0 || len(mounts) != 0 || len(leases) != 0 {
				t.Errorf("%s: left views %q, mounts %q, leases %q", tc.desc, views, mounts, leases)
			}
			if entries, _ := os.ReadDir(volumesDir); len(entries) != 0 {
				t.Errorf("%s: left %v in %s", tc.desc, entries, volumesDir)
			}
		}
		if ctrs, err := a.Runtime.ListContainers(ctx, nil); err != nil || len(ctrs) != 0 {
			t.Errorf("containers after failed creates: %v, %v", ctrs, err)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("pod with a user namespace sees the image's owners", func(t *testing.T) {
		const uid, gid = 45 * 65536, 46 * 65536
		podID, pod := runPod(t, "imagevol-userns", func(p *runtimeapi.PodSandboxConfig) {
			p.Linux.SecurityContext.NamespaceOptions.UsernsOptions = usernsOptions(uid, gid)
		})
		u := pod.Linux.SecurityContext.NamespaceOptions.UsernsOptions
		c := e.busybox("userns", "sleep 3600")
		c.Linux.SecurityContext.NamespaceOptions = pod.Linux.SecurityContext.NamespaceOptions
		withMaps := imageMount("/vol/two", twoID, "")
		withMaps.UidMappings, withMaps.GidMappings = u.Uids, u.Gids // as kubelet sends them
		c.Mounts = []*runtimeapi.Mount{withMaps, imageMount("/vol/one", busyboxID, "etc")}
		id := a.RunContainer(t, podID, pod, c)
		if got := sh(t, id, "stat -c %u:%g /vol/two/data/hello.txt /vol/two/bin/busybox /vol/one/passwd"); got != "0:0\n0:0\n0:0" {
			t.Errorf("owners in the image volumes: %q, want root's", got)
		}
		// The idmapped lower layers were temporary mounts of their own.
		if m := mountsUnder(t, filepath.Join(a.State, "sandbox", "tmpmounts")); len(m) != 0 {
			t.Errorf("temporary mounts left: %q", m)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
		if views, mounts, _ := left(t, id); len(views) != 0 || len(mounts) != 0 {
			t.Errorf("after the pod's removal: views %q, mounts %q", views, mounts)
		}
	})

	t.Run("kept across a restart; a crash's orphans removed", func(t *testing.T) {
		podID, pod := runPod(t, "imagevol-restart")
		c := e.busybox("survivor", "sleep 3600")
		c.Mounts = []*runtimeapi.Mount{imageMount("/vol", twoID, "data")}
		id, err := a.Runtime.CreateContainer(ctx, podID, c, pod)
		if err != nil {
			t.Fatal(err)
		}
		a.Kill(t)
		// What a crash between making a volume and recording its
		// container leaves: a labelled view, mounted under the volumes
		// dir, of a container containerd does not know.
		orphan := strings.Repeat("0", 64)
		ci, err := client.GetImage(ctx, twoID)
		if err != nil {
			t.Fatal(err)
		}
		diffIDs, err := ci.RootFS(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := client.SnapshotService("overlayfs").View(ctx, "imagevolume-"+orphan+"-0", identity.ChainID(diffIDs).String(),
			snapshots.WithLabels(map[string]string{labelImageVolumeOf: orphan}))
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(volumesDir, orphan, "0")
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := mount.All(ms, target); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mount.UnmountAll(target, 0) })
		a.Start(t)

		if views, mounts, _ := left(t, orphan); len(views) != 0 || len(mounts) != 0 {
			t.Errorf("orphan left after the restart: views %q, mounts %q", views, mounts)
		}
		if _, err := os.Stat(filepath.Join(volumesDir, orphan)); !os.IsNotExist(err) {
			t.Errorf("orphan dir: %v", err)
		}
		if views, mounts, _ := left(t, id); len(views) != 1 || len(mounts) != 1 {
			t.Errorf("the container's volume after the restart: views %q, mounts %q", views, mounts)
		}
		if err := a.Runtime.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := sh(t, id, "cat /vol/hello.txt"); got != "from the second layer" {
			t.Errorf("volume after the restart: %q", got)
		}
		st, err := a.Runtime.ContainerStatus(ctx, id, false)
		if err != nil || st.GetStatus().GetMounts()[0].GetImage().GetImageRef() != twoID {
			t.Errorf("status after the restart: %v, %v", st.GetStatus().GetMounts(), err)
		}
		if err := a.Runtime.RemovePodSandbox(ctx, podID); err != nil {
			t.Fatal(err)
		}
		if views, mounts, _ := left(t, ""); len(views) != 0 || len(mounts) != 0 {
			t.Errorf("after the pod's removal: views %q, mounts %q", views, mounts)
		}
	})
}
