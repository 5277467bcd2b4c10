package sandbox

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/accel-cri/accel-cri/sandbox/podnet"
	"github.com/accel-cri/accel-cri/sandbox/podns"
	"github.com/accel-cri/accel-cri/sandbox/spec"
)

func TestRootfsRemapOpts(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		uids, gids []runtimespec.LinuxIDMapping
		want       map[string]string
	}{
		{desc: "host user namespace: plain snapshot"},
		{
			desc: "kubelet's mapping",
			uids: []runtimespec.LinuxIDMapping{{HostID: 6 * 65536, Size: 65536}},
			gids: []runtimespec.LinuxIDMapping{{HostID: 6 * 65536, Size: 65536}},
			want: map[string]string{snapshots.LabelSnapshotUIDMapping: "0:393216:65536", snapshots.LabelSnapshotGIDMapping: "0:393216:65536"},
		},
		{
			desc: "uids and gids differ (critest's length)",
			uids: []runtimespec.LinuxIDMapping{{HostID: 1000, Size: 100000}},
			gids: []runtimespec.LinuxIDMapping{{HostID: 5000, Size: 70000}},
			want: map[string]string{snapshots.LabelSnapshotUIDMapping: "0:1000:100000", snapshots.LabelSnapshotGIDMapping: "0:5000:70000"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var info snapshots.Info
			for _, o := range rootfsRemapOpts(tc.uids, tc.gids) {
				if err := o(&info); err != nil {
					t.Fatal(err)
				}
			}
			if !maps.Equal(info.Labels, tc.want) {
				t.Errorf("labels = %v, want %v", info.Labels, tc.want)
			}
		})
	}
}

func TestIOOwner(t *testing.T) {
	idm := []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	spec := func(uid, gid uint32, uids, gids []runtimespec.LinuxIDMapping) *runtimespec.Spec {
		return &runtimespec.Spec{
			Process: &runtimespec.Process{User: runtimespec.User{UID: uid, GID: gid}},
			Linux:   &runtimespec.Linux{UIDMappings: uids, GIDMappings: gids},
		}
	}
	for _, tc := range []struct {
		desc             string
		spec             *runtimespec.Spec
		wantUID, wantGID uint32
		wantOK           bool
		wantErr          error
	}{
		{desc: "host user namespace", spec: spec(1000, 1000, nil, nil)},
		{desc: "no linux section", spec: &runtimespec.Spec{Process: &runtimespec.Process{}}},
		{desc: "root", spec: spec(0, 0, idm, idm), wantUID: 100000, wantGID: 100000, wantOK: true},
		{desc: "user 1000", spec: spec(1000, 2000, idm, idm), wantUID: 101000, wantGID: 102000, wantOK: true},
		{desc: "last mapped id", spec: spec(65535, 65535, idm, idm), wantUID: 165535, wantGID: 165535, wantOK: true},
		{
			desc: "gids mapped elsewhere",
			spec: spec(5, 5, idm, []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 10}}), wantUID: 100005, wantGID: 300005, wantOK: true,
		},
		{desc: "uid past the range", spec: spec(65536, 0, idm, idm), wantErr: errdefs.ErrInvalidArgument},
		{desc: "gid past the range", spec: spec(0, 70000, idm, idm), wantErr: errdefs.ErrInvalidArgument},
		{desc: "no process", spec: &runtimespec.Spec{Linux: &runtimespec.Linux{UIDMappings: idm, GIDMappings: idm}}, wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			uid, gid, ok, err := ioOwner(tc.spec)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if uid != tc.wantUID || gid != tc.wantGID || ok != tc.wantOK {
				t.Errorf("ioOwner = %d %d %v, want %d %d %v", uid, gid, ok, tc.wantUID, tc.wantGID, tc.wantOK)
			}
		})
	}
}

