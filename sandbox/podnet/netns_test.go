package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	cnins "github.com/containernetworking/plugins/pkg/ns"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network and user namespaces need root (run the unit tests as root, as CI does)")
	}
}

func TestNetNSCreateRemove(t *testing.T) {
	pnRequireCNI(t)
	base := filepath.Join(t.TempDir(), "netns")
	path, err := NewNetNS(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveNetNS(path) })
	if filepath.Dir(path) != base {
		t.Errorf("netns %s not under %s", path, base)
	}
	var podNS, hostNS os.FileInfo
	if podNS, err = os.Stat(path); err != nil {
		t.Fatal(err)
	}
	if hostNS, err = os.Stat("/proc/self/ns/net"); err != nil {
		t.Fatal(err)
	}
	if os.SameFile(podNS, hostNS) {
		t.Fatal("pod netns is the host's")
	}
	if err := cnins.IsNSorErr(path); err != nil {
		t.Fatalf("%s is not a network namespace: %v", path, err)
	}
	if err := RemoveNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file still there: %v", err)
	}
	if err := RemoveNetNS(path); err != nil {
		t.Errorf("second RemoveNetNS: %v", err)
	}
	if err := RemoveNetNS(""); err != nil {
		t.Errorf("RemoveNetNS(\"\"): %v", err)
	}
}

// TestNetNSInUserns makes a pod network namespace owned by a new user
// namespace with a pod's mappings and removes it.
func TestNetNSInUserns(t *testing.T) {
	requireRoot(t)
	uid := runtimespec.LinuxIDMapping{HostID: 7 * 65536, Size: 65536}
	gid := runtimespec.LinuxIDMapping{HostID: 8 * 65536, Size: 65536}
	path, err := NewNetNSInUserns(filepath.Join(t.TempDir(), "netns"), uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveNetNS(path) })
	if err := cnins.IsNSorErr(path); err != nil {
		t.Fatalf("%s is not a network namespace: %v", path, err)
	}

	// Its owner is not our user namespace, and has the pod's mappings.
	nsf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.IoctlRetInt(int(nsf.Fd()), unix.NS_GET_USERNS)
	nsf.Close()
	if err != nil {
		t.Fatalf("owner of %s: %v", path, err)
	}
	owner := os.NewFile(uintptr(fd), "userns")
	defer owner.Close()
	ownerInfo, err := owner.Stat()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Stat("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(ownerInfo, self) {
		t.Fatal("the netns is owned by the host's user namespace")
	}
	// A multithreaded Go process cannot join a user namespace: nsenter
	// reads the maps as a process inside it sees them.
	readMap := func(file string) string {
		cmd := exec.Command("nsenter", "--user=/proc/self/fd/3", "cat", file)
		cmd.ExtraFiles = []*os.File{owner}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter cat %s: %v: %s", file, err, out)
		}
		return strings.Join(strings.Fields(string(out)), " ")
	}
	if got, want := readMap("/proc/self/uid_map"), "0 458752 65536"; got != want {
		t.Errorf("uid_map = %q, want %q", got, want)
	}
	if got, want := readMap("/proc/self/gid_map"), "0 524288 65536"; got != want {
		t.Errorf("gid_map = %q, want %q", got, want)
	}

	if err := RemoveNetNS(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file still there: %v", err)
	}
}

func TestRemoveOrphanNetNS(t *testing.T) {
	requireRoot(t)
	base := filepath.Join(t.TempDir(), "netns")
	var paths []string
	for range 2 {
		p, err := NewNetNS(base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = RemoveNetNS(p) })
		paths = append(paths, p)
	}
	hidden := filepath.Join(base, ".keep")
	if err := os.WriteFile(hidden, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	RemoveOrphanNetNS(base, map[string]bool{paths[0]: true, "": true})
	if err := cnins.IsNSorErr(paths[0]); err != nil {
		t.Errorf("owned netns %s removed: %v", paths[0], err)
	}
	if _, err := os.Lstat(paths[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan netns %s still there: %v", paths[1], err)
	}
	if _, err := os.Stat(hidden); err != nil {
		t.Errorf("hidden entry removed: %v", err)
	}
	// A missing dir is nothing to do.
	RemoveOrphanNetNS(filepath.Join(t.TempDir(), "none"), nil)
}

func TestInterfaceCounters(t *testing.T) {
	requireRoot(t)
	path := pnNewTestNetNS(t)
	got, err := InterfaceCounters(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("fresh netns: %+v, %v; want no interfaces (lo is left out)", got, err)
	}
	// A veth pair, both ends inside (the dummy driver may be missing).
	pnInNetNS(t, path, func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: PodInterface}, PeerName: "net1"})
	})
	got, err = InterfaceCounters(path)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b Counters) int { return strings.Compare(a.Interface, b.Interface) })
	want := []Counters{{Interface: PodInterface}, {Interface: "net1"}}
	if !slices.Equal(got, want) {
		t.Errorf("counters = %+v, want %+v", got, want)
	}
	if _, err := InterfaceCounters(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Error("counters of a missing netns: no error")
	}
}

func TestDialLoopback(t *testing.T) {
	requireRoot(t)
	path := pnNewTestNetNS(t)
	pnInNetNS(t, path, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
	// A port only the pod's loopback serves.
	var port int32
	pnInNetNS(t, path, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = int32(l.Addr().(*net.TCPAddr).Port)
		return l.Close()
	})
	pnServeInNetNS(t, path, fmt.Sprintf("127.0.0.1:%d", port), "inside")
	ctx := context.Background()
	c, err := DialLoopback(ctx, path, port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil || string(buf) != "inside" {
		t.Errorf("read %q, %v; want the greeting of the pod's listener", buf, err)
	}
	if _, err := DialLoopback(ctx, path, port+1); err == nil || !strings.Contains(err.Error(), "connect to port") {
		t.Errorf("dial to a closed port: %v", err)
	}
}
