package spec

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSpecDevices(t *testing.T) {
	dir := t.TempDir()
	b := testBuilder(t, func(h *Host) { h.DeviceNode = devNode(dir) })
	outside := t.TempDir()
	outsideNode := filepath.Join(outside, "null")
	if err := mknodNull(outsideNode); err != nil {
		t.Fatal(err)
	}
	linkOut := filepath.Join(dir, "link-out")
	if err := os.Symlink(outsideNode, linkOut); err != nil {
		t.Fatal(err)
	}
	linkFile := filepath.Join(dir, "link-passwd")
	if err := os.Symlink("/etc/passwd", linkFile); err != nil {
		t.Fatal(err)
	}
	linkDotDot := filepath.Join(dir, "..", filepath.Base(outside), "null")
	char := filepath.Join(dir, "null")
	if err := unix.Mknod(char, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod needs CAP_MKNOD: %v", err)
	}
	block := filepath.Join(dir, "loop7")
	if err := unix.Mknod(block, unix.S_IFBLK|0o660, int(unix.Mkdev(7, 7))); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "by-id")
	if err := os.Symlink(char, link); err != nil {
		t.Fatal(err)
	}
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc      string
		dev       *runtimeapi.Device
		wantType  string
		wantMajor int64
		wantMinor int64
		wantPerms string
		wantErr   error
	}{
		{desc: "char device", dev: &runtimeapi.Device{HostPath: char, ContainerPath: "/dev/mynull", Permissions: "rw"}, wantType: "c", wantMajor: 1, wantMinor: 3, wantPerms: "rw"},
		{desc: "block device", dev: &runtimeapi.Device{HostPath: block, ContainerPath: "/dev/xvda", Permissions: "r"}, wantType: "b", wantMajor: 7, wantMinor: 7, wantPerms: "r"},
		{desc: "symlink to a device", dev: &runtimeapi.Device{HostPath: link, ContainerPath: "/dev/x", Permissions: "mrw"}, wantType: "c", wantMajor: 1, wantMinor: 3, wantPerms: "mrw"},
		{desc: "empty permissions", dev: &runtimeapi.Device{HostPath: char, ContainerPath: "/dev/x"}, wantType: "c", wantMajor: 1, wantMinor: 3, wantPerms: "rwm"},
		{desc: "regular file", dev: &runtimeapi.Device{HostPath: regular, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "directory", dev: &runtimeapi.Device{HostPath: dir, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "missing", dev: &runtimeapi.Device{HostPath: filepath.Join(dir, "nope"), ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrNotFound},
		{desc: "bad permissions", dev: &runtimeapi.Device{HostPath: char, ContainerPath: "/dev/x", Permissions: "rwx"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "node outside the dev root", dev: &runtimeapi.Device{HostPath: outsideNode, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink in the dev root to a node outside", dev: &runtimeapi.Device{HostPath: linkOut, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "symlink in the dev root to a regular file", dev: &runtimeapi.Device{HostPath: linkFile, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "dot-dot out of the dev root", dev: &runtimeapi.Device{HostPath: linkDotDot, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "the dev root itself", dev: &runtimeapi.Device{HostPath: dir, ContainerPath: "/dev/x", Permissions: "rw"}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "relative container path", dev: &runtimeapi.Device{HostPath: char, ContainerPath: "dev/x", Permissions: "r"}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			devs, err := b.resolveDevices([]*runtimeapi.Device{tc.dev})
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			s := mustApply(t, withDevices(devs))
			if len(s.Linux.Devices) != 1 {
				t.Fatalf("devices = %+v", s.Linux.Devices)
			}
			d := s.Linux.Devices[0]
			if d.Path != tc.dev.ContainerPath || d.Type != tc.wantType || d.Major != tc.wantMajor || d.Minor != tc.wantMinor || d.FileMode == nil {
				t.Errorf("device = %+v", d)
			}
			rules := s.Linux.Resources.Devices
			// The default spec denies all; the device rule follows it.
			if len(rules) != 2 || rules[0].Allow {
				t.Fatalf("rules = %+v", rules)
			}
			r := rules[1]
			if !r.Allow || r.Type != tc.wantType || r.Major == nil || *r.Major != tc.wantMajor || r.Minor == nil || *r.Minor != tc.wantMinor || r.Access != tc.wantPerms {
				t.Errorf("rule = %+v, want allow %s %d:%d %s", r, tc.wantType, tc.wantMajor, tc.wantMinor, tc.wantPerms)
			}
		})
	}
}

// mknodNull makes a character device like /dev/null (1:3) at path.
func mknodNull(path string) error {
	return unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
}

// Privileged containers of privileged_without_host_devices handlers (VM
// pods) get only the devices they ask for, and no allow-all rule.
func TestSpecPrivilegedWithoutHostDevices(t *testing.T) {
	for _, tc := range []struct {
		desc          string
		noHostDevices bool
		wantHost      bool
	}{
		{desc: "runc: every host device", wantHost: true},
		{desc: "VM handler: none of the host's", noHostDevices: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := testContainer(t)
			p.PodConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}}
			p.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
			p.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/vfio/7", Permissions: "rw"}}
			p.Handler.NoHostDevices = tc.noHostDevices
			s, err := applyContainer(t, testBuilder(t), p)
			if err != nil {
				t.Fatal(err)
			}
			paths := map[string]bool{}
			for _, d := range s.Linux.Devices {
				paths[d.Path] = true
			}
			if !paths["/dev/vfio/7"] {
				t.Errorf("requested device missing: %v", paths)
			}
			if paths["/dev/null"] != tc.wantHost {
				t.Errorf("host /dev/null in spec = %v, want %v", paths["/dev/null"], tc.wantHost)
			}
			allowAll := false
			for _, r := range s.Linux.Resources.Devices {
				if r.Allow && r.Major == nil && r.Type == "" || r.Allow && r.Major == nil && r.Type == "a" {
					allowAll = true
				}
			}
			if allowAll != tc.wantHost {
				t.Errorf("allow-all device rule = %v, want %v: %+v", allowAll, tc.wantHost, s.Linux.Resources.Devices)
			}
			if !tc.wantHost && !hasRule(s.Linux.Resources.Devices, "rw") {
				t.Errorf("no rule for the requested device: %+v", s.Linux.Resources.Devices)
			}
		})
	}
}

func hasRule(rules []runtimespec.LinuxDeviceCgroup, access string) bool {
	for _, r := range rules {
		if r.Allow && r.Major != nil && r.Access == access {
			return true
		}
	}
	return false
}