func TestPodUsernsMappings(t *testing.T) {
	idm := []*runtimeapi.IDMapping{{HostId: 65536, Length: 65536}}
	pod := func(u *runtimeapi.UserNamespace) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: u},
		}}}
	}
	for _, tc := range []struct {
		desc      string
		cfg       *runtimeapi.PodSandboxConfig
		supported bool
		wantOwn   bool
		wantErr   error
	}{
		{desc: "no option", cfg: &runtimeapi.PodSandboxConfig{}},
		{desc: "node", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE})},
		{desc: "pod", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idm, Gids: idm}), supported: true, wantOwn: true},
		{desc: "pod without idmapped mounts", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idm, Gids: idm}), wantErr: errdefs.ErrNotImplemented},
		{desc: "bad mapping wins over support", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idm}), wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			uids, gids, err := spec.PodUsernsMappings(tc.cfg, tc.supported)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if own := uids != nil && gids != nil; own != tc.wantOwn {
				t.Errorf("own user namespace = %v (%v %v), want %v", own, uids, gids, tc.wantOwn)
			}
			if own := ownUserns(tc.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()); own != tc.wantOwn {
				t.Errorf("ownUserns = %v, want %v", own, tc.wantOwn)
			}
		})
	}
}

// TestPodNetNSInUserns makes a pod network namespace owned by a user
// namespace with a pod's mapping, pins that owner as RunPodSandbox does and
// releases both.
func TestPodNetNSInUserns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("network and user namespaces need root (run the unit tests as root, as CI does)")
	}
	dir := t.TempDir()
	uid := runtimespec.LinuxIDMapping{HostID: 7 * 65536, Size: 65536}
	gid := runtimespec.LinuxIDMapping{HostID: 8 * 65536, Size: 65536}
	netnsPath, err := podnet.NewNetNSInUserns(filepath.Join(dir, "netns"), uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = podnet.RemoveNetNS(netnsPath) })
	if !podns.Mounted(netnsPath) {
		t.Fatalf("%s is no mounted network namespace", netnsPath)
	}
	pinned, err := podns.PinNetNSOwner(netnsPath, filepath.Join(dir, "pod"))
	if err != nil {
		t.Fatal(err)
	}
	p := podns.Namespaces{User: pinned}
	t.Cleanup(func() { _ = podns.Unpin(p) })
	if pinned != filepath.Join(dir, "pod", "ns", "user") || !p.Mounted() {
		t.Fatalf("pinned at %q (mounted: %v)", pinned, p.Mounted())
	}

	// The pinned namespace is the netns's owner, a child of ours, with the
	// pod's mappings.
	owner := nsID(t, func() (int, error) {
		f, err := os.Open(netnsPath)
		if err != nil {
			return -1, err
		}
		defer f.Close()
		return unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	})
	if got := nsID(t, func() (int, error) { return unix.Open(pinned, unix.O_RDONLY|unix.O_CLOEXEC, 0) }); got != owner {
		t.Errorf("pinned user namespace %s is not the netns's owner %s", got, owner)
	}
	if self := nsID(t, func() (int, error) { return unix.Open("/proc/self/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0) }); self == owner {
		t.Error("the netns is owned by the host's user namespace")
	}
	uidMap, gidMap := mapsOfUserns(t, pinned)
	if want := "0 458752 65536"; uidMap != want {
		t.Errorf("uid_map = %q, want %q", uidMap, want)
	}
	if want := "0 524288 65536"; gidMap != want {
		t.Errorf("gid_map = %q, want %q", gidMap, want)
	}

	if err := podns.Unpin(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pinned); !os.IsNotExist(err) || p.Mounted() {
		t.Errorf("%s still there after unpin: %v", pinned, err)
	}
	if err := podnet.RemoveNetNS(netnsPath); err != nil {
		t.Fatal(err)
	}
	if podns.Mounted(netnsPath) {
		t.Errorf("%s still mounted", netnsPath)
	}
}

// nsID opens a namespace with open and names it by its device and inode.
func nsID(t *testing.T, open func() (int, error)) string {
	t.Helper()
	fd, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// mapsOfUserns reads the uid and gid maps of the user namespace at path as
// a process inside it sees them (nsenter; a multithreaded Go process cannot
// join a user namespace).
func mapsOfUserns(t *testing.T, path string) (uidMap, gidMap string) {
	t.Helper()
	read := func(file string) string {
		out, err := exec.Command("nsenter", "--user="+path, "cat", file).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter --user=%s cat %s: %v: %s", path, file, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	return read("/proc/self/uid_map"), read("/proc/self/gid_map")
}
