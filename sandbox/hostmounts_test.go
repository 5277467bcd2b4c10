package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/spec"
)

// fakeMounts makes lookupMount answer with the given optional fields.
func fakeMounts(t *testing.T, optional string) {
	t.Helper()
	old := lookupMount
	lookupMount = func(string) (mount.Info, error) {
		return mount.Info{Mountpoint: "/", Optional: optional}, nil
	}
	t.Cleanup(func() { lookupMount = old })
}

// hostBinds are the binds sandbox/spec plans for CRI host path mounts.
func hostBinds(mounts ...*runtimeapi.Mount) []*spec.Bind {
	var binds []*spec.Bind
	for i, m := range mounts {
		binds = append(binds, &spec.Bind{
			Field: fmt.Sprintf("mounts[%d]", i), Destination: filepath.Clean(m.GetContainerPath()), HostPath: filepath.Clean(m.GetHostPath()),
			Mount: i, Readonly: m.GetReadonly(), Propagation: m.GetPropagation(),
		})
	}
	return binds
}

// TestResolveMountSources: the host side of a container's bind mounts.
func TestResolveMountSources(t *testing.T) {
	host := t.TempDir()
	real := filepath.Join(host, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(host, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	h2c := runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
	bidi := runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	for _, tc := range []struct {
		desc     string
		mount    *runtimeapi.Mount
		optional string // propagation of the host mount
		wantSrc  string
		wantErr  error
	}{
		{desc: "plain", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: real}, wantSrc: real},
		{desc: "symlinked host path is resolved", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: link}, wantSrc: real},
		{desc: "host to container on a slave mount", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: real, Propagation: h2c}, optional: "master:1", wantSrc: real},
		{desc: "host to container on a shared mount", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: real, Propagation: h2c}, optional: "shared:5", wantSrc: real},
		{desc: "host to container on a private mount", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: real, Propagation: h2c}, wantErr: errdefs.ErrFailedPrecondition},
		{desc: "bidirectional on a shared mount", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: real, Propagation: bidi}, optional: "shared:5", wantSrc: real},
		{desc: "bidirectional on a slave mount", mount: &runtimeapi.Mount{ContainerPath: "/data", HostPath: real, Propagation: bidi}, optional: "master:1", wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			fakeMounts(t, tc.optional)
			binds := hostBinds(tc.mount)
			if !checkErr(t, resolveMountSources(binds, false), tc.wantErr) {
				return
			}
			if binds[0].Source != tc.wantSrc {
				t.Errorf("source = %q, want %q", binds[0].Source, tc.wantSrc)
			}
		})
	}
	t.Run("missing host path is created as a directory", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "a", "b")
		binds := hostBinds(&runtimeapi.Mount{ContainerPath: "/data", HostPath: missing})
		if err := resolveMountSources(binds, false); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(missing); err != nil || !fi.IsDir() || binds[0].Source != missing {
			t.Fatalf("host path not created as a directory (source %q): %v", binds[0].Source, err)
		}
	})
	t.Run("missing pod file", func(t *testing.T) {
		hosts := filepath.Join(t.TempDir(), "hosts")
		binds := []*spec.Bind{{Field: "pod /etc/hosts", Destination: "/etc/hosts", HostPath: hosts, Mount: -1, PodFile: true}}
		checkErr(t, resolveMountSources(binds, false), errdefs.ErrFailedPrecondition)
		if _, err := os.Stat(hosts); err == nil {
			t.Error("pod file was created")
		}
	})
	t.Run("image volumes are left to their mounts", func(t *testing.T) {
		binds := []*spec.Bind{{Field: "mounts[0]", Destination: "/img", ImageVolume: true, Readonly: true}}
		if err := resolveMountSources(binds, false); err != nil || binds[0].Source != "" {
			t.Fatalf("source %q, err %v", binds[0].Source, err)
		}
		bindImageVolumes(binds, []*imageVolume{{Mount: 1, Source: "/other"}, {Mount: 0, Source: "/state/iv/c1/0", mappedLayers: true}})
		if binds[0].Source != "/state/iv/c1/0" || !binds[0].LayersIDMapped {
			t.Errorf("image volume bind = %+v", binds[0])
		}
	})
}

// TestResolveMountSourcesHostile covers host paths that must be refused
// before anything on the host is created: the checks run on resolved
// symlinks, not only on the path as sent.
func TestResolveMountSourcesHostile(t *testing.T) {
	host := t.TempDir()
	for name, target := range map[string]string{
		"root-link":     "/",
		"proc-link":     "/proc",
		"procsys-link":  "/proc/sys",
		"dangling-link": filepath.Join(host, "nowhere", "evil"),
		"etc-link":      "/etc",
	} {
		if err := os.Symlink(target, filepath.Join(host, name)); err != nil {
			t.Fatal(err)
		}
	}
	fresh := filepath.Join(host, "fresh") // must not be created by a rejected request
	for _, tc := range []struct {
		desc       string
		mount      *runtimeapi.Mount
		privileged bool
		wantErr    error
	}{
		{desc: "host root read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: "/"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "host /proc read-write", mount: &runtimeapi.Mount{ContainerPath: "/hostproc", HostPath: "/proc"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "host /proc/sys read-write", mount: &runtimeapi.Mount{ContainerPath: "/hostsys", HostPath: "/proc/sys"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink to / read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "root-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink to /proc read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "proc-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink to /proc/sys read-write", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "procsys-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "dangling symlink", mount: &runtimeapi.Mount{ContainerPath: "/x", HostPath: filepath.Join(host, "dangling-link")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "below a dangling symlink", mount: &runtimeapi.Mount{ContainerPath: "/x", HostPath: filepath.Join(host, "dangling-link", "sub")}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "host root read-only", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: "/", Readonly: true}},
		{desc: "symlink to /proc read-only", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: filepath.Join(host, "proc-link"), Readonly: true}},
		{desc: "host root read-write, privileged", mount: &runtimeapi.Mount{ContainerPath: "/host", HostPath: "/"}, privileged: true},
		{desc: "symlink to /etc read-write", mount: &runtimeapi.Mount{ContainerPath: "/hostetc", HostPath: filepath.Join(host, "etc-link")}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			// A missing host path listed first: a rejected request must not
			// have created it.
			binds := hostBinds(&runtimeapi.Mount{ContainerPath: "/fresh", HostPath: fresh}, tc.mount)
			err := resolveMountSources(binds, tc.privileged)
			if !checkErr(t, err, tc.wantErr) {
				if _, err := os.Lstat(fresh); err == nil {
					t.Errorf("rejected request created %s", fresh)
				}
				if _, err := os.Lstat(filepath.Join(host, "nowhere")); err == nil {
					t.Errorf("rejected request created the dangling symlink's target")
				}
				return
			}
			os.Remove(fresh)
		})
	}
}
