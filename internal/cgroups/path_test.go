package cgroups

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestPath(t *testing.T) {
	for _, tc := range []struct {
		desc, driver, parent, id string
		want                     string
		wantErr                  error
	}{
		{desc: "cgroupfs", driver: "cgroupfs", parent: "/kubepods/burstable/pod1", id: "abc", want: "/kubepods/burstable/pod1/abc"},
		{desc: "cgroupfs root parent", driver: "cgroupfs", parent: "/", id: "abc", want: "/abc"},
		{desc: "cgroupfs no parent", driver: "cgroupfs", id: "abc", want: "/accel-cri/abc"},
		{desc: "cgroupfs relative", driver: "cgroupfs", parent: "kubepods/pod1", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "cgroupfs dot dot", driver: "cgroupfs", parent: "/kubepods/../etc", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "cgroupfs unclean", driver: "cgroupfs", parent: "/kubepods//pod1/", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "cgroupfs newline", driver: "cgroupfs", parent: "/kubepods\n", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd slice", driver: "systemd", parent: "kubepods-besteffort-pod123.slice", id: "abc", want: "kubepods-besteffort-pod123.slice:accel-cri:abc"},
		{desc: "systemd slice path", driver: "systemd", parent: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice", id: "abc", want: "kubepods-besteffort-pod1.slice:accel-cri:abc"},
		{desc: "systemd no parent", driver: "systemd", id: "abc", want: "system.slice:accel-cri:abc"},
		{desc: "systemd not a slice", driver: "systemd", parent: "kubepods", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd cgroupfs style path", driver: "systemd", parent: "/kubepods/burstable", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd relative slice path", driver: "systemd", parent: "a.slice/b.slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd dot dot", driver: "systemd", parent: "/a.slice/../b.slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd colon", driver: "systemd", parent: "a:b.slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd bare suffix", driver: "systemd", parent: ".slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "systemd dots", driver: "systemd", parent: "...slice", id: "abc", wantErr: errdefs.ErrInvalidArgument},
		{desc: "bad id", driver: "cgroupfs", parent: "/kubepods", id: "../x", wantErr: errdefs.ErrInvalidArgument},
		{desc: "empty id", driver: "systemd", id: "", wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown driver", driver: "cgroupv3", id: "abc", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Path(tc.driver, tc.parent, tc.id)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Path = %q, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Path = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestIsSlice(t *testing.T) {
	for s, want := range map[string]bool{
		"kubepods-besteffort-pod1.slice": true, "a_b@c\\x2d.slice": true, "-.slice": true,
		".slice": false, "...slice": false, "a..b.slice": false, "a:b.slice": false, "a/b.slice": false, "kubepods": false, "": false,
	} {
		if got := IsSlice(s); got != want {
			t.Errorf("IsSlice(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCheckPath(t *testing.T) {
	for _, tc := range []struct {
		driver, path string
		ok           bool
	}{
		{DriverCgroupfs, "/kubepods/pod1/c1", true},
		{DriverCgroupfs, "kubepods/c1", false},
		{DriverCgroupfs, "/kubepods/../c1", false},
		{DriverCgroupfs, "/kubepods/c1\n", false},
		{DriverSystemd, "kubepods.slice:accel-cri:c1", true},
		{DriverSystemd, "/kubepods/c1", false},
		{DriverSystemd, "kubepods:accel-cri:c1", false},
	} {
		err := CheckPath(tc.driver, tc.path)
		if (err == nil) != tc.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%s %q: %v; want ok=%v (else InvalidArgument)", tc.driver, tc.path, err, tc.ok)
		}
	}
}

func TestDir(t *testing.T) {
	for _, tc := range []struct {
		driver, path, want string
		bad                bool
	}{
		{driver: DriverCgroupfs, path: "/kubepods/besteffort/pod1/abc", want: "/kubepods/besteffort/pod1/abc"},
		{driver: DriverCgroupfs, path: "kubepods/abc", bad: true},
		{driver: DriverCgroupfs, path: "/kubepods/../etc", bad: true},
		{driver: DriverSystemd, path: "kubepods-besteffort-pod1.slice:cri-containerd:abc", want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope"},
		{driver: DriverSystemd, path: "system.slice:accel-cri:abc", want: "/system.slice/accel-cri-abc.scope"},
		{driver: DriverSystemd, path: "-.slice::abc", want: "/abc.scope"},
		{driver: DriverSystemd, path: "kubepods--x.slice:p:abc", bad: true},
		{driver: DriverSystemd, path: "kubepods.slice:p", bad: true},
		{driver: DriverSystemd, path: "kubepods.slice:p:a/b", bad: true},
		{driver: DriverSystemd, path: "/kubepods.slice:p:abc", bad: true},
	} {
		got, err := Dir(tc.driver, tc.path)
		if tc.bad {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s %q: %q, %v; want InvalidArgument", tc.driver, tc.path, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s %q = %q, %v; want %q", tc.driver, tc.path, got, err, tc.want)
		}
	}
}
