package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

func TestBlockDeviceNames(t *testing.T) {
	sys := t.TempDir()
	writeFiles(t, sys, map[string]string{
		"dev/block/8:0/uevent":   "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n",
		"dev/block/8:1/uevent":   "MAJOR=8\nMINOR=1\nDEVNAME=sda1\nDEVTYPE=partition\n",
		"dev/block/253:3/uevent": "MAJOR=253\nMINOR=3\n",
	})
	b := newBlockDevices(sys)
	for _, tc := range []struct {
		major, minor uint64
		want         string
	}{
		{8, 0, "/dev/sda"},
		{8, 1, "/dev/sda1"},
		{253, 3, "253:3"}, // no DEVNAME
		{7, 9, "7:9"},     // not in sysfs
	} {
		if got := b.name(tc.major, tc.minor); got != tc.want {
			t.Errorf("name(%d, %d) = %q, want %q", tc.major, tc.minor, got, tc.want)
		}
	}
	// Looked up once: a later sysfs change is not read again.
	writeFiles(t, sys, map[string]string{"dev/block/7:9/uevent": "DEVNAME=loop9\n"})
	if got := b.name(7, 9); got != "7:9" {
		t.Errorf("name looked up again: %q", got)
	}
	var none *blockDevices
	if got := none.name(8, 0); got != "8:0" {
		t.Errorf("without sysfs: %q", got)
	}
}

func TestFsDevice(t *testing.T) {
	dir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	num := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	for _, tc := range []struct {
		desc, mountinfo, want string
	}{
		{desc: "the mount of the same device", want: "/dev/fake0", mountinfo: "22 27 0:21 / /proc rw,relatime - proc proc rw\n" +
			"27 1 " + num + " / / rw,relatime shared:1 - ext4 /dev/fake0 rw,discard\n" +
			"28 27 " + num + " /var/lib /data rw - ext4 /dev/fake0 rw\n"},
		{desc: "no mount of it: by number", want: num, mountinfo: "22 27 0:21 / /proc rw,relatime - proc proc rw\n"},
	} {
		mi := filepath.Join(t.TempDir(), "mountinfo")
		if err := os.WriteFile(mi, []byte(tc.mountinfo), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := fsDevice(dir, mi); err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.desc, got, err, tc.want)
		}
	}
	if _, err := fsDevice(filepath.Join(dir, "gone"), "/proc/self/mountinfo"); err == nil {
		t.Error("a missing path has a device")
	}
}

func TestLayerDir(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		mounts []mount.Mount
		want   string
	}{
		{desc: "overlay", want: "/var/lib/c/snapshots/12/fs", mounts: []mount.Mount{{Type: "overlay", Source: "overlay",
			Options: []string{"index=off", "workdir=/var/lib/c/snapshots/12/work", "upperdir=/var/lib/c/snapshots/12/fs", "lowerdir=/var/lib/c/snapshots/1/fs"}}}},
		{desc: "bind (a snapshot without parents, native)", want: "/var/lib/c/snapshots/3/fs",
			mounts: []mount.Mount{{Type: "bind", Source: "/var/lib/c/snapshots/3/fs", Options: []string{"rw", "rbind"}}}},
		{desc: "bind by option", want: "/s/4/fs", mounts: []mount.Mount{{Type: "none", Source: "/s/4/fs", Options: []string{"rbind"}}}},
		{desc: "a block device (devmapper)", want: "", mounts: []mount.Mount{{Type: "ext4", Source: "/dev/mapper/snap-5"}}},
		{desc: "read-only overlay", want: "", mounts: []mount.Mount{{Type: "overlay", Options: []string{"lowerdir=/a:/b"}}}},
	} {
		if got := layerDir(tc.mounts); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.desc, got, tc.want)
		}
	}
}

func TestRenewLayerFilesystems(t *testing.T) {
	l := newLayerUsages()
	t.Cleanup(l.close)
	dir := t.TempDir()
	fs, err := statLayerFilesystem(dir, "/dev/x")
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	unix.Statfs(dir, &st)
	if fs.capacity != st.Blocks*uint64(st.Bsize) || fs.inodes != st.Files || fs.capacity == 0 {
		t.Errorf("figures %+v, statfs %+v", fs, st)
	}
	l.filesystems["overlayfs"] = fs
	l.renewFilesystems(time.Hour)
	if l.filesystem("overlayfs") != fs {
		t.Error("a fresh figure was renewed")
	}
	l.renewFilesystems(0)
	renewed := l.filesystem("overlayfs")
	if renewed == fs || renewed.device != "/dev/x" || renewed.path != dir {
		t.Errorf("renewed %+v (was %+v)", renewed, fs)
	}
	// A filesystem that cannot be read any more is forgotten.
	os.RemoveAll(dir)
	l.renewFilesystems(0)
	if got := l.filesystem("overlayfs"); got != nil {
		t.Errorf("kept %+v", got)
	}
}

// Open files are counted in batches; a process with many is counted whole.
func TestCountFDs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fd")
	os.MkdirAll(dir, 0o755)
	for i := range 700 {
		target := "/dev/null"
		if i%7 == 0 {
			target = "socket:[" + strconv.Itoa(i) + "]"
		}
		if err := os.Symlink(target, filepath.Join(dir, strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if fds, sockets := countFDs(dir); fds != 700 || sockets != 100 {
		t.Errorf("countFDs = %d, %d; want 700, 100", fds, sockets)
	}
	if fds, sockets := countFDs(filepath.Join(dir, "gone")); fds != 0 || sockets != 0 {
		t.Errorf("an exited process: %d, %d", fds, sockets)
	}
}

func TestReadNofile(t *testing.T) {
	for _, tc := range []struct {
		desc, limits string
		want         uint64
		ok           bool
	}{
		{desc: "a limit", limits: "Max open files            1048576              1048576              files     \n", want: 1048576, ok: true},
		{desc: "unlimited is left out", limits: "Max open files            unlimited            unlimited            files     \n"},
		{desc: "no such line", limits: "Max processes             63304                63304                processes \n"},
	} {
		proc := t.TempDir()
		writeFiles(t, proc, map[string]string{"7/limits": "Limit                     Soft Limit           Hard Limit           Units     \n" + tc.limits})
		c := &cgroupReader{proc: proc}
		var u usage
		var buf [512]byte
		c.readNofile(7, &u, buf[:])
		if u.nofileSoft != tc.want || (u.has&hasNofile != 0) != tc.ok {
			t.Errorf("%s: %d (has %v), want %d (%v)", tc.desc, u.nofileSoft, u.has&hasNofile != 0, tc.want, tc.ok)
		}
	}
}
