package sandbox

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestCgroupsPath(t *testing.T) {
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
			got, err := cgroupsPath(tc.driver, tc.parent, tc.id)
			if checkErr(t, err, tc.wantErr) && got != tc.want {
				t.Errorf("cgroupsPath = %q, want %q", got, tc.want)
			}
		})
	}
}
